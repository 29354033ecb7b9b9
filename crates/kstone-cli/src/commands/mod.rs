//! One function per command; each returns the process exit code.

mod admin;
mod backup;
mod data;

pub use data::for_each_item;
mod item;

use std::path::Path;
use std::process::ExitCode;

use kstone_core::{Database, Options};

use crate::args::Command;
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

pub fn run(cmd: Command) -> CliResult<ExitCode> {
    match cmd {
        Command::Demo { dir, items } => crate::demo::run(dir, items),
        Command::Create {
            db,
            pk_type,
            sk_type,
            no_sk,
        } => admin::create(&db, pk_type, sk_type, no_sk),
        Command::Stats { db, json } => admin::stats(&db, json),
        Command::Flush { db } => admin::flush(&db),
        Command::Check { db, json } => admin::check(&db, json),
        Command::Compact { db } => admin::compact(&db),
        Command::Query(a) => data::query(&a),
        Command::Scan(a) => data::scan(&a),
        Command::Export { db, output } => data::export(&db, output.as_deref()),
        Command::Import {
            db,
            input,
            skip_invalid,
        } => data::import(&db, &input, skip_invalid),
        Command::Put {
            db,
            key,
            json,
            typed,
        } => item::put(&db, &key, &json, typed),
        Command::Get { db, key, typed } => item::get(&db, &key, typed),
        Command::Delete { db, key } => item::delete(&db, &key),
        Command::Bench(args) => crate::bench::run(&args),
        Command::Backup(cmd) => backup::run(cmd),
        Command::Restore(args) => backup::restore(&args),
        Command::WalArchive {
            db,
            repo,
            interval,
            once,
            heartbeat,
            unregister,
        } => {
            if unregister {
                backup::wal_unregister(&db, &repo)
            } else {
                backup::wal_archive(&db, &repo, interval, once, heartbeat)
            }
        }
        Command::RestorePoint { db, name } => backup::restore_point(&db, &name),
        Command::RestoreCopies {
            db,
            drop_older_than,
            dry_run,
        } => admin::restore_copies(&db, drop_older_than, dry_run),
        Command::Agent { config } => crate::agent::run(&config),
    }
}
