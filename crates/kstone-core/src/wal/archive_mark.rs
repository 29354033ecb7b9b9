//! Whether WAL archiving is on for a database, and how far each repository
//! it is archived to has got: `archive/ARCHIVED` registers every repository
//! (by id) with the LSN up to which that repository holds every write. WAL
//! segments holding writes after the smallest of them are kept on disk even
//! after a flush has made them obsolete, so one database can be archived to
//! several repositories (3-2-1) without one archiver retiring WAL another
//! still needs.
//!
//! File: the shared framing (`framed.rs`) with magic `KSTNARCM`.
//! Version 2 body: JSON `{"repos": {"<repository id>": {"archived_lsn": N,
//! "started": bool, "safe_start": N, "location": "…"}}}`. Version 1 (one
//! mark for the whole database: `{"archived_lsn": N, "started", "safe_start"}`)
//! is read as a registration with an unknown repository id, which the first
//! repository to archive adopts.
//!
//! One archiver per (database, repository) at a time: [`ArchiverLock`].
//! Read-modify-write of the file happens under `archive/ARCHIVED.lock`, so
//! archivers of different repositories never lose each other's progress.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

pub const DIR: &str = "archive";
pub const FILE: &str = "archive/ARCHIVED";
const UPDATE_LOCK: &str = "archive/ARCHIVED.lock";
const MAGIC: &[u8; 8] = b"KSTNARCM";
const VERSION: u32 = 2;
/// The registration a version-1 mark becomes: no repository id was kept.
const LEGACY: &str = "";

/// How far one repository's archive has got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub archived_lsn: u64,
    /// False between registering and the archiver's first snapshot: every
    /// WAL segment is kept, but `archived_lsn` is not yet a starting point.
    #[serde(default = "yes")]
    pub started: bool,
    /// Set while not started: every write after this LSN is still on disk
    /// (the largest flushed LSN when the repository was registered).
    #[serde(default)]
    pub safe_start: u64,
    /// Where the repository was reached (for `status` and messages).
    #[serde(default)]
    pub location: String,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Marks {
    repos: BTreeMap<String, Registration>,
}

/// `None` when archiving is off; else the LSN up to which every registered
/// repository holds every write (WAL after it is kept).
pub fn read(db_dir: &Path) -> Result<Option<u64>> {
    Ok(load(db_dir)?.map(|m| {
        m.repos
            .values()
            .map(|r| if r.started { r.archived_lsn } else { 0 })
            .min()
            .unwrap_or(0)
    }))
}

/// The highest LSN any repository holds (0 if none): the database never
/// hands out an LSN at or below it again.
pub fn highest(db_dir: &Path) -> Result<u64> {
    Ok(registrations(db_dir)?
        .values()
        .filter(|r| r.started)
        .map(|r| r.archived_lsn)
        .max()
        .unwrap_or(0))
}

/// Every registered repository (id → registration); empty when archiving is off.
pub fn registrations(db_dir: &Path) -> Result<BTreeMap<String, Registration>> {
    Ok(load(db_dir)?.map(|m| m.repos).unwrap_or_default())
}

/// This repository's registration, adopting a version-1 mark (whose
/// repository was not recorded) if it is the only one.
pub fn registration(db_dir: &Path, repo: &str) -> Result<Option<Registration>> {
    let Some(m) = load(db_dir)? else {
        return Ok(None);
    };
    if let Some(r) = m.repos.get(repo) {
        return Ok(Some(r.clone()));
    }
    if m.repos.len() == 1 {
        if let Some(r) = m.repos.get(LEGACY) {
            let r = r.clone();
            update(db_dir, |m| {
                if let Some(r) = m.repos.remove(LEGACY) {
                    m.repos.insert(repo.to_string(), r);
                }
            })?;
            return Ok(Some(r));
        }
    }
    Ok(None)
}

/// Register a repository without a starting point yet: every WAL segment
/// is kept from now on. Returns the LSN after which every write is known to
/// be on disk, which its first archive object may start from.
pub fn enable(db_dir: &Path, repo: &str, location: &str) -> Result<u64> {
    // Segments retired before registering only held writes at or below
    // their stripe's flushed LSN, which the manifest (written before any
    // retire) bounds; while another repository is registered, less was
    // retired, but the flushed LSN is still a safe start.
    update(db_dir, |m| {
        m.repos.entry(repo.to_string()).or_insert(Registration {
            archived_lsn: 0,
            started: false,
            safe_start: 0,
            location: location.to_string(),
        });
    })?;
    let man = crate::manifest::Manifest::load(db_dir)?;
    let safe = man
        .stripes
        .values()
        .map(|s| s.flushed_lsn)
        .max()
        .unwrap_or(0);
    update(db_dir, |m| {
        if let Some(r) = m.repos.get_mut(repo) {
            if !r.started {
                r.safe_start = safe;
            }
        }
    })?;
    Ok(safe)
}

/// Record that `repo` holds every write up to `lsn`.
pub fn write(db_dir: &Path, repo: &str, lsn: u64) -> Result<()> {
    update(db_dir, |m| {
        let r = m.repos.entry(repo.to_string()).or_insert(Registration {
            archived_lsn: 0,
            started: true,
            safe_start: 0,
            location: String::new(),
        });
        r.archived_lsn = lsn;
        r.started = true;
        r.safe_start = 0;
    })
}

/// Stop keeping WAL for `repo` (its archive will have a gap if it is
/// archived to again). Returns whether it was registered. With no
/// repository left, archiving is off: obsolete segments go at the next flush.
pub fn unregister(db_dir: &Path, repo: &str) -> Result<bool> {
    let mut found = false;
    update(db_dir, |m| found = m.repos.remove(repo).is_some())?;
    Ok(found)
}

fn load(db_dir: &Path) -> Result<Option<Marks>> {
    let p = db_dir.join(FILE);
    let b = match std::fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).ctx(&p),
    };
    let (version, body) = crate::framed::decode(&b, MAGIC, &p)?;
    let bad = |e: serde_json::Error| Error::Corruption {
        path: p.clone(),
        offset: crate::framed::HEADER_LEN as u64,
        detail: e.to_string(),
    };
    match version {
        1 => {
            let r: Registration = serde_json::from_slice(body).map_err(bad)?;
            let mut repos = BTreeMap::new();
            repos.insert(LEGACY.to_string(), r);
            Ok(Some(Marks { repos }))
        }
        VERSION => Ok(Some(serde_json::from_slice(body).map_err(bad)?)),
        v => Err(Error::UnsupportedVersion {
            path: p,
            version: v,
        }),
    }
}

/// Read, change and store the marks under the update lock (archivers of
/// different repositories run in different processes). With no repository
/// left the file goes (archiving off) — under the same lock, so a
/// registration made meanwhile is never lost. (Its removal is not
/// directory-fsynced: a file that comes back after a crash only keeps WAL.)
fn update(db_dir: &Path, f: impl FnOnce(&mut Marks)) -> Result<()> {
    let d = db_dir.join(DIR);
    std::fs::create_dir_all(&d).ctx(&d)?;
    let _guard = lock_file(&db_dir.join(UPDATE_LOCK), true)?;
    let mut m = load(db_dir)?.unwrap_or_default();
    f(&mut m);
    if m.repos.is_empty() {
        let p = db_dir.join(FILE);
        return match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).ctx(&p),
            _ => Ok(()),
        };
    }
    let body = serde_json::to_vec(&m).unwrap_or_default();
    crate::fsio::write_atomic(
        &db_dir.join(FILE),
        &crate::framed::encode(MAGIC, VERSION, &body),
    )
}

fn lock_file(path: &Path, wait: bool) -> Result<Option<File>> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .ctx(path)?;
    if wait {
        f.lock().ctx(path)?;
        return Ok(Some(f));
    }
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e).ctx(path),
    }
}

/// Held by the one archiver of a (database, repository) pair: two archivers
/// of the same pair (the agent and a manual `wal-archive`, say) would race
/// on what the repository holds. Released on drop or when the process dies.
#[derive(Debug)]
pub struct ArchiverLock {
    _file: File,
}

impl ArchiverLock {
    /// `Ok(None)` when another archiver holds it.
    pub fn try_acquire(db_dir: &Path, repo: &str) -> Result<Option<ArchiverLock>> {
        if repo.is_empty() || !repo.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(Error::InvalidInput(format!(
                "{repo:?} is not a repository id"
            )));
        }
        let d = db_dir.join(DIR);
        std::fs::create_dir_all(&d).ctx(&d)?;
        let path = d.join(format!("{repo}.lock"));
        Ok(lock_file(&path, false)?.map(|f| ArchiverLock { _file: f }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        crate::Database::create(t.path().join("d"), crate::Options::default())
            .unwrap()
            .close()
            .unwrap();
        t
    }

    #[test]
    fn retention_follows_the_slowest_repository() {
        let t = db();
        let d = t.path().join("d");
        assert_eq!(read(&d).unwrap(), None);
        enable(&d, "a", "/ra").unwrap();
        enable(&d, "b", "/rb").unwrap();
        assert_eq!(read(&d).unwrap(), Some(0));
        write(&d, "a", 9).unwrap();
        assert_eq!(read(&d).unwrap(), Some(0), "b has not started");
        write(&d, "b", 4).unwrap();
        assert_eq!(read(&d).unwrap(), Some(4));
        assert!(unregister(&d, "b").unwrap());
        assert_eq!(read(&d).unwrap(), Some(9));
        assert!(unregister(&d, "a").unwrap());
        assert_eq!(read(&d).unwrap(), None, "no repository left: off");
    }

    #[test]
    fn a_version_1_mark_is_adopted_by_the_first_repository() {
        let t = db();
        let d = t.path().join("d");
        std::fs::create_dir_all(d.join(DIR)).unwrap();
        let v1 = br#"{"archived_lsn":7,"started":true,"safe_start":0}"#;
        crate::fsio::write_atomic(&d.join(FILE), &crate::framed::encode(MAGIC, 1, v1)).unwrap();
        assert_eq!(read(&d).unwrap(), Some(7));
        let r = registration(&d, "repo1").unwrap().unwrap();
        assert_eq!((r.archived_lsn, r.started), (7, true));
        assert!(registrations(&d).unwrap().contains_key("repo1"));
        assert_eq!(registration(&d, "repo2").unwrap(), None);
    }

    #[test]
    fn one_archiver_per_repository() {
        let t = db();
        let d = t.path().join("d");
        let a = ArchiverLock::try_acquire(&d, "r1").unwrap();
        assert!(a.is_some());
        assert!(ArchiverLock::try_acquire(&d, "r1").unwrap().is_none());
        assert!(ArchiverLock::try_acquire(&d, "r2").unwrap().is_some());
        drop(a);
        assert!(ArchiverLock::try_acquire(&d, "r1").unwrap().is_some());
        assert!(ArchiverLock::try_acquire(&d, "../x").is_err());
    }
}
