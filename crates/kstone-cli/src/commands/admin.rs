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
            let point = match o.recovered_to_lsn {
                Some(l) => format!(
                    "to lsn {l}: backup {} (lsn {}) + archived WAL",
                    o.backup_id, o.snapshot_lsn
                ),
                None => format!("to lsn {}: backup {}", o.snapshot_lsn, o.backup_id),
            };
            println!(
                "restored       {point}, from repository {}{}",
                o.repository,
                o.parent_history
                    .as_ref()
                    .map(|h| format!(" (history {h})"))
                    .unwrap_or_default()
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
        if let Some(line) = aside_line(db) {
            println!("restore copies {line}");
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

/// `kstone restore-copies`: list, or drop the old, copies restores moved aside.
pub fn restore_copies(
    db: &Path,
    drop_older_than: Option<std::time::Duration>,
    dry_run: bool,
) -> CliResult<ExitCode> {
    let copies = kstone_backup::swap::aside_copies(db)?;
    let now = kstone_core::fsio::now_micros();
    let Some(age) = drop_older_than else {
        if copies.is_empty() {
            println!("no copies moved aside from {}", db.display());
        }
        for c in &copies {
            println!(
                "{}  moved aside {}  {} bytes",
                c.path.display(),
                kstone_backup::manifest::rfc3339(c.moved_at_us),
                c.bytes
            );
        }
        return Ok(ExitCode::SUCCESS);
    };
    let cutoff = now.saturating_sub(age.as_micros() as u64);
    let (mut dropped, mut failed) = (0, 0);
    for c in copies.iter().filter(|c| c.moved_at_us < cutoff) {
        if dry_run {
            match kstone_backup::swap::aside_copy_in_use(c) {
                Some(why) => println!("would keep {}: {why}", c.path.display()),
                None => println!("would delete {} ({} bytes)", c.path.display(), c.bytes),
            }
            continue;
        }
        match kstone_backup::swap::drop_aside_copy(c) {
            Ok(()) => {
                println!("deleted {} ({} bytes)", c.path.display(), c.bytes);
                dropped += 1;
            }
            Err(e) => {
                eprintln!("kept {}: {e}", c.path.display());
                failed += 1;
            }
        }
    }
    if !dry_run {
        eprintln!("{dropped} deleted, {} kept", copies.len() - dropped);
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The `stats` line about copies restores moved aside, if any.
fn aside_line(db: &Path) -> Option<String> {
    let copies = kstone_backup::swap::aside_copies(db).ok()?;
    let oldest = copies.first()?;
    Some(format!(
        "{} cop{} moved aside by restores ({} bytes; oldest {}): `kstone restore-copies {} --drop-older-than 30d` deletes old ones",
        copies.len(),
        if copies.len() == 1 { "y" } else { "ies" },
        copies.iter().map(|c| c.bytes).sum::<u64>(),
        kstone_backup::manifest::rfc3339(oldest.moved_at_us),
        db.display()
    ))
}
