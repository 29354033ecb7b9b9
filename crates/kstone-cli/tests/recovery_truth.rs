#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test
//! Recovery that never lies: each reproduction of the recovery-truth issue,
//! driven through the `kstone` binary like an operator would. The common
//! check ([`assert_exact`]) is the recovery contract itself: every LSN that
//! `backup status` reports reachable restores to exactly the model's state,
//! and every other LSN fails with exit 1 naming the latest reachable point.

mod common;
use common::{json, kstone, kstone_cmd, ok, p, Backend, Repo};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

on_both_backends!(a_lost_config_never_turns_an_encrypted_repository_into_a_plaintext_one);

/// What the database holds after each LSN: (lsn, key, value; None = delete).
#[derive(Default)]
struct Model {
    log: Vec<(u64, String, Option<String>)>,
}

impl Model {
    fn at(&self, lsn: u64) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        for (l, k, v) in &self.log {
            if *l > lsn {
                break;
            }
            match v {
                Some(v) => m.insert(k.clone(), v.clone()),
                None => m.remove(k),
            };
        }
        m
    }
}

/// The packs backup `id` wrote: those its index names.
fn packs_of(repo_dir: &Path, id: &str) -> Vec<PathBuf> {
    let b = std::fs::read(repo_dir.join("index").join(id)).unwrap();
    kstone_backup::index::decode(&b, "index")
        .unwrap()
        .into_iter()
        .map(|p| repo_dir.join(p.key))
        .collect()
}

fn last_lsn(db: &Path) -> u64 {
    json(&["stats", p(db), "--json"])["last_lsn"]
        .as_u64()
        .unwrap()
}

fn put(db: &Path, model: &mut Model, k: &str, v: &str) {
    ok(&["put", p(db), k, &format!(r#"{{"v": "{v}"}}"#)]);
    model.log.push((last_lsn(db), k.into(), Some(v.into())));
}

/// key → value of every item in a database.
fn contents(db: &Path) -> BTreeMap<String, String> {
    ok(&["export", p(db)])
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["pk"]["S"].as_str().unwrap().to_string(),
                v["item"]["v"]["S"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn fails(o: &Output, what: &str) -> String {
    fails_with(o, 1, what)
}

/// `fails` with exit code `code` (docs/operations.md, "Exit codes").
fn fails_with(o: &Output, code: i32, what: &str) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(code), "{what} did not fail: {err}");
    assert!(err.starts_with("error: "), "{what}: {err}");
    err
}

/// LSNs `backup status` calls reachable.
fn reachable(repo: &str) -> Vec<(u64, u64)> {
    // (Exit 1 when a problem is known, e.g. a failed verify: still a window.)
    let o = kstone(&["backup", "status", "--repo", repo, "--json"]);
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    s["reachable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["from_lsn"].as_u64().unwrap(),
                r["to_lsn"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The recovery contract for every LSN up to `max`: a point status calls
/// reachable restores to exactly the model; any other fails with exit 1,
/// names the latest reachable point and leaves no target behind.
fn assert_exact(repo: &str, model: &Model, max: u64, work: &Path) -> usize {
    let r = reachable(repo);
    let mut restored = 0;
    for lsn in 1..=max {
        let target = work.join(format!("exact-{lsn}"));
        let o = kstone(&[
            "restore",
            "--repo",
            repo,
            "--target",
            p(&target),
            "--to-lsn",
            &lsn.to_string(),
            "-y",
        ]);
        let claimed = r.iter().any(|(a, b)| *a <= lsn && lsn <= *b);
        if claimed {
            assert!(
                o.status.success(),
                "LSN {lsn} is reported reachable ({r:?}) but fails: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert_eq!(contents(&target), model.at(lsn), "restore to LSN {lsn}");
            restored += 1;
        } else {
            let err = fails(&o, &format!("restore to unreachable LSN {lsn} ({r:?})"));
            assert!(err.contains("latest reachable point"), "{err}");
            assert!(
                !target.exists(),
                "a failed restore left {}",
                target.display()
            );
        }
        let _ = std::fs::remove_dir_all(&target);
    }
    restored
}

fn backup(db: &Path, repo: &str, kind: &str) -> Value {
    json(&[
        "backup",
        "create",
        p(db),
        "--repo",
        repo,
        "--type",
        kind,
        "--json",
    ])
}

fn archive_once(db: &Path, repo: &str) {
    ok(&["wal-archive", p(db), "--repo", repo, "--once"]);
}

/// Finding 1: with the `config` object gone (a lifecycle rule expired it),
/// nothing initializes a new, unencrypted repository over the encrypted one.
fn a_lost_config_never_turns_an_encrypted_repository_into_a_plaintext_one(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db.keystone");
    ok(&["create", p(&db)]);
    let mut model = Model::default();
    for i in 0..20 {
        put(
            &db,
            &mut model,
            &format!("k{i}"),
            &format!("PLAINTEXT-MARKER-{i}"),
        );
    }
    let key = tmp.path().join("ops.key");
    let public = ok(&["backup", "keygen", "-o", p(&key)]).trim().to_string();
    let repo = Repo::new(backend, tmp.path(), "enc");
    ok(&[
        "backup",
        "init",
        "--repo",
        repo.loc(),
        "--recipient",
        &public,
        "--no-compression",
    ]);
    backup(&db, repo.loc(), "full");
    archive_once(&db, repo.loc());
    repo.remove("config");
    let before = repo.keys("");

    put(&db, &mut model, "after", "PLAINTEXT-MARKER-after");
    for args in [
        vec!["backup", "create", p(&db), "--repo", repo.loc()],
        vec!["wal-archive", p(&db), "--repo", repo.loc(), "--once"],
        vec!["backup", "init", "--repo", repo.loc()],
    ] {
        let err = fails(&kstone(&args), &format!("{args:?}"));
        assert!(err.contains("no repository config"), "{err}");
        assert!(err.contains("encrypted"), "{err}");
        assert!(err.contains("--repair"), "{err}");
        assert_eq!(repo.keys(""), before, "{args:?} wrote to the repository");
    }

    let out = ok(&["backup", "init", "--repo", repo.loc(), "--repair"]);
    assert!(out.contains("encrypted"), "{out}");
    backup(&db, repo.loc(), "incremental");
    archive_once(&db, repo.loc());
    for k in repo.keys("") {
        let b = repo.read(&k);
        assert!(
            !b.windows(17).any(|w| w == b"PLAINTEXT-MARKER-"),
            "{k} holds plaintext"
        );
    }
    let target = tmp.path().join("restored");
    ok(&[
        "restore",
        "--repo",
        repo.loc(),
        "--target",
        p(&target),
        "--to-latest",
        "--identity",
        p(&key),
    ]);
    assert_eq!(contents(&target), contents(&db));
    // An init with objects present and no --repair never happens either.
    let other = Repo::new(backend, tmp.path(), "other");
    ok(&["backup", "init", "--repo", other.loc()]);
    let err = fails(
        &kstone(&["backup", "init", "--repo", other.loc()]),
        "init twice",
    );
    assert!(err.contains("already"), "{err}");
}

/// Finding 2: one database archived to two repositories (3-2-1): each
/// repository's archive is complete, whatever order the archivers ran in.
#[test]
fn two_repositories_each_get_every_write() {
    let tmp = tempfile::tempdir().unwrap();
    let (d, ra, rb) = (
        tmp.path().join("d"),
        tmp.path().join("RA"),
        tmp.path().join("RB"),
    );
    let (ra, rb) = (p(&ra).to_string(), p(&rb).to_string());
    ok(&["create", p(&d)]);
    let mut m = Model::default();
    put(&d, &mut m, "k0", "0");
    backup(&d, &ra, "full");
    backup(&d, &rb, "full");
    archive_once(&d, &rb);
    archive_once(&d, &ra);
    put(&d, &mut m, "k1", "1");
    archive_once(&d, &rb);
    put(&d, &mut m, "k2", "2");
    archive_once(&d, &ra);
    for i in 3..6 {
        put(&d, &mut m, &format!("k{i}"), &i.to_string());
    }
    archive_once(&d, &ra);
    ok(&["flush", p(&d)]);
    ok(&["compact", p(&d)]);
    archive_once(&d, &rb);
    let max = last_lsn(&d);
    for repo in [&ra, &rb] {
        let n = assert_exact(repo, &m, max, tmp.path());
        assert_eq!(n as u64, max, "{repo}: every point restores");
    }
    let stats = ok(&["stats", p(&d)]);
    assert_eq!(stats.matches("wal archive").count(), 2, "{stats}");
    // Unregistering one repository: the other keeps its WAL.
    ok(&["wal-archive", p(&d), "--repo", &rb, "--unregister"]);
    put(&d, &mut m, "k6", "6");
    ok(&["flush", p(&d)]);
    archive_once(&d, &ra);
    let max = last_lsn(&d);
    assert_eq!(assert_exact(&ra, &m, max, tmp.path()) as u64, max);
    // RB missed writes: archiving to it again is an error now (not a
    // silent gap), until a backup covers the hole.
    let err = fails(
        &kstone(&["wal-archive", p(&d), "--repo", &rb, "--once"]),
        "archive after a hole",
    );
    assert!(err.contains("gap"), "{err}");
    backup(&d, &rb, "full");
    archive_once(&d, &rb);
    assert_exact(&rb, &m, max, tmp.path());
}

/// Finding 3: PITR into a restored database's new history follows its
/// lineage: the backup it was restored from plus the new history's archive.
#[test]
fn pitr_after_a_restore_never_returns_the_old_timeline() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let repo = tmp.path().join("R");
    let repo = p(&repo);
    ok(&["create", p(&a)]);
    let mut m = Model::default();
    put(&a, &mut m, "k0", "0");
    backup(&a, repo, "full");
    ok(&[
        "restore",
        "--repo",
        repo,
        "latest",
        "--target",
        p(&a),
        "--yes",
    ]);
    archive_once(&a, repo);
    for i in 1..4 {
        put(&a, &mut m, &format!("good{i}"), "1");
    }
    archive_once(&a, repo);
    let t = kstone_core::fsio::now_micros();
    std::thread::sleep(std::time::Duration::from_millis(20));
    put(&a, &mut m, "bad", "x");
    archive_once(&a, repo);
    let target = tmp.path().join("p");
    let o = kstone(&[
        "restore",
        "--repo",
        repo,
        "--target",
        p(&target),
        "--to-time",
        &format!("@{}.{:06}", t / 1_000_000, t % 1_000_000),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = contents(&target);
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(!got.contains_key("bad"));
    // The new history is the default one, and every point of it restores.
    let max = last_lsn(&a);
    assert_eq!(assert_exact(repo, &m, max, tmp.path()) as u64, max);
    // An incremental right after the restore becomes a full one, and says so.
    let o = kstone(&[
        "backup",
        "create",
        p(&a),
        "--repo",
        repo,
        "--type",
        "incremental",
    ]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("took a full backup"));
}

/// Finding 4: a second archiver of the same database and repository is
/// refused while the first runs.
#[test]
fn two_archivers_of_one_repository_are_excluded() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    let repo = tmp.path().join("R");
    let repo = p(&repo);
    ok(&["create", p(&d)]);
    let mut m = Model::default();
    put(&d, &mut m, "k0", "0");
    backup(&d, repo, "full");
    let mut first = kstone_cmd()
        .args(["wal-archive", p(&d), "--repo", repo, "--interval", "50ms"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it holds its lock (it registered the repository).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let o = kstone(&["wal-archive", p(&d), "--repo", repo, "--once"]);
        if !o.status.success() {
            let err = fails_with(&o, 4, "second archiver");
            assert!(err.contains("another archiver"), "{err}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never excluded");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    // A killed archiver's lock dies with it.
    for i in 1..4 {
        put(&d, &mut m, &format!("k{i}"), &i.to_string());
    }
    archive_once(&d, repo);
    let max = last_lsn(&d);
    assert_eq!(assert_exact(repo, &m, max, tmp.path()) as u64, max);
}

/// Findings 5 and 6: a deleted archive object and a pruned archive: the
/// window `status` reports is exactly what restores, `--to-time` inside
/// the hole exits 1, and `verify --all` reports the hole.
#[test]
fn missing_archive_objects_and_prunes_shrink_the_window_honestly() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    let repo_dir = tmp.path().join("R");
    let repo = p(&repo_dir);
    ok(&["create", p(&d)]);
    let mut m = Model::default();
    put(&d, &mut m, "k0", "0");
    backup(&d, repo, "full");
    archive_once(&d, repo);
    let mut times = Vec::new();
    for round in 1..5 {
        for i in 0..2 {
            put(&d, &mut m, &format!("r{round}-{i}"), &round.to_string());
        }
        times.push(kstone_core::fsio::now_micros());
        archive_once(&d, repo);
    }
    let max = last_lsn(&d);
    assert_eq!(assert_exact(repo, &m, max, tmp.path()) as u64, max);

    // Delete the object of round 2 (the first holds LSN 1, then one per round).
    let storage = kstone_backup::storage::Storage::open(repo, false).unwrap();
    let objects: Vec<String> = storage
        .list("wal")
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.ends_with(".walarc"))
        .collect();
    assert!(objects.len() >= 4, "{objects:?}");
    storage.delete(&objects[2]).unwrap();
    let o = kstone(&["backup", "verify", "--repo", repo, "--all"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "verify missed the hole: {err}");
    assert!(err.contains("are missing"), "{err}");
    // A time inside the hole (after round 2's writes) cannot be proven.
    let t = times[1];
    let target = tmp.path().join("t");
    let o = kstone(&[
        "restore",
        "--repo",
        repo,
        "--target",
        p(&target),
        "--to-time",
        &format!("@{}.{:06}", t / 1_000_000, t % 1_000_000),
    ]);
    let err = fails(&o, "--to-time inside a missing object");
    assert!(err.contains("latest reachable point"), "{err}");
    assert_exact(repo, &m, max, tmp.path());

    // A later backup and a prune down to it: status shrinks to what restores.
    let b = backup(&d, repo, "full");
    put(&d, &mut m, "late", "9");
    archive_once(&d, repo);
    // The PITR window's base is the newest backup at or before its start.
    std::thread::sleep(std::time::Duration::from_millis(1200));
    ok(&[
        "backup",
        "prune",
        "--repo",
        repo,
        "--keep-last",
        "1",
        "--pitr-window",
        "1s",
    ]);
    let max = last_lsn(&d);
    let n = assert_exact(repo, &m, max, tmp.path());
    assert_eq!(
        n as u64,
        max - b["snapshot_lsn"].as_u64().unwrap() + 1,
        "exactly the points from the kept backup on"
    );
    // With no archive at all, only the backups themselves are points.
    for k in storage.list("wal").unwrap() {
        storage.delete(&k.0).unwrap();
    }
    let r = reachable(repo);
    assert!(r.iter().all(|(a, b)| a == b), "{r:?}");
    assert_exact(repo, &m, max, tmp.path());
}

/// Finding 7: one flipped bit in a fully written last WAL record is damage:
/// `check` reports it and `open` refuses, naming the file; LSNs never go
/// back below what a repository archived.
#[test]
fn a_flipped_bit_in_the_last_wal_record_is_not_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    ok(&["create", p(&d)]);
    let mut m = Model::default();
    put(&d, &mut m, "k0", "first");
    let marker = "the-last-acknowledged-write-value";
    put(&d, &mut m, "k0", marker);
    assert!(ok(&["check", p(&d)]).contains("ok"));
    let seg = common::walk(&d.join("wal"))
        .into_iter()
        .find(|f| {
            std::fs::read(f)
                .unwrap()
                .windows(marker.len())
                .any(|w| w == marker.as_bytes())
        })
        .expect("segment with the last record");
    let mut b = std::fs::read(&seg).unwrap();
    let at = b
        .windows(marker.len())
        .position(|w| w == marker.as_bytes())
        .unwrap();
    b[at + 5] ^= 0x10;
    std::fs::write(&seg, &b).unwrap();
    let o = kstone(&["check", p(&d)]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("checksum mismatch"), "{err}");
    let err = fails_with(&kstone(&["get", p(&d), "k0"]), 6, "open of a damaged WAL");
    assert!(
        err.contains(seg.file_name().unwrap().to_str().unwrap()),
        "{err}"
    );
}

/// Finding 8: a target with a trailing slash, a restore killed between the
/// exchange and the move aside, and (in the storage unit tests) a full disk.
#[test]
fn restore_targets_and_a_kill_mid_swap() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("db1");
    let repo = tmp.path().join("R");
    let repo = p(&repo);
    ok(&["create", p(&d)]);
    let mut m = Model::default();
    put(&d, &mut m, "k0", "old");
    backup(&d, repo, "full");
    put(&d, &mut m, "k1", "newer");
    let slash = format!("{}/", p(&d));
    ok(&[
        "restore", "--repo", repo, "latest", "--target", &slash, "-y",
    ]);
    let asides: Vec<PathBuf> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|f| f.to_string_lossy().contains("before-restore"))
        .collect();
    assert_eq!(asides.len(), 1, "{asides:?}");
    assert_eq!(contents(&asides[0]).len(), 2, "the old database, beside");
    assert_eq!(contents(&d).len(), 1);
    assert!(!common::walk(&d)
        .iter()
        .any(|f| f.to_string_lossy().contains("before-restore")));

    // Killed right after the exchange: the old database sits in staging.
    put(&d, &mut m, "k2", "before-kill");
    let killed = kstone_cmd()
        .env("KSTONE_TEST_KILL_AFTER_EXCHANGE", "1")
        .args(["restore", "--repo", repo, "latest", "--target", p(&d), "-y"])
        .output()
        .unwrap();
    assert!(!killed.status.success());
    assert_eq!(contents(&d).len(), 1, "target is the new database");
    let out = ok(&["check", p(&d)]);
    assert!(out.contains("moved it to"), "{out}");
    let asides: Vec<PathBuf> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|f| f.to_string_lossy().contains("before-restore"))
        .collect();
    assert_eq!(asides.len(), 2, "{asides:?}");
    assert!(asides.iter().any(|a| contents(a).contains_key("k2")));
    let hidden: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "leftovers: {hidden:?}");
}

/// Finding 9: one damaged manifest is reported for its backup and blocks
/// nothing else: list, status, new backups, restores, PITR and prune.
#[test]
fn one_damaged_manifest_blocks_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    let repo_dir = tmp.path().join("R");
    let repo = p(&repo_dir);
    ok(&["create", p(&d)]);
    let mut m = Model::default();
    put(&d, &mut m, "k0", "0");
    let first = backup(&d, repo, "full");
    put(&d, &mut m, "k1", "1");
    let second = backup(&d, repo, "incremental");
    let id = second["id"].as_str().unwrap();
    let man = repo_dir.join(format!("backups/{id}.manifest"));
    let mut b = std::fs::read(&man).unwrap();
    let n = b.len();
    b[n / 2] ^= 1;
    std::fs::write(&man, b).unwrap();

    let o = kstone(&["backup", "list", "--repo", repo]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains(first["id"].as_str().unwrap()));
    assert!(String::from_utf8_lossy(&o.stderr).contains(id));
    let o = kstone(&["backup", "status", "--repo", repo]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("damaged"));
    put(&d, &mut m, "k2", "2");
    backup(&d, repo, "incremental");
    let target = tmp.path().join("r");
    ok(&["restore", "--repo", repo, "latest", "--target", p(&target)]);
    assert_eq!(contents(&target), m.at(last_lsn(&d)));
    ok(&[
        "restore",
        "--repo",
        repo,
        first["id"].as_str().unwrap(),
        "--target",
        p(&target),
        "-y",
    ]);
    let out = ok(&["backup", "prune", "--repo", repo, "--keep-last", "1"]);
    assert!(out.contains(first["id"].as_str().unwrap()), "{out}");
    assert!(man.exists(), "prune left the damaged manifest alone");
    let o = kstone(&["backup", "verify", "--repo", repo, "--all"]);
    assert_eq!(o.status.code(), Some(1));
}

/// Finding 10: import is all-or-nothing, the item size limit included.
#[test]
fn import_refuses_an_oversized_item_before_writing_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    ok(&["create", p(&d)]);
    let mut lines = String::new();
    for i in 0..3000 {
        lines.push_str(&format!(
            "{{\"item\":{{\"v\":{{\"S\":\"x\"}}}},\"pk\":{{\"S\":\"k{i}\"}}}}\n"
        ));
    }
    lines.push_str(&format!(
        "{{\"item\":{{\"v\":{{\"S\":\"{}\"}}}},\"pk\":{{\"S\":\"big\"}}}}\n",
        "y".repeat(410 * 1024)
    ));
    let f = tmp.path().join("in.jsonl");
    std::fs::write(&f, lines).unwrap();
    let err = fails(&kstone(&["import", p(&d), p(&f)]), "import");
    assert!(err.contains("line 3001"), "{err}");
    assert!(err.contains("nothing imported"), "{err}");
    assert_eq!(ok(&["export", p(&d)]), "");
}

/// Finding 11: guards against a prune that keeps nothing and an archiver
/// that would spin.
#[test]
fn prune_keeping_nothing_and_a_zero_interval_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    let repo = tmp.path().join("R");
    let repo = p(&repo);
    ok(&["create", p(&d)]);
    let mut m = Model::default();
    put(&d, &mut m, "k0", "0");
    backup(&d, repo, "full");
    archive_once(&d, repo);
    for policy in [
        vec!["--keep-last", "0"],
        vec!["--keep-full-days", "0", "--keep-incremental-days", "0"],
    ] {
        let mut args = vec!["backup", "prune", "--repo", repo];
        args.extend(policy.iter().copied());
        let err = fails(&kstone(&args), "prune of everything");
        assert!(err.contains("--allow-empty"), "{err}");
        assert_eq!(
            json(&["backup", "list", "--repo", repo, "--json"])
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
    ok(&[
        "backup",
        "prune",
        "--repo",
        repo,
        "--keep-last",
        "0",
        "--allow-empty",
    ]);
    assert!(json(&["backup", "list", "--repo", repo, "--json"])
        .as_array()
        .unwrap()
        .is_empty());
    let o = kstone(&["wal-archive", p(&d), "--repo", repo, "--interval", "0s"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("too short"));
}

/// Review findings: the first archive round after the WAL a backup needs
/// was flushed away is a gap error at archive time (not at restore time).
#[test]
fn a_first_archive_that_cannot_continue_the_backups_is_a_gap_error() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    let repo = tmp.path().join("R");
    let repo = p(&repo);
    ok(&["create", p(&d)]);
    let mut m = Model::default();
    put(&d, &mut m, "a", "1");
    backup(&d, repo, "full");
    put(&d, &mut m, "b", "2");
    ok(&["flush", p(&d)]);
    let err = fails(
        &kstone(&["wal-archive", p(&d), "--repo", repo, "--once"]),
        "archive that cannot continue the backup",
    );
    assert!(err.contains("would have a gap"), "{err}");
    assert!(
        std::fs::read_dir(tmp.path().join("R/wal")).map_or(true, |mut d| d.next().is_none()),
        "nothing written"
    );
    // After a backup, archiving continues from it; every reported point restores.
    backup(&d, repo, "incremental");
    put(&d, &mut m, "c", "3");
    archive_once(&d, repo);
    let max = last_lsn(&d);
    assert_exact(repo, &m, max, tmp.path());
    let r = reachable(repo);
    assert!(r.iter().any(|(a, b)| *a <= max && max <= *b), "{r:?}");
}

/// Review findings: damage to one backup's data falls back to another path
/// for the points status reports; a new backup never reuses a missing
/// object; a flipped archive object is found by a plain verify.
#[test]
fn damaged_objects_fail_only_what_depends_on_them() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    let repo_dir = tmp.path().join("R");
    let repo = p(&repo_dir);
    ok(&["create", p(&d)]);
    let mut m = Model::default();
    put(&d, &mut m, "k0", "0");
    backup(&d, repo, "full");
    archive_once(&d, repo);
    for i in 1..6 {
        put(&d, &mut m, &format!("k{i}"), &i.to_string());
    }
    ok(&["flush", p(&d)]);
    archive_once(&d, repo);
    let second = backup(&d, repo, "full");
    let id = second["id"].as_str().unwrap();
    for i in 6..9 {
        put(&d, &mut m, &format!("k{i}"), &i.to_string());
    }
    archive_once(&d, repo);
    let max = last_lsn(&d);
    // One pack the second full wrote disappears.
    let victim = packs_of(&repo_dir, id)
        .into_iter()
        .next()
        .expect("a pack of the second backup");
    std::fs::remove_file(&victim).unwrap();
    // Every point status reports still restores (through the first full).
    assert_eq!(assert_exact(repo, &m, max, tmp.path()) as u64, max);
    let target = tmp.path().join("latest");
    ok(&[
        "restore",
        "--repo",
        repo,
        "--target",
        p(&target),
        "--to-latest",
    ]);
    assert_eq!(contents(&target), m.at(max));
    // A new incremental stores the missing file again instead of claiming it.
    put(&d, &mut m, "k9", "9");
    let third = backup(&d, repo, "incremental");
    let t3 = tmp.path().join("third");
    ok(&[
        "restore",
        "--repo",
        repo,
        third["id"].as_str().unwrap(),
        "--target",
        p(&t3),
    ]);
    assert_eq!(contents(&t3), m.at(last_lsn(&d)));
    // A flipped archive object: a plain verify reads the archive and says so.
    // (The newest one: objects wholly below the oldest backup are not needed
    // by any restore, and verify skips them.)
    let obj = common::walk(&repo_dir.join("wal"))
        .into_iter()
        .filter(|f| f.to_string_lossy().ends_with(".walarc"))
        .max_by_key(|f| f.file_name().unwrap().to_os_string())
        .unwrap();
    let mut b = std::fs::read(&obj).unwrap();
    let n = b.len();
    b[n - 3] ^= 1;
    std::fs::write(&obj, b).unwrap();
    let o = kstone(&["backup", "verify", "--repo", repo, "--all"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("FAILED    WAL archive"),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // A restore inside the repository directory is refused.
    let inside = repo_dir.join("inside");
    let err = fails(
        &kstone(&["restore", "--repo", repo, "latest", "--target", p(&inside)]),
        "restore into the repository",
    );
    assert!(err.contains("inside the repository"), "{err}");
}

/// Review finding: with the newest backup damaged, `--to-latest` failed
/// naming that same damaged point as "the latest reachable point". It now
/// names the latest point without the damage found, and that point restores.
#[test]
fn a_damaged_newest_backup_names_the_point_that_still_restores() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    let repo_dir = tmp.path().join("R");
    let repo = p(&repo_dir);
    ok(&["create", p(&d)]);
    let mut m = Model::default();
    for i in 0..5 {
        put(&d, &mut m, &format!("k{i}"), &i.to_string());
    }
    backup(&d, repo, "full");
    for i in 5..10 {
        put(&d, &mut m, &format!("k{i}"), &i.to_string());
    }
    archive_once(&d, repo);
    let good = last_lsn(&d);
    put(&d, &mut m, "k10", "10");
    let newest = backup(&d, repo, "incremental");
    let id = newest["id"].as_str().unwrap();
    let packs = packs_of(&repo_dir, id);
    assert!(!packs.is_empty());
    for f in packs {
        let mut b = std::fs::read(&f).unwrap();
        let n = b.len() / 2;
        b[n] ^= 0x55;
        std::fs::write(&f, b).unwrap();
    }
    let err = fails(
        &kstone(&[
            "restore",
            "--repo",
            repo,
            "--target",
            p(&tmp.path().join("latest")),
            "--to-latest",
        ]),
        "restore of a damaged newest point",
    );
    let named = format!("without it, the latest reachable point is LSN {good} ");
    assert!(err.contains(&named), "{err}");
    let t = tmp.path().join("good");
    ok(&[
        "restore",
        "--repo",
        repo,
        "--target",
        p(&t),
        "--to-lsn",
        &good.to_string(),
    ]);
    assert_eq!(contents(&t), m.at(good));
}

/// Review finding: a `config` copied from another (unencrypted) repository
/// into an encrypted one is refused before anything is written.
#[test]
fn a_config_from_another_repository_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    ok(&["create", p(&d)]);
    let mut m = Model::default();
    put(&d, &mut m, "k0", "PLAINTEXT-MARKER");
    let key = tmp.path().join("k.key");
    let public = ok(&["backup", "keygen", "-o", p(&key)]).trim().to_string();
    let (enc, plain) = (tmp.path().join("enc"), tmp.path().join("plain"));
    ok(&["backup", "init", "--repo", p(&enc), "--recipient", &public]);
    backup(&d, p(&enc), "full");
    ok(&["backup", "init", "--repo", p(&plain)]);
    std::fs::copy(plain.join("config"), enc.join("config")).unwrap();
    let before = common::walk(&enc);
    for args in [
        vec![
            "backup",
            "create",
            p(&d),
            "--repo",
            p(&enc),
            "--type",
            "full",
        ],
        vec!["wal-archive", p(&d), "--repo", p(&enc), "--once"],
    ] {
        let err = fails_with(&kstone(&args), 6, &format!("{args:?}"));
        assert!(err.contains("is not this repository's"), "{err}");
    }
    let mut after = common::walk(&enc);
    after.retain(|f| !f.to_string_lossy().contains("/locks/"));
    assert_eq!(after, before);
    std::fs::remove_file(enc.join("config")).unwrap();
    ok(&["backup", "init", "--repo", p(&enc), "--repair"]);
    backup(&d, p(&enc), "full");
    for f in common::walk(&enc) {
        let b = std::fs::read(&f).unwrap();
        assert!(
            !b.windows(16).any(|w| w == b"PLAINTEXT-MARKER"),
            "{}",
            f.display()
        );
    }
}

/// Second review: a PITR window reaching back before a restored history's
/// first backup keeps its lineage (base backup, parent archive, own
/// archive); a damaged lineage object is reported.
#[test]
fn prune_keeps_the_lineage_a_pitr_window_needs() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("db");
    let repo_dir = tmp.path().join("R");
    let repo = p(&repo_dir);
    ok(&["create", p(&d)]);
    let mut m = Model::default();
    for i in 1..6 {
        put(&d, &mut m, &format!("k{i}"), &i.to_string());
    }
    backup(&d, repo, "full");
    archive_once(&d, repo);
    for i in 6..11 {
        put(&d, &mut m, &format!("k{i}"), &i.to_string());
    }
    archive_once(&d, repo);
    ok(&[
        "restore",
        "--repo",
        repo,
        "--target",
        p(&d),
        "--to-lsn",
        "8",
        "--yes",
    ]);
    let mut child = Model {
        log: m.log.iter().filter(|w| w.0 <= 8).cloned().collect(),
    };
    for i in 100..104 {
        put(&d, &mut child, &format!("k{i}"), "c");
    }
    archive_once(&d, repo);
    backup(&d, repo, "full");
    let max = last_lsn(&d);
    // From the first backup (LSN 5) on, through the lineage.
    assert_eq!(assert_exact(repo, &child, max, tmp.path()) as u64, max - 4);
    ok(&["backup", "prune", "--repo", repo, "--pitr-window", "1h"]);
    assert_eq!(
        assert_exact(repo, &child, max, tmp.path()) as u64,
        max - 4,
        "every point of the last hour still restores"
    );
    // A flipped lineage object is damage that status reports.
    let lineage = common::walk(&repo_dir.join("wal"))
        .into_iter()
        .find(|f| f.ends_with("lineage"))
        .unwrap();
    let mut b = std::fs::read(&lineage).unwrap();
    let n = b.len();
    b[n - 2] ^= 1;
    std::fs::write(&lineage, b).unwrap();
    let o = kstone(&["backup", "status", "--repo", repo]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("lineage"));
    assert_exact(repo, &child, max, tmp.path());
}

/// Second review: an encrypted repository's config altered to seal to
/// another key is refused before anything is written.
#[test]
fn an_altered_data_recipient_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    ok(&["create", p(&d)]);
    let mut m = Model::default();
    put(&d, &mut m, "k0", "0");
    let public = ok(&["backup", "keygen", "-o", p(&tmp.path().join("a.key"))])
        .trim()
        .to_string();
    let other = ok(&["backup", "keygen", "-o", p(&tmp.path().join("b.key"))])
        .trim()
        .to_string();
    let enc = tmp.path().join("enc");
    ok(&["backup", "init", "--repo", p(&enc), "--recipient", &public]);
    backup(&d, p(&enc), "full");
    // Rewrite the config with another data recipient, framed correctly.
    let storage = kstone_backup::storage::Storage::open(p(&enc), false).unwrap();
    let mut cfg: kstone_backup::RepoConfig = kstone_backup::manifest::decode(
        kstone_backup::manifest::CONFIG_MAGIC,
        &storage.get("config").unwrap().unwrap(),
        "config",
    )
    .unwrap();
    cfg.encryption.as_mut().unwrap().data_recipient = other;
    storage
        .put(
            "config",
            kstone_backup::manifest::encode(kstone_backup::manifest::CONFIG_MAGIC, &cfg),
        )
        .unwrap();
    let before = common::walk(&enc);
    let err = fails_with(
        &kstone(&[
            "backup",
            "create",
            p(&d),
            "--repo",
            p(&enc),
            "--type",
            "full",
        ]),
        6,
        "backup with an altered config",
    );
    assert!(err.contains("encryption settings differ"), "{err}");
    let mut after = common::walk(&enc);
    after.retain(|f| !f.to_string_lossy().contains("/locks/"));
    assert_eq!(after, before);
}
