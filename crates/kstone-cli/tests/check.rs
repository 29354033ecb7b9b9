#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test
//! `kstone check` finds damage in every file kind, and passes a sound database.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kstone_core::{item_from_plain_json, Database, Options};

fn kstone(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kstone"))
        .args(args)
        .output()
        .unwrap()
}

fn make(dir: &Path) -> PathBuf {
    let db = dir.join("c.keystone");
    let d = Database::create(&db, Options::default()).unwrap();
    for i in 0..3000u32 {
        d.put(
            format!("p{}", i % 37).as_bytes(),
            Some(&i.to_be_bytes()),
            &item_from_plain_json(r#"{"x":"yyyyyyyyyyyyyyyy"}"#).unwrap(),
        )
        .unwrap();
        if i == 2000 {
            d.flush().unwrap();
        }
    }
    d.close().unwrap();
    db
}

fn files(db: &Path, sub: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(db.join(sub))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(std::fs::metadata(p).unwrap().len()));
    v
}

#[test]
fn check_passes_a_sound_database_and_reports_every_kind_of_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let db = make(tmp.path());
    let d = db.to_str().unwrap();
    let o = kstone(&["check", d]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("ok") && out.contains("SST files"), "{out}");

    let damage = |path: &Path, at_frac: f64| -> Vec<u8> {
        let orig = std::fs::read(path).unwrap();
        let mut b = orig.clone();
        let at = ((b.len() as f64) * at_frac) as usize;
        b[at] ^= 0x10;
        std::fs::write(path, b).unwrap();
        orig
    };
    for (what, path, frac) in [
        ("sst data block", files(&db, "sst")[0].clone(), 0.2),
        ("sst footer", files(&db, "sst")[0].clone(), 0.999),
        ("wal record", files(&db, "wal")[0].clone(), 0.5),
        ("manifest", db.join("MANIFEST"), 0.9),
    ] {
        let orig = damage(&path, frac);
        let o = kstone(&["check", d]);
        assert_eq!(o.status.code(), Some(1), "{what} damage not found");
        let err = String::from_utf8_lossy(&o.stderr);
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        assert!(err.contains(&name), "{what}: {err}");
        std::fs::write(&path, orig).unwrap();
    }
    // A missing SST, and a truncated one.
    let sst = files(&db, "sst")[0].clone();
    let orig = std::fs::read(&sst).unwrap();
    std::fs::remove_file(&sst).unwrap();
    let o = kstone(&["check", d]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing"));
    std::fs::write(&sst, &orig[..orig.len() - 100]).unwrap();
    assert_eq!(kstone(&["check", d]).status.code(), Some(1));
    std::fs::write(&sst, &orig).unwrap();
    // A torn WAL tail is a note, not a problem.
    let wal = files(&db, "wal")[0].clone();
    let w = std::fs::read(&wal).unwrap();
    std::fs::write(&wal, &w[..w.len() - 5]).unwrap();
    let o = kstone(&["check", d, "--json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["notes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n.as_str().unwrap().contains("torn")));
    std::fs::write(&wal, &w).unwrap();
    // While another handle has it open, check works on a pinned snapshot.
    let open = Database::open(&db, Options::default()).unwrap();
    let o = kstone(&["check", d]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    drop(open);
}
