//! `kstone check`: a full integrity check of a database.

use std::path::PathBuf;

use crate::exit::Exit;
use crate::CliResult;

/// Full integrity check: every checksum, MANIFEST ↔ files, key order and
/// stripe ownership in SSTs, WAL chains and LSN order. Exits 1 and lists
/// the problems if any. Works while another process has the database open.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Database directory.
    pub db: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// Run `kstone check`.
pub fn run(a: &CheckArgs) -> CliResult<Exit> {
    let (db, json) = (a.db.as_path(), a.json);
    // A restore killed mid-swap may have left the old database in its
    // hidden staging directory: finish moving it aside first.
    // Not before a check that cannot run: with no database at `db` (yet),
    // a killed first restore's staging is progress for the next one.
    let swept = if db.join("MANIFEST").is_file() {
        kstone_backup::swap::recover(db)?
    } else {
        kstone_backup::swap::Recovered::default()
    };
    let mut r = kstone_core::check::check(db)?;
    for p in &swept.moved_aside {
        r.notes.push(format!(
            "a killed restore had left the previous database in its staging directory; moved it to {}",
            p.display()
        ));
    }
    for p in &swept.removed {
        r.notes.push(format!(
            "removed {} (staging of a killed restore, never swapped in)",
            p.display()
        ));
    }
    for (p, why) in &swept.stuck {
        r.notes.push(format!(
            "could not remove {} (staging of a killed restore): {why}",
            p.display()
        ));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "checked {}: {} SST files ({} entries), {} WAL segments ({} records), last LSN {}",
            db.display(),
            r.sst_files,
            r.sst_entries,
            r.wal_segments,
            r.wal_records,
            r.last_lsn
        );
        for n in &r.notes {
            println!("note: {n}");
        }
        for p in &r.problems {
            eprintln!("problem: {p}");
        }
        if r.problems.is_empty() {
            println!("ok");
        }
    }
    // Problems found are the check's answer (exit 1), not an error: damage
    // that stops the check itself exits 6.
    Ok(if r.problems.is_empty() {
        Exit::Success
    } else {
        Exit::Failure
    })
}
