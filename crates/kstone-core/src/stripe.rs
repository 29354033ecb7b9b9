//! One stripe: its memtable, the sealed memtables waiting for a background
//! flush, its active WAL segment and its live SSTs.

use std::sync::Arc;

use crate::memtable::Memtable;
use crate::model::key::KeyRef;
use crate::options::Compression;
use crate::sst::reader::TableReader;
use crate::wal::segment::ActiveSegment;

/// A full memtable, read-only from now on, and the WAL segments that hold
/// exactly its records (deleted once it is in an SST).
#[derive(Debug)]
pub struct Sealed {
    pub mem: Memtable,
    pub wal_ids: Vec<u64>,
}

/// Everything a stripe owns, guarded by the stripe's mutex. The lock is held
/// only for memory operations and the short commit of a flush or compaction
/// (a manifest write); SSTs are built without it.
#[derive(Debug, Default)]
pub struct StripeState {
    pub mem: Memtable,
    /// Sealed memtables, newest first; the background flushes the oldest.
    pub sealed: Vec<Arc<Sealed>>,
    /// The segment new records go to; created lazily on the first write.
    pub wal: Option<ActiveSegment>,
    /// Ids of the segments holding the active memtable's records, oldest
    /// first (includes the active one).
    pub wal_ids: Vec<u64>,
    /// Id of the newest segment this stripe ever had (0 if none): the next
    /// segment records it as its predecessor.
    pub last_wal_id: u64,
    /// Largest LSN written to each of this stripe's segments (for archiving).
    pub wal_max_lsn: std::collections::BTreeMap<u64, u64>,
    /// Bytes of WAL written since the active memtable was started.
    pub wal_bytes: u64,
    /// Live SSTs, newest first.
    pub tables: Vec<Arc<TableReader>>,
}

/// What a flush or compaction of one stripe works with: the version set it
/// commits to, the pins that decide when obsolete files go, and where its
/// tables are built and cached.
pub(crate) struct FlushCtx<'a> {
    pub stripe: usize,
    pub compression: Compression,
    pub cache: Option<&'a Arc<crate::sst::cache::BlockCache>>,
    pub written: &'a crate::stats::WriteCounters,
    pub versions: &'a crate::versions::VersionSet,
    /// Obsolete files go through [`Pins::retire`](crate::snapshot::registry::Pins::retire).
    pub pins: &'a crate::snapshot::registry::Pins,
}

impl FlushCtx<'_> {
    /// A new SST of this stripe under a fresh file id: (id, path, builder).
    pub fn new_table(
        &self,
    ) -> crate::error::Result<(u64, std::path::PathBuf, crate::sst::builder::TableBuilder)> {
        let id = self.versions.new_file_id();
        let path = self
            .versions
            .dir()
            .join("sst")
            .join(crate::sst::file_name(self.stripe, id));
        let b = crate::sst::builder::TableBuilder::create(&path, self.stripe, self.compression)?;
        Ok((id, path, b))
    }
}

impl StripeState {
    /// Turn the active memtable into a sealed one (no I/O): new records go to
    /// a new memtable and segment. Returns false if there was nothing to seal.
    pub fn seal(&mut self) -> bool {
        if self.mem.is_empty() {
            return false;
        }
        // Group commit still holds the segment's file for any pending fsync.
        self.wal = None;
        self.sealed.insert(
            0,
            Arc::new(Sealed {
                mem: std::mem::take(&mut self.mem),
                wal_ids: std::mem::take(&mut self.wal_ids),
            }),
        );
        self.wal_bytes = 0;
        true
    }

    /// The newest in-memory version of `key` (active, then sealed
    /// memtables), lent.
    pub fn mem_get_ref(&self, key: KeyRef<'_>) -> Option<&crate::memtable::MemEntry> {
        self.mem
            .get_ref(key)
            .or_else(|| self.sealed.iter().find_map(|s| s.mem.get_ref(key)))
    }

    /// Every segment that may hold unflushed records, oldest first.
    pub fn live_wal_ids(&self) -> Vec<u64> {
        self.sealed
            .iter()
            .rev()
            .flat_map(|s| s.wal_ids.iter().copied())
            .chain(self.wal_ids.iter().copied())
            .collect()
    }

    /// Bytes and entries held in memory (active and sealed memtables).
    pub fn mem_usage(&self) -> (usize, usize) {
        self.sealed
            .iter()
            .fold((self.mem.bytes(), self.mem.len()), |(b, n), s| {
                (b + s.mem.bytes(), n + s.mem.len())
            })
    }
}
