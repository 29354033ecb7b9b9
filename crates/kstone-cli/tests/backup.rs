#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test
//! Backup, verify and restore through the `kstone` binary: hot backups beside
//! a writing process, chains, damage detection, SIGKILL during backup and
//! restore, and portable archives.

mod common;
use common::{json, kstone, kstone_cmd, ok, p, Backend, Repo};

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use kstone_core::{item_from_plain_json, Database, Durability, Item, Options};
use serde_json::Value;

on_both_backends!(
    hot_backup_beside_a_writing_process_is_exact,
    chain_sizes_and_exact_restores,
    verify_finds_damage_and_restore_refuses_it,
    restore_refuses_an_open_target_and_moves_existing_aside,
    sigkill_during_backup_and_restore,
    export_archive_round_trip_and_hostile_archives,
);

fn item(v: u64) -> Item {
    item_from_plain_json(&format!(r#"{{"v": {v}, "pad": "{}"}}"#, "p".repeat(40))).unwrap()
}

fn opts() -> Options {
    Options {
        durability: Durability::Buffered,
        memtable_stripe_bytes: 2048,
        compaction_trigger: 3,
        ..Options::default()
    }
}

/// A database with `n` items, mostly flushed into SSTs.
fn make_db(dir: &Path, n: u64) {
    let db = Database::create(dir, opts()).unwrap();
    for i in 0..n {
        db.put(format!("key{i:06}").as_bytes(), None, &item(i))
            .unwrap();
    }
    db.flush().unwrap();
    db.close().unwrap();
}

fn change(dir: &Path, keys: impl Iterator<Item = u64>, v: u64) {
    let db = Database::open(dir, opts()).unwrap();
    for i in keys {
        db.put(format!("key{i:06}").as_bytes(), None, &item(v))
            .unwrap();
    }
    db.close().unwrap();
}

fn export(db: &Path) -> String {
    ok(&["export", p(db)])
}

/// Child: write until `stop` exists, printing `A key value lsn` per ack.
#[test]
fn child_hot_writer() {
    let Some(dir) = std::env::var_os("KSTONE_HOT_CHILD") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let db = Database::open(&dir, opts()).unwrap();
    println!("READY");
    let stop = dir.parent().unwrap().join("stop");
    std::thread::scope(|s| {
        // Compaction runs all the time beside the writes.
        s.spawn(|| {
            while !stop.exists() {
                db.compact().unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let mut i = 0u64;
        while !stop.exists() {
            let key = format!("key{:06}", (i * 7919) % 3000);
            let lsn = if i.is_multiple_of(13) {
                db.delete(key.as_bytes(), None).unwrap()
            } else {
                db.put(key.as_bytes(), None, &item(i)).unwrap()
            };
            println!("A {key} {} {lsn}", if i.is_multiple_of(13) { 0 } else { i });
            i += 1;
        }
    });
    db.close().unwrap();
}

fn hot_backup_beside_a_writing_process_is_exact(backend: Backend) {
    if std::env::var_os("KSTONE_HOT_CHILD").is_some() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("live.keystone");
    let repo = Repo::new(backend, tmp.path(), "repo");
    make_db(&db, 2000);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_hot_writer",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("KSTONE_HOT_CHILD", &db)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for l in out.lines() {
            if tx.send(l.unwrap()).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    loop {
        let l = rx.recv().unwrap();
        let ready = l.trim_end().ends_with("READY");
        lines.push(l);
        if ready {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(400));
    // Every write acknowledged before the backup starts.
    lines.extend(rx.try_iter());
    let acked_before = lines
        .iter()
        .filter_map(|l| l.split(' ').nth(3).and_then(|x| x.parse::<u64>().ok()))
        .max()
        .unwrap();
    let b = json(&[
        "backup",
        "create",
        p(&db),
        "--repo",
        repo.loc(),
        "--type",
        "full",
        "--json",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(tmp.path().join("stop"), b"").unwrap();
    assert!(child.wait().unwrap().success());
    lines.extend(rx.iter());
    let lsn = b["snapshot_lsn"].as_u64().unwrap();
    assert!(
        lsn >= acked_before,
        "snapshot {lsn} misses acknowledged write {acked_before}"
    );

    // The model at the snapshot LSN: initial data, then logged writes ≤ lsn.
    let mut model: BTreeMap<String, u64> = (0..2000).map(|i| (format!("key{i:06}"), i)).collect();
    let mut later = 0;
    for l in &lines {
        let f: Vec<&str> = l.split(' ').collect();
        if f.len() != 4 || f[0] != "A" {
            continue;
        }
        let (v, w): (u64, u64) = (f[2].parse().unwrap(), f[3].parse().unwrap());
        if w > lsn {
            later += 1;
            continue;
        }
        if v == 0 {
            model.remove(f[1]);
        } else {
            model.insert(f[1].to_string(), v);
        }
    }
    assert!(later > 0, "the writer kept writing during the backup");
    let target = tmp.path().join("restored.keystone");
    ok(&["restore", "--repo", repo.loc(), "--target", p(&target)]);
    let restored = Database::open(&target, Options::default()).unwrap();
    for (k, v) in &model {
        assert_eq!(
            restored.get(k.as_bytes(), None).unwrap(),
            Some(item(*v)),
            "{k}"
        );
    }
    assert_eq!(restored.stats().unwrap().last_lsn, lsn);
    drop(restored);
    assert_eq!(export(&target).lines().count(), model.len());
    assert_eq!(b["items"].as_u64().unwrap(), model.len() as u64);
    assert!(ok(&["stats", p(&target)]).contains("restored       to lsn "));
}

/// Format 1's chains (format 2's dedup: `tests/repo_v2.rs`).
fn chain_sizes_and_exact_restores(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db.keystone");
    let repo = Repo::new(backend, tmp.path(), "repo");
    ok(&["backup", "init", "--repo", repo.loc(), "--format", "1"]);
    make_db(&db, 20_000);
    let full = json(&["backup", "create", p(&db), "--repo", repo.loc(), "--json"]);
    assert_eq!(full["type"], "full");
    let mut states = vec![(full.clone(), export(&db))];
    // 1% of the items change.
    change(&db, (0..200).map(|i| i * 100), 1);
    let inc1 = json(&["backup", "create", p(&db), "--repo", repo.loc(), "--json"]);
    assert_eq!(inc1["type"], "incremental");
    let ratio = inc1["bytes_stored"].as_f64().unwrap() / full["bytes_stored"].as_f64().unwrap();
    assert!(
        ratio <= 0.05,
        "incremental stored {ratio:.3} of the full backup"
    );
    states.push((inc1.clone(), export(&db)));
    change(&db, (0..200).map(|i| i * 100 + 50), 2);
    let inc2 = json(&["backup", "create", p(&db), "--repo", repo.loc(), "--json"]);
    assert_eq!(inc2["parent"], inc1["id"]);
    states.push((inc2.clone(), export(&db)));
    let diff = json(&[
        "backup",
        "create",
        p(&db),
        "--repo",
        repo.loc(),
        "--type",
        "differential",
        "--json",
    ]);
    assert_eq!(diff["parent"], full["id"]);
    assert_eq!(diff["base_full"], full["id"]);
    states.push((diff.clone(), export(&db)));

    // The differential stores every file of its snapshot that the full did not have.
    let info = |id: &Value| {
        json(&[
            "backup",
            "info",
            "--repo",
            repo.loc(),
            id.as_str().unwrap(),
            "--json",
        ])
    };
    let full_files: std::collections::HashSet<(String, u64)> = info(&full["id"])["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["size"].as_u64().unwrap(),
            )
        })
        .collect();
    for f in info(&diff["id"])["files"].as_array().unwrap() {
        let k = (
            f["name"].as_str().unwrap().to_string(),
            f["size"].as_u64().unwrap(),
        );
        let stored_here = f["stored_in"] == diff["id"];
        assert_eq!(stored_here, !full_files.contains(&k), "{k:?}");
    }
    assert!(diff["bytes_stored"].as_u64().unwrap() >= inc2["bytes_stored"].as_u64().unwrap());

    for (i, (b, want)) in states.iter().enumerate() {
        let target = tmp.path().join(format!("r{i}"));
        ok(&[
            "restore",
            "--repo",
            repo.loc(),
            b["id"].as_str().unwrap(),
            "--target",
            p(&target),
        ]);
        assert!(export(&target) == *want, "restore of {} differs", b["id"]);
    }
    let list = json(&["backup", "list", "--repo", repo.loc(), "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 4);
    let out = ok(&["backup", "verify", "--repo", repo.loc(), "--all", "--deep"]);
    assert_eq!(
        out.matches("ok ").count(),
        5,
        "4 backups and the archive: {out}"
    );
    assert!(out.contains("ok        WAL archive"), "{out}");
}

/// Damage to format 1's whole-file objects (format 2's packs:
/// `tests/repo_v2.rs`).
fn verify_finds_damage_and_restore_refuses_it(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db.keystone");
    let repo = Repo::new(backend, tmp.path(), "repo");
    ok(&["backup", "init", "--repo", repo.loc(), "--format", "1"]);
    make_db(&db, 3000);
    let b = json(&["backup", "create", p(&db), "--repo", repo.loc(), "--json"]);
    let id = b["id"].as_str().unwrap().to_string();
    ok(&["backup", "verify", "--repo", repo.loc(), &id]);
    let objs = repo.keys(&format!("data/{id}"));
    assert!(objs.len() > 10);
    let target = tmp.path().join("target.keystone");
    make_db(&target, 10);
    let before = export(&target);

    type Damage = Box<dyn Fn(&Repo, &str)>;
    let damages: Vec<(&str, Damage)> = vec![
        (
            "flipped byte",
            Box::new(|r: &Repo, o: &str| {
                let mut b = r.read(o);
                let n = b.len() / 2;
                b[n] ^= 0x01;
                r.write(o, b);
            }),
        ),
        (
            "truncated",
            Box::new(|r: &Repo, o: &str| {
                let b = r.read(o);
                r.write(o, b[..b.len() / 2].to_vec());
            }),
        ),
        ("missing", Box::new(|r: &Repo, o: &str| r.remove(o))),
    ];
    for (i, (what, damage)) in damages.iter().enumerate() {
        let victim = objs[i * 3].as_str();
        let saved = repo.read(victim);
        damage(&repo, victim);
        let o = kstone(&["backup", "verify", "--repo", repo.loc(), &id]);
        assert_eq!(o.status.code(), Some(1), "{what} not detected");
        let err = String::from_utf8_lossy(&o.stderr);
        let name = victim.rsplit('/').next().unwrap();
        assert!(err.contains(name), "{what}: {err}");
        let o = kstone(&[
            "restore",
            "--repo",
            repo.loc(),
            &id,
            "--target",
            p(&target),
            "--yes",
        ]);
        // A damaged object (flipped, truncated or missing): the restore
        // cannot give what was asked, which the recovery contract says is 1.
        assert_eq!(
            o.status.code(),
            Some(1),
            "restore of a {what} backup succeeded"
        );
        assert_eq!(export(&target), before, "{what}: target changed");
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("restore"))
            .collect();
        assert!(leftovers.is_empty(), "{what}: staging left behind");
        repo.write(victim, saved);
    }
    ok(&["backup", "verify", "--repo", repo.loc(), &id, "--deep"]);
}

fn restore_refuses_an_open_target_and_moves_existing_aside(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db.keystone");
    let repo = Repo::new(backend, tmp.path(), "repo");
    make_db(&db, 100);
    ok(&["backup", "create", p(&db), "--repo", repo.loc()]);
    let target = tmp.path().join("t.keystone");
    make_db(&target, 5);
    let old = export(&target);
    let open = Database::open(&target, Options::default()).unwrap();
    let o = kstone(&[
        "restore",
        "--repo",
        repo.loc(),
        "--target",
        p(&target),
        "--yes",
    ]);
    // Another process has the target open: "lock held".
    assert_eq!(o.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is open by process"));
    drop(open);
    let out = ok(&[
        "restore",
        "--repo",
        repo.loc(),
        "--target",
        p(&target),
        "--yes",
    ]);
    let aside = out
        .lines()
        .find_map(|l| l.strip_prefix("previous contents moved to "))
        .unwrap();
    assert_eq!(export(Path::new(aside)), old);
    assert_eq!(export(&target), export(&db));
    // A non-database directory is never moved.
    let other = tmp.path().join("home");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), b"x").unwrap();
    let o = kstone(&[
        "restore",
        "--repo",
        repo.loc(),
        "--target",
        p(&other),
        "--yes",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(other.join("notes.txt").exists());
}

fn sigkill_during_backup_and_restore(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db.keystone");
    let repo = Repo::new(backend, tmp.path(), "repo");
    make_db(&db, 60_000);
    ok(&["backup", "create", p(&db), "--repo", repo.loc()]);
    let mut rng = 7u64;
    for round in 0..6 {
        change(&db, (0..2000).map(|i| i * 29 + round), round + 10);
        let mut child = kstone_cmd()
            .args([
                "backup",
                "create",
                p(&db),
                "--repo",
                repo.loc(),
                "--type",
                "full",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(20 + (rng >> 33) % 150));
        let _ = child.kill();
        child.wait().unwrap();
        // Only complete backups are listed, and each verifies.
        let list = json(&["backup", "list", "--repo", repo.loc(), "--json"]);
        for b in list.as_array().unwrap() {
            ok(&[
                "backup",
                "verify",
                "--repo",
                repo.loc(),
                b["id"].as_str().unwrap(),
            ]);
        }
    }
    // The next run cleans up what the killed ones left.
    ok(&["backup", "create", p(&db), "--repo", repo.loc()]);
    let ids: Vec<String> = json(&["backup", "list", "--repo", repo.loc(), "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    for n in repo.data_dirs() {
        assert!(ids.contains(&n), "leftover data of interrupted backup {n}");
    }

    // Restore killed at random moments: the target is old or new, never half.
    let target = tmp.path().join("t.keystone");
    make_db(&target, 50);
    let old = export(&target);
    let new = export(&db);
    let mut saw_new = false;
    for _ in 0..6 {
        let mut child = kstone_cmd()
            .args([
                "restore",
                "--repo",
                repo.loc(),
                "--target",
                p(&target),
                "--yes",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(10 + (rng >> 33) % 400));
        let _ = child.kill();
        child.wait().unwrap();
        let now = export(&target);
        assert!(
            now == old || now == new,
            "target is neither the old nor the restored database"
        );
        saw_new |= now == new;
        if saw_new {
            break;
        }
    }
}

fn export_archive_round_trip_and_hostile_archives(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db.keystone");
    let repo = Repo::new(backend, tmp.path(), "repo");
    make_db(&db, 500);
    change(&db, 0..10, 99);
    ok(&["backup", "create", p(&db), "--repo", repo.loc()]);
    let archive = tmp.path().join("b.tar.gz");
    ok(&[
        "backup",
        "export",
        "--repo",
        repo.loc(),
        "latest",
        "-o",
        p(&archive),
    ]);
    let o = Command::new("sha256sum")
        .arg("-c")
        .arg("b.tar.gz.sha256")
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let un = tmp.path().join("unpacked");
    std::fs::create_dir(&un).unwrap();
    assert!(Command::new("tar")
        .args(["xzf", p(&archive), "-C", p(&un)])
        .status()
        .unwrap()
        .success());
    let o = Command::new(env!("CARGO_BIN_EXE_kstone-cli"))
        .args(["--db-path", p(&un), "--command", "stats"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(export(&un), export(&db));
    let t = tmp.path().join("from-archive.keystone");
    ok(&["restore", "--archive", p(&archive), "--target", p(&t)]);
    assert_eq!(export(&t), export(&db));

    // A crafted archive with a `../` entry is refused and writes nothing outside.
    let evil = tmp.path().join("evil.tar.gz");
    {
        let f = std::fs::File::create(&evil).unwrap();
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
            f,
            flate2::Compression::default(),
        ));
        let data = b"pwned";
        let mut h = tar::Header::new_old();
        let name = b"../escaped.txt";
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
        b.into_inner().unwrap().finish().unwrap();
    }
    let t2 = tmp.path().join("sub").join("evil.keystone");
    let o = kstone(&["restore", "--archive", p(&evil), "--target", p(&t2)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("escapes"));
    assert!(!tmp.path().join("escaped.txt").exists());
    assert!(!tmp.path().join("sub").join("escaped.txt").exists());
    assert!(!t2.exists());
    // A symlink entry is refused too.
    let link = tmp.path().join("link.tar.gz");
    {
        let f = std::fs::File::create(&link).unwrap();
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
            f,
            flate2::Compression::default(),
        ));
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "MANIFEST", "/etc/passwd").unwrap();
        b.into_inner().unwrap().finish().unwrap();
    }
    let o = kstone(&["restore", "--archive", p(&link), "--target", p(&t2)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!t2.exists());
}
