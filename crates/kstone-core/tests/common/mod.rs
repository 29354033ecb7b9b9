//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;

/// Copy a directory tree (a database copied while it is open is what a
/// crash leaves behind).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// This test binary run as a child process playing `role` (a `#[test]`
/// that does its part only when one of `env` is set), stdout piped.
pub fn child(role: &str, env: &[(&str, &std::ffi::OsStr)]) -> std::process::Command {
    let mut c = std::process::Command::new(std::env::current_exe().unwrap());
    c.args([role, "--exact", "--nocapture", "--test-threads=1"])
        .stdout(std::process::Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// Read the child's stdout up to its `READY` line; returns that line and
/// the rest of the output.
pub fn wait_ready(
    child: &mut std::process::Child,
) -> (String, std::io::BufReader<std::process::ChildStdout>) {
    use std::io::BufRead;
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("READY") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "child ended early");
    }
    (line, out)
}
