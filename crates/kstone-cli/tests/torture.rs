#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test
//! Torture test: a child process runs a seeded random mix of writes,
//! flushes, compactions, backups of every type, WAL archiving rounds,
//! restores, point-in-time restores and prunes; the parent SIGKILLs it at a
//! random moment, then checks every invariant:
//!
//! - the database opens, passes `check`, and holds every acknowledged write
//!   (a write in flight at the kill may or may not be there, never half);
//! - the repository lists only complete backups, every one verifies, and each
//!   restores to exactly the contents it was taken from;
//! - the WAL archive has no gaps or overlaps, and a point-in-time restore to
//!   its newest point equals the model at that LSN;
//! - a restore target is either absent or a complete, sound database.
//!
//! The repository is a local directory (`torture::local`) or a bucket on the
//! S3 test server (`torture::s3`). Iterations: `KSTONE_TORTURE_ITERATIONS`
//! (default 12 local, 6 on S3), or run for `KSTONE_TORTURE_SECONDS`;
//! `KSTONE_TORTURE_SEED` changes the seed.

mod common;
use common::{Backend, Repo};

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kstone_backup::{BackupOptions, BackupType, DatabaseBackupExt, Policy, Repository, Target};
use kstone_core::{export_line, item_from_plain_json, Database, Durability, Item, Options, Scan};
use sha2::{Digest, Sha256};

fn opts() -> Options {
    Options {
        durability: Durability::Sync,
        memtable_stripe_bytes: 2048,
        compaction_trigger: 3,
        ..Options::default()
    }
}

fn item(v: u64) -> Item {
    item_from_plain_json(&format!(
        r#"{{"v":{v},"pad":"{}"}}"#,
        "t".repeat((v % 50) as usize)
    ))
    .unwrap()
}

fn digest(db: &Database) -> String {
    let mut h = Sha256::new();
    let mut s = Scan {
        limit: Some(1000),
        total_segments: 1,
        ..Scan::default()
    };
    loop {
        let page = db.scan(&s).unwrap();
        for (k, i) in &page.items {
            h.update(export_line(db.key_schema(), k, i).as_bytes());
            h.update(b"\n");
        }
        match page.last_evaluated_key {
            Some(k) => s.exclusive_start = Some(k),
            None => break,
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn contents(db: &Database) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut s = Scan {
        limit: Some(1000),
        total_segments: 1,
        ..Scan::default()
    };
    loop {
        let page = db.scan(&s).unwrap();
        for (k, i) in &page.items {
            let v = match &i["v"] {
                kstone_core::Value::N(n) => n.as_str().parse().unwrap(),
                _ => panic!("bad item"),
            };
            out.insert(String::from_utf8(k.pk.clone()).unwrap(), v);
        }
        match page.last_evaluated_key {
            Some(k) => s.exclusive_start = Some(k),
            None => return out,
        }
    }
}

/// The child: random operations until killed.
#[test]
fn child_torture() {
    let Some(work) = std::env::var_os("KSTONE_TORTURE_CHILD") else {
        return;
    };
    let work = PathBuf::from(work);
    let seed: u64 = std::env::var("KSTONE_SEED").unwrap().parse().unwrap();
    let db_dir = work.join("db.keystone");
    let repo_loc = std::env::var("KSTONE_TORTURE_REPO").unwrap();
    let db = Arc::new(Database::open(&db_dir, opts()).unwrap());
    let (repo, _) = Repository::open_or_init(&repo_loc, Some(1)).unwrap();
    let mut archiver = kstone_backup::Archiver::new(&repo, &db_dir);
    println!("READY");
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut rnd = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for n in 0.. {
        let op = rnd(100);
        match op {
            0..=69 => {
                let key = format!("k{:03}", rnd(200));
                let v = if rnd(8) == 0 {
                    0
                } else {
                    seed * 100_000 + n + 1
                };
                println!("W {key} {v}");
                let lsn = if v == 0 {
                    db.delete(key.as_bytes(), None)
                } else {
                    db.put(key.as_bytes(), None, &item(v))
                }
                .unwrap();
                println!("A {key} {v} {lsn}");
            }
            70..=74 => db.flush().unwrap(),
            75..=77 => db.compact().unwrap(),
            78..=84 => {
                let kind = [
                    BackupType::Full,
                    BackupType::Incremental,
                    BackupType::Differential,
                ][rnd(3) as usize];
                let d = digest(&db);
                let m = match db.backup(
                    &repo,
                    &BackupOptions {
                        kind: Some(kind),
                        parallelism: 2,
                        ..Default::default()
                    },
                ) {
                    Ok(m) => m,
                    Err(kstone_backup::Error::Invalid(_)) => db
                        .backup(
                            &repo,
                            &BackupOptions {
                                kind: Some(BackupType::Full),
                                parallelism: 2,
                                ..Default::default()
                            },
                        )
                        .unwrap(),
                    Err(e) => panic!("{e}"),
                };
                println!("BK {} {d}", m.id);
            }
            85..=92 => {
                let r = archiver.round_db(&db).unwrap();
                println!("AR {}", r.archived_lsn);
            }
            93..=94 => {
                let p = Policy {
                    keep_last: Some(1 + rnd(3) as usize),
                    ..Policy::default()
                };
                repo.prune(&p, false, kstone_core::fsio::now_micros())
                    .unwrap();
            }
            95..=97 => {
                if repo.backup_ids().unwrap().is_empty() {
                    continue;
                }
                let _ = repo.restore("latest", &work.join("restore.keystone"));
            }
            _ => {
                let lsn = db.stats().unwrap().last_lsn;
                let _ = repo.restore_to(&Target::Lsn(lsn), &work.join("pitr.keystone"), None);
            }
        }
    }
}

fn check_target(dir: &Path) {
    if dir.exists() {
        let r = kstone_core::check::check(dir).unwrap();
        assert!(
            r.problems.is_empty(),
            "{} after a kill: {:?}",
            dir.display(),
            r.problems
        );
        Database::open(dir, Options::default())
            .unwrap()
            .close()
            .unwrap();
    }
}

on_both_backends!(torture);

fn torture(backend: Backend) {
    if std::env::var_os("KSTONE_TORTURE_CHILD").is_some() {
        return;
    }
    let iterations: u64 = std::env::var("KSTONE_TORTURE_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if backend == Backend::S3 { 8 } else { 12 });
    let seconds: Option<u64> = std::env::var("KSTONE_TORTURE_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok());
    let base_seed: u64 = std::env::var("KSTONE_TORTURE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().to_path_buf();
    let repo_at = Repo::new(backend, &work, "repo");
    let db_dir = work.join("db.keystone");
    Database::create(&db_dir, opts()).unwrap().close().unwrap();
    let mut model: BTreeMap<String, u64> = BTreeMap::new();
    // (lsn, key, value) of every acknowledged write, for point-in-time checks.
    let mut log: Vec<(u64, String, u64)> = Vec::new();
    let mut digests: HashMap<String, String> = HashMap::new();
    let mut rng = base_seed.wrapping_mul(6364136223846793005) | 1;
    let start = Instant::now();
    let mut it = 0u64;
    let mut ops = 0usize;
    loop {
        let more = match seconds {
            Some(s) => start.elapsed() < Duration::from_secs(s),
            None => it < iterations,
        };
        if !more {
            break;
        }
        let seed = base_seed * 1000 + it + 1;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "child_torture",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("KSTONE_TORTURE_CHILD", &work)
            .env("KSTONE_TORTURE_REPO", repo_at.loc())
            .envs(common::s3::env())
            .env("KSTONE_SEED", seed.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let reader =
            std::thread::spawn(move || out.lines().map_while(|l| l.ok()).collect::<Vec<String>>());
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(300 + (rng >> 33) % 1200));
        child.kill().unwrap(); // SIGKILL at a random point of whatever it is doing
        child.wait().unwrap();
        let lines = reader.join().unwrap();
        let mut in_flight: Option<(String, u64)> = None;
        for l in &lines {
            let f: Vec<&str> = l.split(' ').collect();
            match (f.first().copied(), f.len()) {
                (Some("W"), 3) => in_flight = Some((f[1].into(), f[2].parse().unwrap())),
                (Some("A"), 4) => {
                    let (v, lsn): (u64, u64) = (f[2].parse().unwrap(), f[3].parse().unwrap());
                    if v == 0 {
                        model.remove(f[1]);
                    } else {
                        model.insert(f[1].into(), v);
                    }
                    log.push((lsn, f[1].into(), v));
                    in_flight = None;
                    ops += 1;
                }
                (Some("BK"), 3) => {
                    digests.insert(f[1].into(), f[2].into());
                    ops += 1;
                }
                (Some("AR"), 2) => ops += 1,
                _ => {}
            }
        }
        // 1. The database: opens, checks clean, holds every acknowledged write.
        let db = Database::open(&db_dir, opts())
            .unwrap_or_else(|e| panic!("iteration {it}: open failed: {e}"));
        let now = contents(&db);
        let mut want = model.clone();
        if let Some((k, v)) = &in_flight {
            // The write in flight at the kill: either outcome, never half.
            let applied = match now.get(k) {
                Some(x) => x == v,
                None => *v == 0,
            };
            if applied {
                if *v == 0 {
                    want.remove(k);
                } else {
                    want.insert(k.clone(), *v);
                }
                let lsn = db.stats().unwrap().last_lsn;
                log.push((lsn, k.clone(), *v));
                if *v == 0 {
                    model.remove(k);
                } else {
                    model.insert(k.clone(), *v);
                }
            }
        }
        assert!(
            now == want,
            "iteration {it}: database differs from the acknowledged writes"
        );
        drop(db);
        let r = kstone_core::check::check(&db_dir).unwrap();
        assert!(r.problems.is_empty(), "iteration {it}: {:?}", r.problems);
        // 2. Restore targets: absent or complete.
        check_target(&work.join("restore.keystone"));
        check_target(&work.join("pitr.keystone"));
        // 3. The repository.
        let storage = repo_at.storage();
        if storage.head("config").unwrap().is_none() {
            it += 1;
            continue;
        }
        let repo = Repository::open_on(storage).unwrap();
        for id in repo.backup_ids().unwrap() {
            let problems = repo.verify(&id, false).unwrap();
            assert!(
                problems.is_empty(),
                "iteration {it}: backup {id}: {problems:?}"
            );
            if let Some(d) = digests.get(&id) {
                let t = work.join(format!("check-{id}"));
                repo.restore(&id, &t).unwrap();
                let rdb = Database::open(&t, Options::default()).unwrap();
                assert_eq!(
                    &digest(&rdb),
                    d,
                    "iteration {it}: backup {id} restores to other contents"
                );
                drop(rdb);
                std::fs::remove_dir_all(&t).unwrap();
            }
        }
        // 4. The archive: contiguous, and its newest point restores exactly.
        if let Some(newest) = repo.list().unwrap().last().cloned() {
            let ranges = repo.archive_ranges(&newest.db_id, &newest.history).unwrap();
            for w in ranges.windows(2) {
                assert_eq!(
                    w[1].1.first_lsn,
                    w[0].1.last_lsn + 1,
                    "iteration {it}: archive gap or overlap"
                );
            }
            if let Some((_, last)) = ranges.last() {
                if last.last_lsn > newest.snapshot_lsn {
                    let t = work.join("check-pitr");
                    if repo
                        .restore_to(&Target::Lsn(last.last_lsn), &t, None)
                        .is_ok()
                    {
                        let mut at: BTreeMap<String, u64> = BTreeMap::new();
                        for (lsn, k, v) in log.iter().filter(|w| w.0 <= last.last_lsn) {
                            let _ = lsn;
                            if *v == 0 {
                                at.remove(k);
                            } else {
                                at.insert(k.clone(), *v);
                            }
                        }
                        let rdb = Database::open(&t, Options::default()).unwrap();
                        assert!(
                            contents(&rdb) == at,
                            "iteration {it}: PITR to LSN {} differs from the model",
                            last.last_lsn
                        );
                        drop(rdb);
                        std::fs::remove_dir_all(&t).unwrap();
                    }
                }
            }
        }
        it += 1;
    }
    eprintln!("torture: {it} kills, {ops} acknowledged operations checked");
    assert!(ops > 100, "too little work happened: {ops}");
}
