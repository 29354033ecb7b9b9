#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test
//! Repository format 2 through the `kstone` binary, on a local directory and
//! on the S3 server: chunks stored once across compaction and cloned
//! databases, reference-counting prune, a SIGKILLed backup and a SIGKILLed
//! restore each continued, and damage to a pack found and named.

mod common;
use common::{json, kstone, kstone_cmd, ok, p, Backend, Repo};

use std::path::Path;
use std::time::{Duration, Instant};

use kstone_core::{item_from_plain_json, Database, Durability, Options};

on_both_backends!(
    chunks_are_stored_once_across_compaction_clones_and_prune,
    a_sigkilled_backup_is_resumed_from_its_packs,
    a_sigkilled_restore_continues_where_it_stopped,
    only_a_killed_build_of_ours_is_continued,
    a_damaged_pack_is_found_and_named_and_restores_refuse,
    a_delta_restore_reads_and_writes_only_what_changed,
    prune_never_repacks_a_damaged_pack
);

/// A value of `len` bytes that zstd cannot shrink much (hex of a hash
/// chain), so stored sizes measure data, not compression.
fn noise(seed: u64, len: usize) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut s = String::with_capacity(len);
    while s.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push_str(&format!("{x:016x}"));
    }
    s.truncate(len);
    s
}

/// `n` items of `len`-byte values, keys `user#00000i`; the round number
/// changes every value.
fn write_items(db: &Path, ids: impl Iterator<Item = u64>, len: usize, round: u64) {
    let d = Database::open(
        db,
        Options {
            durability: Durability::Buffered,
            ..Options::default()
        },
    )
    .unwrap();
    for i in ids {
        let v = noise(i * 1000 + round, len);
        let item = item_from_plain_json(&format!(r#"{{"v":"{v}"}}"#)).unwrap();
        d.put(format!("user#{i:08}").as_bytes(), None, &item)
            .unwrap();
    }
    d.close().unwrap();
}

/// A repository without compression (stored sizes measure data) and a
/// database `name` of `n` compacted items of `len`-byte values beside it.
fn compacted(
    backend: Backend,
    name: &str,
    n: u64,
    len: usize,
) -> (tempfile::TempDir, Repo, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(backend, tmp.path(), "repo");
    ok(&["backup", "init", "--repo", repo.loc(), "--no-compression"]);
    let db = tmp.path().join(name);
    ok(&["create", p(&db)]);
    write_items(&db, 0..n, len, 0);
    ok(&["compact", p(&db)]);
    (tmp, repo, db)
}

fn create(db: &Path, repo: &Repo, extra: &[&str]) -> serde_json::Value {
    let mut a = vec!["backup", "create", p(db), "--repo", repo.loc(), "--json"];
    a.extend(extra);
    json(&a)
}

fn stored(m: &serde_json::Value) -> u64 {
    m["bytes_stored"].as_u64().unwrap()
}

fn chunks_are_stored_once_across_compaction_clones_and_prune(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(backend, tmp.path(), "repo");
    ok(&["backup", "init", "--repo", repo.loc()]);
    let db = tmp.path().join("app.keystone");
    ok(&["create", p(&db)]);
    write_items(&db, 0..20_000, 100, 0);
    ok(&["compact", p(&db)]);
    let full = create(&db, &repo, &["--type", "full"]);
    assert_eq!(full["format"], 2, "{full}");

    // 1% of the items change, then a full compaction rewrites every table.
    write_items(&db, (0..20_000).step_by(100), 100, 1);
    ok(&["compact", p(&db)]);
    let inc = create(&db, &repo, &[]);
    let ratio = stored(&inc) as f64 / stored(&full) as f64;
    eprintln!(
        "full {} B, incremental after 1% change + compaction {} B ({:.1}%)",
        stored(&full),
        stored(&inc),
        ratio * 100.0
    );
    assert!(ratio < 0.45, "compaction re-uploaded the database: {ratio}");

    // A database restored from the backup (a clone of a template) is a new
    // history: its first backup is full, and stores almost nothing.
    let clone = tmp.path().join("clone.keystone");
    ok(&[
        "restore",
        "latest",
        "--repo",
        repo.loc(),
        "--target",
        p(&clone),
    ]);
    let cfull = create(&clone, &repo, &[]);
    assert_eq!(cfull["type"], "full");
    let total = cfull["bytes_total"].as_u64().unwrap();
    assert!(
        stored(&cfull) * 10 < total,
        "a clone's full backup stored {} of {total} bytes",
        stored(&cfull)
    );

    // `status` shows what the repository stores beside the backups' size.
    let o = kstone(&["backup", "status", "--repo", repo.loc(), "--json"]);
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let (st_stored, st_logical) = (
        st["bytes_stored"].as_u64().unwrap(),
        st["bytes_logical"].as_u64().unwrap(),
    );
    assert!(st_stored * 2 < st_logical, "{st}");

    // Prune the first full backup (the clone is the same database, in a
    // new history): the chunks no other backup uses go, and the
    // incremental built on it still restores.
    let packs_before = repo.keys("packs").len();
    let out = ok(&["backup", "prune", "--repo", repo.loc(), "--keep-last", "2"]);
    assert!(out.contains("deleted 1 of 3 backups"), "{out}");
    assert!(out.contains("packs: deleted"), "{out}");
    assert!(
        repo.keys("packs").len() <= packs_before,
        "{out}: no pack may appear from nowhere"
    );
    assert_eq!(repo.keys("index").len(), 1, "{out}: one consolidated index");
    let o = kstone(&["backup", "verify", "--repo", repo.loc(), "--all", "--deep"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = kstone(&[
        "backup",
        "verify",
        "--repo",
        repo.loc(),
        "--all",
        "--read-data-subset",
        "50%",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (id, src) in [
        (inc["id"].as_str().unwrap(), &db),
        (cfull["id"].as_str().unwrap(), &clone),
    ] {
        let t = tmp.path().join(format!("r-{id}"));
        ok(&["restore", id, "--repo", repo.loc(), "--target", p(&t)]);
        assert_eq!(ok(&["scan", p(&t)]), ok(&["scan", p(src)]), "{id}");
    }
    // Pruning what is left of the first database keeps the clone whole.
    let out = ok(&["backup", "prune", "--repo", repo.loc(), "--keep-last", "1"]);
    assert!(!out.contains("warning"), "{out}");
    let t = tmp.path().join("again");
    ok(&[
        "restore",
        cfull["id"].as_str().unwrap(),
        "--repo",
        repo.loc(),
        "--target",
        p(&t),
    ]);
    assert_eq!(ok(&["scan", p(&t)]), ok(&["scan", p(&clone)]));
}

fn a_sigkilled_backup_is_resumed_from_its_packs(backend: Backend) {
    let (tmp, repo, db) = compacted(backend, "big.keystone", 16_000, 1000);
    // One-MiB packs: about sixteen; kill once a quarter of them is up.
    let mut child = kstone_cmd()
        .args([
            "backup",
            "create",
            p(&db),
            "--repo",
            repo.loc(),
            "--pack-size",
            "1",
        ])
        .args(["--parallelism", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while repo.keys("packs").len() < 4 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no packs appeared"
        );
        if child.try_wait().unwrap().is_some() {
            panic!("the backup finished before it could be killed");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        repo.keys("backups").is_empty(),
        "no manifest from a killed backup"
    );
    let up = repo.keys("packs").len();

    let o = kstone_cmd()
        .args([
            "backup",
            "create",
            p(&db),
            "--repo",
            repo.loc(),
            "--pack-size",
            "1",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("resumed: reused"), "{err}");
    let m: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let total = m["bytes_total"].as_u64().unwrap();
    eprintln!(
        "killed after {up} packs; the re-run stored {} of {total} bytes",
        stored(&m)
    );
    assert!(stored(&m) < total, "the re-run uploaded everything again");
    let t = tmp.path().join("restored");
    ok(&["restore", "latest", "--repo", repo.loc(), "--target", p(&t)]);
    assert_eq!(ok(&["scan", p(&t)]), ok(&["scan", p(&db)]));
}

/// The staging directories restores of `target` left beside it.
fn stagings(target: &Path) -> Vec<std::path::PathBuf> {
    let name = format!(
        ".{}.restore-",
        target.file_name().unwrap().to_string_lossy()
    );
    common::entries_starting_with(target.parent().unwrap(), &name)
}

/// `kstone restore latest --repo R --target T EXTRA…`, SIGKILLing itself
/// after `kill_after` packs when given.
fn restore_latest(
    repo: &Repo,
    t: &Path,
    extra: &[&str],
    kill_after: Option<usize>,
) -> std::process::Output {
    let mut c = kstone_cmd();
    c.args(["restore", "latest", "--repo", repo.loc(), "--target", p(t)]);
    c.args(extra);
    if let Some(n) = kill_after {
        c.env("KSTONE_TEST_KILL_RESTORE_AFTER_PACKS", n.to_string());
    }
    c.output().unwrap()
}

/// [`restore_latest`] killed after `n` packs (a real SIGKILL).
fn killed_restore(repo: &Repo, t: &Path, extra: &[&str], n: usize) {
    use std::os::unix::process::ExitStatusExt;
    let o = restore_latest(repo, t, extra, Some(n));
    assert_eq!(o.status.signal(), Some(9), "{o:?}");
}

/// [`restore_latest`] that must succeed; its stdout.
fn restored(repo: &Repo, t: &Path, extra: &[&str]) -> String {
    let o = restore_latest(repo, t, extra, None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn a_sigkilled_restore_continues_where_it_stopped(backend: Backend) {
    use std::os::unix::fs::PermissionsExt;
    let (tmp, repo, db) = compacted(backend, "big.keystone", 16_000, 1000);
    let m = create(&db, &repo, &["--pack-size", "1"]);
    let total = m["bytes_total"].as_u64().unwrap();
    let packs = repo.keys("packs").len();
    assert!(packs >= 8, "{packs} packs");
    let t = tmp.path().join("restored");
    // Killed (a real SIGKILL, at a point the process picks) after half the packs.
    killed_restore(&repo, &t, &[], packs / 2);
    assert!(!t.exists(), "a killed restore put nothing at the target");
    let left = stagings(&t);
    assert_eq!(left.len(), 1, "{left:?}");
    // What is there is checked, not trusted: a flipped byte in a written
    // chunk and a stray table are not kept.
    let sst = std::fs::read_dir(left[0].join("sst"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|f| std::fs::read(f).unwrap().iter().any(|b| *b != 0))
        .expect("a table with written chunks");
    let mut bytes = std::fs::read(&sst).unwrap();
    let at = bytes.iter().position(|b| *b != 0).unwrap();
    bytes[at] ^= 0x40;
    std::fs::write(&sst, bytes).unwrap();
    std::fs::write(left[0].join("sst").join("999999.sst"), b"stray").unwrap();

    let out = restored(&repo, &t, &[]);
    let reused: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("resumed: reused "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no resumed line: {out}"));
    eprintln!(
        "killed after {} of {packs} packs; the re-run reused {reused} of {total} bytes",
        packs / 2
    );
    assert!(reused * 4 > total, "reused {reused} of {total}");
    // A kept flipped chunk would fail the restore's check or differ here.
    assert_eq!(ok(&["export", p(&t)]), ok(&["export", p(&db)]));
    ok(&["check", p(&t)]);
    assert!(!t.join("sst").join("999999.sst").exists());
    assert!(stagings(&t).is_empty(), "{:?}", stagings(&t));

    // Killed again over the existing database: the old one stays in place
    // and untouched, and the next run still continues.
    let before = ok(&["export", p(&t)]);
    killed_restore(&repo, &t, &["-y"], 2);
    assert_eq!(ok(&["export", p(&t)]), before);
    let out = restored(&repo, &t, &["-y"]);
    assert!(out.contains("resumed: reused "), "{out}");
    assert_eq!(ok(&["export", p(&t)]), before);
    assert!(stagings(&t).is_empty(), "{:?}", stagings(&t));

    // Killed once more, then continued as a delta restore: the tables the
    // database holds are linked in place of the staged copies (no space for
    // two). Then one with another mode: the change does not reach the
    // moved-aside database through links.
    let mode_of = |d: &Path| {
        common::walk(&d.join("sst"))
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().permissions().mode() & 0o777)
            .collect::<std::collections::BTreeSet<_>>()
    };
    let old_modes = mode_of(&t);
    assert!(!old_modes.contains(&0o600), "{old_modes:?}");
    let delta_line = |out: &str| -> Vec<u64> {
        let line = out.lines().find(|l| l.starts_with("delta: ")).expect(out);
        line.split(' ').filter_map(|w| w.parse().ok()).collect()
    };
    killed_restore(&repo, &t, &["-y"], 4);
    let n = delta_line(&restored(&repo, &t, &["-y", "--delta"]));
    assert!(n[2] * 10 >= total * 9, "{n:?} of {total}");
    assert_eq!(ok(&["export", p(&t)]), before);
    // With a mode to change, the tables are copied, not linked, and say so.
    let out = restored(&repo, &t, &["-y", "--delta", "--mode", "700"]);
    let n = delta_line(&out);
    assert!(
        n[1] * 10 >= total * 9 && n[2] * 10 < total,
        "{n:?} of {total}"
    );
    assert_eq!(ok(&["export", p(&t)]), before);
    let aside = out
        .lines()
        .find_map(|l| l.strip_prefix("previous contents moved to "))
        .expect(&out);
    assert_eq!(mode_of(Path::new(aside)), old_modes);
    assert_eq!(mode_of(&t), [0o600].into());
    assert_eq!(ok(&["export", aside]), before);
}

fn only_a_killed_build_of_ours_is_continued(backend: Backend) {
    use std::os::unix::fs::PermissionsExt;
    let (tmp, repo, db) = compacted(backend, "app.keystone", 6_000, 1000);
    create(&db, &repo, &["--pack-size", "1"]);
    let t = tmp.path().join("t");
    let dead = |n: u32| {
        t.parent()
            .unwrap()
            .join(format!(".t.restore-17966100000000{n:02}-4194000"))
    };

    // A link at a staging name is removed, never followed into.
    let victim = tmp.path().join("victim");
    std::fs::create_dir_all(victim.join("sst")).unwrap();
    std::fs::write(victim.join("mine.txt"), b"mine").unwrap();
    std::os::unix::fs::symlink(&victim, dead(1)).unwrap();
    // A database at a staging name without the building marker (the old
    // database a swap left there, its intent lost) is not built into.
    let old = dead(2);
    common::copy_dir(&db, &old);
    let out = ok(&["restore", "latest", "--repo", repo.loc(), "--target", p(&t)]);
    assert!(!out.contains("resumed"), "{out}");
    let aside = common::entries_starting_with(tmp.path(), "t.before-restore-");
    assert_eq!(
        aside.len(),
        1,
        "the unmarked database is moved aside, not deleted"
    );
    assert_eq!(ok(&["export", p(&aside[0])]), ok(&["export", p(&db)]));
    assert_eq!(std::fs::read(victim.join("mine.txt")).unwrap(), b"mine");
    assert!(std::fs::symlink_metadata(&t).unwrap().is_dir());
    assert!(stagings(&t).is_empty(), "{:?}", stagings(&t));
    let expect = ok(&["export", p(&db)]);
    assert_eq!(ok(&["export", p(&t)]), expect);

    // Killed, then the modes of what it wrote tampered with: the result has
    // the modes a restore from nothing gives.
    let t2 = tmp.path().join("t2");
    killed_restore(&repo, &t2, &[], 2);
    // `check` of a target that is not there yet keeps the progress.
    assert_eq!(kstone(&["check", p(&t2)]).status.code(), Some(3));
    let left = stagings(&t2);
    assert_eq!(left.len(), 1);
    for e in std::fs::read_dir(left[0].join("sst")).unwrap().flatten() {
        std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o606)).unwrap();
    }
    std::fs::set_permissions(left[0].join("sst"), std::fs::Permissions::from_mode(0o700)).unwrap();
    // A failed run (a pack gone for a while: an outage) keeps what was written.
    let pack = repo.keys("packs").pop().unwrap();
    let body = repo.read(&pack);
    repo.remove(&pack);
    let o = restore_latest(&repo, &t2, &[], None);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert_eq!(stagings(&t2).len(), 1, "the progress is kept");
    repo.write(&pack, body);
    let out = restored(&repo, &t2, &[]);
    assert!(out.contains("resumed: reused "), "{out}");
    assert_eq!(ok(&["export", p(&t2)]), expect);
    let clean = |d: &Path| {
        common::walk(&d.join("sst"))
            .iter()
            .map(|f| std::fs::symlink_metadata(f).unwrap().permissions().mode() & 0o7777)
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(clean(&t2), clean(&t), "modes as a fresh restore's");
    let dir_mode = |d: &Path| {
        std::fs::metadata(d.join("sst"))
            .unwrap()
            .permissions()
            .mode()
    };
    assert_eq!(dir_mode(&t2), dir_mode(&t));
}

fn a_damaged_pack_is_found_and_named_and_restores_refuse(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(backend, tmp.path(), "repo");
    ok(&["backup", "init", "--repo", repo.loc()]);
    let db = tmp.path().join("app.keystone");
    ok(&["create", p(&db)]);
    write_items(&db, 0..3000, 200, 0);
    ok(&["flush", p(&db)]);
    create(&db, &repo, &[]);
    let packs = repo.keys("packs");
    assert_eq!(packs.len(), 1, "{packs:?}");
    let original = repo.read(&packs[0]);
    // Damage outside every chunk (the trailer) is still damage to the pack.
    let mut bytes = original.clone();
    let n = bytes.len();
    bytes[n - 20] ^= 0x40;
    repo.write(&packs[0], bytes);
    let o = kstone(&["backup", "verify", "--repo", repo.loc(), "--all"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains(&packs[0]));
    // Put back, the next verify finds it sound and forgets it.
    repo.write(&packs[0], original.clone());
    ok(&["backup", "verify", "--repo", repo.loc(), "--all"]);
    assert!(!String::from_utf8_lossy(&repo.read("status/damaged-packs")).contains(&packs[0]));
    let mut bytes = original;
    // A run of bytes, not one: a single flipped bit inside a zstd frame can
    // leave what it decodes to intact (then the restore rightly succeeds;
    // it checks chunks, not the pack), which failed this test in one CI run.
    let at = bytes.len() / 3;
    for b in &mut bytes[at..at + 64] {
        *b ^= 0x40;
    }
    repo.write(&packs[0], bytes);

    let o = kstone(&["backup", "verify", "--repo", repo.loc()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&packs[0]), "{err}");

    let t = tmp.path().join("restored");
    let o = kstone(&["restore", "latest", "--repo", repo.loc(), "--target", p(&t)]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&packs[0]), "{err}");
    assert!(!t.exists(), "a failed restore leaves nothing at the target");

    // The pack verify found damaged is not trusted by the next backup: it
    // stores those chunks again, and restores; prune then drops the pack.
    // (Without --type: nothing changed, but the damage known makes it a backup.)
    let again = create(&db, &repo, &[]);
    assert!(stored(&again) > 0, "{again}");
    ok(&["restore", "latest", "--repo", repo.loc(), "--target", p(&t)]);
    assert_eq!(ok(&["export", p(&t)]), ok(&["export", p(&db)]));
    // Both backups now verify and restore: every chunk has a sound copy,
    // which verify and restore read before the damaged one.
    ok(&[
        "backup",
        "verify",
        "--repo",
        repo.loc(),
        again["id"].as_str().unwrap(),
    ]);
    ok(&[
        "backup",
        "verify",
        "--repo",
        repo.loc(),
        "--all",
        "--read-data-subset",
        "1%",
    ]);
    let first = json(&["backup", "list", "--repo", repo.loc(), "--json"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let t1 = tmp.path().join("first");
    ok(&["restore", &first, "--repo", repo.loc(), "--target", p(&t1)]);
    assert_eq!(ok(&["export", p(&t1)]), ok(&["export", p(&db)]));
    ok(&["backup", "prune", "--repo", repo.loc(), "--keep-last", "1"]);
    assert!(
        !repo.keys("packs").contains(&packs[0]),
        "the damaged pack stays"
    );
    ok(&["backup", "verify", "--repo", repo.loc(), "--all", "--deep"]);

    // A chunk key copied in from another repository is named as such, and
    // no backup is made with it.
    let other = Repo::new(backend, tmp.path(), "other");
    ok(&["backup", "init", "--repo", other.loc()]);
    repo.write("keys/chunk-key", other.read("keys/chunk-key"));
    let o = kstone(&["backup", "verify", "--repo", repo.loc(), "--all"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("keys/chunk-key") && err.contains("another repository"),
        "{err}"
    );
    let before = repo.keys("backups").len();
    let o = kstone(&[
        "backup",
        "create",
        p(&db),
        "--repo",
        repo.loc(),
        "--type",
        "full",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("keys/chunk-key"), "{err}");
    assert_eq!(
        repo.keys("backups").len(),
        before,
        "no backup made with a foreign key"
    );
    // A missing chunk key is a problem `status` reports (nothing restores).
    repo.remove("keys/chunk-key");
    let o = kstone(&["backup", "status", "--repo", repo.loc()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("keys/chunk-key is missing"), "{err}");
}

fn a_delta_restore_reads_and_writes_only_what_changed(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(backend, tmp.path(), "repo");
    ok(&["backup", "init", "--repo", repo.loc()]);
    let db = tmp.path().join("app.keystone");
    ok(&["create", p(&db)]);
    write_items(&db, 0..20_000, 100, 0);
    ok(&["compact", p(&db)]);
    let full = create(&db, &repo, &[]);
    let then = ok(&["export", p(&db)]);
    // 1% changes, flushed: the database now holds the backup's tables and more.
    write_items(&db, (0..20_000).step_by(100), 100, 1);
    ok(&["flush", p(&db)]);
    let now = ok(&["export", p(&db)]);
    let id = full["id"].as_str().unwrap();
    let out = ok(&[
        "restore",
        id,
        "--repo",
        repo.loc(),
        "--target",
        p(&db),
        "--delta",
        "-y",
    ]);
    let line = out.lines().find(|l| l.starts_with("delta: ")).expect(&out);
    let n: Vec<u64> = line.split(' ').filter_map(|w| w.parse().ok()).collect();
    let (fetched, copied, linked) = (n[0], n[1], n[2]);
    let total = full["bytes_total"].as_u64().unwrap();
    eprintln!("{line} (database {total} bytes)");
    assert!(
        (fetched + copied) * 20 <= total,
        "a delta restore after 1% change wrote {} of {total} bytes",
        fetched + copied
    );
    assert!(linked > 0, "{line}");
    assert_eq!(
        ok(&["export", p(&db)]),
        then,
        "the restore is the backup, exactly"
    );
    ok(&["check", p(&db)]);
    // The database it replaced is moved aside whole, sharing only the
    // tables it did not change.
    let aside = out
        .lines()
        .find_map(|l| l.strip_prefix("previous contents moved to "))
        .expect(&out);
    assert_eq!(ok(&["export", aside]), now);
    // Writing to the restored database leaves the old one as it was.
    write_items(&db, 0..50, 100, 2);
    ok(&["compact", p(&db)]);
    assert_eq!(ok(&["export", aside]), now);

    // After a compaction no table keeps its name, but most blocks are
    // unchanged: they are copied from the database, not read again.
    let b2 = create(&db, &repo, &[]);
    let then = ok(&["export", p(&db)]);
    write_items(&db, (0..20_000).step_by(100), 100, 3);
    ok(&["compact", p(&db)]);
    let out = ok(&[
        "restore",
        b2["id"].as_str().unwrap(),
        "--repo",
        repo.loc(),
        "--target",
        p(&db),
        "--delta",
        "-y",
    ]);
    let line = out.lines().find(|l| l.starts_with("delta: ")).expect(&out);
    eprintln!("{line}");
    let n: Vec<u64> = line.split(' ').filter_map(|w| w.parse().ok()).collect();
    let total = b2["bytes_total"].as_u64().unwrap();
    assert!(n[1] > 0, "nothing copied: {line}");
    // 200 changed items touch a block in most stripes of this small
    // database: a third of it at most comes from the repository.
    assert!(n[0] * 3 < total, "{line} of {total}");
    assert_eq!(n[0] + n[1] + n[2], total, "{line}");
    assert_eq!(ok(&["export", p(&db)]), then);
}

fn prune_never_repacks_a_damaged_pack(backend: Backend) {
    let (tmp, repo, db) = compacted(backend, "app.keystone", 4000, 300);
    create(&db, &repo, &["--type", "full"]);
    let first = repo.keys("packs");
    // Most values change: the first pack ends up mostly dead, a repack
    // candidate once the first backup is pruned.
    write_items(&db, (0..4000).filter(|i| i % 5 != 0), 300, 1);
    ok(&["compact", p(&db)]);
    create(&db, &repo, &[]);
    let dry = ok(&[
        "backup",
        "prune",
        "--repo",
        repo.loc(),
        "--keep-last",
        "1",
        "--dry-run",
    ]);
    assert!(dry.contains("repacked 1"), "{dry}");
    // The pack to be repacked is damaged on disk.
    let victim = &first[0];
    let mut b = repo.read(victim);
    let at = b.len() / 2;
    b[at] ^= 0x20;
    repo.write(victim, b);
    let o = kstone(&["backup", "prune", "--repo", repo.loc(), "--keep-last", "1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(victim.as_str()) && err.contains("not repacked"),
        "{err}"
    );
    assert!(
        repo.keys("packs").contains(victim),
        "the damaged pack is kept, not laundered"
    );
    // The backup that remains restores exactly (what it needs of the kept
    // pack, if anything, is intact or also stored elsewhere).
    let t = tmp.path().join("t");
    ok(&["restore", "latest", "--repo", repo.loc(), "--target", p(&t)]);
    assert_eq!(ok(&["export", p(&t)]), ok(&["export", p(&db)]));
}
