#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test
//! Fault injection with a real full disk: the database directory and the
//! backup repository on small tmpfs mounts (the tests run as root, as CI
//! does). Every operation fails with a clear error, nothing acknowledged is
//! lost, reads keep working, and everything recovers once space is freed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kstone_core::{item_from_plain_json, Database, Options};

struct Mount(PathBuf);

impl Mount {
    fn new(dir: &Path, size: &str) -> Mount {
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                dir.to_str().unwrap(),
            ])
            .status()
            .expect("mount(8) is needed for the disk-full tests");
        assert!(
            st.success(),
            "mounting a tmpfs needs root (CI runs as root)"
        );
        Mount(dir.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn kstone(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kstone"))
        .args(args)
        .output()
        .unwrap()
}

fn item(i: u64) -> kstone_core::Item {
    item_from_plain_json(&format!(r#"{{"v":{i},"pad":"{}"}}"#, "z".repeat(200))).unwrap()
}

/// Fill the rest of the disk with a file we can delete later.
fn fill(dir: &Path) -> PathBuf {
    let p = dir.join("filler");
    let mut f = std::fs::File::create(&p).unwrap();
    let chunk = vec![7u8; 64 << 10];
    use std::io::Write;
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
    p
}

#[test]
fn database_on_a_full_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("fs");
    let _m = Mount::new(&mnt, "4m");
    let dir = mnt.join("db.keystone");
    let opts = Options {
        memtable_stripe_bytes: 8 << 10,
        ..Options::default()
    };
    let db = Database::create(&dir, opts.clone()).unwrap();
    let mut acked = Vec::new();
    for i in 0..200u64 {
        db.put(format!("k{i}").as_bytes(), None, &item(i)).unwrap();
        acked.push(i);
    }
    let filler = fill(&mnt);
    // Writes now fail, each with one clear error, until space returns.
    let mut failures = 0;
    for i in 200..400u64 {
        match db.put(format!("k{i}").as_bytes(), None, &item(i)) {
            Ok(_) => acked.push(i),
            Err(e) => {
                failures += 1;
                let msg = e.to_string();
                assert!(
                    msg.contains("No space left") || msg.contains("read-only"),
                    "{msg}"
                );
            }
        }
    }
    assert!(failures > 0, "the disk never filled up");
    // Reads keep working.
    for &i in acked.iter().take(50) {
        assert_eq!(
            db.get(format!("k{i}").as_bytes(), None).unwrap(),
            Some(item(i))
        );
    }
    std::fs::remove_file(&filler).unwrap();
    // After space is freed: writes work again, or (if an fsync failed) the
    // database refuses writes until reopened — never a silent loss.
    let mut recovered = false;
    for i in 400..450u64 {
        if db.put(format!("k{i}").as_bytes(), None, &item(i)).is_ok() {
            acked.push(i);
            recovered = true;
        }
    }
    drop(db);
    let db = Database::open(&dir, opts).unwrap();
    if !recovered {
        db.put(b"after-reopen", None, &item(0)).unwrap();
    }
    for &i in &acked {
        assert_eq!(
            db.get(format!("k{i}").as_bytes(), None).unwrap(),
            Some(item(i)),
            "acknowledged k{i} lost"
        );
    }
    drop(db);
    let o = kstone(&["check", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn repository_on_a_full_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db.keystone");
    let d = Database::create(&db, Options::default()).unwrap();
    for i in 0..4000u64 {
        d.put(format!("k{i}").as_bytes(), None, &item(i)).unwrap();
    }
    d.flush().unwrap();
    d.close().unwrap();
    let mnt = tmp.path().join("repofs");
    let _m = Mount::new(&mnt, "3m");
    let repo = mnt.join("repo");
    let (db_s, repo_s) = (db.to_str().unwrap(), repo.to_str().unwrap());
    assert!(
        kstone(&["backup", "init", "--repo", repo_s, "--no-compression"])
            .status
            .success()
    );
    let o = kstone(&["backup", "create", db_s, "--repo", repo_s, "--type", "full"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The disk fills up: the next backup fails with one clear line.
    let filler = fill(&mnt);
    let o = kstone(&["backup", "create", db_s, "--repo", repo_s, "--type", "full"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    let lines = err.lines().filter(|l| !common::is_progress_line(l)).count();
    assert_eq!(lines, 1, "{err}");
    assert!(err.contains("No space left"), "{err}");
    // The repository lists only the complete backup, and it verifies.
    let list = kstone(&["backup", "list", "--repo", repo_s, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert!(
        kstone(&["backup", "verify", "--repo", repo_s, "--all", "--deep"])
            .status
            .success()
    );
    // Space comes back: the failed run's leftovers are cleaned and the next
    // backup succeeds.
    std::fs::remove_file(&filler).unwrap();
    let o = kstone(&["backup", "create", db_s, "--repo", repo_s]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(kstone(&["backup", "verify", "--repo", repo_s, "--all"])
        .status
        .success());
}

/// A restore onto a full disk is an I/O error naming the file, not a
/// "corrupt repository object"; the target is left as it was.
#[test]
fn restore_onto_a_full_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db.keystone");
    let d = Database::create(&db, Options::default()).unwrap();
    for i in 0..4000u64 {
        d.put(format!("k{i}").as_bytes(), None, &item(i)).unwrap();
    }
    d.flush().unwrap();
    d.close().unwrap();
    let repo = tmp.path().join("repo");
    let (db_s, repo_s) = (db.to_str().unwrap(), repo.to_str().unwrap());
    let o = kstone(&["backup", "create", db_s, "--repo", repo_s, "--type", "full"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mnt = tmp.path().join("targetfs");
    let _m = Mount::new(&mnt, "100k");
    let target = mnt.join("restored");
    let o = kstone(&[
        "restore",
        "--repo",
        repo_s,
        "latest",
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    let lines = err.lines().filter(|l| !common::is_progress_line(l)).count();
    assert_eq!(lines, 1, "{err}");
    assert!(err.contains("No space left"), "{err}");
    assert!(!err.contains("corrupt"), "{err}");
    assert!(!target.exists());
    // The repository is fine: the same restore elsewhere succeeds.
    let o = kstone(&[
        "restore",
        "--repo",
        repo_s,
        "latest",
        "--target",
        tmp.path().join("ok").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
