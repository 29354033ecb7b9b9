#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test
//! Drive the built `kstone` and `kstone-cli` binaries like a user would.

use std::path::Path;
use std::process::{Command, Output};

fn kstone(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kstone"))
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(args: &[&str]) -> String {
    let o = kstone(args);
    assert!(o.status.success(), "{args:?} failed: {}", text(&o.stderr));
    text(&o.stdout)
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn create_put_get_delete_stats() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("app.keystone");
    let db = p(&db);
    assert!(ok(&["create", db]).contains("created"));
    ok(&[
        "put",
        db,
        "user#1",
        "--sk",
        "profile",
        r#"{"name":"Ada","age":36,"big":123456789012345678901234567890}"#,
    ]);
    ok(&[
        "put",
        db,
        "user#2",
        r#"{"b":{"B":"AAEC"},"s":{"SS":["x","y"]}}"#,
        "--typed",
    ]);
    assert_eq!(
        ok(&["get", db, "user#1", "--sk", "profile"]).trim(),
        r#"{"age":36,"big":123456789012345678901234567890,"name":"Ada"}"#
    );
    assert_eq!(
        ok(&["get", db, "user#2", "--typed"]).trim(),
        r#"{"b":{"B":"AAEC"},"s":{"SS":["x","y"]}}"#
    );
    // Absent: nothing on stdout, "not found" on stderr, exit 1.
    let o = kstone(&["get", db, "user#1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
    assert!(text(&o.stderr).contains("not found"));

    ok(&["delete", db, "user#1", "--sk", "profile"]);
    assert_eq!(
        kstone(&["get", db, "user#1", "--sk", "profile"])
            .status
            .code(),
        Some(1)
    );

    let stats: serde_json::Value = serde_json::from_str(&ok(&["stats", db, "--json"])).unwrap();
    assert_eq!(stats["last_lsn"], 3);
    assert_eq!(stats["stripes"], 256);
    assert!(ok(&["stats", db]).contains("last lsn       3"));
    ok(&["flush", db]);
    let stats: serde_json::Value = serde_json::from_str(&ok(&["stats", db, "--json"])).unwrap();
    assert!(stats["sst_files"].as_u64().unwrap() >= 1);
    assert_eq!(
        ok(&["get", db, "user#2", "--typed"]).trim(),
        r#"{"b":{"B":"AAEC"},"s":{"SS":["x","y"]}}"#
    );
}

#[test]
fn bad_input_is_one_clear_line_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("x.keystone");
    let db = p(&db);
    ok(&["create", db]);
    let before = ok(&["stats", db, "--json"]);
    for (args, needle) in [
        (vec!["put", db, "k", "{not json"], "malformed JSON"),
        (
            vec!["put", db, "k", r#"{"n":{"N":"12x"}}"#, "--typed"],
            "invalid number",
        ),
        (vec!["put", db, "k", "[1,2]"], "JSON object"),
        (vec!["put", db, "", "{}"], "partition key"),
    ] {
        let o = kstone(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = text(&o.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: ") && err.contains(needle), "{err}");
    }
    assert_eq!(ok(&["stats", db, "--json"]), before);

    let o = kstone(&["stats", p(&tmp.path().join("missing"))]);
    assert_eq!(o.status.code(), Some(3), "no database there: not found");
    assert!(text(&o.stderr).contains("not a KeystoneDB database"));
    assert_eq!(
        kstone(&["create", db]).status.code(),
        Some(1),
        "create over an existing database"
    );
    assert_eq!(kstone(&["put", db]).status.code(), Some(2), "usage error");
    assert_eq!(kstone(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(
        kstone(&["stats", db, "--no-such-flag"]).status.code(),
        Some(2)
    );
}

#[test]
fn help_and_version() {
    assert!(ok(&["--help"]).contains("backup and recovery"));
    assert!(ok(&["--version"]).starts_with("kstone "));
    assert!(ok(&["put", "--help"]).contains("--typed"));
}

#[test]
fn chapter_form_kstone_cli_db_path_command_stats() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("prod.keystone");
    ok(&["create", p(&db)]);
    let bin = env!("CARGO_BIN_EXE_kstone-cli");
    let o = Command::new(bin)
        .args(["--db-path", p(&db), "--command", "stats"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("last lsn"));
    let o = Command::new(bin)
        .args([
            "--db-path",
            p(&tmp.path().join("nope")),
            "--command",
            "stats",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "no database there: not found");
    // Without the chapter's flags it is plain `kstone`.
    let o = Command::new(bin)
        .args(["stats", p(&db), "--json"])
        .output()
        .unwrap();
    assert!(o.status.success());
}

#[test]
fn bench_runs_small() {
    let tmp = tempfile::tempdir().unwrap();
    let out = ok(&[
        "bench",
        "--num",
        "2000",
        "--threads",
        "2",
        "--json",
        "--dir",
        p(tmp.path()),
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    for r in v.as_array().unwrap() {
        assert_eq!(r["writes"], 2000);
        assert!(r["write_ops_per_sec"].as_f64().unwrap() > 0.0);
    }
    for w in ["fillseq", "batch"] {
        let d = tmp.path().join(w);
        std::fs::create_dir(&d).unwrap();
        let out = ok(&[
            "bench",
            "--num",
            "3000",
            "--durability",
            "buffered",
            "--workload",
            w,
            "--json",
            "--dir",
            p(&d),
        ]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v[0]["writes"], 3000, "{w}");
        assert_eq!(v[0]["scanned"], 3000, "{w}");
    }
    // fillsync: sync mode only, whatever --durability lists.
    let d = tmp.path().join("fillsync");
    std::fs::create_dir(&d).unwrap();
    let out = ok(&[
        "bench",
        "--num",
        "300",
        "--durability",
        "buffered",
        "--workload",
        "fillsync",
        "--threads",
        "4",
        "--json",
        "--dir",
        p(&d),
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v[0]["durability"], "sync", "{v}");
    assert_eq!(v[0]["writes"], 300, "{v}");
    // Overwrite: every key twice; write amplification counts at least the WAL.
    let d = tmp.path().join("overwrite");
    std::fs::create_dir(&d).unwrap();
    let out = ok(&[
        "bench",
        "--num",
        "3000",
        "--durability",
        "buffered",
        "--workload",
        "overwrite",
        "--block-cache-mb",
        "0",
        "--json",
        "--dir",
        p(&d),
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["writes"], 6000);
    assert_eq!(v[0]["scanned"], 3000);
    assert!(v[0]["written_bytes"]["wal"].as_u64().unwrap() > 6000 * 116);
    assert!(v[0]["write_amplification"].as_f64().unwrap() >= 1.0);
    assert!(v[0]["peak_rss_kib"].as_u64().unwrap() > 0);
    // Refuses to reuse an existing directory.
    assert_eq!(
        kstone(&["bench", "--num", "10", "--dir", p(tmp.path())])
            .status
            .code(),
        Some(1)
    );
}
