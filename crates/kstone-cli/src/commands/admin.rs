//! Database-level commands: create, stats, flush.

use std::path::Path;
use std::process::ExitCode;

use kstone_core::{Database, KeySchema, Options, SortKeyRule};

use crate::args::KeyTypeArg;

use crate::CliResult;

pub fn create(
    db: &Path,
    pk_type: Option<KeyTypeArg>,
    sk_type: Option<KeyTypeArg>,
    no_sk: bool,
) -> CliResult<ExitCode> {
    let sk = match (sk_type, no_sk) {
        (Some(t), _) => SortKeyRule::Required(t.into()),
        (None, true) => SortKeyRule::Absent,
        (None, false) => SortKeyRule::Optional,
    };
    let schema = KeySchema::typed(pk_type.map(Into::into), sk);
    Database::create_with_keys(db, Options::default(), schema)?.close()?;
    println!("created {} (keys: {})", db.display(), schema);
    Ok(ExitCode::SUCCESS)
}

pub fn stats(db: &Path, json: bool) -> CliResult<ExitCode> {
    let d = super::open_for_reading(db)?;
    let s = d.stats()?;
    d.close()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        println!("database       {}", db.display());
        println!("id             {}", s.db_id);
        println!("stripes        {} ({} in use)", s.stripes, s.active_stripes);
        println!("keys           {}", s.key_schema);
        if let Some(lsn) = s.snapshot_lsn {
            match s.owner_pid {
                Some(pid) => println!(
                    "snapshot       live, at lsn {lsn} (process {pid} has the database open)"
                ),
                None => println!("snapshot       at lsn {lsn} (nobody has the database open)"),
            }
        }
        println!("sst files      {} ({} bytes)", s.sst_files, s.sst_bytes);
        println!(
            "sst per stripe {} at most, {:.1} on average (compaction keeps at most {})",
            s.max_tables_per_stripe,
            s.mean_tables_per_stripe,
            kstone_core::Options::default().compaction_trigger + 1
        );
        println!("wal segments   {} ({} bytes)", s.wal_segments, s.wal_bytes);
        println!(
            "memtable       {} entries ({} bytes)",
            s.memtable_entries, s.memtable_bytes
        );
        println!("last lsn       {}", s.last_lsn);
        println!("last commit    {} µs since epoch", s.last_commit_us);
        println!("items (approx) {}", s.approximate_items);
        if let Some(o) = &s.restored_from {
            println!(
                "restored from  backup {} (lsn {}) of repository {}",
                o.backup_id, o.snapshot_lsn, o.repository
            );
        }
        for (id, r) in kstone_core::wal::archive_mark::registrations(db)? {
            let at = if r.started {
                format!("archived through lsn {}", r.archived_lsn)
            } else {
                "registered, no round yet".to_string()
            };
            let loc = if r.location.is_empty() {
                "(location not recorded)".to_string()
            } else {
                r.location.clone()
            };
            println!("wal archive    {loc} (repository {id}): {at}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn flush(db: &Path) -> CliResult<ExitCode> {
    let d = Database::open(db, Options::default())?;
    d.flush()?;
    d.close()?;
    println!("flushed {}", db.display());
    Ok(ExitCode::SUCCESS)
}

pub fn compact(db: &Path) -> CliResult<ExitCode> {
    let d = Database::open(db, Options::default())?;
    let before = d.stats()?;
    d.compact()?;
    let after = d.stats()?;
    d.close()?;
    println!(
        "compacted {}: {} → {} SST files, {} → {} bytes",
        db.display(),
        before.sst_files,
        after.sst_files,
        before.sst_bytes,
        after.sst_bytes
    );
    Ok(ExitCode::SUCCESS)
}

pub fn check(db: &Path, json: bool) -> CliResult<ExitCode> {
    // A restore killed mid-swap may have left the old database in its
    // hidden staging directory: finish moving it aside first.
    let swept = kstone_backup::swap::recover(db)?;
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
    Ok(if r.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
