//! `kstone stats`: sizes, counts and positions of a database.

use std::path::{Path, PathBuf};

use crate::exit::Exit;
use crate::CliResult;

/// Show sizes, file counts and the last LSN of a database.
#[derive(clap::Args, Debug)]
pub struct StatsArgs {
    /// Database directory.
    pub db: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// Run `kstone stats`.
pub fn run(a: &StatsArgs) -> CliResult<Exit> {
    let (db, json) = (a.db.as_path(), a.json);
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
        for (id, r) in kstone_core::archiving::registrations(db)? {
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
    Ok(Exit::Success)
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
