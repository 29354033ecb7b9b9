#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test
//! CLI tests for query, scan, export and import.

mod common;
use common::{kstone, ok, p};

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

fn sks(out: &str) -> Vec<String> {
    out.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["sk"].as_str().unwrap_or("<none>").to_string()
        })
        .collect()
}

fn sample(dir: &Path) -> String {
    let db = dir.join("q.keystone");
    ok(&["create", p(&db)]);
    for sk in ["2024-01-05", "2024-02-10", "2024-02-11", "2025-01-01"] {
        ok(&[
            "put",
            p(&db),
            "user#1",
            "--sk",
            sk,
            &format!(r#"{{"day":"{sk}"}}"#),
        ]);
    }
    ok(&["put", p(&db), "user#1", r#"{"profile":true}"#]);
    ok(&["put", p(&db), "user#2", "--sk", "2024-01-01", r#"{"x":1}"#]);
    p(&db).to_string()
}

#[test]
fn query_conditions_order_and_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let db = sample(tmp.path());
    let db = db.as_str();
    assert_eq!(
        sks(&ok(&["query", db, "user#1"])),
        [
            "<none>",
            "2024-01-05",
            "2024-02-10",
            "2024-02-11",
            "2025-01-01"
        ]
    );
    assert_eq!(
        sks(&ok(&["query", db, "user#1", "--sk-begins-with", "2024-02"])),
        ["2024-02-10", "2024-02-11"]
    );
    assert_eq!(
        sks(&ok(&["query", db, "user#1", "--sk-lt", "2024-02-10"])),
        ["2024-01-05"]
    );
    assert_eq!(
        sks(&ok(&["query", db, "user#1", "--sk-le", "2024-02-10"])),
        ["2024-01-05", "2024-02-10"]
    );
    assert_eq!(
        sks(&ok(&["query", db, "user#1", "--sk-gt", "2024-02-11"])),
        ["2025-01-01"]
    );
    assert_eq!(
        sks(&ok(&["query", db, "user#1", "--sk-ge", "2024-02-11"])),
        ["2024-02-11", "2025-01-01"]
    );
    assert_eq!(
        sks(&ok(&["query", db, "user#1", "--sk-eq", "2024-02-11"])),
        ["2024-02-11"]
    );
    assert_eq!(
        sks(&ok(&[
            "query",
            db,
            "user#1",
            "--sk-between",
            "2024-01-06",
            "2024-12-31",
            "--reverse"
        ])),
        ["2024-02-11", "2024-02-10"]
    );
    // --limit with a continuation key on stderr.
    let o = kstone(&["query", db, "user#1", "--sk-ge", "2024", "--limit", "2"]);
    assert!(o.status.success());
    assert_eq!(
        sks(&String::from_utf8_lossy(&o.stdout)),
        ["2024-01-05", "2024-02-10"]
    );
    let err = String::from_utf8_lossy(&o.stderr);
    let start = err.split('\'').nth(1).expect("continuation key on stderr");
    let rest = ok(&[
        "query",
        db,
        "user#1",
        "--sk-ge",
        "2024",
        "--start-after",
        start,
    ]);
    assert_eq!(sks(&rest), ["2024-02-11", "2025-01-01"]);
    // Two conditions at once is a usage error.
    assert_eq!(
        kstone(&["query", db, "user#1", "--sk-lt", "a", "--sk-gt", "b"])
            .status
            .code(),
        Some(2)
    );
    // Plain output by default; typed on request.
    let line = ok(&["query", db, "user#2"]);
    assert_eq!(
        line.trim(),
        r#"{"item":{"x":1},"pk":"user#2","sk":"2024-01-01"}"#
    );
    let line = ok(&["query", db, "user#2", "--typed"]);
    assert_eq!(
        line.trim(),
        r#"{"item":{"x":{"N":"1"}},"pk":{"S":"user#2"},"sk":{"S":"2024-01-01"}}"#
    );
}

#[test]
fn scan_segments_partition_the_table() {
    let tmp = tempfile::tempdir().unwrap();
    let db = sample(tmp.path());
    let all = ok(&["scan", &db]);
    assert_eq!(all.lines().count(), 6);
    let mut union: Vec<String> = Vec::new();
    for seg in 0..3 {
        union.extend(
            ok(&[
                "scan",
                &db,
                "--segment",
                &seg.to_string(),
                "--total-segments",
                "3",
            ])
            .lines()
            .map(String::from),
        );
    }
    let mut want: Vec<String> = all.lines().map(String::from).collect();
    union.sort();
    want.sort();
    assert_eq!(union, want);
    assert_eq!(
        kstone(&["scan", &db, "--segment", "3", "--total-segments", "3"])
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn export_import_round_trip_is_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let db = sample(tmp.path());
    // Add every value type and a binary key through import.
    let extra = tmp.path().join("extra.jsonl");
    std::fs::write(
        &extra,
        concat!(
            r#"{"pk":{"B":"/wAB"},"sk":{"B":"gA=="},"item":{"b":{"B":"AAE="},"bs":{"BS":["AA=="]},"l":{"L":[{"NULL":true},{"BOOL":false}]},"m":{"M":{"n":{"N":"-1.5e3"}}},"ns":{"NS":["1","2"]},"ss":{"SS":["x"]}}}"#,
            "\n",
            r#"{"pk":{"S":"num-sk"},"sk":{"N":"-2.50"},"item":{}}"#,
            "\n"
        ),
    )
    .unwrap();
    assert!(ok(&["import", &db, p(&extra)]).contains("imported 2 items"));
    let first = tmp.path().join("first.jsonl");
    ok(&["export", &db, "-o", p(&first)]);
    let db2 = tmp.path().join("copy.keystone");
    ok(&["create", p(&db2)]);
    // Import from stdin.
    let mut child = Command::new(env!("CARGO_BIN_EXE_kstone"))
        .args(["import", p(&db2), "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(&first).unwrap())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("imported 8 items"));
    let second = ok(&["export", p(&db2)]);
    assert_eq!(std::fs::read_to_string(&first).unwrap(), second);
    assert_eq!(second.lines().count(), 8);
    assert!(second.contains(r#""N":"-1500""#));
    assert!(second.contains(r#""pk":{"S":"num-sk"},"sk":{"N":"-2.5"}"#));
}

#[test]
fn malformed_import_line_names_the_line_and_imports_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("i.keystone");
    ok(&["create", p(&db)]);
    let f = tmp.path().join("bad.jsonl");
    std::fs::write(
        &f,
        concat!(
            r#"{"pk":{"S":"a"},"item":{"x":{"N":"1"}}}"#,
            "\n",
            r#"{"pk":{"S":"b"},"item":{"x":{"N":"1"}}}"#,
            "\n",
            r#"{"pk":{"S":"c"},"item":{"x":{"N":"one"}}}"#,
            "\n"
        ),
    )
    .unwrap();
    let o = kstone(&["import", p(&db), p(&f)]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("line 3") && err.contains("nothing imported"),
        "{err}"
    );
    assert_eq!(ok(&["scan", p(&db)]), "");
}

#[test]
fn compact_drops_deleted_items() {
    let tmp = tempfile::tempdir().unwrap();
    let db = sample(tmp.path());
    ok(&["flush", &db]);
    ok(&["delete", &db, "user#2", "--sk", "2024-01-01"]);
    let out = ok(&["compact", &db]);
    assert!(out.contains("compacted"), "{out}");
    assert_eq!(ok(&["scan", &db]).lines().count(), 5);
    let stats: serde_json::Value = serde_json::from_str(&ok(&["stats", &db, "--json"])).unwrap();
    assert_eq!(stats["approximate_items"], 5);
}
