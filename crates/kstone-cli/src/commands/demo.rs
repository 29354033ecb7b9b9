//! `kstone demo`: KeystoneDB in a minute (the work is in `crate::demo`).

use std::path::PathBuf;

use crate::exit::Exit;
use crate::CliResult;

/// See KeystoneDB in a minute: build a sample shop database, back it up
/// (full + incremental) with WAL archiving on, simulate an accident and
/// restore to the moment before it. Leaves everything in --dir.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Where to put the demo (must not exist or be empty).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Number of orders in the sample database.
    #[arg(long, default_value_t = 200_000)]
    pub items: u64,
}

/// Run `kstone demo`.
pub fn run(a: &DemoArgs) -> CliResult<Exit> {
    crate::demo::run(a.dir.clone(), a.items)
}
