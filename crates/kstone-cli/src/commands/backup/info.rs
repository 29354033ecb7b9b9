//! `kstone backup info`: one backup.

use crate::exit::Exit;
use crate::repo_options::RepoOptions;
use crate::CliResult;

use super::summary;

/// Show one backup (an id, or `latest`).
#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// Repository location: a directory, or s3://bucket/prefix.
    #[arg(long)]
    pub repo: String,
    /// Backup id, or `latest`.
    #[arg(default_value = "latest")]
    pub id: String,
    /// The whole manifest as JSON, including every file.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub access: RepoOptions,
}

/// Run `kstone backup info`.
pub fn run(a: &InfoArgs) -> CliResult<Exit> {
    let InfoArgs {
        repo,
        id,
        json,
        access,
    } = a;
    let m = crate::access::open(repo, &access.open_options())?.manifest(id)?;
    if *json {
        println!("{}", serde_json::to_string_pretty(&m)?);
    } else {
        let s = summary(&m);
        for (k, v) in s.as_object().into_iter().flatten() {
            println!(
                "{k:<14} {}",
                v.as_str().map(String::from).unwrap_or(v.to_string())
            );
        }
    }
    Ok(Exit::Success)
}
