#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test
//! `kstone demo` end to end with a small dataset.

use std::process::Command;

#[test]
fn demo_runs_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let o = Command::new(env!("CARGO_BIN_EXE_kstone"))
        .args(["demo", "--dir", dir.to_str().unwrap(), "--items", "3000"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("contents are identical to the database before the accident"),
        "{out}"
    );
    assert!(out.contains("customer#000001 has 20 items again"), "{out}");
    for d in ["shop.keystone", "restored.keystone", "backups"] {
        assert!(dir.join(d).exists(), "{d} left for the user");
    }
    // The printed commands work.
    let cmd = out
        .lines()
        .find(|l| l.contains("--to-name before-accident"))
        .unwrap()
        .trim()
        .strip_prefix("kstone ")
        .unwrap()
        .to_string();
    let args: Vec<&str> = cmd.split_whitespace().collect();
    let o = Command::new(env!("CARGO_BIN_EXE_kstone"))
        .args(&args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A second run refuses to overwrite the first.
    let o = Command::new(env!("CARGO_BIN_EXE_kstone"))
        .args(["demo", "--dir", dir.to_str().unwrap(), "--items", "3000"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
}
