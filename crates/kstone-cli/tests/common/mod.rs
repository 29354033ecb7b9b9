//! Helpers shared by the CLI integration tests: run the built `kstone`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Run `kstone` with `args`.
pub fn kstone(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kstone"))
        .args(args)
        .output()
        .unwrap()
}

/// Run `kstone`, require success, return stdout.
pub fn ok(args: &[&str]) -> String {
    let o = kstone(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Run `kstone`, require success, parse stdout as JSON.
pub fn json(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(args)).unwrap()
}

pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Every file below `d`.
pub fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(d) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}
