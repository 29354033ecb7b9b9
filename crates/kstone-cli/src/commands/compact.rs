//! `kstone compact`: merge every stripe's SST files.

use std::path::PathBuf;

use kstone_core::{Database, Options};

use crate::exit::Exit;
use crate::CliResult;

/// Flush, then merge every stripe's SST files into one (drops overwritten
/// versions and tombstones).
#[derive(clap::Args, Debug)]
pub struct CompactArgs {
    /// Database directory.
    pub db: PathBuf,
}

/// Run `kstone compact`.
pub fn run(a: &CompactArgs) -> CliResult<Exit> {
    let d = Database::open(&a.db, Options::default())?;
    let before = d.stats()?;
    d.compact()?;
    let after = d.stats()?;
    d.close()?;
    println!(
        "compacted {}: {} → {} SST files, {} → {} bytes",
        a.db.display(),
        before.sst_files,
        after.sst_files,
        before.sst_bytes,
        after.sst_bytes
    );
    Ok(Exit::Success)
}
