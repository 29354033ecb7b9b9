//! `kstone backup export`: a backup as a self-contained tar.gz.

use std::path::PathBuf;

use crate::exit::Exit;
use crate::repo_options::RepoOptions;
use crate::CliResult;

/// Write a backup as a self-contained tar.gz (plus FILE.sha256) that
/// `tar xzf` unpacks into an openable database directory.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Repository location: a directory, or s3://bucket/prefix.
    #[arg(long)]
    pub repo: String,
    /// Backup id, or `latest`.
    #[arg(default_value = "latest")]
    pub id: String,
    /// The archive to write.
    #[arg(short = 'o', long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub access: RepoOptions,
}

/// Run `kstone backup export`.
pub fn run(a: &ExportArgs) -> CliResult<Exit> {
    let ExportArgs {
        repo,
        id,
        output,
        access,
    } = a;
    let rep = crate::access::open(repo, &access.open_options())?.export_archive(id, output)?;
    println!("{}", rep.archive.display());
    eprintln!(
        "wrote {} ({} bytes) and {}",
        rep.archive.display(),
        rep.bytes,
        rep.checksum_file.display()
    );
    Ok(Exit::Success)
}
