#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test
//! Snapshots (pins): a pinned view survives flushes and compactions, copies
//! into a database holding exactly the writes up to its LSN, and works across
//! processes (the pin is taken by the process that has the database open).

mod common;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;
use std::time::Duration;

use kstone_core::{
    export_line, item_from_plain_json, Database, Durability, HeldSnapshot, Item, Options, Scan,
};

fn opts() -> Options {
    Options {
        durability: Durability::Buffered,
        memtable_stripe_bytes: 1024,
        compaction_trigger: 2,
        ..Options::default()
    }
}

fn item(v: u64) -> Item {
    item_from_plain_json(&format!(r#"{{"v": {v}}}"#)).unwrap()
}

fn export(db: &Database) -> Vec<String> {
    let mut out = Vec::new();
    let mut s = Scan {
        limit: Some(500),
        total_segments: 1,
        ..Scan::default()
    };
    loop {
        let p = db.scan(&s).unwrap();
        out.extend(
            p.items
                .iter()
                .map(|(k, i)| export_line(db.key_schema(), k, i)),
        );
        match p.last_evaluated_key {
            Some(k) => s.exclusive_start = Some(k),
            None => return out,
        }
    }
}

#[test]
fn pinned_files_survive_compaction_and_copy_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("src");
    let db = Database::create(&dir, opts()).unwrap();
    for i in 0..3000u64 {
        db.put(format!("k{}", i % 700).as_bytes(), None, &item(i))
            .unwrap();
        if i == 2000 {
            db.flush().unwrap();
        }
    }
    let pin = db.pin().unwrap();
    let at_pin = export(&db);
    assert!(pin
        .snapshot()
        .files
        .iter()
        .any(|f| f.name.starts_with("sst/")));
    // Rewrite everything: flushes and compactions make the pinned files obsolete.
    for i in 0..3000u64 {
        db.put(format!("k{}", i % 700).as_bytes(), None, &item(i + 10_000))
            .unwrap();
    }
    db.compact().unwrap();
    for f in &pin.snapshot().files {
        let len = std::fs::metadata(dir.join(&f.name))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(
            len >= f.len,
            "{} was deleted or shrunk while pinned",
            f.name
        );
    }
    assert_eq!(
        pin.snapshot().count_items(&dir).unwrap(),
        at_pin.len() as u64
    );
    let copy = tmp.path().join("copy");
    pin.snapshot().copy_files(&dir, &copy).unwrap();
    let c = Database::open(&copy, opts()).unwrap();
    assert_eq!(export(&c), at_pin);
    assert_eq!(c.stats().unwrap().last_lsn, pin.snapshot().lsn);
    c.close().unwrap();
    // Releasing the pin deletes what it kept alive.
    let pinned_ssts = ssts(pin.snapshot());
    drop(pin);
    for f in pinned_ssts {
        assert!(!dir.join(&f).exists(), "{f} outlived its pin");
    }
}

/// Child: open the database and write until `stop` appears, printing
/// `A key value lsn` after each acknowledged write.
#[test]
fn child_pin_writer() {
    let Some(dir) = std::env::var_os("KSTONE_PIN_CHILD") else {
        return;
    };
    let dir = Path::new(&dir);
    let db = Database::open(dir, opts()).unwrap();
    println!("READY");
    let stop = dir.parent().unwrap().join("stop");
    std::thread::scope(|s| {
        // Compactions run beside the writes, so files keep becoming obsolete.
        s.spawn(|| {
            while !stop.exists() {
                db.compact().unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let mut i = 0u64;
        while !stop.exists() {
            let key = format!("k{}", i % 500);
            let lsn = db.put(key.as_bytes(), None, &item(i)).unwrap();
            println!("A {key} {i} {lsn}");
            i += 1;
        }
    });
    db.close().unwrap();
}

#[test]
fn cross_process_snapshot_is_exact() {
    if std::env::var_os("KSTONE_PIN_CHILD").is_some() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("live");
    Database::create(&dir, opts()).unwrap().close().unwrap();
    let mut child = common::child("child_pin_writer", &[("KSTONE_PIN_CHILD", dir.as_os_str())])
        .spawn()
        .unwrap();
    let (_, out) = common::wait_ready(&mut child);
    // Drain the child's output all along, or a full pipe would stop it.
    let reader =
        std::thread::spawn(move || out.lines().map(|l| l.unwrap()).collect::<Vec<String>>());
    std::thread::sleep(Duration::from_millis(300));
    let held = HeldSnapshot::acquire(&dir, opts()).unwrap();
    assert!(
        matches!(held, HeldSnapshot::Remote(_)),
        "the child has it open"
    );
    let snap = held.snapshot().clone();
    // Let the writer run on (flushes, compactions) while we copy.
    std::thread::sleep(Duration::from_millis(300));
    let copy = tmp.path().join("copy");
    snap.copy_files(&dir, &copy).unwrap();
    drop(held);
    std::fs::write(tmp.path().join("stop"), b"").unwrap();
    let lines: Vec<String> = reader.join().unwrap();
    assert!(child.wait().unwrap().success());

    let mut model: BTreeMap<String, u64> = BTreeMap::new();
    let mut after = 0;
    for l in &lines {
        let p: Vec<&str> = l.split(' ').collect();
        if p.len() != 4 || p[0] != "A" {
            continue;
        }
        let (v, lsn): (u64, u64) = (p[2].parse().unwrap(), p[3].parse().unwrap());
        if lsn <= snap.lsn {
            model.insert(p[1].to_string(), v);
        } else {
            after += 1;
        }
    }
    assert!(
        after > 0 && model.len() > 100,
        "writes before ({}) and after ({after}) the snapshot",
        model.len()
    );
    let c = Database::open(&copy, opts()).unwrap();
    for (k, v) in &model {
        assert_eq!(c.get(k.as_bytes(), None).unwrap(), Some(item(*v)), "{k}");
    }
    assert_eq!(export(&c).len(), model.len());
    assert_eq!(c.stats().unwrap().last_lsn, snap.lsn);
}

/// The SSTs of a snapshot.
fn ssts(snap: &kstone_core::Snapshot) -> Vec<String> {
    snap.files
        .iter()
        .filter(|f| f.name.starts_with("sst/"))
        .map(|f| f.name.clone())
        .collect()
}

/// Files of `snap` that no longer exist on disk (whole).
fn missing(dir: &Path, snap: &kstone_core::Snapshot) -> Vec<String> {
    snap.files
        .iter()
        .filter(|f| {
            std::fs::metadata(dir.join(&f.name))
                .map(|m| m.len() < f.len)
                .unwrap_or(true)
        })
        .map(|f| f.name.clone())
        .collect()
}

/// Poll (the owner checks holds every 50 ms) until `cond` or 5 s.
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

fn write_closed(dir: &Path, n: u64) -> Vec<String> {
    let db = Database::create(dir, opts()).unwrap();
    for i in 0..n {
        db.put(format!("k{}", i % 700).as_bytes(), None, &item(i))
            .unwrap();
    }
    db.flush().unwrap();
    db.put(b"in-the-wal", None, &item(1)).unwrap();
    let at = export(&db);
    db.close().unwrap();
    at
}

#[test]
fn a_hold_on_a_closed_database_lets_the_application_in_and_keeps_its_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let before = write_closed(&dir, 3000);
    let held = HeldSnapshot::acquire(&dir, opts()).unwrap();
    assert!(matches!(held, HeldSnapshot::Closed(_)));
    let snap = held.snapshot().clone();
    assert!(snap.files.iter().any(|f| f.name.starts_with("wal/")));
    // The application opens at once (no LOCK held), rewrites and compacts
    // everything: the held files are obsolete but stay.
    let app = Database::open(&dir, opts()).unwrap();
    for i in 0..3000u64 {
        app.put(format!("k{}", i % 700).as_bytes(), None, &item(i + 50_000))
            .unwrap();
    }
    app.compact().unwrap();
    assert_eq!(missing(&dir, &snap), Vec::<String>::new());
    // The held snapshot reads exactly as the database did, in place and copied.
    let copy = tmp.path().join("copy");
    snap.copy_files(&dir, &copy).unwrap();
    let c = Database::open(&copy, opts()).unwrap();
    assert_eq!(export(&c), before);
    c.close().unwrap();
    let view = Database::open_snapshot(held, opts()).unwrap();
    assert_eq!(export(&view), before);
    assert!(matches!(
        view.put(b"x", None, &item(1)),
        Err(kstone_core::Error::ReadOnly { .. })
    ));
    assert!(view.compact().is_err());
    let st = view.stats().unwrap();
    assert_eq!((st.snapshot_lsn, st.owner_pid), (Some(snap.lsn), None));
    // Released: the owner deletes the obsolete files it was keeping.
    drop(view);
    let sst = ssts(&snap);
    assert!(!sst.is_empty());
    assert!(
        eventually(|| sst.iter().all(|f| !dir.join(f).exists())),
        "released files were not deleted"
    );
    app.close().unwrap();
}

#[test]
fn a_hold_found_at_open_defers_the_deletes_of_recovery() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let before = write_closed(&dir, 3000);
    let held = HeldSnapshot::acquire(&dir, opts()).unwrap();
    let snap = held.snapshot().clone();
    // Two short-lived owners in turn, each compacting: the second one's open
    // finds files the first retired (and could not delete) and must keep them.
    for round in 0..2u64 {
        let app = Database::open(&dir, opts()).unwrap();
        app.put(b"in-the-wal", None, &item(round + 7)).unwrap();
        app.compact().unwrap();
        app.close().unwrap();
        assert_eq!(missing(&dir, &snap), Vec::<String>::new());
    }
    let copy = tmp.path().join("copy");
    snap.copy_files(&dir, &copy).unwrap();
    assert_eq!(export(&Database::open(&copy, opts()).unwrap()), before);
    drop(held);
    // The next open deletes what nobody holds any more.
    let app = Database::open(&dir, opts()).unwrap();
    let listed = app.stats().unwrap().sst_files;
    let on_disk = std::fs::read_dir(dir.join("sst")).unwrap().count();
    assert_eq!(on_disk, listed);
}

/// Child: hold a snapshot of the closed database and wait to be killed.
#[test]
fn child_holder() {
    let Some(dir) = std::env::var_os("KSTONE_HOLD_CHILD") else {
        return;
    };
    let held = HeldSnapshot::acquire(Path::new(&dir), opts()).unwrap();
    println!("READY {}", serde_json::to_string(held.snapshot()).unwrap());
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_killed_holder_releases_its_files() {
    if std::env::var_os("KSTONE_HOLD_CHILD").is_some() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    write_closed(&dir, 3000);
    let mut child = common::child("child_holder", &[("KSTONE_HOLD_CHILD", dir.as_os_str())])
        .spawn()
        .unwrap();
    let (line, _out) = common::wait_ready(&mut child);
    let json = &line[line.find("READY ").unwrap() + 6..];
    let snap: kstone_core::Snapshot = serde_json::from_str(json.trim()).unwrap();
    let app = Database::open(&dir, opts()).unwrap();
    for i in 0..700u64 {
        app.put(format!("k{i}").as_bytes(), None, &item(i)).unwrap();
    }
    app.compact().unwrap();
    assert_eq!(missing(&dir, &snap), Vec::<String>::new());
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let sst = ssts(&snap);
    assert!(
        eventually(|| sst.iter().all(|f| !dir.join(f).exists())),
        "the files of a killed holder were kept: {:?} {:?}",
        sst.iter()
            .filter(|f| dir.join(f).exists())
            .collect::<Vec<_>>(),
        std::fs::read_dir(dir.join("pins"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>()
    );
    let holds = std::fs::read_dir(dir.join("pins"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".hold")
        })
        .count();
    assert_eq!(holds, 0, "the dead holder's file was not removed");
    app.close().unwrap();
}

#[test]
fn a_read_only_view_of_an_open_database_is_its_live_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let db = Database::create(&dir, opts()).unwrap();
    for i in 0..500u64 {
        db.put(format!("k{i}").as_bytes(), None, &item(i)).unwrap();
    }
    let at = export(&db);
    let view = Database::open_read_only(&dir, opts()).unwrap();
    db.put(b"later", None, &item(1)).unwrap();
    db.compact().unwrap();
    assert_eq!(export(&view), at);
    assert_eq!(view.get(b"later", None).unwrap(), None);
    let st = view.stats().unwrap();
    assert_eq!(st.owner_pid, Some(std::process::id()));
    assert_eq!(st.snapshot_lsn, Some(500));
    assert!(view.delete(b"k1", None).is_err());
    drop(view);
    db.close().unwrap();
}

/// Child: open with a tiny memory budget (so close flushes), write a few
/// items to a few stripes, close.
#[test]
fn child_short_writer() {
    let Some(dir) = std::env::var_os("KSTONE_SHORT_CHILD") else {
        return;
    };
    let o = Options {
        memtable_budget: 16 << 10,
        compaction_trigger: 2,
        ..Options::default()
    };
    let db = Database::open(Path::new(&dir), o).unwrap();
    let round: u64 = std::env::var("KSTONE_ROUND").unwrap().parse().unwrap();
    for i in 0..200u64 {
        db.put(
            format!("k{}", i % 40).as_bytes(),
            None,
            &item(round * 1000 + i),
        )
        .unwrap();
    }
    db.close().unwrap();
}

#[test]
fn short_lived_writers_keep_tables_per_stripe_within_the_bound() {
    if std::env::var_os("KSTONE_SHORT_CHILD").is_some() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    Database::create(&dir, Options::default())
        .unwrap()
        .close()
        .unwrap();
    for round in 0..8u64 {
        let round = round.to_string();
        let st = common::child(
            "child_short_writer",
            &[
                ("KSTONE_SHORT_CHILD", dir.as_os_str()),
                ("KSTONE_ROUND", round.as_ref()),
            ],
        )
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
        assert!(st.success());
    }
    let db = Database::open_read_only(&dir, Options::default()).unwrap();
    let st = db.stats().unwrap();
    assert!(st.sst_files > 0);
    assert!(
        st.max_tables_per_stripe <= 3,
        "{} tables in a stripe, the bound is 3",
        st.max_tables_per_stripe
    );
    for i in 0..40u64 {
        assert_eq!(
            db.get(format!("k{i}").as_bytes(), None).unwrap(),
            Some(item(7000 + 160 + i))
        );
    }
}

#[test]
fn open_compacts_a_stripe_left_over_the_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let loose = Options {
        compaction_trigger: 100,
        ..opts()
    };
    let db = Database::create(&dir, loose.clone()).unwrap();
    for round in 0..8u64 {
        db.put(b"k", None, &item(round)).unwrap();
        db.flush().unwrap();
    }
    db.close().unwrap();
    let db = Database::open(&dir, opts()).unwrap();
    assert!(
        eventually(|| db.stats().unwrap().max_tables_per_stripe <= 3),
        "open did not schedule the compaction"
    );
    assert_eq!(db.get(b"k", None).unwrap(), Some(item(7)));
    db.close().unwrap();
}

#[test]
fn a_live_snapshot_outlives_its_owner_closing_and_the_next_owner() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let db = Database::create(&dir, opts()).unwrap();
    for i in 0..2000u64 {
        db.put(format!("k{}", i % 700).as_bytes(), None, &item(i))
            .unwrap();
    }
    db.flush().unwrap();
    let at = export(&db);
    let held = HeldSnapshot::acquire(&dir, opts()).unwrap();
    assert!(matches!(held, HeldSnapshot::Remote(_)));
    let snap = held.snapshot().clone();
    let rewrite = |db: &Database, base: u64| {
        for i in 0..700u64 {
            db.put(format!("k{i}").as_bytes(), None, &item(base + i))
                .unwrap();
        }
        db.compact().unwrap();
    };
    // The owner rewrites, compacts and closes while the reader still reads;
    // the next owner does the same.
    rewrite(&db, 10_000);
    db.close().unwrap();
    assert_eq!(missing(&dir, &snap), Vec::<String>::new());
    let next = Database::open(&dir, opts()).unwrap();
    rewrite(&next, 20_000);
    assert_eq!(missing(&dir, &snap), Vec::<String>::new());
    let copy = tmp.path().join("copy");
    snap.copy_files(&dir, &copy).unwrap();
    assert_eq!(export(&Database::open(&copy, opts()).unwrap()), at);
    // Done reading: the owner deletes what it kept.
    drop(held);
    let sst = ssts(&snap);
    assert!(
        eventually(|| sst.iter().all(|f| !dir.join(f).exists())),
        "files of a finished reader were kept"
    );
    next.close().unwrap();
}

#[test]
fn requests_of_dead_or_reused_pids_are_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    Database::create(&dir, opts()).unwrap().close().unwrap();
    let pins = dir.join("pins");
    // A dead requester's request and answer, and a live pid whose start
    // time is not the requester's (the pid was reused).
    std::fs::write(pins.join("1-dead.req"), br#"{"pid": 4294967295}"#).unwrap();
    std::fs::write(pins.join("1-dead.snap"), b"{}").unwrap();
    let me = std::process::id();
    std::fs::write(
        pins.join("2-reused.req"),
        format!(r#"{{"pid": {me}, "start": 1}}"#),
    )
    .unwrap();
    let db = Database::open(&dir, opts()).unwrap();
    assert!(eventually(|| std::fs::read_dir(&pins).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains('-'))));
    db.close().unwrap();
}

#[test]
fn a_reader_waits_out_a_lock_holder_that_serves_no_pins() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    write_closed(&dir, 100);
    // Another reader holding LOCK a moment (e.g. while it recovers the
    // database) answers no pin request: we take LOCK once it is free.
    let lock = kstone_core::lock::DbLock::acquire(&dir).unwrap();
    let d2 = dir.clone();
    let t = std::thread::spawn(move || {
        let held = HeldSnapshot::acquire(&d2, opts()).unwrap();
        matches!(held, HeldSnapshot::Closed(_))
    });
    std::thread::sleep(Duration::from_millis(400));
    drop(lock);
    assert!(t.join().unwrap(), "expected a snapshot held on disk");
}

#[test]
fn check_waits_out_a_lock_holder_that_serves_no_pins() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    write_closed(&dir, 100);
    let lock = kstone_core::lock::DbLock::acquire(&dir).unwrap();
    let d2 = dir.clone();
    let t = std::thread::spawn(move || kstone_core::check::check(&d2));
    std::thread::sleep(Duration::from_millis(400));
    drop(lock);
    let r = t.join().unwrap().unwrap();
    assert!(r.problems.is_empty(), "{r:?}");
}
