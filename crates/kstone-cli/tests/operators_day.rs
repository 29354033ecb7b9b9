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
    assert!(err.contains("nothing to verify") && err.contains("has no backups"), "{err}");
    // With a backup it passes.
    let db = tmp.path().join("db.keystone");
    ok(&["create", p(&db)]);
    ok(&["put", p(&db), "k", "{}"]);
    ok(&["backup", "create", p(&db), "--repo", repo.loc()]);
    ok(&["backup", "verify", "--repo", repo.loc(), "--all"]);
}

on_both_backends!(verify_all_of_an_empty_repository_fails);
