//! The version set: the current `MANIFEST` and the file-id allocator, and
//! the one place a new version of the database is committed.
//!
//! Every change of the live files (a flush, a compaction) goes through
//! [`VersionSet::commit`]: copy the current manifest, raise its
//! `next_file_id` to the allocator's (so a reopen never reuses an id already
//! handed out), apply the edit, store it atomically, then make it current.
//! The store is the commit point; a failed store leaves the current version
//! as it was.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::error::Result;
use crate::manifest::Manifest;
use crate::model::key_schema::KeySchema;
use crate::mutex::lock;

pub(crate) struct VersionSet {
    dir: PathBuf,
    current: Mutex<Manifest>,
    next_file_id: AtomicU64,
    /// Fixed at creation: read without the lock.
    key_schema: KeySchema,
}

/// Who a database is: its id, its history and where it was restored from.
pub(crate) struct Identity {
    pub db_id: String,
    pub history: String,
    pub origin: Option<crate::manifest::Origin>,
}

impl VersionSet {
    pub(crate) fn new(dir: PathBuf, manifest: Manifest, next_file_id: u64) -> VersionSet {
        VersionSet {
            dir,
            key_schema: manifest.key_schema,
            current: Mutex::new(manifest),
            next_file_id: AtomicU64::new(next_file_id),
        }
    }

    /// The database directory the manifest lives in.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn key_schema(&self) -> &KeySchema {
        &self.key_schema
    }

    /// A fresh file id (SSTs, WAL segments, commit logs share one sequence).
    pub(crate) fn new_file_id(&self) -> u64 {
        self.next_file_id.fetch_add(1, Ordering::SeqCst)
    }

    /// The current manifest, with `next_file_id` covering every id handed
    /// out so far: what a snapshot must record.
    pub(crate) fn current(&self) -> Manifest {
        let mut m = lock(&self.current).clone();
        m.next_file_id = m.next_file_id.max(self.next_file_id.load(Ordering::SeqCst));
        m
    }

    pub(crate) fn identity(&self) -> Identity {
        let m = lock(&self.current);
        Identity {
            db_id: m.db_id.clone(),
            history: m.history.clone(),
            origin: m.origin.clone(),
        }
    }

    /// Commit a new version: `edit` changes a copy of the current manifest
    /// (whose `next_file_id` already covers every id handed out), which is
    /// stored durably and then made current. If `edit` or the store fails,
    /// nothing changes.
    pub(crate) fn commit(&self, edit: impl FnOnce(&mut Manifest) -> Result<()>) -> Result<()> {
        let mut m = lock(&self.current);
        let mut next = m.clone();
        next.next_file_id = next
            .next_file_id
            .max(self.next_file_id.load(Ordering::SeqCst));
        edit(&mut next)?;
        next.store(&self.dir)?;
        *m = next;
        Ok(())
    }
}
