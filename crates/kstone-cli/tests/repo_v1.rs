#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test
//! Repositories of format 1 (whole files per backup), written by kstone
//! before format 2 (`tests/fixtures/repo-v1`, made by
//! `scripts/make-v1-fixture.sh` with the binary of commit fb1079e), keep
//! working: list, verify, restore, PITR and export; new backups into them
//! continue in format 1, and the command says how to start a format-2 one.

mod common;
use common::{json, kstone, kstone_cmd, ok, p, walk, Backend, Repo};

use std::path::{Path, PathBuf};

on_both_backends!(a_format_1_repository_restores_verifies_and_takes_new_backups);

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/repo-v1")
}

fn expected(name: &str) -> String {
    std::fs::read_to_string(fixture().join(format!("expected-{name}.jsonl"))).unwrap()
}

/// The fixture repository `name` copied object by object into a new
/// repository on `backend` (the checked-in files are never written).
fn load(backend: Backend, tmp: &Path, name: &str) -> Repo {
    let repo = Repo::new(backend, tmp, name);
    let root = fixture().join(name);
    for f in walk(&root) {
        let key = f.strip_prefix(&root).unwrap().to_str().unwrap().to_string();
        repo.write(&key, std::fs::read(&f).unwrap());
    }
    repo
}

fn scan(db: &Path) -> String {
    ok(&["scan", p(db)])
}

fn a_format_1_repository_restores_verifies_and_takes_new_backups(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let identity = fixture().join("identity.txt");
    for name in ["plain", "encrypted"] {
        let repo = load(backend, tmp.path(), name);
        let id_args: Vec<&str> = if name == "encrypted" {
            vec!["--identity", p(&identity)]
        } else {
            vec![]
        };
        let run = |args: &[&str]| {
            let mut a: Vec<&str> = args.to_vec();
            a.extend(&id_args);
            ok(&a)
        };
        let list = json(&["backup", "list", "--repo", repo.loc(), "--json"]);
        let backups = list.as_array().unwrap();
        assert_eq!(backups.len(), 2, "{list}");
        assert!(backups.iter().all(|b| b["format"] == 1), "{list}");
        let full = backups[0]["id"].as_str().unwrap().to_string();

        let mut v = vec!["backup", "verify", "--repo", repo.loc(), "--deep"];
        v.extend(&id_args);
        let o = kstone(&v);
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );

        let t = tmp.path().join(format!("{name}-full"));
        run(&["restore", &full, "--repo", repo.loc(), "--target", p(&t)]);
        assert_eq!(scan(&t), expected("full"), "{name}: the full backup");
        let t = tmp.path().join(format!("{name}-latest"));
        run(&["restore", "latest", "--repo", repo.loc(), "--target", p(&t)]);
        assert_eq!(scan(&t), expected("incremental"), "{name}: the incremental");
        let t = tmp.path().join(format!("{name}-pitr"));
        run(&[
            "restore",
            "--to-latest",
            "--repo",
            repo.loc(),
            "--target",
            p(&t),
        ]);
        assert_eq!(
            scan(&t),
            expected("archived"),
            "{name}: PITR past the last backup"
        );

        let archive = tmp.path().join(format!("{name}.tar.gz"));
        run(&[
            "backup",
            "export",
            "latest",
            "--repo",
            repo.loc(),
            "--output",
            p(&archive),
        ]);
        let t = tmp.path().join(format!("{name}-export"));
        ok(&["restore", "--archive", p(&archive), "--target", p(&t)]);
        assert_eq!(scan(&t), expected("incremental"), "{name}: the export");

        // A new backup continues in format 1, and says so.
        let db = tmp.path().join(format!("{name}-new.keystone"));
        ok(&["create", p(&db)]);
        ok(&["put", p(&db), "k", r#"{"v":1}"#]);
        let o = kstone_cmd()
            .args(["backup", "create", p(&db), "--repo", repo.loc()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("format 1"), "{err}");
        let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
        let info = json(&["backup", "info", &id, "--repo", repo.loc(), "--json"]);
        assert_eq!(info["format_version"], 1, "{info}");
        assert!(
            repo.keys("packs").is_empty(),
            "no pack in a format-1 repository"
        );
        let t = tmp.path().join(format!("{name}-new-restored"));
        run(&["restore", &id, "--repo", repo.loc(), "--target", p(&t)]);
        assert_eq!(scan(&t), scan(&db));
    }
}
