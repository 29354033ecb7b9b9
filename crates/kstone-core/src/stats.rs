//! Database statistics reported by `Database::stats` and `kstone stats`.

use serde::Serialize;

/// A snapshot of the database's size and position.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub db_id: String,
    pub history: String,
    pub stripes: usize,
    /// Stripes holding any data (SSTs, WAL or memtable).
    pub active_stripes: usize,
    pub sst_files: usize,
    pub sst_bytes: u64,
    pub wal_segments: usize,
    pub wal_bytes: u64,
    pub memtable_bytes: u64,
    pub memtable_entries: u64,
    pub last_lsn: u64,
    pub last_commit_us: u64,
    /// Entries in SSTs and memtables, counting each version and tombstone once:
    /// an upper bound on the live item count until compaction merges them.
    pub approximate_items: u64,
    /// The backup this database was restored from, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<crate::manifest::Origin>,
}
