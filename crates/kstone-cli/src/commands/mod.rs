//! One file per command: its options (`#[derive(clap::Args)]`) and its
//! `run`, which returns how the process exits.

pub mod agent;
pub mod backup;
pub mod bench;
pub mod check;
pub mod compact;
pub mod create;
pub mod delete;
pub mod demo;
pub mod export;
pub mod flush;
pub mod get;
pub mod import;
pub mod put;
pub mod query;
pub mod restore;
pub mod restore_copies;
pub mod restore_point;
pub mod scan;
pub mod stats;
pub mod wal_archive;

use std::path::Path;

use kstone_core::{Database, Options};

use crate::args::Command;
use crate::exit::Exit;
use crate::CliResult;

/// Open `db` for a read-only command without locking the application out:
/// from a snapshot that the process that has the database open pins, or one
/// held on disk (`LOCK` is taken only while it is read). Says so on stderr
/// when the snapshot is another process's live database.
pub fn open_for_reading(db: &Path) -> CliResult<Database> {
    let d = Database::open_read_only(db, Options::default())?;
    if let Some((snap, Some(pid))) = d.snapshot_source() {
        eprintln!(
            "note: {} is open in process {pid}; read from a live snapshot at lsn {}",
            db.display(),
            snap.lsn
        );
    }
    Ok(d)
}

/// Run a parsed command.
pub fn run(cmd: Command) -> CliResult<Exit> {
    match &cmd {
        Command::Demo(a) => demo::run(a),
        Command::Create(a) => create::run(a),
        Command::Put(a) => put::run(a),
        Command::Get(a) => get::run(a),
        Command::Delete(a) => delete::run(a),
        Command::Stats(a) => stats::run(a),
        Command::Check(a) => check::run(a),
        Command::Flush(a) => flush::run(a),
        Command::Compact(a) => compact::run(a),
        Command::Query(a) => query::run(a),
        Command::Scan(a) => scan::run(a),
        Command::Export(a) => export::run(a),
        Command::Import(a) => import::run(a),
        Command::Backup(c) => backup::run(c),
        Command::Restore(a) => restore::run(a),
        Command::WalArchive(a) => wal_archive::run(a),
        Command::Agent(a) => agent::run(a),
        Command::RestorePoint(a) => restore_point::run(a),
        Command::RestoreCopies(a) => restore_copies::run(a),
        Command::Bench(a) => bench::run(a),
    }
}
