//! `kstone agent`: scheduled backups, archiving, prune and verification
//! (the work is in `crate::agent`).

use std::path::PathBuf;

use crate::exit::Exit;
use crate::repo_options::RepoOptions;
use crate::CliResult;

/// Run backups, WAL archiving, prune and verification on cron schedules
/// from a config file, with Prometheus metrics; stops cleanly on SIGTERM.
/// See docs/operations.md for the config format.
#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// The agent's config file (TOML; see docs/operations.md).
    #[arg(long)]
    pub config: PathBuf,
    #[command(flatten)]
    pub access: RepoOptions,
}

/// Run `kstone agent`.
pub fn run(a: &AgentArgs) -> CliResult<Exit> {
    crate::agent::run(&a.config, &a.access.open_options())
}
