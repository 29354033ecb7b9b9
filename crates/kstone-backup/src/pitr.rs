//! Point-in-time restore: pick the newest backup at or before the target,
//! restore it, replay archived WAL up to and including the last write at or
//! before the target, refusing if the archive has a gap.

use std::path::Path;

use kstone_core::{Database, Durability, Options};
use kstone_core::{Op, Record};

use crate::error::{Error, Result};
use crate::manifest::{rfc3339_us, BackupManifest};
use crate::repository::Repository;
use crate::restore::{check_database, restore_with, Leftovers};
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
    /// The latest point the repository can restore exactly.
    Latest,
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
    /// Bytes a killed restore of the same target had written that this
    /// one continued from (each chunk checked against its id).
    pub resumed: u64,
}

/// A stretch of recoverable points: every LSN in `from_lsn..=to_lsn` can be
/// restored exactly (a backup at or before it, and archived WAL that
/// continues that backup without a gap up to it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reachable {
    pub from_lsn: u64,
    pub from_ts: u64,
    pub to_lsn: u64,
    pub to_ts: u64,
}

/// The recoverable window of one database history. `earliest..=latest` is
/// the stretch that ends at the latest reachable point; `reachable` lists
/// every stretch (older backups whose archive was pruned are single points).
/// Computed by the same code that plans a restore ([`Repository::restore_to`]).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Window {
    pub db_id: String,
    pub history: String,
    pub earliest_lsn: u64,
    pub earliest_ts: u64,
    pub latest_lsn: u64,
    pub latest_ts: u64,
    pub reachable: Vec<Reachable>,
    pub backups: usize,
    pub archive_objects: usize,
}

impl std::fmt::Display for Reachable {
    /// `LSN 5` (a lone backup) or `LSN 5..=22`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.from_lsn == self.to_lsn {
            write!(f, "LSN {}", self.from_lsn)
        } else {
            write!(f, "LSN {}..={}", self.from_lsn, self.to_lsn)
        }
    }
}

fn point(lsn: u64, ts: u64) -> String {
    format!("LSN {lsn} ({})", rfc3339_us(ts))
}

/// One backup and the archive objects that continue it without a gap, in
/// LSN order: what a restore from this backup can replay.
struct Chain<'a> {
    base: &'a BackupManifest,
    objects: Vec<&'a (String, ArchiveRange)>,
    /// The last point the chain reaches (LSN, commit time).
    end: (u64, u64),
}

impl<'a> Chain<'a> {
    fn of(base: &'a BackupManifest, ranges: &'a [(String, ArchiveRange)]) -> Chain<'a> {
        let (mut pos, mut pts) = (base.snapshot_lsn, base.snapshot_commit_us);
        let mut objects = Vec::new();
        for o in ranges {
            let r = &o.1;
            if r.last_lsn <= pos {
                continue;
            }
            if r.first_lsn > pos + 1 {
                break;
            }
            objects.push(o);
            pos = r.last_lsn;
            pts = r.last_ts;
        }
        Chain {
            base,
            objects,
            end: (pos, pts),
        }
    }
}

/// Every backup's chain, newest backup first.
fn chains<'a>(
    backups: &'a [BackupManifest],
    ranges: &'a [(String, ArchiveRange)],
) -> Vec<Chain<'a>> {
    let mut v: Vec<Chain> = backups.iter().map(|b| Chain::of(b, ranges)).collect();
    v.sort_by_key(|c| std::cmp::Reverse((c.base.snapshot_lsn, c.base.started_at_us)));
    v
}

/// The chains without what a restore found damaged: a chain whose backup is
/// damaged is gone; one that passes through a damaged archive object ends
/// before it.
fn without_damage<'a>(
    chains: &[Chain<'a>],
    bad_backups: &[&str],
    bad_objects: &[String],
) -> Vec<Chain<'a>> {
    chains
        .iter()
        .filter(|c| !bad_backups.contains(&c.base.id.as_str()))
        .map(|c| {
            let keep = c
                .objects
                .iter()
                .position(|o| bad_objects.contains(&o.0))
                .unwrap_or(c.objects.len());
            let objects = c.objects[..keep].to_vec();
            let end = objects
                .last()
                .map_or((c.base.snapshot_lsn, c.base.snapshot_commit_us), |o| {
                    (o.1.last_lsn, o.1.last_ts)
                });
            Chain {
                base: c.base,
                objects,
                end,
            }
        })
        .collect()
}

/// The stretches the chains cover, merged, oldest first.
fn stretches(chains: &[Chain]) -> Vec<Reachable> {
    let mut v: Vec<Reachable> = chains
        .iter()
        .map(|c| Reachable {
            from_lsn: c.base.snapshot_lsn,
            from_ts: c.base.snapshot_commit_us,
            to_lsn: c.end.0,
            to_ts: c.end.1,
        })
        .collect();
    v.sort_by_key(|r| (r.from_lsn, r.to_lsn));
    let mut out: Vec<Reachable> = Vec::new();
    for r in v {
        match out.last_mut() {
            Some(l) if r.from_lsn <= l.to_lsn => {
                if r.to_lsn > l.to_lsn {
                    l.to_lsn = r.to_lsn;
                    l.to_ts = r.to_ts;
                }
            }
            _ => out.push(r),
        }
    }
    out
}

/// How to name what can be reached, for an error.
fn describe(stretches: &[Reachable]) -> String {
    match stretches.last() {
        None => "nothing (no backup)".into(),
        Some(l) => {
            let mut s = format!("the latest reachable point is {}", point(l.to_lsn, l.to_ts));
            if stretches.len() > 1 || l.from_lsn != l.to_lsn {
                let parts: Vec<String> = stretches.iter().map(|r| r.to_string()).collect();
                s.push_str(&format!(" (reachable: {})", parts.join(", ")));
            }
            s
        }
    }
}

impl Repository {
    /// The recoverable window: every stretch of points that restore exactly,
    /// and the one that ends at the latest reachable point.
    pub fn window(&self, history: Option<&str>) -> Result<Window> {
        let m = self.material(history)?;
        let reachable = stretches(&chains(&m.backups, &m.ranges));
        let newest = reachable
            .iter()
            .max_by_key(|r| r.to_lsn)
            .cloned()
            .ok_or_else(|| Error::NoSuchBackup("any".into()))?;
        Ok(Window {
            db_id: m.db_id.clone(),
            history: m.history.clone(),
            earliest_lsn: newest.from_lsn,
            earliest_ts: newest.from_ts,
            latest_lsn: newest.to_lsn,
            latest_ts: newest.to_ts,
            reachable,
            backups: m.backups.len(),
            archive_objects: m.ranges.len(),
        })
    }

    /// Restore the database as of `target` into `dest` (same safety rules as
    /// a plain restore). `history` picks a database history; default: that
    /// of the newest backup.
    ///
    /// Exact or nothing: the result is the requested point (`Lsn(n)`: every
    /// write with LSN ≤ n; `Time(t)`: every write committed at or before t,
    /// proven by a backup and an archive that continues it without a gap up
    /// to a write at or after t), or an error naming the latest reachable
    /// point — never a nearby point that is not the one asked for.
    pub fn restore_to(
        &self,
        target: &Target,
        dest: &Path,
        history: Option<&str>,
    ) -> Result<PitrReport> {
        let _lock = self.lock_for_read("a point-in-time restore")?;
        let m = self.material(history)?;
        let (backups, ranges) = (&m.backups, &m.ranges);
        let chains = chains(backups, ranges);
        let reachable = stretches(&chains);
        let unreachable =
            |what: String| Error::Unreachable(format!("{what}; {}", describe(&reachable)));
        // The chains that reach the point, best (newest base) first, and
        // the LSN to stop at. A damaged backup or archive object fails its
        // chain only: the next one that reaches the same point is tried.
        let at = |n: u64| -> Vec<&Chain> {
            chains
                .iter()
                .filter(|c| c.base.snapshot_lsn <= n && c.end.0 >= n)
                .collect()
        };
        let (candidates, what): (Vec<(&Chain, Option<u64>)>, String) = match target {
            Target::Lsn(n) => (
                at(*n).into_iter().map(|c| (c, Some(*n))).collect(),
                format!("LSN {n}"),
            ),
            Target::Latest => {
                let n = reachable.iter().map(|r| r.to_lsn).max().unwrap_or(0);
                (
                    at(n).into_iter().map(|c| (c, Some(n))).collect(),
                    format!("the latest point (LSN {n})"),
                )
            }
            // The LSN follows from the chain's objects (read below).
            Target::Time(t) => (
                chains
                    .iter()
                    .filter(|c| c.base.snapshot_commit_us <= *t && c.end.1 >= *t)
                    .map(|c| (c, None))
                    .collect(),
                rfc3339_us(*t),
            ),
            Target::Name(name) => {
                let mut found = None;
                for (key, r) in ranges {
                    for rec in self.archive_records(key)? {
                        if rec.lsn > r.last_lsn {
                            break;
                        }
                        if matches!(&rec.op, Op::Marker { name: n } if n == name) {
                            found = Some(rec.lsn);
                        }
                    }
                }
                let n = found.ok_or_else(|| {
                    Error::NoSuchRestorePoint(format!(
                        "no restore point named {name:?} in the archive of history {} (or the histories it was restored from)",
                        m.history
                    ))
                })?;
                (
                    at(n).into_iter().map(|c| (c, Some(n))).collect(),
                    format!("restore point {name:?} (LSN {n})"),
                )
            }
        };
        if candidates.is_empty() {
            return Err(unreachable(match target {
                // The most common ask is "as late as possible": say how.
                Target::Time(t) if reachable.last().is_some_and(|l| *t > l.to_ts) => format!(
                    "{what} is after the newest archived write, so it cannot be restored \
                     exactly (to restore as late as possible, use --to-latest)"
                ),
                Target::Time(_) => format!(
                    "{what} cannot be restored exactly (no backup at or before it is continued \
                     by archived WAL up to it)"
                ),
                _ => format!("{what} cannot be restored exactly"),
            }));
        }
        let mut first_damage = None;
        let (mut bad_backups, mut bad_objects) = (Vec::new(), Vec::new());
        for (chain, lsn) in candidates {
            let attempt = match (target, lsn) {
                (_, Some(n)) => self.replay_chain(chain, n, dest),
                (Target::Time(t), None) => self
                    .time_to_lsn(chain, *t)
                    .and_then(|n| self.replay_chain(chain, n, dest)),
                _ => Err(Error::Invalid("internal: no target LSN".into())),
            };
            match attempt {
                Err(Error::Corrupt { object, detail }) => {
                    if chain.objects.iter().any(|o| o.0 == object) {
                        bad_objects.push(object.clone());
                    } else {
                        bad_backups.push(chain.base.id.as_str());
                    }
                    first_damage.get_or_insert(Error::Corrupt { object, detail });
                }
                r => return r,
            }
        }
        // What is left without the damage found (other damage is only found
        // by reading: `verify --all --deep`).
        let left = stretches(&without_damage(&chains, &bad_backups, &bad_objects));
        Err(match first_damage {
            Some(Error::Corrupt { object, detail }) => Error::Corrupt {
                object,
                detail: format!(
                    "{detail}; every backup and archive path to {what} is damaged \
                     (`kstone backup verify --all --deep` lists the damage); without it, {}",
                    describe(&left)
                ),
            },
            Some(e) => e,
            None => Error::Invalid("internal: no restore attempted".into()),
        })
    }

    /// The last LSN committed at or before `t` along a chain.
    fn time_to_lsn(&self, chain: &Chain, t: u64) -> Result<u64> {
        let mut best = chain.base.snapshot_lsn;
        for (key, r) in &chain.objects {
            if r.first_ts > t {
                break;
            }
            if r.last_ts <= t {
                best = best.max(r.last_lsn);
                continue;
            }
            let inside = self
                .archive_records(key)?
                .into_iter()
                .filter(|rec| rec.ts <= t && rec.lsn <= r.last_lsn)
                .map(|rec| rec.lsn)
                .max();
            best = best.max(inside.unwrap_or(0));
            break;
        }
        Ok(best)
    }

    /// Fetch and decode archive objects, up to four at a time (decompression
    /// and decoding dominate a replay's reading); results in input order.
    fn archive_records_of(&self, objects: &[&(String, ArchiveRange)]) -> Result<Vec<Vec<Record>>> {
        let threads = kstone_core::parallel::cpu_threads();
        kstone_core::parallel::try_map(objects, threads, |(key, _)| self.archive_records(key))
    }

    /// Restore a chain's base and replay its archive up to `target_lsn`.
    fn replay_chain(&self, chain: &Chain, target_lsn: u64, dest: &Path) -> Result<PitrReport> {
        let base = chain.base;
        let needed: Vec<&(String, ArchiveRange)> = chain
            .objects
            .iter()
            .copied()
            .take_while(|(_, r)| r.first_lsn <= target_lsn)
            .collect();
        let decoded = self.archive_records_of(&needed)?;
        let mut records: Vec<Record> = Vec::new();
        for ((key, r), recs) in needed.into_iter().zip(decoded) {
            for rec in recs {
                // An ancestor's object is clipped at the fork (`last_lsn`).
                if rec.lsn <= base.snapshot_lsn || rec.lsn > target_lsn || rec.lsn > r.last_lsn {
                    continue;
                }
                // Objects may overlap (an archiver that restarted, a child
                // history's archive repeating the writes before its fork): a
                // write is one LSN, replayed once.
                if records.last().is_some_and(|l| l.lsn >= rec.lsn) {
                    if records.binary_search_by_key(&rec.lsn, |l| l.lsn).is_ok() {
                        continue;
                    }
                    return Err(Error::Corrupt {
                        object: key.clone(),
                        detail: format!("record LSN {} goes back in the archive", rec.lsn),
                    });
                }
                records.push(rec);
            }
        }
        let (reached_lsn, reached_ts) = records
            .last()
            .map(|r| (r.lsn, r.ts))
            .unwrap_or((base.snapshot_lsn, base.snapshot_commit_us));
        let replayed = records.len() as u64;
        let leftovers = Leftovers::for_format(base.format_version);
        let resumed = std::cell::Cell::new(0);
        let report = restore_with(dest, leftovers, |staging| {
            let stats =
                self.materialize_as(base, staging, Some((target_lsn, reached_ts)), None, 0)?;
            resumed.set(stats.resumed);
            let db = Database::open(
                staging,
                Options {
                    durability: Durability::Buffered,
                    ..Options::default()
                },
            )?;
            db.ingest_logged(records)?;
            db.close()?;
            check_database(staging)
        })?;
        Ok(PitrReport {
            base_backup: base.id.clone(),
            reached_lsn: target_lsn.max(reached_lsn),
            reached_ts,
            replayed,
            items: report.items,
            moved_aside: report.moved_aside,
            resumed: resumed.get(),
        })
    }
}
