//! Point-in-time restore: pick the newest backup at or before the target,
//! restore it, replay archived WAL up to and including the last write at or
//! before the target, refusing if the archive has a gap.

use std::path::Path;

use kstone_core::wal::record::{Op, Record};
use kstone_core::{Database, Durability, Options};

use crate::error::{Error, Result};
use crate::manifest::{rfc3339, BackupManifest};
use crate::repository::Repository;
use crate::restore::{check_database, restore_with};
use crate::wal_archive::ArchiveRange;

/// Where to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every write with LSN ≤ this.
    Lsn(u64),
    /// Every write committed at or before this time (µs since the epoch).
    Time(u64),
    /// The restore point with this name (its latest occurrence).
    Name(String),
}

/// What a point-in-time restore reached.
#[derive(Debug, Clone)]
pub struct PitrReport {
    pub base_backup: String,
    pub reached_lsn: u64,
    pub reached_ts: u64,
    pub replayed: u64,
    pub items: u64,
    pub moved_aside: Option<std::path::PathBuf>,
}

/// The recoverable window of one database history.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Window {
    pub db_id: String,
    pub history: String,
    pub earliest_lsn: u64,
    pub earliest_ts: u64,
    pub latest_lsn: u64,
    pub latest_ts: u64,
    pub backups: usize,
    pub archive_objects: usize,
}

fn point(lsn: u64, ts: u64) -> String {
    format!("LSN {lsn} ({})", rfc3339(ts))
}

impl Repository {
    /// Backups of the history to work on: `history`, or that of the newest backup.
    fn history_backups(&self, history: Option<&str>) -> Result<Vec<BackupManifest>> {
        let all = self.list()?;
        let h = match history {
            Some(h) => h.to_string(),
            None => all
                .last()
                .map(|m| m.history.clone())
                .ok_or_else(|| Error::NoSuchBackup("any (the repository has no backups)".into()))?,
        };
        let v: Vec<BackupManifest> = all.into_iter().filter(|m| m.history == h).collect();
        if v.is_empty() {
            return Err(Error::NoSuchBackup(format!("of history {h}")));
        }
        Ok(v)
    }

    /// How far the archive reaches contiguously from `lsn`: (lsn, ts) of the
    /// last covered point.
    fn reach(ranges: &[(String, ArchiveRange)], lsn: u64, ts: u64) -> (u64, u64) {
        let (mut pos, mut pts) = (lsn, ts);
        for (_, r) in ranges {
            if r.last_lsn <= pos {
                continue;
            }
            if r.first_lsn > pos + 1 {
                break;
            }
            pos = r.last_lsn;
            pts = r.last_ts;
        }
        (pos, pts)
    }

    /// The recoverable window: from the oldest backup to the end of the
    /// archive that continues the newest backup without a gap.
    pub fn window(&self, history: Option<&str>) -> Result<Window> {
        let backups = self.history_backups(history)?;
        let (first, last) = (&backups[0], &backups[backups.len() - 1]);
        let ranges = self.archive_ranges(&last.db_id, &last.history)?;
        let (latest_lsn, latest_ts) =
            Self::reach(&ranges, last.snapshot_lsn, last.snapshot_commit_us);
        Ok(Window {
            db_id: last.db_id.clone(),
            history: last.history.clone(),
            earliest_lsn: first.snapshot_lsn,
            earliest_ts: first.snapshot_commit_us,
            latest_lsn,
            latest_ts,
            backups: backups.len(),
            archive_objects: ranges.len(),
        })
    }

    /// Restore the database as of `target` into `dest` (same safety rules as
    /// a plain restore). `history` picks a database history; default: that
    /// of the newest backup.
    pub fn restore_to(
        &self,
        target: &Target,
        dest: &Path,
        history: Option<&str>,
    ) -> Result<PitrReport> {
        let _lock = self.lock_for_read("a point-in-time restore")?;
        let backups = self.history_backups(history)?;
        let newest = &backups[backups.len() - 1];
        let ranges = self.archive_ranges(&newest.db_id, &newest.history)?;
        let archive_end = ranges.last().map(|(_, r)| (r.last_lsn, r.last_ts));
        let latest = || {
            let (l, t) = Self::reach(&ranges, newest.snapshot_lsn, newest.snapshot_commit_us);
            point(l, t)
        };
        let target_lsn = match target {
            Target::Lsn(n) => *n,
            Target::Time(t) => {
                if let Some((_, end_ts)) = archive_end {
                    if *t > end_ts && newest.snapshot_commit_us <= end_ts {
                        return Err(Error::Invalid(format!(
                            "{} is after the newest archived write; the latest reachable point is {}",
                            rfc3339(*t),
                            latest()
                        )));
                    }
                }
                let mut best = backups
                    .iter()
                    .filter(|b| b.snapshot_commit_us <= *t)
                    .map(|b| b.snapshot_lsn)
                    .max();
                for (key, r) in &ranges {
                    if r.first_ts > *t {
                        break;
                    }
                    if r.last_ts <= *t {
                        best = best.max(Some(r.last_lsn));
                        continue;
                    }
                    let inside = self
                        .archive_records(key)?
                        .into_iter()
                        .filter(|rec| rec.ts <= *t)
                        .map(|rec| rec.lsn)
                        .max();
                    best = best.max(inside);
                    break;
                }
                best.ok_or_else(|| {
                    Error::Invalid(format!(
                        "nothing to restore at or before {}: the earliest backup is {}",
                        rfc3339(*t),
                        point(backups[0].snapshot_lsn, backups[0].snapshot_commit_us)
                    ))
                })?
            }
            Target::Name(name) => {
                let mut found = None;
                for (key, _) in &ranges {
                    for rec in self.archive_records(key)? {
                        if matches!(&rec.op, Op::Marker { name: n } if n == name) {
                            found = Some(rec.lsn);
                        }
                    }
                }
                found.ok_or_else(|| {
                    Error::Invalid(format!(
                        "no restore point named {name:?} in the archive of history {} \
                         (a restored database starts a new history; back it up to make its archive usable)",
                        newest.history
                    ))
                })?
            }
        };
        let base = backups
            .iter()
            .rev()
            .find(|b| b.snapshot_lsn <= target_lsn)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "no backup at or before LSN {target_lsn}; the earliest backup is {}",
                    point(backups[0].snapshot_lsn, backups[0].snapshot_commit_us)
                ))
            })?;
        let (reach_lsn, reach_ts) =
            Self::reach(&ranges, base.snapshot_lsn, base.snapshot_commit_us);
        if reach_lsn < target_lsn {
            let gap = ranges.iter().any(|(_, r)| r.first_lsn > reach_lsn + 1);
            return Err(Error::Invalid(if gap {
                format!(
                    "the archived WAL has a gap after {}; that is the latest point reachable from backup {}",
                    point(reach_lsn, reach_ts),
                    base.id
                )
            } else {
                format!(
                    "LSN {target_lsn} is beyond the newest archived write; the latest reachable point is {}",
                    point(reach_lsn, reach_ts)
                )
            }));
        }
        let mut records: Vec<Record> = Vec::new();
        for (key, r) in &ranges {
            if r.last_lsn <= base.snapshot_lsn || r.first_lsn > target_lsn {
                continue;
            }
            records.extend(
                self.archive_records(key)?
                    .into_iter()
                    .filter(|rec| rec.lsn > base.snapshot_lsn && rec.lsn <= target_lsn),
            );
        }
        records.sort_by_key(|r| r.lsn);
        let (reached_lsn, reached_ts) = records
            .last()
            .map(|r| (r.lsn, r.ts))
            .unwrap_or((base.snapshot_lsn, base.snapshot_commit_us));
        let replayed = records.len() as u64;
        let report = restore_with(dest, |staging| {
            self.materialize_as(base, staging, Some(reached_lsn))?;
            let db = Database::open(
                staging,
                Options {
                    durability: Durability::Buffered,
                    ..Options::default()
                },
            )?;
            db.apply_logged(records)?;
            db.close()?;
            check_database(staging)
        })?;
        Ok(PitrReport {
            base_backup: base.id.clone(),
            reached_lsn,
            reached_ts,
            replayed,
            items: report.items,
            moved_aside: report.moved_aside,
        })
    }
}
