//! `kstone restore-point`: a named point in the WAL to restore to.

use std::path::PathBuf;

use kstone_backup::manifest::rfc3339_us;

use crate::exit::Exit;
use crate::CliResult;

/// Record a named restore point in the WAL (`restore --to-name NAME`).
#[derive(clap::Args, Debug)]
pub struct RestorePointArgs {
    /// Database directory.
    pub db: PathBuf,
    /// The restore point's name.
    pub name: String,
}

/// Run `kstone restore-point`.
pub fn run(a: &RestorePointArgs) -> CliResult<Exit> {
    let (db, name) = (a.db.as_path(), a.name.as_str());
    let (lsn, ts) = match kstone_core::Database::open(db, kstone_core::Options::default()) {
        Ok(d) => {
            let r = d.create_restore_point(name)?;
            d.close()?;
            r
        }
        Err(kstone_core::Error::Locked { .. }) => {
            kstone_core::snapshot::remote::request_restore_point(
                db,
                name,
                std::time::Duration::from_secs(10),
            )?
        }
        Err(e) => return Err(e.into()),
    };
    println!("restore point {name:?} at LSN {lsn} ({})", rfc3339_us(ts));
    Ok(Exit::Success)
}
