#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test
//! Keys as DynamoDB types them, driven through `kstone` as a migrating user
//! would: each finding of the conformance pass, then typed keys through
//! export/import, backup, restore and point-in-time restore.

mod common;

use common::{kstone, ok, p, Backend, Repo};

fn fails(args: &[&str], says: &str) {
    let o = kstone(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{args:?} succeeded");
    assert!(err.contains(says), "{args:?}: {err}");
    assert_eq!(
        err.trim().lines().count(),
        1 + 2 * usize::from(o.status.code() == Some(2)),
        "{args:?}: one error line: {err}"
    );
}

/// The sort keys of a plain query's output, in order.
fn sks(out: &str) -> Vec<String> {
    out.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["sk"].to_string()
        })
        .collect()
}

#[test]
fn number_sort_keys_order_and_filter_numerically() {
    let tmp = tempfile::tempdir().unwrap();
    for declared in [true, false] {
        let db = tmp.path().join(format!("s{declared}.keystone"));
        let db = p(&db);
        // Declared at create, or given per command with --sk-type.
        let (create, t): (Vec<&str>, Vec<&str>) = if declared {
            (vec!["create", db, "--sk-type", "N"], vec![])
        } else {
            (vec!["create", db], vec!["--sk-type", "N"])
        };
        ok(&create);
        for s in ["0", "1.5", "10", "2", "-10", "-2", "1e2", "-0.001"] {
            let mut a = vec!["put", db, "p", "--sk", s, "{}"];
            a.extend(&t);
            ok(&a);
        }
        let q = |extra: &[&str]| {
            let mut a = vec!["query", db, "p"];
            a.extend(&t);
            a.extend(extra);
            sks(&ok(&a))
        };
        assert_eq!(
            q(&[]),
            ["-10", "-2", "-0.001", "0", "1.5", "2", "10", "100"]
        );
        assert_eq!(
            q(&["--sk-gt=-3"]),
            ["-2", "-0.001", "0", "1.5", "2", "10", "100"]
        );
        assert_eq!(
            q(&["--sk-gt", "-3", "--reverse"]),
            ["100", "10", "2", "1.5", "0", "-0.001", "-2"]
        );
        assert_eq!(q(&["--sk-between", "2", "10"]), ["2", "10"]);
        assert_eq!(
            q(&["--sk-between", "-5", "5"]),
            ["-2", "-0.001", "0", "1.5", "2"]
        );
        assert_eq!(q(&["--sk-lt", "0"]), ["-10", "-2", "-0.001"]);
        assert_eq!(q(&["--sk-le", "-2"]), ["-10", "-2"]);
        assert_eq!(q(&["--sk-ge", "10"]), ["10", "100"]);
        assert_eq!(q(&["--sk-eq", "1.50"]), ["1.5"]);
        let mut bw = vec!["query", db, "p", "--sk-begins-with", "1"];
        bw.extend(&t);
        fails(&bw, "begins_with works on S and B sort keys, not N");
        // An import of N sort keys.
        let lines = tmp.path().join("nk.jsonl");
        std::fs::write(&lines, r#"{"item":{},"pk":{"S":"q"},"sk":{"N":"-10"}}"#).unwrap();
        ok(&["import", db, p(&lines)]);
        let out = ok(&["query", db, "q", "--typed"]);
        assert!(out.contains(r#""sk":{"N":"-10"}"#), "{out}");
    }
    // Where the schema declares N, an S key is refused.
    let db = tmp.path().join("strue.keystone");
    fails(&["put", p(&db), "p", "--sk", "x", "{}"], "invalid number");
    fails(
        &["put", p(&db), "p", "--sk", "x", "--sk-type", "S", "{}"],
        "the sort key is S, but this database's sort key type is N",
    );
}

#[test]
fn key_types_are_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("kt.keystone");
    let db = p(&db);
    ok(&["create", db]);
    ok(&["put", db, "AB", "--sk", "x", r#"{"from":"S"}"#]);
    let kb = tmp.path().join("kb.jsonl");
    std::fs::write(
        &kb,
        r#"{"item":{"from":{"S":"B"}},"pk":{"B":"QUI="},"sk":{"B":"eA=="}}"#,
    )
    .unwrap();
    ok(&["import", db, p(&kb)]);
    let out = ok(&["export", db]);
    assert_eq!(
        out.lines().count(),
        2,
        "S and B keys with equal bytes are two items: {out}"
    );
    assert!(out.contains(r#"{"item":{"from":{"S":"B"}},"pk":{"B":"QUI="},"sk":{"B":"eA=="}}"#));
    assert!(out.contains(r#"{"item":{"from":{"S":"S"}},"pk":{"S":"AB"},"sk":{"S":"x"}}"#));
    // B keys on the command line are base64, with their type.
    let got = ok(&[
        "get",
        db,
        "QUI=",
        "--pk-type",
        "B",
        "--sk",
        "eA==",
        "--sk-type",
        "B",
    ]);
    assert_eq!(got.trim(), r#"{"from":"B"}"#);
    // Partition-key types too, declared and enforced.
    let n = tmp.path().join("n.keystone");
    ok(&["create", p(&n), "--pk-type", "N", "--no-sk"]);
    ok(&["put", p(&n), "-7", "{}"]);
    ok(&["get", p(&n), "-7.0"]);
    fails(&["put", p(&n), "7", "--sk", "1", "{}"], "have no sort key");
    fails(
        &["put", p(&n), "x", "--pk-type", "S", "{}"],
        "partition key type is N",
    );
    let stats = ok(&["stats", p(&n)]);
    assert!(stats.contains("keys           pk N, no sk"), "{stats}");
}

#[test]
fn item_size_follows_dynamodbs_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("big.keystone");
    let db = p(&db);
    ok(&["create", db]);
    // 3,300 × 1E+125: 422,412 bytes of text, about 10 KB by DynamoDB's rule.
    let list = vec![r#"{"N":"1E+125"}"#; 3300].join(",");
    ok(&[
        "put",
        db,
        "k",
        "--typed",
        &format!(r#"{{"l":{{"L":[{list}]}}}}"#),
    ]);
    // At the boundary (an import: a single argument cannot be 400 KB):
    // pk "k" (1) + name "s" (1) + the string.
    let line = |n: usize| {
        format!(
            r#"{{"item":{{"s":{{"S":"{}"}}}},"pk":{{"S":"k"}}}}"#,
            "x".repeat(n)
        )
    };
    let f = tmp.path().join("at.jsonl");
    std::fs::write(&f, line(400 * 1024 - 2)).unwrap();
    ok(&["import", db, p(&f)]);
    std::fs::write(&f, line(400 * 1024 - 1)).unwrap();
    fails(
        &["import", db, p(&f)],
        "409601 bytes by DynamoDB's size rule",
    );
}

#[test]
fn validation_a_migrating_user_expects() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("v.keystone");
    let db = p(&db);
    ok(&["create", db]);
    for i in 0..3 {
        ok(&["put", db, "p", "--sk", &format!("s{i}"), "{}"]);
    }
    fails(&["put", db, "p", "--sk", "", "{}"], "the sort key is empty");
    for empty in [r#"{"S":""}"#, r#"{"B":""}"#] {
        let f = tmp.path().join("e.jsonl");
        std::fs::write(
            &f,
            format!(r#"{{"item":{{}},"pk":{{"S":"q"}},"sk":{empty}}}"#),
        )
        .unwrap();
        fails(
            &["import", db, p(&f)],
            "line 1: invalid input: the sort key is empty",
        );
    }
    fails(&["put", db, "p", r#"{"":1}"#], "an attribute name is empty");
    fails(
        &["scan", db, "--total-segments", "0"],
        "must be between 1 and 1000000",
    );
    fails(
        &["scan", db, "--total-segments", "1000001"],
        "must be between 1 and 1000000",
    );
    ok(&[
        "scan",
        db,
        "--total-segments",
        "1000000",
        "--segment",
        "999999",
    ]);
    fails(&["query", db, "p", "--limit", "0"], "must be at least 1");
    fails(&["scan", db, "--limit", "0"], "must be at least 1");
    // A page that ends exactly at the last item prints no continuation
    // (documented in --help).
    let o = kstone(&["query", db, "p", "--limit", "3"]);
    assert!(o.status.success());
    assert!(!String::from_utf8_lossy(&o.stderr).contains("more results"));
    let o = kstone(&["query", db, "p", "--limit", "2"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("more results"));
    let help = ok(&["query", "--help"]);
    assert!(help.contains("ends exactly at the last item"), "{help}");
    assert_eq!(nothing_written(db), 3, "refused commands wrote nothing");
}

fn nothing_written(db: &str) -> usize {
    ok(&["scan", db]).lines().count()
}

#[test]
fn plain_json_says_where_it_is_lossy() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("l.keystone");
    let db = p(&db);
    ok(&["create", db]);
    ok(&[
        "put",
        db,
        "k",
        "--typed",
        r#"{"b":{"B":"AAE="},"ss":{"SS":["a"]}}"#,
    ]);
    let o = kstone(&["get", db, "k"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr)
        .contains("use --typed for output that puts back unchanged"));
    let o = kstone(&["get", db, "k", "--typed"]);
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    ok(&["put", db, "plain", r#"{"n":1}"#]);
    let o = kstone(&["get", db, "plain"]);
    assert!(o.stderr.is_empty(), "no note when plain JSON is exact");
    for cmd in ["get", "put"] {
        let help = ok(&[cmd, "--help"]);
        assert!(
            help.contains("--typed") && help.contains("sets"),
            "{cmd}: {help}"
        );
    }
    assert!(ok(&["export", "--help"]).contains("lossless"));
}

fn typed_keys_survive_backup_restore_and_pitr(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("app.keystone");
    let repo = Repo::new(backend, tmp.path(), "repo");
    let dbs = p(&db);
    ok(&["create", dbs, "--pk-type", "S", "--sk-type", "N"]);
    for s in ["10", "-2", "1.5"] {
        ok(&["put", dbs, "p", "--sk", s, "{}"]);
    }
    ok(&["backup", "create", dbs, "--repo", repo.loc()]);
    ok(&["wal-archive", dbs, "--repo", repo.loc(), "--once"]);
    ok(&["put", dbs, "p", "--sk", "-100", "{}"]);
    ok(&["wal-archive", dbs, "--repo", repo.loc(), "--once"]);
    for (name, extra) in [("r1", vec![]), ("r2", vec!["--to-latest"])] {
        let target = tmp.path().join(name);
        let mut a = vec!["restore", "--repo", repo.loc(), "--target", p(&target)];
        a.extend(extra);
        ok(&a);
        let want: &[&str] = if name == "r1" {
            &["-2", "1.5", "10"]
        } else {
            &["-100", "-2", "1.5", "10"]
        };
        assert_eq!(sks(&ok(&["query", p(&target), "p"])), want, "{name}");
        assert!(ok(&["stats", p(&target)]).contains("keys           pk S, sk N"));
        // The restored database enforces the schema as the original did.
        fails(
            &["put", p(&target), "p", "--sk", "x", "--sk-type", "S", "{}"],
            "sort key type is N",
        );
    }
}

on_both_backends!(typed_keys_survive_backup_restore_and_pitr);

/// What an operator's review found: each is refused (or works) as DynamoDB
/// and the recovery contract expect.
#[test]
fn review_findings() {
    let tmp = tempfile::tempdir().unwrap();
    let u = tmp.path().join("u.keystone");
    let u = p(&u);
    ok(&["create", u]);
    ok(&["put", u, "p", "--sk", "a", "{}"]);
    ok(&["put", u, "p", "--sk", "10", "--sk-type", "N", "{}"]);
    ok(&["put", u, "p", "--sk", "AA==", "--sk-type", "B", "{}"]);
    // An empty condition value is refused, never a match across types.
    fails(
        &["query", u, "p", "--sk-begins-with", ""],
        "condition's value is empty",
    );
    fails(
        &["query", u, "p", "--sk-ge", ""],
        "condition's value is empty",
    );
    assert_eq!(
        sks(&ok(&["query", u, "p", "--sk-begins-with", "a"])),
        [r#""a""#]
    );
    // Continuation keys are checked like any key.
    let t = tmp.path().join("t.keystone");
    let t = p(&t);
    ok(&["create", t, "--pk-type", "S", "--sk-type", "N"]);
    ok(&["put", t, "p", "--sk", "1", "{}"]);
    fails(
        &[
            "scan",
            t,
            "--start-after",
            r#"{"pk":{"N":"1"},"sk":{"N":"1"}}"#,
        ],
        "partition key type is S",
    );
    fails(
        &[
            "query",
            t,
            "p",
            "--start-after",
            r#"{"pk":{"S":"p"},"sk":{"S":"zzz"}}"#,
        ],
        "sort key type is N",
    );
    fails(
        &[
            "query",
            t,
            "p",
            "--start-after",
            r#"{"pk":{"S":"p"},"sk":{"N":"1"},"zz":1}"#,
        ],
        "unexpected field",
    );
    fails(
        &["query", t, "5", "--pk-type", "N"],
        "partition key type is S",
    );
    let n = tmp.path().join("n.keystone");
    ok(&["create", p(&n), "--no-sk"]);
    fails(&["query", p(&n), "5", "--sk-eq", "1"], "have no sort key");
    let o = kstone(&["put", p(&n), "5", "--sk-type", "S", "{}"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "--sk-type without --sk is a usage error"
    );
    // B and S key lengths: one rule, one wording.
    let long_b = "A".repeat(2732); // base64 of 2049 bytes
    fails(
        &["put", u, &long_b, "--pk-type", "B", "{}"],
        "partition key is 2049 bytes; the limit is 2048",
    );
    fails(
        &["put", u, &"x".repeat(2049), "{}"],
        "partition key is 2049 bytes; the limit is 2048",
    );
    // Exponents with leading zeros are numbers.
    ok(&["put", t, "p", "--sk=1e0000000000000000000000002", "{}"]);
    assert_eq!(sks(&ok(&["query", t, "p", "--sk-eq", "100"])), ["100"]);
}

/// Items a format-1 database accepted but DynamoDB refuses (an empty sort
/// key) can be read and deleted, and a move into a typed database imports
/// everything else and lists what it skipped.
#[test]
fn a_format_1_database_moves_into_a_typed_one() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../kstone-core/tests/fixtures/format1.keystone");
    let old = tmp.path().join("old.keystone");
    common::copy_dir(&fixture, &old);
    for d in ["pins", "commit"] {
        std::fs::create_dir_all(old.join(d)).unwrap();
    }
    let old = p(&old);
    assert_eq!(
        ok(&["get", old, "user#3", "--sk", ""]).trim(),
        r#"{"empty":true}"#
    );
    let dump = tmp.path().join("old.jsonl");
    ok(&["export", old, "-o", p(&dump)]);
    let new = tmp.path().join("new.keystone");
    let new = p(&new);
    ok(&["create", new]);
    fails(
        &["import", new, p(&dump)],
        "nothing imported (--skip-invalid imports the other lines)",
    );
    assert_eq!(ok(&["scan", new]).lines().count(), 0);
    let o = kstone(&["import", new, p(&dump), "--skip-invalid"]);
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("the sort key is empty") && err.contains("; skipped"),
        "{err}"
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("imported 5 items, skipped 1 invalid lines")
    );
    let b = ok(&[
        "get",
        new,
        "/wAB",
        "--pk-type",
        "B",
        "--sk",
        "gA==",
        "--sk-type",
        "B",
    ]);
    assert_eq!(b.trim(), r#"{"from":"binary pk"}"#);
    ok(&["delete", old, "user#3", "--sk", ""]);
    assert_eq!(ok(&["scan", old]).lines().count(), 5);
}
