//! On-disk holds: how a process pins a snapshot of a database nobody has
//! open without keeping its `LOCK`. Under the lock it reads the snapshot
//! ([`super::closed`]), writes `pins/<name>.hold` naming the snapshot's
//! files, and lets the lock go; an application that opens the database
//! later keeps every held file (deferring its deletion, as for an in-process
//! pin) until the hold file goes or its process dies.
//!
//! Holds only appear while `LOCK` is held, so an owner reads them once at
//! open and afterwards only watches them go.
//!
//! Format (version 1): the shared frame ([`crate::framed`]) with magic
//! `KSTNHOLD` around the JSON `{"pid", "start", "files"}`, `start` being the
//! process start time from `/proc/<pid>/stat` (so a reused pid is not
//! mistaken for the holder).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Snapshot;
use crate::error::{IoContext, Result};

const MAGIC: &[u8; 8] = b"KSTNHOLD";
const VERSION: u32 = 1;
const SUFFIX: &str = ".hold";

#[derive(Serialize, Deserialize)]
struct Body {
    pid: u32,
    start: u64,
    files: Vec<String>,
}

/// The start time (clock ticks since boot) of process `pid`, if it runs.
pub(crate) fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count
    // fields after its closing parenthesis; the start time is field 22.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// A snapshot of a closed database held on disk; dropping it releases the
/// files (the owner, if any, deletes those it no longer needs).
pub struct Hold {
    /// The hold file; `None` when it could not be written and `lock` is kept.
    path: Option<PathBuf>,
    /// `LOCK`, kept for as long as the hold only if no hold file could be
    /// written (`pins/` not writable): the command still works, holding
    /// the lock as it did before holds existed.
    _lock: Option<crate::lock::DbLock>,
    db_dir: PathBuf,
    snapshot: Snapshot,
}

impl Hold {
    /// Hold `snapshot` of the database at `db_dir`, whose `LOCK` the caller
    /// gives: released once the hold file is written, kept if it cannot be.
    pub(crate) fn new(db_dir: &Path, snapshot: Snapshot, lock: crate::lock::DbLock) -> Hold {
        let (path, lock) = match Hold::write(db_dir, &snapshot) {
            Ok(p) => (Some(p), None),
            Err(_) => (None, Some(lock)),
        };
        Hold {
            path,
            _lock: lock,
            db_dir: db_dir.to_path_buf(),
            snapshot,
        }
    }

    /// Whether `LOCK` is kept instead of a hold file.
    pub fn keeps_lock(&self) -> bool {
        self.path.is_none()
    }

    fn write(db_dir: &Path, snapshot: &Snapshot) -> Result<PathBuf> {
        let dir = db_dir.join(super::remote::DIR);
        std::fs::create_dir_all(&dir).ctx(&dir)?;
        let pid = std::process::id();
        let body = serde_json::to_vec(&Body {
            pid,
            start: process_start(pid).unwrap_or(0),
            files: snapshot.files.iter().map(|f| f.name.clone()).collect(),
        })
        .map_err(|e| crate::error::Error::InvalidInput(e.to_string()))?;
        let name = format!("{pid}-{}{SUFFIX}", crate::fsio::random_hex(8)?);
        let path = dir.join(name);
        crate::fsio::write_atomic(&path, &crate::framed::encode(MAGIC, VERSION, &body))?;
        Ok(path)
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The database directory the snapshot's file names are relative to.
    pub fn dir(&self) -> &Path {
        &self.db_dir
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        // A hold file left behind (a failed delete) names a dead process
        // once we exit, and the owner then removes it.
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The holds of live processes in a database's `pins/` directory.
#[derive(Debug, Default)]
pub(crate) struct LiveHolds {
    /// Hold name → the files it keeps (relative to the database directory).
    pub files: HashMap<String, HashSet<PathBuf>>,
    /// A live process's hold file cannot be read: keep every file.
    pub unreadable: bool,
}

/// Read the live holds — hold files, and pin requests a previous owner
/// answered ([`super::remote::answered`]); remove those whose process has
/// exited.
pub(crate) fn live(db_dir: &Path) -> LiveHolds {
    let mut out = LiveHolds::default();
    super::remote::answered(db_dir, &mut out);
    let dir = db_dir.join(super::remote::DIR);
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(SUFFIX) else {
            continue;
        };
        let Ok(bytes) = std::fs::read(e.path()) else {
            continue; // removed meanwhile
        };
        let body = crate::framed::decode(&bytes, MAGIC, &e.path())
            .ok()
            .filter(|(v, _)| *v == VERSION)
            .and_then(|(_, b)| serde_json::from_slice::<Body>(b).ok());
        match body {
            Some(b) if process_start(b.pid).is_some_and(|s| b.start == 0 || s == b.start) => {
                out.files.insert(
                    stem.to_string(),
                    b.files.into_iter().map(PathBuf::from).collect(),
                );
            }
            Some(_) => {
                let _ = std::fs::remove_file(e.path());
            }
            None => {
                // Damaged: trust the pid in its name while that process runs.
                let pid = stem.split('-').next().and_then(|p| p.parse::<u32>().ok());
                if pid.and_then(process_start).is_some() {
                    out.unreadable = true;
                } else {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_start_time() {
        assert!(process_start(std::process::id()).is_some());
        assert!(process_start(u32::MAX).is_none());
    }

    #[test]
    fn holds_of_dead_processes_are_removed_and_damaged_ones_keep_everything() {
        let d = tempfile::tempdir().unwrap();
        let pins = d.path().join(super::super::remote::DIR);
        std::fs::create_dir_all(&pins).unwrap();
        let body = |pid: u32| {
            crate::framed::encode(
                MAGIC,
                VERSION,
                &serde_json::to_vec(&Body {
                    pid,
                    start: process_start(pid).unwrap_or(1),
                    files: vec!["sst/000-000000000001.sst".into()],
                })
                .unwrap(),
            )
        };
        let me = std::process::id();
        std::fs::write(pins.join(format!("{me}-aa.hold")), body(me)).unwrap();
        std::fs::write(pins.join("4294967295-bb.hold"), body(u32::MAX)).unwrap();
        let found = live(d.path());
        assert_eq!(found.files.len(), 1);
        assert!(!found.unreadable);
        assert!(!pins.join("4294967295-bb.hold").exists());
        let mut damaged = body(me);
        let n = damaged.len();
        damaged[n - 2] ^= 1;
        std::fs::write(pins.join(format!("{me}-aa.hold")), damaged).unwrap();
        assert!(live(d.path()).unreadable);
        for cut in [0, 5, 20, n - 1] {
            std::fs::write(pins.join(format!("{me}-aa.hold")), &body(me)[..cut]).unwrap();
            let found = live(d.path());
            assert!(found.unreadable && found.files.is_empty(), "cut at {cut}");
        }
        // A damaged hold of a process that is gone is removed.
        std::fs::write(pins.join("4294967295-cc.hold"), b"junk").unwrap();
        std::fs::remove_file(pins.join(format!("{me}-aa.hold"))).unwrap();
        let found = live(d.path());
        assert!(!found.unreadable);
        assert!(!pins.join("4294967295-cc.hold").exists());
    }
}
