#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test
//! Point-in-time recovery through the `kstone` binary: a writer process with
//! WAL archiving on, backups taken beside it, and restores to many random
//! LSNs and times compared with a model; gap detection; SIGKILL of the
//! archiver and of the application while archiving.

mod common;
use common::{kstone, kstone_cmd, ok, p, Backend, Repo};

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use kstone_core::{item_from_plain_json, Database, Durability, Item, Options};
use serde_json::Value;

on_both_backends!(
    pitr_to_random_lsns_and_times_matches_the_model,
    sigkill_of_archiver_and_application_loses_nothing,
);

fn item(v: u64) -> Item {
    item_from_plain_json(&format!(r#"{{"v": {v}}}"#)).unwrap()
}

fn opts() -> Options {
    Options {
        durability: Durability::Sync,
        memtable_stripe_bytes: 1024,
        compaction_trigger: 3,
        ..Options::default()
    }
}

/// One acknowledged write: key, value (0 = delete), lsn, commit ts.
type Logged = (String, u64, u64, u64);

fn parse_log(lines: &[String]) -> Vec<Logged> {
    lines
        .iter()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() == 5 && f[0] == "A").then(|| {
                (
                    f[1].to_string(),
                    f[2].parse().unwrap(),
                    f[3].parse().unwrap(),
                    f[4].parse().unwrap(),
                )
            })
        })
        .collect()
}

fn model_at(log: &[Logged], keep: impl Fn(&Logged) -> bool) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for w in log.iter().filter(|w| keep(w)) {
        if w.1 == 0 {
            m.remove(&w.0);
        } else {
            m.insert(w.0.clone(), w.1);
        }
    }
    m
}

fn db_contents(dir: &Path) -> BTreeMap<String, u64> {
    let out = ok(&["export", p(dir)]);
    out.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["pk"]["S"].as_str().unwrap().to_string(),
                v["item"]["v"]["N"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

/// Child: archive in-process into KSTONE_PITR_REPO and write until `stop`;
/// print `A key value lsn ts` after each acknowledged write.
#[test]
fn child_pitr_writer() {
    let Some(dir) = std::env::var_os("KSTONE_PITR_CHILD") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let repo = std::env::var("KSTONE_PITR_REPO").unwrap();
    let in_process = std::env::var_os("KSTONE_PITR_INPROCESS").is_some();
    let db = Arc::new(Database::open(&dir, opts()).unwrap());
    let archiver = in_process.then(|| {
        kstone_backup::wal_archive::BackgroundArchiver::start(
            Arc::clone(&db),
            &repo,
            Duration::from_millis(150),
        )
        .unwrap()
    });
    println!("READY");
    let stop = dir.parent().unwrap().join("stop");
    let seed: u64 = std::env::var("KSTONE_SEED")
        .map(|s| s.parse().unwrap())
        .unwrap_or(1);
    let mut x = seed;
    let mut i = 0u64;
    while !stop.exists() {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let key = format!("k{:03}", (x >> 33) % 300);
        let v = if (x >> 20).is_multiple_of(8) {
            0
        } else {
            seed * 1_000_000 + i + 1
        };
        let lsn = if v == 0 {
            db.delete(key.as_bytes(), None).unwrap()
        } else {
            db.put(key.as_bytes(), None, &item(v)).unwrap()
        };
        let ts = db.stats().unwrap().last_commit_us;
        println!("A {key} {v} {lsn} {ts}");
        i += 1;
        if i.is_multiple_of(50) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    drop(archiver);
    match Arc::try_unwrap(db) {
        Ok(db) => db.close().unwrap(),
        Err(_) => panic!("database still shared"),
    }
}

struct Writer {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

fn start_writer(db: &Path, repo: &Repo, in_process: bool, seed: u64) -> Writer {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "child_pitr_writer",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("KSTONE_PITR_CHILD", db)
    .env("KSTONE_PITR_REPO", repo.loc())
    .envs(common::s3::env())
    .env("KSTONE_SEED", seed.to_string())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    if in_process {
        cmd.env("KSTONE_PITR_INPROCESS", "1");
    }
    let mut child = cmd.spawn().unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in out.lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    loop {
        let l: String = rx.recv().unwrap();
        if l.trim_end().ends_with("READY") {
            break;
        }
    }
    Writer { child, lines: rx }
}

fn pitr_to_random_lsns_and_times_matches_the_model(backend: Backend) {
    if std::env::var_os("KSTONE_PITR_CHILD").is_some() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("app.keystone");
    let repo = Repo::new(backend, tmp.path(), "repo");
    Database::create(&db, opts()).unwrap().close().unwrap();
    let mut w = start_writer(&db, &repo, true, 1);
    let mut backups = Vec::new();
    for kind in ["full", "incremental", "incremental", "full", "incremental"] {
        std::thread::sleep(Duration::from_millis(500));
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
        backups.push(b);
    }
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(tmp.path().join("stop"), b"").unwrap();
    assert!(w.child.wait().unwrap().success());
    let lines: Vec<String> = w.lines.iter().collect();
    let log = parse_log(&lines);
    assert!(log.len() > 500, "only {} writes", log.len());
    let first_lsn = backups[0]["snapshot_lsn"].as_u64().unwrap();
    let last = log.last().unwrap().clone();
    let status: Value =
        serde_json::from_str(&ok(&["backup", "status", "--repo", repo.loc(), "--json"])).unwrap();
    assert_eq!(
        status["latest_lsn"].as_u64().unwrap(),
        last.2,
        "archive reaches the last write after a clean stop"
    );

    let in_window: Vec<&Logged> = log.iter().filter(|w| w.2 > first_lsn).collect();
    let mut rng = 99u64;
    let mut next = |n: usize| {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 33) as usize % n
    };
    let mut checked = 0;
    for t in 0..22 {
        let target = tmp.path().join(format!("pitr{t}"));
        let w = in_window[next(in_window.len())];
        let (want, args): (BTreeMap<String, u64>, Vec<String>) = if t % 2 == 0 {
            let lsn = w.2;
            (
                model_at(&log, |x| x.2 <= lsn),
                vec!["--to-lsn".into(), lsn.to_string()],
            )
        } else {
            // A time between this write and the next, as @seconds.micros.
            let ts = w.3;
            (
                model_at(&log, |x| x.3 <= ts),
                vec![
                    "--to-time".into(),
                    format!("@{}.{:06}", ts / 1_000_000, ts % 1_000_000),
                ],
            )
        };
        let mut a = vec!["restore", "--repo", repo.loc(), "--target", p(&target)];
        a.extend(args.iter().map(String::as_str));
        let out = ok(&a);
        assert!(out.contains("restored"), "{out}");
        assert!(
            db_contents(&target) == want,
            "restore {args:?} differs from the model"
        );
        checked += 1;
    }
    assert!(checked >= 20);
    // Restoring the last point gives the live database's contents.
    let target = tmp.path().join("latest");
    ok(&[
        "restore",
        "--repo",
        repo.loc(),
        "--target",
        p(&target),
        "--to-lsn",
        &last.2.to_string(),
    ]);
    assert_eq!(db_contents(&target), db_contents(&db));

    // Beyond the archive: refused, naming the latest reachable point.
    let o = kstone(&[
        "restore",
        "--repo",
        repo.loc(),
        "--target",
        p(&tmp.path().join("x")),
        "--to-lsn",
        &(last.2 + 1000).to_string(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("latest reachable point is LSN {}", last.2)),
        "{err}"
    );

    // A missing archive object: restoring past it fails and names the reachable point.
    let objects = repo.keys("wal");
    assert!(objects.len() > 4);
    repo.remove(&objects[objects.len() - 2]);
    let o = kstone(&[
        "restore",
        "--repo",
        repo.loc(),
        "--target",
        p(&tmp.path().join("y")),
        "--to-lsn",
        &last.2.to_string(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cannot be restored exactly"), "{err}");
    assert!(err.contains("latest reachable point"), "{err}");
    assert!(!tmp.path().join("y").exists());
}

/// Archive object ranges (first, last) of the single history in `repo`.
fn ranges(repo: &Repo) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = repo
        .keys("wal")
        .iter()
        .filter_map(|k| {
            let n = k.rsplit('/').next()?.strip_suffix(".walarc")?.to_string();
            let f: Vec<&str> = n.split('-').collect();
            Some((f[0].parse().ok()?, f[1].parse().ok()?))
        })
        .collect();
    v.sort();
    v
}

/// Assert the archive objects are contiguous: each starts right after the
/// previous one (no gap, no overlap).
fn assert_contiguous(r: &[(u64, u64)]) {
    for pair in r.windows(2) {
        assert_eq!(
            pair[1].0,
            pair[0].1 + 1,
            "archive ranges overlap or leave a gap: {pair:?}"
        );
    }
}

/// A continuous `wal-archive` of `db` into `repo` with `interval`.
fn archiver_process(db: &Path, repo: &Repo, interval: &str) -> Child {
    kstone_cmd()
        .args([
            "wal-archive",
            p(db),
            "--repo",
            repo.loc(),
            "--interval",
            interval,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// `times` times: wait `base_ms` plus a pseudo-random part of `spread_ms`
/// (seeded by `rng`), SIGKILL the archiver and start another.
fn kill_archiver_repeatedly(
    archiver: &mut Child,
    respawn: impl Fn() -> Child,
    rng: &mut u64,
    times: usize,
    (base_ms, spread_ms): (u64, u64),
) {
    for _ in 0..times {
        *rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(base_ms + (*rng >> 33) % spread_ms));
        archiver.kill().unwrap(); // SIGKILL mid-archiving
        archiver.wait().unwrap();
        *archiver = respawn();
    }
}

fn sigkill_of_archiver_and_application_loses_nothing(backend: Backend) {
    if std::env::var_os("KSTONE_PITR_CHILD").is_some() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("app.keystone");
    let repo = Repo::new(backend, tmp.path(), "repo");
    Database::create(&db, opts()).unwrap().close().unwrap();
    ok(&["backup", "create", p(&db), "--repo", repo.loc()]);
    let spawn_archiver = || archiver_process(&db, &repo, "100ms");
    let mut archiver = spawn_archiver();
    let mut log = Vec::new();
    let mut rng = 5u64;
    for round in 0..4u64 {
        let mut w = start_writer(&db, &repo, false, round + 2);
        kill_archiver_repeatedly(&mut archiver, spawn_archiver, &mut rng, 3, (100, 300));
        std::thread::sleep(Duration::from_millis(200));
        w.child.kill().unwrap(); // SIGKILL the application too
        w.child.wait().unwrap();
        let lines: Vec<String> = w.lines.iter().collect();
        log.extend(parse_log(&lines));
    }
    std::thread::sleep(Duration::from_millis(500));
    archiver.kill().unwrap();
    archiver.wait().unwrap();
    ok(&["wal-archive", p(&db), "--repo", repo.loc(), "--once"]);
    // No duplicates, no gaps: each object starts right after the previous.
    let r = ranges(&repo);
    // At least one object per round (how many more depends on the
    // machine's and the store's speed; on a loaded machine against the S3
    // server five rounds of kills once made exactly five).
    assert!(r.len() >= 4, "{r:?}");
    assert_contiguous(&r);
    // Every acknowledged write is recoverable, and the last point equals the database.
    let last = log.iter().map(|w| w.2).max().unwrap();
    assert!(r.last().unwrap().1 >= last);
    let target = tmp.path().join("pitr");
    ok(&[
        "restore",
        "--repo",
        repo.loc(),
        "--target",
        p(&target),
        "--to-lsn",
        &r.last().unwrap().1.to_string(),
    ]);
    // (A write acknowledged just before a kill may be missing from the log,
    // so the database itself, not the log, is the reference here.)
    assert!(
        db_contents(&target) == db_contents(&db),
        "point-in-time restore differs from the database"
    );
}

/// `wal-archive` reads the WAL ahead of its uploads. SIGKILLed at random
/// moments while the application writes, the database's progress mark
/// (which lets it delete WAL) never passes the newest archived object, and
/// each next run continues the archive without a gap or an overlap.
#[test]
fn a_killed_pipelined_archiver_never_marks_what_it_did_not_store() {
    if std::env::var_os("KSTONE_PITR_CHILD").is_some() {
        return;
    }
    use std::sync::atomic::{AtomicBool, Ordering};
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("app.keystone");
    let repo = Repo::new(Backend::Local, tmp.path(), "repo");
    Database::create(&db, opts()).unwrap().close().unwrap();
    ok(&["backup", "create", p(&db), "--repo", repo.loc()]);
    let spawn_archiver = || archiver_process(&db, &repo, "50ms");
    let mark = || {
        kstone_core::archiving::registrations(&db)
            .unwrap()
            .values()
            .map(|r| r.archived_lsn)
            .max()
            .unwrap_or(0)
    };
    let mut w = start_writer(&db, &repo, false, 9);
    let mut archiver = spawn_archiver();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut checks = 0;
            while !done.load(Ordering::SeqCst) {
                // The mark first: objects only ever get added.
                let m = mark();
                let held = ranges(&repo).last().map_or(0, |r| r.1);
                assert!(
                    m <= held,
                    "the mark (LSN {m}) passed the archive (LSN {held})"
                );
                checks += 1;
            }
            assert!(checks > 10, "{checks} checks");
        });
        let mut rng = 11u64;
        kill_archiver_repeatedly(&mut archiver, spawn_archiver, &mut rng, 5, (200, 400));
        std::thread::sleep(Duration::from_millis(300));
        std::fs::write(tmp.path().join("stop"), b"").unwrap();
        assert!(w.child.wait().unwrap().success());
        std::thread::sleep(Duration::from_millis(500));
        archiver.kill().unwrap();
        archiver.wait().unwrap();
        done.store(true, Ordering::SeqCst);
    });
    ok(&["wal-archive", p(&db), "--repo", repo.loc(), "--once"]);
    let log = parse_log(&w.lines.iter().collect::<Vec<String>>());
    let r = ranges(&repo);
    assert!(r.len() > 3, "{r:?}");
    assert_eq!(r[0].0, 1);
    assert_contiguous(&r);
    let last = log.iter().map(|w| w.2).max().unwrap();
    assert_eq!(r.last().unwrap().1, last);
    assert_eq!(mark(), last);
    let target = tmp.path().join("pitr");
    ok(&[
        "restore",
        "--repo",
        repo.loc(),
        "--target",
        p(&target),
        "--to-lsn",
        &last.to_string(),
    ]);
    assert_eq!(db_contents(&target), db_contents(&db));
    let acked = model_at(&log, |_| true);
    assert_eq!(db_contents(&db), acked);
}

#[test]
fn wal_archive_of_a_missing_database_changes_nothing() {
    if std::env::var_os("KSTONE_PITR_CHILD").is_some() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope.keystone");
    let o = kstone(&[
        "wal-archive",
        p(&missing),
        "--repo",
        p(&tmp.path().join("repo")),
        "--once",
    ]);
    assert_eq!(o.status.code(), Some(3), "no database: not found");
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a KeystoneDB database"));
    assert!(
        !missing.exists(),
        "wal-archive created the database directory"
    );
}

/// `wal-archive` of a closed `Sync` database that a power cut left with a
/// damaged segment: it says the database must be opened once (the commit
/// log repairs it then) and archives nothing; after an open it archives.
#[test]
fn wal_archive_of_an_unrecovered_database_asks_for_an_open() {
    if std::env::var_os("KSTONE_PITR_CHILD").is_some() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (db_dir, crashed) = (tmp.path().join("db"), tmp.path().join("crashed"));
    let db = Database::create(&db_dir, Options::default()).unwrap();
    for i in 0..200u64 {
        // One partition: one stripe, one segment.
        db.put(b"one", Some(&i.to_be_bytes()), &item(i + 1))
            .unwrap();
    }
    // A copy while open is what a crash leaves, commit log included.
    for sub in ["", "wal", "sst", "commit", "pins"] {
        std::fs::create_dir_all(crashed.join(sub)).unwrap();
        let Ok(rd) = std::fs::read_dir(db_dir.join(sub)) else {
            continue;
        };
        for e in rd {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                std::fs::copy(e.path(), crashed.join(sub).join(e.file_name())).unwrap();
            }
        }
    }
    drop(db);
    // The power cut: a sector of the unsynced segment never reached the disk.
    let seg = std::fs::read_dir(crashed.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut b = std::fs::read(&seg).unwrap();
    assert!(b.len() > 8192, "{}", b.len());
    b[4096..4608].fill(0);
    std::fs::write(&seg, &b).unwrap();
    let repo = tmp.path().join("repo");
    ok(&["backup", "init", "--repo", p(&repo)]);
    let o = kstone(&["wal-archive", p(&crashed), "--repo", p(&repo), "--once"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("open the database once"), "{err}");
    assert!(
        !repo.join("wal").exists()
            || std::fs::read_dir(repo.join("wal"))
                .unwrap()
                .next()
                .is_none()
    );
    ok(&["stats", p(&crashed)]);
    ok(&["wal-archive", p(&crashed), "--repo", p(&repo), "--once"]);
    let db = Database::open(&crashed, Options::default()).unwrap();
    for i in 0..200u64 {
        assert_eq!(
            db.get(b"one", Some(&i.to_be_bytes())).unwrap(),
            Some(item(i + 1))
        );
    }
}
