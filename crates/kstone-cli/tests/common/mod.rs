//! Helpers shared by the CLI integration tests: run the built `kstone`.
#![allow(dead_code)]

pub mod s3;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kstone_backup::storage::Storage;

/// A `kstone` command, with the S3 test server's environment when one runs.
pub fn kstone_cmd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kstone"));
    c.envs(s3::env());
    c
}

/// Run `kstone` with `args`.
pub fn kstone(args: &[&str]) -> Output {
    kstone_cmd().args(args).output().unwrap()
}

/// Where a test's repository lives: the same tests run on both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Local,
    S3,
}

/// `fn name(backend: Backend)` becomes the tests `name::local` and `name::s3`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn local() {
                    super::$name($crate::common::Backend::Local)
                }
                #[test]
                fn s3() {
                    super::$name($crate::common::Backend::S3)
                }
            }
        )*
    };
}

/// A test repository and a way to look at (and damage) its objects.
pub struct Repo {
    pub loc: String,
    pub backend: Backend,
    local: Option<PathBuf>,
    bucket: String,
}

impl Repo {
    pub fn new(backend: Backend, tmp: &Path, name: &str) -> Repo {
        match backend {
            Backend::Local => {
                let d = tmp.join(name);
                Repo {
                    loc: d.to_str().unwrap().to_string(),
                    backend,
                    local: Some(d),
                    bucket: String::new(),
                }
            }
            Backend::S3 => {
                let (bucket, loc) = s3::new_location(name);
                Repo {
                    loc,
                    backend,
                    local: None,
                    bucket,
                }
            }
        }
    }

    pub fn loc(&self) -> &str {
        &self.loc
    }

    /// The directory of a local repository.
    pub fn dir(&self) -> Option<&Path> {
        self.local.as_deref()
    }

    pub fn storage(&self) -> Storage {
        match &self.local {
            Some(d) => Storage::open(d.to_str().unwrap(), true).unwrap(),
            None => {
                let prefix = self
                    .loc
                    .strip_prefix(&format!("s3://{}/", self.bucket))
                    .unwrap();
                let store = object_store::prefix::PrefixStore::new(
                    s3::store(&s3::server().endpoint, &self.bucket),
                    prefix,
                );
                Storage::from_store(std::sync::Arc::new(store), &self.loc).unwrap()
            }
        }
    }

    /// Keys of the objects under `prefix`, sorted.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.storage()
            .list(prefix)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    pub fn read(&self, key: &str) -> Vec<u8> {
        self.storage().get(key).unwrap().unwrap()
    }

    pub fn write(&self, key: &str, bytes: Vec<u8>) {
        self.storage().put(key, bytes).unwrap()
    }

    pub fn remove(&self, key: &str) {
        self.storage().delete(key).unwrap()
    }

    /// Names of the backups that have anything under `data/` — including,
    /// in a local directory, half-written staging files.
    pub fn data_dirs(&self) -> Vec<String> {
        let mut v: Vec<String> = match &self.local {
            Some(d) => std::fs::read_dir(d.join("data"))
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default(),
            None => self
                .keys("data")
                .iter()
                .filter_map(|k| k.split('/').nth(1).map(String::from))
                .collect(),
        };
        v.sort();
        v.dedup();
        v
    }
}

/// A progress line of long work off a terminal (`src/progress.rs`).
pub fn is_progress_line(l: &str) -> bool {
    [
        "backing up: ",
        "restoring: ",
        "restoring to a point in time: ",
        "verifying ",
    ]
    .iter()
    .any(|p| l.starts_with(p))
        && (l.contains(" so far") || l.contains(", eta ") || l.contains(": ended after "))
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

/// Prometheus's `promtool`: `KSTONE_PROMTOOL`, or on the PATH, or taken
/// once from Debian's `prometheus` package into `.tools/` (as the S3 tests
/// install their server on first use).
pub fn promtool() -> PathBuf {
    if let Some(p) = std::env::var_os("KSTONE_PROMTOOL") {
        return PathBuf::from(p);
    }
    let runs = |p: &Path| {
        Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if runs(Path::new("promtool")) {
        return PathBuf::from("promtool");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tools = root.join(".tools/prometheus");
    let bin = tools.join("usr/bin/promtool");
    if !runs(&bin) {
        let dl = tempfile::tempdir().unwrap();
        let ok = Command::new("apt-get")
            .args(["download", "prometheus"])
            .current_dir(dl.path())
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(ok, "promtool is needed: install Prometheus's promtool or set KSTONE_PROMTOOL (apt-get download prometheus failed)");
        let deb = std::fs::read_dir(dl.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .unwrap();
        std::fs::create_dir_all(&tools).unwrap();
        let x = Command::new("dpkg")
            .arg("-x")
            .arg(&deb)
            .arg(&tools)
            .status()
            .unwrap();
        assert!(
            x.success() && runs(&bin),
            "unpacking {} failed",
            deb.display()
        );
    }
    bin
}

/// Copy a directory tree (a fixture, a database) file by file.
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

/// Entries of `dir` whose names start with `prefix`, sorted.
pub fn entries_starting_with(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .collect();
    v.sort();
    v
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

/// A child process killed when dropped, so that a failing test does not
/// leave it running (and holding the test runner's output open).
pub struct Reaped(pub std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TCP port free on loopback (for an agent's `metrics_listen`).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The agent's metrics page on `port`, if it answers.
pub fn scrape(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// The value of the series `name` (with its labels, if any) in a metrics page.
pub fn series(body: &str, name: &str) -> Option<f64> {
    let head = format!("{name} ");
    body.lines()
        .find_map(|l| l.strip_prefix(head.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

/// Poll `cond` every 100 ms; fail the test after 30 s.
pub fn wait_for(what: &str, cond: &dyn Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
