//! `kstone flush`: write the memtables out.

use std::path::PathBuf;

use kstone_core::{Database, Options};

use crate::exit::Exit;
use crate::CliResult;

/// Flush all memtables to SST files.
#[derive(clap::Args, Debug)]
pub struct FlushArgs {
    /// Database directory.
    pub db: PathBuf,
}

/// Run `kstone flush`.
pub fn run(a: &FlushArgs) -> CliResult<Exit> {
    let d = Database::open(&a.db, Options::default())?;
    d.flush()?;
    d.close()?;
    println!("flushed {}", a.db.display());
    Ok(Exit::Success)
}
