#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test
//! Property test of the retention planner on random backup chains with
//! random ages and random policies: nothing a kept backup needs is deleted,
//! every point of the PITR window stays reachable, no rule means no deletion.

use std::collections::HashMap;

use kstone_backup::manifest::{BackupManifest, BackupType, FileEntry};
use kstone_backup::objects::Codec;
use kstone_backup::prune::{plan, Policy};
use kstone_backup::wal_archive::ArchiveRange;
use proptest::prelude::*;

const DAY: u64 = 86_400_000_000;
const NOW: u64 = 400 * DAY;

fn file(name: &str, stored_in: &str) -> FileEntry {
    FileEntry {
        name: name.into(),
        size: 10,
        sha256: String::new(),
        stored_in: stored_in.into(),
        object: format!("data/{stored_in}/{name}"),
        stored_size: 10,
        codec: Codec::None,
        stored_sha256: None,
    }
}

/// A chain: each step is (type 0 full / 1 incremental / 2 differential, hours since the previous backup).
fn chain(steps: &[(u8, u64)]) -> (Vec<BackupManifest>, Vec<(String, ArchiveRange)>) {
    let mut out: Vec<BackupManifest> = Vec::new();
    let mut t = NOW - steps.iter().map(|s| s.1).sum::<u64>() * 3_600_000_000 - DAY;
    let mut lsn = 0;
    for (i, &(kind, hours)) in steps.iter().enumerate() {
        t += hours * 3_600_000_000;
        lsn += 100;
        let id = format!("b{i:03}");
        let last_full = out
            .iter()
            .rev()
            .find(|b| b.kind == BackupType::Full)
            .cloned();
        let kind = match (kind, &last_full) {
            (_, None) | (0, _) => BackupType::Full,
            (1, _) => BackupType::Incremental,
            _ => BackupType::Differential,
        };
        let reference = match kind {
            BackupType::Full => None,
            BackupType::Incremental => out.last().cloned(),
            BackupType::Differential => last_full.clone(),
        };
        // Each backup's snapshot: files f0..f(i%4) carried over plus one new file.
        let mut files: Vec<FileEntry> = reference
            .map(|r| r.files.iter().take(3).cloned().collect())
            .unwrap_or_default();
        files.push(file(&format!("new{i}"), &id));
        out.push(BackupManifest {
            format_version: 1,
            id: id.clone(),
            kind,
            parent: out
                .last()
                .map(|b| b.id.clone())
                .filter(|_| kind != BackupType::Full),
            base_full: last_full.map(|f| f.id).unwrap_or_else(|| id.clone()),
            db_id: "db".into(),
            history: "h".into(),
            db_path: String::new(),
            host: String::new(),
            snapshot_lsn: lsn,
            snapshot_commit_us: t,
            started_at_us: t,
            completed_at_us: t,
            item_count: 0,
            bytes_stored: 0,
            bytes_total: 0,
            resumed_bytes: 0,
            files,
            db_manifest: kstone_core::Manifest::new(
                "db".into(),
                0,
                kstone_core::KeySchema::bytes(),
            ),
            kstone_version: String::new(),
            repository: None,
        });
    }
    // Archive objects: 50 LSNs each, from LSN 1 to beyond the last backup;
    // commit times follow the backups' (LSN, time) points.
    let end = lsn + 100;
    let points: Vec<(u64, u64)> = out
        .iter()
        .map(|b| (b.snapshot_lsn, b.snapshot_commit_us))
        .collect();
    let ts_of = |l: u64| -> u64 {
        let hour = 3_600_000_000u64;
        match points.iter().position(|&(pl, _)| pl >= l) {
            Some(0) => points[0].1 - (points[0].0 - l) * hour / 100,
            Some(i) => {
                let ((l0, t0), (l1, t1)) = (points[i - 1], points[i]);
                t0 + (t1 - t0) * (l - l0) / (l1 - l0)
            }
            None => {
                let (ll, tl) = points[points.len() - 1];
                (tl + (l - ll) * hour / 100).min(NOW)
            }
        }
    };
    let ranges = (0..end / 50)
        .map(|k| {
            let (a, b) = (k * 50 + 1, k * 50 + 50);
            (
                format!("wal/db/h/{a}"),
                ArchiveRange {
                    first_lsn: a,
                    last_lsn: b,
                    first_ts: ts_of(a),
                    last_ts: ts_of(b),
                },
            )
        })
        .collect();
    (out, ranges)
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        proptest::option::of(0usize..4),
        proptest::option::of(0usize..4),
        proptest::option::of(0usize..3),
        proptest::option::of(0usize..3),
        proptest::option::of(0u64..20),
        proptest::option::of(0u64..40),
        proptest::option::of(0u64..20),
        proptest::option::of(0u64..10),
        proptest::option::of(0u64..10),
    )
        .prop_map(|(l, d, w, m, within, f, df, inc, pitr)| Policy {
            keep_last: l,
            keep_daily: d,
            keep_weekly: w,
            keep_monthly: m,
            keep_within_us: within.map(|x| x * DAY),
            keep_full_days: f,
            keep_differential_days: df,
            keep_incremental_days: inc,
            pitr_window_us: pitr.map(|x| x * DAY),
            allow_empty: false,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn prune_never_breaks_a_kept_backup_or_the_pitr_window(
        steps in proptest::collection::vec((0u8..3, 1u64..72), 1..40),
        policy in policy(),
    ) {
        let (backups, ranges) = chain(&steps);
        let mut archives = HashMap::new();
        archives.insert(("db".to_string(), "h".to_string()), ranges.clone());
        let p = plan(&backups, &archives, &policy, NOW);
        let kept: std::collections::HashSet<&str> =
            p.decisions.iter().filter(|d| d.keep).map(|d| d.id.as_str()).collect();
        let deleted_wal: std::collections::HashSet<&str> = p.wal_delete.iter().map(|(k, _)| k.as_str()).collect();
        if policy.is_empty() {
            prop_assert_eq!(kept.len(), backups.len());
            prop_assert!(deleted_wal.is_empty());
        }
        // Every object a kept backup references belongs to a kept backup.
        for b in backups.iter().filter(|b| kept.contains(b.id.as_str())) {
            for f in &b.files {
                prop_assert!(kept.contains(f.stored_in.as_str()), "{} needs {}", b.id, f.stored_in);
            }
        }
        // Every archived point after a kept backup is still reachable from it.
        let reachable = |point: u64| {
            backups.iter().filter(|b| kept.contains(b.id.as_str()) && b.snapshot_lsn <= point).any(|b| {
                let mut pos = b.snapshot_lsn;
                for (k, r) in &ranges {
                    if deleted_wal.contains(k.as_str()) || r.last_lsn <= pos { continue; }
                    if r.first_lsn > pos + 1 { break; }
                    pos = r.last_lsn;
                }
                pos >= point
            })
        };
        if let Some(w) = policy.pitr_window_us {
            let start = NOW.saturating_sub(w);
            let first_backup = backups.iter().map(|b| b.snapshot_lsn).min().unwrap_or(0);
            for (_, r) in &ranges {
                if r.last_ts >= start && r.last_lsn >= first_backup {
                    prop_assert!(reachable(r.last_lsn), "window point LSN {} lost", r.last_lsn);
                }
            }
        }
        // Each kept backup can still be rolled forward to the archive's end
        // (with a PITR window: each kept backup inside the window).
        let end = ranges.last().map(|(_, r)| r.last_lsn).unwrap_or(0);
        let roll = |b: &BackupManifest| {
            let mut pos = b.snapshot_lsn;
            for (k, r) in &ranges {
                if deleted_wal.contains(k.as_str()) || r.last_lsn <= pos { continue; }
                if r.first_lsn > pos + 1 { break; }
                pos = r.last_lsn;
            }
            pos >= end
        };
        for b in backups.iter().filter(|b| kept.contains(b.id.as_str())) {
            let in_window = policy.pitr_window_us.is_none_or(|w| b.snapshot_commit_us >= NOW.saturating_sub(w));
            if in_window {
                prop_assert!(roll(b), "kept backup {} can no longer be rolled forward", b.id);
            }
        }
        // The newest kept backup can still be rolled forward to the archive's end.
        if let Some(newest) = backups.iter().filter(|b| kept.contains(b.id.as_str())).max_by_key(|b| b.snapshot_lsn) {
            prop_assert!(reachable(ranges.last().map(|(_, r)| r.last_lsn).unwrap_or(newest.snapshot_lsn).max(newest.snapshot_lsn)));
        }
    }
}

/// The chapter's mistake: `find -mtime +30 -delete` on fulls while younger
/// incrementals still need them. Here the old full is kept, and says why.
#[test]
fn old_full_with_kept_incrementals_is_kept() {
    // Full 40 days ago, then daily incrementals.
    let mut steps = vec![(0u8, 1u64)];
    steps.extend(std::iter::repeat_n((1u8, 24u64), 40));
    let (backups, ranges) = chain(&steps);
    let mut archives = HashMap::new();
    archives.insert(("db".to_string(), "h".to_string()), ranges);
    let policy = Policy {
        keep_full_days: Some(30),
        keep_incremental_days: Some(7),
        ..Policy::default()
    };
    let p = plan(&backups, &archives, &policy, NOW);
    let full = &p.decisions[0];
    assert_eq!(full.kind, BackupType::Full);
    assert!(full.keep, "{:?}", full.reasons);
    assert!(
        full.reasons.iter().any(|r| r.starts_with("needed by")),
        "{:?}",
        full.reasons
    );
}
