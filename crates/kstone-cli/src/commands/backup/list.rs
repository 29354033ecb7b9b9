//! `kstone backup list`: the complete backups of a repository.

use crate::exit::Exit;
use crate::repo_options::RepoOptions;
use crate::CliResult;

use kstone_backup::manifest::rfc3339;

use super::summary;

/// List complete backups, oldest first.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Repository location: a directory, or s3://bucket/prefix.
    #[arg(long)]
    pub repo: String,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub access: RepoOptions,
}

/// Run `kstone backup list`.
pub fn run(a: &ListArgs) -> CliResult<Exit> {
    let ListArgs { repo, json, access } = a;
    let (list, damaged) = crate::access::open(repo, &access.open_options())?.list_readable()?;
    for (id, e) in &damaged {
        eprintln!("warning: backup {id} is damaged and not listed: {e}");
    }
    if *json {
        let v: Vec<_> = list.iter().map(summary).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{:<30} {:<12} {:<20} {:>10} {:>10} {:>14} {:>14}  parent",
            "id", "type", "snapshot time", "lsn", "items", "stored bytes", "total bytes"
        );
        for m in &list {
            println!(
                "{:<30} {:<12} {:<20} {:>10} {:>10} {:>14} {:>14}  {}",
                m.id,
                m.kind.to_string(),
                rfc3339(m.snapshot_commit_us),
                m.snapshot_lsn,
                m.item_count,
                m.bytes_stored,
                m.bytes_total,
                m.parent.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(Exit::Success)
}
