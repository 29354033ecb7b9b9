//! The operator's day (issue 22), driven through `kstone` as an operator
//! would: what the chapter's monitoring and cron jobs rely on.

mod common;

use common::{kstone, ok, p, Backend, Repo};

/// Verifying a repository that holds no backup is not a pass: nothing in
/// it can be restored.
fn verify_all_of_an_empty_repository_fails(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(backend, tmp.path(), "repo");
    ok(&["backup", "init", "--repo", repo.loc()]);
    let o = kstone(&["backup", "verify", "--repo", repo.loc(), "--all"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("nothing to verify") && err.contains("has no backups"),
        "{err}"
    );
    // With a backup it passes.
    let db = tmp.path().join("db.keystone");
    ok(&["create", p(&db)]);
    ok(&["put", p(&db), "k", "{}"]);
    ok(&["backup", "create", p(&db), "--repo", repo.loc()]);
    ok(&["backup", "verify", "--repo", repo.loc(), "--all"]);
}

on_both_backends!(verify_all_of_an_empty_repository_fails);

/// Messages that say what happened: an empty repository, a checksum file
/// in uppercase hex (as some tools write it).
#[test]
fn messages_say_what_happened() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    ok(&["backup", "init", "--repo", p(&repo)]);
    let target = tmp.path().join("t.keystone");
    let o = kstone(&["restore", "--repo", p(&repo), "--target", p(&target)]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("the repository has no backups yet"), "{err}");
    assert!(
        !err.contains("no backup any") && !err.contains("no backup latest"),
        "{err}"
    );

    let db = tmp.path().join("db.keystone");
    ok(&["create", p(&db)]);
    ok(&["put", p(&db), "k", "{}"]);
    ok(&["backup", "create", p(&db), "--repo", p(&repo)]);
    let archive = tmp.path().join("b.tar.gz");
    ok(&[
        "backup",
        "export",
        "--repo",
        p(&repo),
        "latest",
        "-o",
        p(&archive),
    ]);
    let sum = tmp.path().join("b.tar.gz.sha256");
    let upper = std::fs::read_to_string(&sum).unwrap();
    let (hex, rest) = upper.split_once(' ').unwrap();
    std::fs::write(&sum, format!("{} {rest}", hex.to_ascii_uppercase())).unwrap();
    ok(&["restore", "--archive", p(&archive), "--target", p(&target)]);
    assert_eq!(ok(&["get", p(&target), "k"]).trim(), "{}");
    // The archive's entries are dated at the backup, not in 2006.
    let listing = std::process::Command::new("tar")
        .args(["tvzf", p(&archive), "--full-time"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    let year = chrono::Utc::now().format("%Y").to_string();
    assert!(listing.lines().count() >= 4, "{listing}");
    assert!(listing.lines().all(|l| l.contains(&year)), "{listing}");
}
