//! `kstone delete`: delete an item.

use std::path::PathBuf;

use kstone_core::{Database, Options};

use crate::exit::Exit;
use crate::key_options::KeyArgs;
use crate::CliResult;

/// Delete an item (succeeds even if it did not exist).
#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    /// Database directory.
    pub db: PathBuf,
    #[command(flatten)]
    pub key: KeyArgs,
}

/// Run `kstone delete`.
pub fn run(a: &DeleteArgs) -> CliResult<Exit> {
    let d = Database::open(&a.db, Options::default())?;
    let k = a.key.key_in(&d)?;
    let lsn = d.delete(&k.pk, k.sk.as_deref())?;
    d.close()?;
    eprintln!("ok (lsn {lsn})");
    Ok(Exit::Success)
}
