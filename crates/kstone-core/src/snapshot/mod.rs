//! Snapshots (pins): a consistent view of the database — the manifest's live
//! SSTs plus each stripe's WAL up to the snapshot LSN — whose files are kept
//! from deletion while the pin is held. Backups copy exactly these files.
//!
//! In-process: [`Database::pin`]. Across processes: [`remote`] asks the
//! process that has the database open to pin on its behalf.

pub mod closed;
mod count;
pub mod hold;
pub mod registry;
pub mod remote;
pub mod view;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::manifest::Manifest;
use crate::mutex::lock;
use crate::stripe::StripeState;
use crate::versions::VersionSet;
use crate::wal::log::Wal;
use registry::Pins;

/// What a file of a snapshot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    Sst,
    Wal,
}

/// One file of a snapshot: copy its first `len` bytes (an active WAL segment
/// keeps growing after the snapshot; the prefix holds whole records).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotFile {
    /// Path relative to the database directory, e.g. `sst/003-000000000042.sst`.
    pub name: String,
    pub kind: FileKind,
    pub len: u64,
}

/// A consistent view of the database at `lsn`: every write with LSN ≤ `lsn`
/// and none after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub db_id: String,
    pub lsn: u64,
    /// Commit timestamp (µs) of the write at `lsn` (or the newest before it).
    pub commit_ts: u64,
    pub taken_at_us: u64,
    /// The manifest describing exactly these files; written as `MANIFEST`
    /// when the snapshot is materialized.
    pub manifest: Manifest,
    pub files: Vec<SnapshotFile>,
    /// Live entries in SSTs and memtables at the snapshot (upper bound on items).
    pub approximate_items: u64,
}

impl Snapshot {
    /// Copy the snapshot's files from the database at `src` into a new
    /// directory `dst` and write its MANIFEST: the result opens as a database
    /// holding exactly the writes with LSN ≤ `self.lsn`. Every file and
    /// directory is fsynced; `dst` must not exist.
    pub fn copy_files(&self, src: &Path, dst: &Path) -> Result<()> {
        use crate::error::IoContext;
        use std::io::{Read, Write};
        if dst.exists() {
            return Err(crate::error::Error::AlreadyExists(dst.to_path_buf()));
        }
        for sub in ["wal", "sst", remote::DIR] {
            let d = dst.join(sub);
            std::fs::create_dir_all(&d).ctx(&d)?;
        }
        for f in &self.files {
            let (from, to) = (src.join(&f.name), dst.join(&f.name));
            let mut r = std::fs::File::open(&from).ctx(&from)?.take(f.len);
            let mut w = std::fs::File::create(&to).ctx(&to)?;
            let n = std::io::copy(&mut r, &mut w).ctx(&to)?;
            if n != f.len {
                return Err(crate::error::Error::Corruption {
                    path: from,
                    offset: n,
                    detail: format!("file is shorter than the {} bytes pinned", f.len),
                });
            }
            w.flush().ctx(&to)?;
            w.sync_all().ctx(&to)?;
        }
        self.manifest.store(dst)?;
        for sub in ["wal", "sst", remote::DIR] {
            crate::fsio::sync_dir(&dst.join(sub))?;
        }
        crate::fsio::sync_dir(dst)?;
        crate::fsio::sync_dir(crate::fsio::parent(dst))
    }

    /// Sum of the file lengths.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.len).sum()
    }
}

/// A held snapshot; its files stay on disk until it is dropped.
pub struct Pin {
    pins: Arc<Pins>,
    /// The database (its `LOCK`, or the snapshot a read-only view holds)
    /// stays while a pin does, whether or not it was closed: nobody else
    /// may open it and delete the pinned files.
    _db: Arc<dyn Send + Sync>,
    id: u64,
    snapshot: Snapshot,
}

impl Pin {
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The database directory the snapshot's file names are relative to.
    pub fn dir(&self) -> &Path {
        self.pins.dir()
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        // A failed deferred delete leaves a file that the next open removes.
        let _ = self.pins.release(self.id);
    }
}

/// Pin a consistent snapshot of the open database made of these parts.
/// Writers are paused only while every stripe's state is read (no I/O
/// beyond `stat` of sealed WAL segments).
pub(crate) fn take(
    stripes: &[Mutex<StripeState>],
    wal: &Wal,
    versions: &VersionSet,
    pins: &Arc<Pins>,
    db: Arc<dyn Send + Sync>,
) -> Result<Pin> {
    let (pin, seq) = take_unsynced(stripes, wal, versions, pins, db)?;
    // Everything in the snapshot must be on stable storage: a backup or
    // archive must never hold a write that a power cut could still undo
    // (writes after the snapshot need not be waited for).
    wal.wait_synced(seq)?;
    Ok(pin)
}

/// [`take`] without waiting for the snapshot's writes to be durable; also
/// the group-commit sequence that covers every one of them (for
/// [`Wal::wait_synced`] before they are copied anywhere).
pub(crate) fn take_unsynced(
    stripes: &[Mutex<StripeState>],
    wal: &Wal,
    versions: &VersionSet,
    pins: &Arc<Pins>,
    db: Arc<dyn Send + Sync>,
) -> Result<(Pin, u64)> {
    let dir = versions.dir();
    let (lsn, commit_ts, manifest, files, approximate_items, id, written) = {
        let guards: Vec<_> = stripes.iter().map(lock).collect();
        // Writers note a batch while holding their stripe's lock: every
        // record in the snapshot has a sequence ≤ this.
        let written = wal.written();
        let (lsn, commit_ts) = wal.last_stamp();
        let manifest = versions.current();
        let mut files = Vec::new();
        let mut approximate_items = 0;
        for (s, st) in guards.iter().enumerate() {
            for t in &st.tables {
                let name = format!("sst/{}", file_name_of(t.path()));
                files.push(SnapshotFile {
                    name,
                    kind: FileKind::Sst,
                    len: t.size(),
                });
                approximate_items += t.props().entries;
            }
            approximate_items += st.mem_usage().1 as u64;
            for id in st.live_wal_ids() {
                let name = format!("wal/{}", crate::wal::segment::file_name(s, id));
                let len = match &st.wal {
                    Some(seg) if seg.id == id => seg.len,
                    _ => {
                        let p = dir.join(&name);
                        std::fs::metadata(&p)
                            .map_err(|e| crate::error::Error::Io { path: p, source: e })?
                            .len()
                    }
                };
                files.push(SnapshotFile {
                    name,
                    kind: FileKind::Wal,
                    len,
                });
            }
        }
        let set: HashSet<PathBuf> = files.iter().map(|f| PathBuf::from(&f.name)).collect();
        let id = pins.add(set);
        (
            lsn,
            commit_ts,
            manifest,
            files,
            approximate_items,
            id,
            written,
        )
    };
    let pin = Pin {
        pins: Arc::clone(pins),
        _db: db,
        id,
        snapshot: Snapshot {
            db_id: manifest.db_id.clone(),
            lsn,
            commit_ts,
            taken_at_us: crate::fsio::now_micros(),
            manifest,
            files,
            approximate_items,
        },
    };
    Ok((pin, written))
}

fn file_name_of(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use crate::{item_from_plain_json, Database, Error, Options};

    /// A pin outlives `close`: the database stays locked (nobody may open
    /// it and delete the pinned files) until the pin goes.
    #[test]
    fn a_pin_keeps_the_database_locked_after_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let db = Database::create(&path, Options::default()).unwrap();
        db.put(b"k", None, &item_from_plain_json("{}").unwrap())
            .unwrap();
        let pin = db.pin().unwrap();
        db.close().unwrap();
        let reopened = Database::open(&path, Options::default()).map(drop);
        assert!(
            matches!(reopened, Err(Error::Locked { .. })),
            "{reopened:?}"
        );
        for f in &pin.snapshot().files {
            assert!(path.join(&f.name).exists(), "{}", f.name);
        }
        drop(pin);
        let db = Database::open(&path, Options::default()).unwrap();
        assert!(db.get(b"k", None).unwrap().is_some());
        db.close().unwrap();
    }
}
