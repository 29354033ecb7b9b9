#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test
//! Every exit code of the table in docs/operations.md ("Exit codes"), each
//! from a real situation, and per-command help that shows only the options
//! the command uses.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{kstone, ok, p};
use kstone_core::{Database, Options};

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Assert `o` ended with `want`, and says what happened in one `error:` line.
fn exits(o: &Output, want: i32, needle: &str) {
    let err = stderr(o);
    assert_eq!(code(o), Some(want), "{err}");
    assert!(err.contains(needle), "{needle:?} not in: {err}");
}

/// A closed database with a few items, flushed into an SST.
fn make_db(dir: &Path) -> PathBuf {
    let db = dir.join("e.keystone");
    ok(&["create", p(&db)]);
    for i in 0..200 {
        ok(&[
            "put",
            p(&db),
            &format!("k{i:03}"),
            r#"{"x":"some value to store"}"#,
        ]);
    }
    ok(&["flush", p(&db)]);
    db
}

#[test]
fn usage_errors_exit_2() {
    let o = kstone(&["stats", "x.keystone", "--no-such-flag"]);
    assert_eq!(code(&o), Some(2), "{}", stderr(&o));
    let o = kstone(&["backup", "list"]);
    assert_eq!(code(&o), Some(2), "missing --repo: {}", stderr(&o));
    // An archive holds one backup: a point in time or a history cannot
    // apply, and must not be ignored (it was, with exit 0).
    for flags in [
        &["--to-lsn", "2"][..],
        &["--to-time", "@1"],
        &["--to-name", "x"],
        &["--to-latest"],
        &["--history", "h"],
    ] {
        let mut args = vec!["restore", "--archive", "b.tar.gz", "--target", "t"];
        args.extend_from_slice(flags);
        let o = kstone(&args);
        assert_eq!(code(&o), Some(2), "{flags:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("cannot be used with"), "{}", stderr(&o));
    }
}

#[test]
fn not_found_exits_3() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing.keystone");
    exits(
        &kstone(&["stats", p(&missing)]),
        3,
        "not a KeystoneDB database",
    );
    exits(
        &kstone(&["put", p(&missing), "k", "{}"]),
        3,
        "not a KeystoneDB database",
    );

    // A directory that is no repository.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    exits(
        &kstone(&["backup", "list", "--repo", p(&empty)]),
        3,
        "not a KeystoneDB backup repository",
    );

    // A repository without the backup asked for.
    let db = make_db(tmp.path());
    let repo = tmp.path().join("repo");
    ok(&["backup", "create", p(&db), "--repo", p(&repo)]);
    let target = tmp.path().join("restored");
    exits(
        &kstone(&[
            "restore",
            "--repo",
            p(&repo),
            "no-such-backup",
            "--target",
            p(&target),
            "-y",
        ]),
        3,
        "no backup",
    );
    assert!(!target.exists());
    // Control: the same restore of a backup that exists succeeds.
    ok(&[
        "restore",
        "--repo",
        p(&repo),
        "latest",
        "--target",
        p(&target),
        "-y",
    ]);
}

/// A restore point name nobody set, or an archive file that is not there,
/// is "not found" (3), like a backup id that does not exist; nothing is
/// created at the target.
#[test]
fn a_missing_restore_point_or_archive_file_exits_3() {
    let tmp = tempfile::tempdir().unwrap();
    let db = make_db(tmp.path());
    let repo = tmp.path().join("repo");
    ok(&["backup", "create", p(&db), "--repo", p(&repo)]);
    ok(&["restore-point", p(&db), "before-change"]);
    ok(&["put", p(&db), "late", r#"{"x":"after the point"}"#]);
    ok(&["wal-archive", p(&db), "--repo", p(&repo), "--once"]);
    let target = tmp.path().join("restored");
    let restore_to = |name: &str| {
        kstone(&[
            "restore",
            "--repo",
            p(&repo),
            "--to-name",
            name,
            "--target",
            p(&target),
            "-y",
        ])
    };
    exits(&restore_to("no-such-point"), 3, "no restore point named");
    assert!(!target.exists());
    let missing = tmp.path().join("no-such-export.tar.gz");
    exits(
        &kstone(&[
            "restore",
            "--archive",
            p(&missing),
            "--target",
            p(&target),
            "-y",
        ]),
        3,
        "no such file",
    );
    assert!(!target.exists());
    // Control: the name that was set restores.
    let o = restore_to("before-change");
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
}

#[test]
fn a_held_lock_exits_4() {
    let tmp = tempfile::tempdir().unwrap();
    let db = make_db(tmp.path());
    // This test process holds the database's LOCK (an flock, so the
    // `kstone` child is refused as any second process is).
    let held = Database::open(&db, Options::default()).unwrap();
    exits(
        &kstone(&["put", p(&db), "k", r#"{"a":1}"#]),
        4,
        "is locked by process",
    );
    exits(&kstone(&["compact", p(&db)]), 4, "is locked by process");
    // Reading works beside the holder.
    ok(&["get", p(&db), "k001"]);
    held.close().unwrap();
    // Released: the same write succeeds.
    ok(&["put", p(&db), "k", r#"{"a":1}"#]);
}

#[test]
fn no_identity_for_an_encrypted_repository_exits_5() {
    let tmp = tempfile::tempdir().unwrap();
    let db = make_db(tmp.path());
    let key = tmp.path().join("ops.key");
    let public = ok(&["backup", "keygen", "-o", p(&key)]).trim().to_string();
    let repo = tmp.path().join("enc");
    ok(&["backup", "init", "--repo", p(&repo), "--recipient", &public]);
    // Backing up needs only the public key.
    ok(&["backup", "create", p(&db), "--repo", p(&repo)]);

    let target = tmp.path().join("restored");
    let restore = |identity: Option<&Path>| {
        let mut c = common::kstone_cmd();
        c.args(["restore", "--repo", p(&repo), "--target", p(&target), "-y"])
            .env_remove("KSTONE_IDENTITY_FILE");
        if let Some(i) = identity {
            c.args(["--identity", p(i)]);
        }
        c.output().unwrap()
    };
    let o = restore(None);
    assert_eq!(code(&o), Some(5), "{}", stderr(&o));
    assert!(!target.exists());

    // A stranger's identity is no recipient either.
    let stranger = tmp.path().join("stranger.key");
    ok(&["backup", "keygen", "-o", p(&stranger)]);
    assert_eq!(code(&restore(Some(&stranger))), Some(5));

    let o = common::kstone_cmd()
        .args(["backup", "verify", "--repo", p(&repo), "--deep"])
        .env_remove("KSTONE_IDENTITY_FILE")
        .output()
        .unwrap();
    assert_eq!(code(&o), Some(5), "{}", stderr(&o));

    // Control: the recipient's identity restores.
    let o = restore(Some(&key));
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn damaged_data_exits_6_and_check_reports_it_with_1() {
    let tmp = tempfile::tempdir().unwrap();
    let db = make_db(tmp.path());
    ok(&["check", p(&db)]);
    let sst = std::fs::read_dir(db.join("sst"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&sst).unwrap();
    let at = bytes.len() / 5;
    bytes[at] ^= 0x10;
    std::fs::write(&sst, bytes).unwrap();

    // `check` lists problems it finds: its answer, exit 1 (by design).
    let o = kstone(&["check", p(&db)]);
    assert_eq!(code(&o), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("problem:"), "{}", stderr(&o));
    // A command the damage stops fails with "corruption".
    exits(&kstone(&["scan", p(&db)]), 6, "corruption");
    exits(&kstone(&["export", p(&db)]), 6, "corruption");
}

#[test]
fn help_shows_repository_options_only_where_a_repository_is_used() {
    for cmd in [
        &["put", "--help"][..],
        &["get", "--help"],
        &["scan", "--help"],
        &["backup", "keygen", "--help"],
    ] {
        let h = ok(cmd);
        assert!(!h.contains("--identity"), "{cmd:?}: {h}");
        assert!(!h.contains("--s3-"), "{cmd:?}: {h}");
    }
    let h = ok(&["backup", "create", "--help"]);
    assert!(h.contains("--repo") && h.contains("--s3-sse"), "{h}");
    for cmd in [&["restore", "--help"][..], &["backup", "verify", "--help"]] {
        let h = ok(cmd);
        assert!(h.contains("--identity") && h.contains("--s3-sse"), "{h}");
    }
    let h = ok(&["--help"]);
    assert!(h.contains("kstone-cli --db-path"), "{h}");
    assert!(h.contains("Exit codes"), "{h}");
}

/// Operator review: an age without its unit is a usage error (a bare `30`
/// meant as days would keep 30 seconds); a mistyped backup id is "not
/// found" and records no failed verification; `--identity` passed to a
/// command that only writes is accepted and unused; an identity file set for
/// other repositories does not get in the way of a plain one.
#[test]
fn review_mends_of_the_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let db = make_db(tmp.path());
    let repo = tmp.path().join("r");
    ok(&[
        "backup",
        "create",
        p(&db),
        "--repo",
        p(&repo),
        "--identity",
        "/no/such/identity",
    ]);
    for args in [
        vec!["backup", "prune", "--repo", p(&repo), "--keep-within", "30"],
        vec!["backup", "prune", "--repo", p(&repo), "--pitr-window", "7"],
        vec!["backup", "status", "--repo", p(&repo), "--max-age", "5"],
    ] {
        exits(&kstone(&args), 2, "give a unit");
    }
    exits(
        &kstone(&["backup", "verify", "--repo", p(&repo), "nosuchid"]),
        3,
        "nosuchid",
    );
    // Status is not left failing by the typo.
    ok(&["backup", "status", "--repo", p(&repo)]);
    let o = common::kstone_cmd()
        .args(["backup", "list", "--repo", p(&repo)])
        .env("KSTONE_IDENTITY_FILE", "/no/such/identity")
        .output()
        .unwrap();
    assert_eq!(code(&o), Some(0), "{}", stderr(&o));
}

/// Found in review: `export -o /dev/null` as root replaced the device with a
/// regular file (the export is written beside and renamed over). A path
/// that is not a regular file is refused and left as it was (a FIFO here,
/// which needs no root).
#[test]
fn an_export_never_replaces_a_device_or_fifo() {
    use std::os::unix::fs::FileTypeExt;
    let tmp = tempfile::tempdir().unwrap();
    let db = make_db(tmp.path());
    let fifo = tmp.path().join("fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    exits(
        &kstone(&["export", p(&db), "-o", p(&fifo)]),
        1,
        "not a regular file",
    );
    let repo = tmp.path().join("r");
    ok(&["backup", "create", p(&db), "--repo", p(&repo)]);
    exits(
        &kstone(&[
            "backup",
            "export",
            "--repo",
            p(&repo),
            "latest",
            "-o",
            p(&fifo),
        ]),
        1,
        "not a regular file",
    );
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
}
