//! Database statistics reported by `Database::stats` and `kstone stats`.

use serde::Serialize;

/// Bytes written by kind, counted since the database was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Written {
    pub wal: u64,
    /// Of `wal`, the bytes copied into memory-mapped segments (`Buffered`
    /// mode's small appends), which `write(2)` accounting such as
    /// `/proc/PID/io` does not see.
    pub wal_mapped: u64,
    pub flush: u64,
    pub compaction: u64,
}

/// Counters behind [`Written`].
#[derive(Debug, Default)]
pub(crate) struct WriteCounters {
    pub wal: std::sync::atomic::AtomicU64,
    pub wal_mapped: std::sync::atomic::AtomicU64,
    pub flush: std::sync::atomic::AtomicU64,
    pub compaction: std::sync::atomic::AtomicU64,
}

impl WriteCounters {
    pub fn snapshot(&self) -> Written {
        use std::sync::atomic::Ordering::Relaxed;
        Written {
            wal: self.wal.load(Relaxed),
            wal_mapped: self.wal_mapped.load(Relaxed),
            flush: self.flush.load(Relaxed),
            compaction: self.compaction.load(Relaxed),
        }
    }
}

/// A snapshot of the database's size and position.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    pub db_id: String,
    pub history: String,
    /// How keys are stored and what writes must meet.
    pub key_schema: crate::model::key_schema::KeySchema,
    pub stripes: usize,
    /// Stripes holding any data (SSTs, WAL or memtable).
    pub active_stripes: usize,
    pub sst_files: usize,
    pub sst_bytes: u64,
    /// Most SSTs in any one stripe: a point read consults at most this many
    /// (compaction keeps it at most `compaction_trigger + 1`).
    pub max_tables_per_stripe: usize,
    /// SSTs per stripe in use, on average.
    pub mean_tables_per_stripe: f64,
    /// Set when these figures describe a snapshot opened read-only at this
    /// LSN (e.g. of a database another process has open).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_lsn: Option<u64>,
    /// The process that has the database open and pinned that snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_pid: Option<u32>,
    pub wal_segments: usize,
    pub wal_bytes: u64,
    /// Memory held by memtables, the active ones and those sealed and
    /// waiting for a background flush.
    pub memtable_bytes: u64,
    pub memtable_entries: u64,
    /// Sealed memtables not yet flushed.
    pub sealed_memtables: usize,
    pub last_lsn: u64,
    pub last_commit_us: u64,
    /// Entries in SSTs and memtables, counting each version and tombstone once:
    /// an upper bound on the live item count until compaction merges them.
    pub approximate_items: u64,
    /// Bytes this process has written since it opened the database: to the
    /// WAL, by flushes and by compactions (for write amplification).
    pub written_since_open: Written,
    /// The last background flush or compaction failure, if the background
    /// has not succeeded since (it retries; data is safe in the WAL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub background_error: Option<String>,
    /// The backup this database was restored from, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<crate::manifest::Origin>,
}
