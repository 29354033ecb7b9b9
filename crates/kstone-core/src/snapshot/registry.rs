//! Which files are pinned, and the deletions deferred until they are not.
//!
//! Flush and compaction hand obsolete files to [`PinRegistry::retire`]; a file
//! that a live pin holds is deleted only when the last pin holding it goes.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};
use crate::fsio::sync_dir;
use crate::mutex::lock;

/// The open database's registry behind its one lock, with the directory
/// its paths are relative to: what flushes, compactions, pins and the
/// snapshot server share.
pub(crate) struct Pins {
    dir: PathBuf,
    reg: std::sync::Mutex<PinRegistry>,
}

impl Pins {
    pub(crate) fn new(dir: PathBuf, reg: PinRegistry) -> Pins {
        Pins {
            dir,
            reg: std::sync::Mutex::new(reg),
        }
    }

    /// The database directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Pin `files`; returns the pin's id.
    pub(crate) fn add(&self, files: HashSet<PathBuf>) -> u64 {
        lock(&self.reg).add(files)
    }

    /// Release pin `id`, deleting the obsolete files only it held.
    pub(crate) fn release(&self, id: u64) -> Result<()> {
        lock(&self.reg).release(&self.dir, id)
    }

    /// Delete obsolete files now, or once no pin, hold or archiver needs them.
    pub(crate) fn retire(&self, files: Vec<(PathBuf, Option<u64>)>) -> Result<()> {
        lock(&self.reg).retire(&self.dir, files)
    }

    /// Whether the on-disk hold `name` is known (answered by a previous owner).
    pub(crate) fn holds(&self, name: &str) -> bool {
        lock(&self.reg).holds(name)
    }

    /// Keep `files` for the on-disk hold `name` until it goes.
    pub(crate) fn add_hold(&self, name: String, files: HashSet<PathBuf>) {
        lock(&self.reg).add_hold(name, files)
    }

    /// Let go of what nobody needs any more: WAL segments the archivers
    /// have, files whose on-disk holder is done. Failures are retried on the
    /// next call (a file left behind is removed at the latest by the next open).
    pub(crate) fn tidy(&self) {
        let mut reg = lock(&self.reg);
        let _ = reg.release_archived(&self.dir);
        let _ = reg.refresh_holds(&self.dir);
    }
}

#[derive(Debug, Default)]
pub struct PinRegistry {
    next_id: u64,
    /// Pin id → file paths relative to the database directory.
    pinned: HashMap<u64, HashSet<PathBuf>>,
    /// Obsolete files kept alive by pins (with a WAL segment's largest LSN).
    deferred: HashMap<PathBuf, Option<u64>>,
    /// Obsolete WAL segments kept until archived: path → largest LSN inside.
    unarchived: HashMap<PathBuf, u64>,
    /// Files other processes hold on disk ([`super::hold`]): hold name → files.
    holds: HashMap<String, HashSet<PathBuf>>,
    /// A live hold could not be read: keep every obsolete file until it goes.
    hold_everything: bool,
}

fn remove(dir: &Path, rel: &Path) -> Result<()> {
    let p = dir.join(rel);
    match std::fs::remove_file(&p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).ctx(&p),
        _ => Ok(()),
    }
}

impl PinRegistry {
    pub fn add(&mut self, files: HashSet<PathBuf>) -> u64 {
        self.next_id += 1;
        self.pinned.insert(self.next_id, files);
        self.next_id
    }

    pub(crate) fn is_pinned(&self, rel: &Path) -> bool {
        self.hold_everything
            || self.pinned.values().any(|s| s.contains(rel))
            || self.holds.values().any(|s| s.contains(rel))
    }

    /// Honour the on-disk holds found at open.
    pub(crate) fn set_holds(&mut self, live: super::hold::LiveHolds) {
        self.holds = live.files;
        self.hold_everything = live.unreadable;
    }

    /// Hold `files` under `name` (the answer to a request this owner pinned,
    /// kept through its close for a requester that may still read them).
    pub(crate) fn add_hold(&mut self, name: String, files: HashSet<PathBuf>) {
        self.holds.insert(name, files);
    }

    /// Whether `name` is a hold (on disk, or a request answered before open).
    pub(crate) fn holds(&self, name: &str) -> bool {
        self.holds.contains_key(name)
    }

    /// Keep an obsolete file that a hold needs until it is released.
    pub(crate) fn defer(&mut self, rel: PathBuf, max_lsn: Option<u64>) {
        self.deferred.insert(rel, max_lsn);
    }

    /// Forget the holds whose file went or whose process died, and delete
    /// the files nobody keeps any more. No new hold can appear while the
    /// database is open (a hold is written under `LOCK`).
    pub fn refresh_holds(&mut self, dir: &Path) -> Result<()> {
        if self.holds.is_empty() && !self.hold_everything {
            return Ok(());
        }
        let live = super::hold::live(dir);
        let before = (self.holds.len(), self.hold_everything);
        self.holds.retain(|name, _| live.files.contains_key(name));
        self.hold_everything &= live.unreadable;
        if (self.holds.len(), self.hold_everything) == before {
            return Ok(());
        }
        self.release_unpinned(dir)
    }

    /// Delete obsolete files now, or later if a pin holds them or (for WAL
    /// segments, given with their largest LSN) archiving still needs them.
    /// The manifest that stopped referencing them must already be durable.
    pub fn retire(&mut self, dir: &Path, files: Vec<(PathBuf, Option<u64>)>) -> Result<()> {
        let archived = if files.iter().any(|(_, l)| l.is_some()) {
            crate::wal::archive_mark::read(dir)?
        } else {
            None
        };
        let mut dirs = HashSet::new();
        for (rel, max_lsn) in files {
            if let (Some(max), Some(a)) = (max_lsn, archived) {
                if max > a {
                    self.unarchived.insert(rel, max);
                    continue;
                }
            }
            if self.is_pinned(&rel) {
                self.deferred.insert(rel, max_lsn);
            } else {
                remove(dir, &rel)?;
                dirs.insert(crate::fsio::parent(&dir.join(&rel)).to_path_buf());
            }
        }
        dirs.iter().try_for_each(|d| sync_dir(d))
    }

    /// Release a pin and delete the deferred files nobody holds any more.
    pub fn release(&mut self, dir: &Path, id: u64) -> Result<()> {
        self.pinned.remove(&id);
        self.release_unpinned(dir)
    }

    fn release_unpinned(&mut self, dir: &Path) -> Result<()> {
        let free: Vec<PathBuf> = self
            .deferred
            .keys()
            .filter(|p| !self.is_pinned(p))
            .cloned()
            .collect();
        let free = free
            .into_iter()
            .map(|p| {
                let max = self.deferred.remove(&p).flatten();
                (p, max)
            })
            .collect();
        self.retire(dir, free)
    }

    /// Keep an obsolete segment found at open until it is archived.
    pub fn keep_unarchived(&mut self, rel: PathBuf, max_lsn: u64) {
        self.unarchived.insert(rel, max_lsn);
    }

    /// Delete kept segments that the archive now covers (or all of them if
    /// archiving was turned off).
    pub fn release_archived(&mut self, dir: &Path) -> Result<()> {
        if self.unarchived.is_empty() {
            return Ok(());
        }
        let archived = crate::wal::archive_mark::read(dir)?;
        let done: Vec<PathBuf> = self
            .unarchived
            .iter()
            .filter(|(_, &max)| archived.is_none_or(|a| max <= a))
            .map(|(p, _)| p.clone())
            .collect();
        for p in &done {
            self.unarchived.remove(p);
        }
        self.retire(dir, done.into_iter().map(|p| (p, None)).collect())
    }

    /// Segments kept only for the archive.
    pub fn unarchived(&self) -> usize {
        self.unarchived.len()
    }

    pub fn active(&self) -> usize {
        self.pinned.len() + self.holds.len()
    }
}
