//! Snapshots (pins): a pinned view survives flushes and compactions, copies
//! into a database holding exactly the writes up to its LSN, and works across
//! processes (the pin is taken by the process that has the database open).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
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
        out.extend(p.items.iter().map(|(k, i)| export_line(k, i)));
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
    let pinned_ssts: Vec<String> = pin
        .snapshot()
        .files
        .iter()
        .filter(|f| f.name.starts_with("sst/"))
        .map(|f| f.name.clone())
        .collect();
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
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_pin_writer",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("KSTONE_PIN_CHILD", &dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.trim_end().ends_with("READY") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0);
    }
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
