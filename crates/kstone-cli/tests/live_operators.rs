#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test
//! Operators beside a live application: a backup of a closed database takes
//! `LOCK` only while it pins its snapshot, read-only commands work on a
//! database another process has open, and writes from the CLI to it are
//! refused with a message that says what to do.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::kstone;
use kstone_core::{export_line, item_from_plain_json, Database, Item, Options};

fn item(i: u64) -> Item {
    // ~1 KB, so the backup below takes long enough to overlap with the app.
    item_from_plain_json(&format!(r#"{{"v": {i}, "pad": "{}"}}"#, "x".repeat(1000))).unwrap()
}

fn p(x: &Path) -> &str {
    x.to_str().unwrap()
}

fn export(db: &Database) -> Vec<String> {
    let mut out = Vec::new();
    db.for_each_item(|k, i| {
        out.push(export_line(db.key_schema(), k, i));
        Ok::<(), kstone_core::Error>(())
    })
    .unwrap();
    out
}

fn hold_files(db: &Path) -> usize {
    std::fs::read_dir(db.join("pins"))
        .map(|rd| {
            rd.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".hold"))
            })
            .count()
        })
        .unwrap_or(0)
}

#[test]
fn an_application_opens_and_writes_while_a_backup_of_its_closed_database_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("app.keystone");
    let repo = tmp.path().join("repo");
    let d = Database::create(&db, Options::default()).unwrap();
    for i in 0..30_000u64 {
        d.put(format!("key{i:06}").as_bytes(), None, &item(i))
            .unwrap();
    }
    d.flush().unwrap();
    d.put(b"only-in-the-wal", None, &item(1)).unwrap();
    let before = export(&d);
    d.close().unwrap();

    let backup = Command::new(env!("CARGO_BIN_EXE_kstone"))
        .args(["backup", "create", p(&db), "--repo", p(&repo), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while hold_files(&db) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no hold appeared"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    // The application: opens at once, rewrites and compacts (the backup's
    // files become obsolete under it), and stays open.
    let app = Database::open(&db, Options::default()).unwrap();
    let mut backup = backup;
    assert!(
        backup.try_wait().unwrap().is_none(),
        "the backup ended before the application opened: make the database bigger"
    );
    for i in 0..30_000u64 {
        if i.is_multiple_of(10) {
            app.put(format!("key{i:06}").as_bytes(), None, &item(i + 1_000_000))
                .unwrap();
        }
    }
    app.put(b"app-write", None, &item(7)).unwrap();
    app.compact().unwrap();
    let out = backup.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m["snapshot_lsn"].as_u64(), Some(30_001));
    assert_eq!(app.get(b"app-write", None).unwrap(), Some(item(7)));
    let after = export(&app);
    app.close().unwrap();
    // Released: no file the hold kept is left behind.
    assert_eq!(hold_files(&db), 0);

    let target = tmp.path().join("restored.keystone");
    let r = kstone(&["restore", "--repo", p(&repo), "--target", p(&target)]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let restored = Database::open(&target, Options::default()).unwrap();
    assert_eq!(
        export(&restored),
        before,
        "the backup is exactly its snapshot"
    );
    restored.close().unwrap();
    // The application's writes are all there.
    let d = Database::open(&db, Options::default()).unwrap();
    assert_eq!(export(&d), after);
    assert_eq!(
        d.stats().unwrap().sst_files,
        std::fs::read_dir(db.join("sst")).unwrap().count(),
        "files the backup held were not deleted"
    );
    d.close().unwrap();
}

/// Child: the application — open the database and write until `stop` appears.
#[test]
fn child_app() {
    let Some(dir) = std::env::var_os("KSTONE_APP_CHILD") else {
        return;
    };
    let dir = Path::new(&dir);
    let db = Database::open(dir, Options::default()).unwrap();
    println!("READY");
    let stop = dir.parent().unwrap().join("stop");
    let mut i = 0u64;
    while !stop.exists() {
        db.put(
            format!("pk{}", i % 50).as_bytes(),
            Some(format!("{i}").as_bytes()),
            &item(i),
        )
        .unwrap();
        i += 1;
        if i.is_multiple_of(2000) {
            db.flush().unwrap();
        }
    }
    db.close().unwrap();
}

#[test]
fn read_only_commands_work_on_a_database_another_process_is_writing_to() {
    if std::env::var_os("KSTONE_APP_CHILD").is_some() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("live.keystone");
    Database::create(&db, Options::default())
        .unwrap()
        .close()
        .unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_app", "--exact", "--nocapture", "--test-threads=1"])
        .env("KSTONE_APP_CHILD", &db)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("READY") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "child ended early");
    }
    std::thread::sleep(Duration::from_millis(300));
    let pid = child.id().to_string();
    let live = |args: &[&str]| {
        let o = kstone(args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o
    };
    let said_live = |o: &std::process::Output| {
        let e = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(
            e.contains(&format!("open in process {pid}")) && e.contains("live snapshot at lsn"),
            "{e}"
        );
    };
    let s = live(&["stats", p(&db)]);
    let text = String::from_utf8_lossy(&s.stdout);
    assert!(text.contains("live, at lsn"), "{text}");
    assert!(
        text.contains(&format!("process {pid} has the database open")),
        "{text}"
    );
    assert!(text.contains("sst per stripe"), "{text}");
    let j: serde_json::Value =
        serde_json::from_slice(&live(&["stats", p(&db), "--json"]).stdout).unwrap();
    assert_eq!(
        j["owner_pid"].as_u64().map(|p| p.to_string()),
        Some(pid.clone())
    );
    assert!(j["snapshot_lsn"].as_u64().unwrap() > 0);
    // The operations chapter's health check.
    let o = Command::new(env!("CARGO_BIN_EXE_kstone-cli"))
        .args(["--db-path", p(&db), "--command", "stats"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("live, at lsn"));

    said_live(&live(&["get", p(&db), "pk1", "--sk", "1"]));
    let q = live(&["query", p(&db), "pk3"]);
    said_live(&q);
    assert!(!q.stdout.is_empty());
    let sc = live(&["scan", p(&db), "--limit", "5"]);
    said_live(&sc);
    assert!(String::from_utf8_lossy(&sc.stdout).lines().count() >= 5);
    let file = tmp.path().join("export.jsonl");
    let e = live(&["export", p(&db), "-o", p(&file)]);
    said_live(&e);
    assert!(std::fs::read_to_string(&file).unwrap().lines().count() > 0);
    let c = live(&["check", p(&db)]);
    assert!(String::from_utf8_lossy(&c.stdout).contains("ok"));

    // Writes are refused, naming the process and what to do.
    let w = kstone(&["put", p(&db), "x", "{}"]);
    assert_eq!(w.status.code(), Some(4), "lock held");
    let msg = String::from_utf8_lossy(&w.stderr);
    assert!(msg.contains(&format!("locked by process {pid}")), "{msg}");
    assert!(msg.contains("read-only commands"), "{msg}");
    assert_eq!(msg.lines().count(), 1, "{msg}");

    std::fs::write(tmp.path().join("stop"), b"").unwrap();
    for l in out.lines() {
        l.unwrap();
    }
    assert!(child.wait().unwrap().success());
    // Nothing a read left behind keeps files or holds.
    assert_eq!(hold_files(&db), 0);
    let d = Database::open(&db, Options::default()).unwrap();
    assert_eq!(
        d.stats().unwrap().sst_files,
        std::fs::read_dir(db.join("sst")).unwrap().count()
    );
    d.close().unwrap();
}

#[test]
fn read_only_commands_work_where_no_hold_can_be_written() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("ro.keystone");
    let d = Database::create(&db, Options::default()).unwrap();
    d.put(b"k", None, &item(1)).unwrap();
    d.close().unwrap();
    // `pins/` replaced by a file: no hold can be written, so the command
    // keeps LOCK for its duration instead (as it did before holds).
    std::fs::remove_dir_all(db.join("pins")).unwrap();
    std::fs::write(db.join("pins"), b"not a directory").unwrap();
    for args in [
        vec!["stats", p(&db)],
        vec!["get", p(&db), "k"],
        vec!["export", p(&db)],
        vec!["check", p(&db)],
    ] {
        let o = kstone(&args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}
