//! Retention: decide which backups and archived WAL to keep, never deleting a
//! backup that a kept backup needs nor WAL that a kept backup needs to reach
//! any point of its window; then delete (manifest first, then its objects).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::error::Result;
use crate::lineage::Lineage;
use crate::manifest::{civil, manifest_object, BackupManifest, BackupType, REPO_FORMAT_V2};
use crate::repository::Repository;
use crate::wal_archive::ArchiveRange;

const DAY_US: u64 = 86_400_000_000;

/// Which backups to keep. A backup is kept if any rule selects it, or if a
/// kept backup needs it. With no rule at all, nothing is deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub keep_last: Option<usize>,
    pub keep_daily: Option<usize>,
    pub keep_weekly: Option<usize>,
    pub keep_monthly: Option<usize>,
    /// Keep every backup younger than this (µs).
    pub keep_within_us: Option<u64>,
    pub keep_full_days: Option<u64>,
    pub keep_differential_days: Option<u64>,
    pub keep_incremental_days: Option<u64>,
    /// Every point of the last this-many µs stays restorable.
    pub pitr_window_us: Option<u64>,
    /// Let a prune delete every backup of a database (e.g. `--keep-last 0`);
    /// without it such a prune is refused and deletes nothing.
    pub allow_empty: bool,
}

impl Policy {
    /// No retention rule at all (then nothing is deleted).
    pub fn is_empty(&self) -> bool {
        Policy {
            allow_empty: false,
            ..self.clone()
        } == Policy::default()
    }
}

/// The verdict on one backup.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub id: String,
    pub kind: BackupType,
    pub db_id: String,
    pub started_at_us: u64,
    pub keep: bool,
    /// Why it is kept (rules and dependencies), or why it goes.
    pub reasons: Vec<String>,
    /// Bytes its deletion frees.
    pub bytes: u64,
}

/// What a prune does (or, with `--dry-run`, would do).
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub decisions: Vec<Decision>,
    /// Archive objects to delete: (key, range).
    pub wal_delete: Vec<(String, ArchiveRange)>,
    pub wal_keep: usize,
    pub bytes_freed: u64,
    /// Backups whose manifest could not be read (they and every backup
    /// started before them are kept).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub damaged: Vec<String>,
    /// Format 2: the packs deleted and repacked (`None` in a format-1
    /// repository).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunks: Option<crate::chunk_gc::ChunkGc>,
}

fn day(us: u64) -> (i64, u32, u32) {
    let (y, m, d, ..) = civil((us / 1_000_000) as i64);
    (y, m, d)
}

fn week(us: u64) -> i64 {
    // Weeks starting Monday (1970-01-01 was a Thursday).
    ((us / 1_000_000) as i64 / 86_400 + 3).div_euclid(7)
}

fn month(us: u64) -> (i64, u32) {
    let (y, m, _) = day(us);
    (y, m)
}

/// Decide, without touching anything. `archives` maps (db_id, history) to
/// that history's archive objects.
pub fn plan(
    backups: &[BackupManifest],
    archives: &HashMap<(String, String), Vec<(String, ArchiveRange)>>,
    policy: &Policy,
    now_us: u64,
) -> Plan {
    plan_with(backups, archives, &[], policy, now_us)
}

/// [`plan`], keeping what restored histories need: a history restored
/// from a backup here, with no backup of its own yet, is restorable only
/// through its lineage — its base backup (with everything that backup
/// needs) and its archive are kept.
pub fn plan_with(
    backups: &[BackupManifest],
    archives: &HashMap<(String, String), Vec<(String, ArchiveRange)>>,
    lineages: &[Lineage],
    policy: &Policy,
    now_us: u64,
) -> Plan {
    let mut reasons: BTreeMap<&str, Vec<String>> = backups
        .iter()
        .map(|b| (b.id.as_str(), Vec::new()))
        .collect();
    let mut keep = |id: &str, why: String| {
        if let Some(v) = reasons.get_mut(id) {
            v.push(why);
        }
    };
    if policy.is_empty() {
        for b in backups {
            keep(&b.id, "no retention rule given".into());
        }
    }
    let mut orphan_histories: BTreeSet<&str> = BTreeSet::new();
    for l in lineages {
        if !backups.iter().any(|b| b.history == l.history) {
            keep(
                &l.base_backup,
                format!(
                    "base of restored history {} (no backup of its own yet)",
                    l.history
                ),
            );
            orphan_histories.insert(l.history.as_str());
        }
    }
    // A PITR window that reaches back before a restored history's first
    // backup needs its lineage: the backup it was restored from, the
    // parent's archive after that backup, and the history's own archive.
    let mut lineage_needs: HashMap<(String, String), u64> = HashMap::new();
    if let Some(w) = policy.pitr_window_us {
        let start = now_us.saturating_sub(w);
        for l in lineages {
            let own = backups.iter().filter(|b| b.history == l.history);
            if own.clone().next().is_none() || own.clone().any(|b| b.snapshot_commit_us <= start) {
                continue;
            }
            let Some(base) = backups.iter().find(|b| b.id == l.base_backup) else {
                continue;
            };
            keep(
                &base.id,
                format!("base of the pitr-window of restored history {}", l.history),
            );
            for h in [&l.history, &l.parent_history] {
                let e = lineage_needs
                    .entry((base.db_id.clone(), h.clone()))
                    .or_insert(base.snapshot_lsn);
                *e = (*e).min(base.snapshot_lsn);
            }
        }
    }
    let mut by_db: BTreeMap<&str, Vec<&BackupManifest>> = BTreeMap::new();
    for b in backups {
        by_db.entry(b.db_id.as_str()).or_default().push(b);
    }
    for list in by_db.values_mut() {
        list.sort_by_key(|b| std::cmp::Reverse((b.started_at_us, b.id.clone())));
        if let Some(n) = policy.keep_last {
            for b in list.iter().take(n) {
                keep(&b.id, format!("keep-last {n}"));
            }
        }
        let mut calendar = |n: Option<usize>, name: &str, bucket: &dyn Fn(u64) -> String| {
            let Some(n) = n else { return };
            let mut seen = BTreeSet::new();
            for b in list.iter() {
                let k = bucket(b.started_at_us);
                if seen.len() < n && seen.insert(k.clone()) {
                    keep(&b.id, format!("{name} {k}"));
                }
            }
        };
        calendar(policy.keep_daily, "daily", &|us| {
            let (y, m, d) = day(us);
            format!("{y:04}-{m:02}-{d:02}")
        });
        calendar(policy.keep_weekly, "weekly", &|us| {
            format!("week {}", week(us))
        });
        calendar(policy.keep_monthly, "monthly", &|us| {
            let (y, m) = month(us);
            format!("{y:04}-{m:02}")
        });
        for b in list.iter() {
            let age = now_us.saturating_sub(b.started_at_us);
            if let Some(w) = policy.keep_within_us {
                if age <= w {
                    keep(&b.id, "within keep-within".into());
                }
            }
            let days = match b.kind {
                BackupType::Full => policy.keep_full_days,
                BackupType::Differential => policy.keep_differential_days,
                BackupType::Incremental => policy.keep_incremental_days,
            };
            if let Some(d) = days {
                if age <= d * DAY_US {
                    keep(&b.id, format!("keep-{}-days {d}", b.kind));
                }
            }
        }
        // The base of the PITR window: the newest backup at or before its start.
        if let Some(w) = policy.pitr_window_us {
            let start = now_us.saturating_sub(w);
            let mut histories: BTreeSet<&str> = BTreeSet::new();
            for b in list.iter() {
                histories.insert(b.history.as_str());
            }
            for h in histories {
                let hist: Vec<&&BackupManifest> = list.iter().filter(|b| b.history == h).collect();
                let base = hist
                    .iter()
                    .find(|b| b.snapshot_commit_us <= start)
                    .or_else(|| hist.last());
                if let Some(b) = base {
                    keep(&b.id, "base of the pitr-window".into());
                }
            }
        }
    }
    // Dependencies: a kept backup needs every backup that stores its files.
    let by_id: HashMap<&str, &BackupManifest> =
        backups.iter().map(|b| (b.id.as_str(), b)).collect();
    let mut stack: Vec<String> = reasons
        .iter()
        .filter(|(_, r)| !r.is_empty())
        .map(|(id, _)| id.to_string())
        .collect();
    while let Some(id) = stack.pop() {
        let Some(b) = by_id.get(id.as_str()) else {
            continue;
        };
        // A format-2 backup holds its chunks by reference, counted by the
        // prune itself: it needs no other backup.
        let needs: BTreeSet<&str> = if b.format_version >= REPO_FORMAT_V2 {
            BTreeSet::new()
        } else {
            b.files
                .iter()
                .map(|f| f.stored_in.as_str())
                .chain(b.parent.as_deref())
                .filter(|d| *d != b.id)
                .collect()
        };
        for dep in needs {
            if let Some(r) = reasons.get_mut(dep) {
                let newly = r.is_empty();
                let why = format!("needed by {}", b.id);
                if !r.contains(&why) {
                    r.push(why);
                }
                if newly {
                    stack.push(dep.to_string());
                }
            }
        }
    }
    let decisions: Vec<Decision> = backups
        .iter()
        .map(|b| {
            let r = reasons.remove(b.id.as_str()).unwrap_or_default();
            let keep = !r.is_empty();
            Decision {
                id: b.id.clone(),
                kind: b.kind,
                db_id: b.db_id.clone(),
                started_at_us: b.started_at_us,
                keep,
                reasons: if keep {
                    r
                } else {
                    vec!["no rule keeps it".into()]
                },
                bytes: b
                    .files
                    .iter()
                    .filter(|f| f.stored_in == b.id)
                    .map(|f| f.stored_size)
                    .sum(),
            }
        })
        .collect();
    // Archived WAL: keep what any kept backup needs to reach its points.
    let mut wal_delete = Vec::new();
    let mut wal_keep = 0;
    for ((db, history), objects) in archives {
        let kept: Vec<&BackupManifest> = backups
            .iter()
            .filter(|b| &b.db_id == db && &b.history == history)
            .filter(|b| decisions.iter().any(|d| d.id == b.id && d.keep))
            .collect();
        let needed_from = match (policy.pitr_window_us, kept.is_empty()) {
            (_, true) => None,
            (Some(w), false) => {
                let start = now_us.saturating_sub(w);
                // The window's base; without one, the oldest kept backup.
                kept.iter()
                    .filter(|b| b.snapshot_commit_us <= start)
                    .map(|b| b.snapshot_lsn)
                    .max()
                    .or_else(|| kept.iter().map(|b| b.snapshot_lsn).min())
            }
            (None, false) => kept.iter().map(|b| b.snapshot_lsn).min(),
        };
        // A restored history without backups: its whole archive, while the
        // backup it was restored from is kept (always, as above).
        let orphan = kept.is_empty() && orphan_histories.contains(history.as_str());
        let needed_from = match (
            needed_from,
            lineage_needs.get(&(db.clone(), history.clone())),
        ) {
            (Some(a), Some(&b)) => Some(a.min(b)),
            (a, b) => a.or(b.copied()),
        };
        for (key, r) in objects {
            let needed = orphan || matches!(needed_from, Some(from) if r.last_lsn > from);
            if needed || policy.is_empty() {
                wal_keep += 1;
            } else {
                wal_delete.push((key.clone(), r.clone()));
            }
        }
    }
    let bytes_freed = decisions.iter().filter(|d| !d.keep).map(|d| d.bytes).sum();
    Plan {
        decisions,
        wal_delete,
        wal_keep,
        bytes_freed,
        damaged: Vec::new(),
        chunks: None,
    }
}

impl Repository {
    /// Plan a prune and, unless `dry_run`, carry it out under an exclusive
    /// repository lock. Deletion order makes a crash harmless: each doomed
    /// backup's manifest goes first (it leaves `list`), then its objects; an
    /// interrupted prune leaves only unreferenced objects, which the next
    /// prune removes.
    pub fn prune(&self, policy: &Policy, dry_run: bool, now_us: u64) -> Result<Plan> {
        let _lock = if dry_run {
            None
        } else {
            Some(self.lock(true, "prune")?)
        };
        let (backups, damaged) = self.list_readable()?;
        let mut archives = HashMap::new();
        for (key, _) in self.storage.list(crate::layout::ARCHIVE)? {
            let parts: Vec<&str> = key.split('/').collect();
            if parts.len() == 4 {
                archives
                    .entry((parts[1].to_string(), parts[2].to_string()))
                    .or_insert_with(Vec::new);
            }
        }
        for (db, history) in archives.keys().cloned().collect::<Vec<_>>() {
            let ranges = self.archive_ranges(&db, &history)?;
            archives.insert((db, history), ranges);
        }
        let mut lineages = Vec::new();
        for (db, history) in archives.keys() {
            if let Ok(Some(l)) = self.lineage(db, history) {
                lineages.push(l);
            }
        }
        let mut plan = plan_with(&backups, &archives, &lineages, policy, now_us);
        // A backup with a damaged manifest may depend on any backup started
        // before it (its file list cannot be read): those are kept, so that
        // restoring the manifest from a copy makes it whole again.
        if let Some((oldest_damaged, _)) = damaged.iter().min_by(|a, b| a.0.cmp(&b.0)) {
            for d in plan.decisions.iter_mut() {
                if !d.keep && d.id < *oldest_damaged {
                    d.keep = true;
                    d.reasons = vec![format!(
                        "may be needed by backup {oldest_damaged}, whose manifest is damaged"
                    )];
                    plan.bytes_freed = plan.bytes_freed.saturating_sub(d.bytes);
                }
            }
            plan.damaged = damaged.iter().map(|(id, e)| format!("{id}: {e}")).collect();
            // Its archive may be needed too: keep all WAL.
            plan.wal_keep += plan.wal_delete.len();
            plan.wal_delete.clear();
        }
        if !policy.allow_empty {
            let emptied: BTreeSet<&str> = plan
                .decisions
                .iter()
                .map(|d| d.db_id.as_str())
                .filter(|db| !plan.decisions.iter().any(|d| d.keep && d.db_id == *db))
                .collect();
            if let Some(db) = emptied.first() {
                return Err(crate::error::Error::Guard(format!(
                    "this policy deletes every backup of database {db} (and the archive that needs them); \
                     nothing was deleted. Keep at least one backup, or pass --allow-empty if that is what you want"
                )));
            }
        }
        let chunked = self.config.format_version >= REPO_FORMAT_V2;
        if dry_run {
            if chunked {
                let gone: BTreeSet<String> = plan
                    .decisions
                    .iter()
                    .filter(|d| !d.keep)
                    .map(|d| d.id.clone())
                    .collect();
                let gc = self.collect_chunks(&gone, true)?;
                plan.bytes_freed = gc.bytes_freed;
                plan.chunks = Some(gc);
            }
            return Ok(plan);
        }
        for d in plan.decisions.iter().filter(|d| !d.keep) {
            self.storage.delete(&manifest_object(&d.id))?;
        }
        for d in plan.decisions.iter().filter(|d| !d.keep) {
            self.storage.delete_prefix(&crate::layout::data_of(&d.id))?;
            self.storage.delete(&crate::layout::chunk_map(&d.id))?;
        }
        for (key, _) in &plan.wal_delete {
            self.storage.delete(key)?;
        }
        // Objects of backups whose manifest an earlier, interrupted prune
        // already removed.
        let live: BTreeSet<String> = self.backup_ids()?.into_iter().collect();
        let running: BTreeSet<String> = self
            .storage
            .list("inprogress")?
            .into_iter()
            .filter_map(|(k, _)| crate::layout::in_progress_id(&k).map(String::from))
            .collect();
        let mut orphans = BTreeSet::new();
        for (key, _) in self.storage.list("data")? {
            if let Some(id) = key.split('/').nth(1) {
                if !live.contains(id) && !running.contains(id) {
                    orphans.insert(id.to_string());
                }
            }
        }
        for id in orphans {
            self.storage.delete_prefix(&crate::layout::data_of(&id))?;
        }
        if chunked {
            let gc = self.collect_chunks(&BTreeSet::new(), false)?;
            plan.bytes_freed = gc.bytes_freed;
            plan.chunks = Some(gc);
        }
        Ok(plan)
    }
}
