#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test
//! `kstone backup prune` and `backup status --max-age` on a real repository.

mod common;
use common::{kstone, ok, p, Backend, Repo};

use std::path::Path;

use kstone_core::{item_from_plain_json, Database, Durability, Options};
use serde_json::Value;

on_both_backends!(
    prune_keeps_dependencies_and_deletes_the_rest,
    chapter_retention_mistake_keeps_the_needed_full,
    status_max_age_exit_codes,
    random_real_chains_survive_prune,
);

fn write(db: &Path, from: u64, n: u64) {
    let d = Database::open(
        db,
        Options {
            durability: Durability::Buffered,
            memtable_stripe_bytes: 4096,
            ..Options::default()
        },
    )
    .unwrap();
    for i in from..from + n {
        d.put(
            format!("k{i:05}").as_bytes(),
            None,
            &item_from_plain_json(&format!(r#"{{"v":{i}}}"#)).unwrap(),
        )
        .unwrap();
    }
    d.flush().unwrap();
    d.close().unwrap();
}

fn prune_keeps_dependencies_and_deletes_the_rest(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db.keystone");
    let repo = Repo::new(backend, tmp.path(), "repo");
    // Format 1's chains: an incremental needs the backups that hold its
    // files (format 2 counts chunk references instead: tests/repo_v2.rs).
    ok(&["backup", "init", "--repo", repo.loc(), "--format", "1"]);
    Database::create(&db, Options::default())
        .unwrap()
        .close()
        .unwrap();
    let mut backups = Vec::new();
    for (i, kind) in [
        "full",
        "incremental",
        "differential",
        "full",
        "incremental",
        "incremental",
    ]
    .iter()
    .enumerate()
    {
        write(&db, i as u64 * 100, 300);
        let b: Value = serde_json::from_str(&ok(&[
            "backup",
            "create",
            p(&db),
            "--repo",
            repo.loc(),
            "--type",
            kind,
            "--json",
        ]))
        .unwrap();
        backups.push((
            b["id"].as_str().unwrap().to_string(),
            ok(&["export", p(&db)]),
        ));
    }
    // No rule: nothing goes.
    let out = ok(&["backup", "prune", "--repo", repo.loc()]);
    assert!(out.contains("deleted 0 of 6 backups"), "{out}");
    // Dry run of --keep-last 1: the newest incremental needs its chain back to the second full.
    let dry = ok(&[
        "backup",
        "prune",
        "--repo",
        repo.loc(),
        "--keep-last",
        "1",
        "--dry-run",
    ]);
    assert!(dry.contains("would delete 3 of 6 backups"), "{dry}");
    assert!(
        dry.contains(&format!("needed by {}", backups[5].0)),
        "{dry}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&ok(&["backup", "list", "--repo", repo.loc(), "--json"]))
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        6,
        "dry run deleted something"
    );
    // A prune refuses while a backup or restore holds the repository.
    {
        let r = kstone_backup::Repository::open_on(repo.storage()).unwrap();
        let _held = r.lock(false, "a restore").unwrap();
        let o = kstone(&["backup", "prune", "--repo", repo.loc(), "--keep-last", "1"]);
        assert_eq!(o.status.code(), Some(4), "repository lock held");
        assert!(String::from_utf8_lossy(&o.stderr).contains("in use by a restore"));
    }
    let out = ok(&["backup", "prune", "--repo", repo.loc(), "--keep-last", "1"]);
    assert!(out.contains("deleted 3 of 6 backups"), "{out}");
    let left: Vec<String> =
        serde_json::from_str::<Value>(&ok(&["backup", "list", "--repo", repo.loc(), "--json"]))
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_str().unwrap().to_string())
            .collect();
    assert_eq!(
        left,
        vec![
            backups[3].0.clone(),
            backups[4].0.clone(),
            backups[5].0.clone()
        ]
    );
    for (id, _) in &backups[..3] {
        assert!(
            !repo.data_dirs().contains(id),
            "objects of pruned {id} remain"
        );
    }
    // Every kept backup verifies and restores to its exact contents.
    ok(&["backup", "verify", "--repo", repo.loc(), "--all", "--deep"]);
    for (i, (id, export)) in backups.iter().enumerate().skip(3) {
        let t = tmp.path().join(format!("r{i}"));
        ok(&["restore", "--repo", repo.loc(), id, "--target", p(&t)]);
        assert_eq!(&ok(&["export", p(&t)]), export);
    }
}

fn chapter_retention_mistake_keeps_the_needed_full(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db.keystone");
    let repo = Repo::new(backend, tmp.path(), "repo");
    // Format 1's chains: an incremental needs the backups that hold its
    // files (format 2 counts chunk references instead: tests/repo_v2.rs).
    ok(&["backup", "init", "--repo", repo.loc(), "--format", "1"]);
    Database::create(&db, Options::default())
        .unwrap()
        .close()
        .unwrap();
    write(&db, 0, 100);
    ok(&["backup", "create", p(&db), "--repo", repo.loc()]);
    write(&db, 100, 100);
    ok(&["backup", "create", p(&db), "--repo", repo.loc()]);
    // Fulls "expire" at once; incrementals are kept for 7 days.
    let out = ok(&[
        "backup",
        "prune",
        "--repo",
        repo.loc(),
        "--keep-full-days",
        "0",
        "--keep-incremental-days",
        "7",
    ]);
    assert!(out.contains("deleted 0 of 2 backups"), "{out}");
    assert!(out.contains("needed by"), "{out}");
    ok(&["backup", "verify", "--repo", repo.loc(), "--all"]);
}

fn status_max_age_exit_codes(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db.keystone");
    let repo = Repo::new(backend, tmp.path(), "repo");
    Database::create(&db, Options::default())
        .unwrap()
        .close()
        .unwrap();
    write(&db, 0, 50);
    // No backups yet (not even a repository): monitoring must alarm.
    assert_eq!(
        kstone(&["backup", "status", "--repo", repo.loc(), "--max-age", "1h"])
            .status
            .code(),
        Some(3),
        "no repository: not found"
    );
    ok(&["backup", "create", p(&db), "--repo", repo.loc()]);
    ok(&["backup", "status", "--repo", repo.loc(), "--max-age", "1h"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let o = kstone(&["backup", "status", "--repo", repo.loc(), "--max-age", "1s"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("older than --max-age"));
    // A failed verification makes status fail until a verify succeeds.
    ok(&["backup", "verify", "--repo", repo.loc()]);
    let f = repo.keys("packs").into_iter().next().unwrap();
    let saved = repo.read(&f);
    repo.write(&f, b"garbage".to_vec());
    assert_eq!(
        kstone(&["backup", "verify", "--repo", repo.loc()])
            .status
            .code(),
        Some(1)
    );
    let o = kstone(&[
        "backup",
        "status",
        "--repo",
        repo.loc(),
        "--max-age",
        "1h",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("last verification"));
    repo.write(&f, saved);
    ok(&["backup", "verify", "--repo", repo.loc()]);
    ok(&["backup", "status", "--repo", repo.loc(), "--max-age", "1h"]);
}

/// Random real chains and random count rules: after prune, every kept backup
/// verifies and restores to its exact contents, and the newest point stays
/// reachable through the archived WAL. (Ages are all minutes here; the
/// age and calendar rules are covered on synthetic ages by the planner's
/// property test in kstone-backup.)
fn random_real_chains_survive_prune(backend: Backend) {
    let mut rng = 0x5eed_u64;
    let mut next = |n: u64| {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 33) % n
    };
    for case in 0..3 {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("db.keystone");
        let repo = Repo::new(backend, tmp.path(), "repo");
        Database::create(&db, Options::default())
            .unwrap()
            .close()
            .unwrap();
        ok(&["wal-archive", p(&db), "--repo", repo.loc(), "--once"]);
        let mut exports = std::collections::HashMap::new();
        let n = 3 + next(4);
        for i in 0..n {
            write(&db, next(1000), 50 + next(100));
            let kind = if i == 0 {
                "full"
            } else {
                ["full", "incremental", "differential"][next(3) as usize]
            };
            let b: Value = serde_json::from_str(&ok(&[
                "backup",
                "create",
                p(&db),
                "--repo",
                repo.loc(),
                "--type",
                kind,
                "--json",
            ]))
            .unwrap();
            exports.insert(
                b["id"].as_str().unwrap().to_string(),
                ok(&["export", p(&db)]),
            );
            ok(&["wal-archive", p(&db), "--repo", repo.loc(), "--once"]);
        }
        write(&db, 5000, 30);
        ok(&["wal-archive", p(&db), "--repo", repo.loc(), "--once"]);
        let keep = 1 + next(3);
        let mut args = vec!["backup", "prune", "--repo", repo.loc()];
        let keep_s = keep.to_string();
        args.extend(["--keep-last", keep_s.as_str()]);
        if next(2) == 0 {
            args.extend(["--pitr-window", "1h"]);
        }
        ok(&args);
        let list: Vec<String> =
            serde_json::from_str::<Value>(&ok(&["backup", "list", "--repo", repo.loc(), "--json"]))
                .unwrap()
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["id"].as_str().unwrap().to_string())
                .collect();
        assert!(list.len() as u64 >= keep.min(n), "case {case}: {list:?}");
        ok(&["backup", "verify", "--repo", repo.loc(), "--all", "--deep"]);
        for id in &list {
            let t = tmp.path().join(format!("r-{id}"));
            ok(&["restore", "--repo", repo.loc(), id, "--target", p(&t)]);
            assert_eq!(&ok(&["export", p(&t)]), &exports[id], "case {case}: {id}");
        }
        let last_lsn = ok(&["stats", p(&db), "--json"]);
        let lsn = serde_json::from_str::<Value>(&last_lsn).unwrap()["last_lsn"]
            .as_u64()
            .unwrap();
        let t = tmp.path().join("latest");
        ok(&[
            "restore",
            "--repo",
            repo.loc(),
            "--target",
            p(&t),
            "--to-lsn",
            &lsn.to_string(),
        ]);
        assert_eq!(
            ok(&["export", p(&t)]),
            ok(&["export", p(&db)]),
            "case {case}"
        );
    }
}
