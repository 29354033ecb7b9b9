//! Options for opening or creating a database.

use std::time::Duration;

pub use crate::sst::block::Compression;

/// When a write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `put`/`delete` return only after the record is on stable storage
    /// (fsync, shared between concurrent writers by group commit).
    #[default]
    Sync,
    /// Records reach the OS at once (they survive a process crash) and are
    /// fsynced every `sync_interval` and on close (a power cut can lose the
    /// last interval).
    Buffered,
}

/// Tuning knobs; `Options::default()` is right for most uses.
#[derive(Debug, Clone)]
pub struct Options {
    pub durability: Durability,
    /// fsync interval in `Buffered` mode.
    pub sync_interval: Duration,
    /// A stripe's memtable is flushed to an SST when it reaches this size.
    pub memtable_stripe_bytes: usize,
    /// A stripe is also flushed when its unflushed WAL reaches this size, so
    /// overwrite-heavy workloads (small memtable, long log) keep recovery short.
    pub wal_stripe_bytes: u64,
    /// When all memtables together exceed this, the stripe being written is
    /// flushed early (if it holds more than its even share). Writers are
    /// slowed from 1.25× this and held at 2× while flushes catch up.
    pub memtable_budget: usize,
    /// A stripe's SSTs are merged into one when it has more than this many.
    pub compaction_trigger: usize,
    /// Compression of SST data blocks.
    pub compression: Compression,
    /// Data blocks kept for point lookups, shared by all tables (0 = no
    /// cache). Open tables' indexes and bloom filters are charged to it too
    /// (the blocks keep at least a quarter), so memory use is bounded by this
    /// plus the memtable budget.
    pub block_cache_bytes: usize,
    /// Threads that flush sealed memtables and compact stripes.
    pub background_threads: usize,
    /// `close` (and drop) writes the memtables to SSTs when they hold more
    /// than 1/16 of `memtable_budget`, so the next `open` has no long log to
    /// replay (a short one replays in milliseconds). `false` closes at once
    /// and leaves the work to the next `open`; the WAL holds every write
    /// either way.
    pub flush_on_close: bool,
    /// `Sync` mode logs every record twice: in its stripe's segment and in
    /// one commit log shared by all stripes, which a single fdatasync makes
    /// durable for every writer of a round. After this many bytes the log
    /// is rotated: the stripe segments written meanwhile are fsynced and
    /// the full log deleted. Larger means rarer pauses of that one writer
    /// (an fsync per segment written), and more to read at open after a
    /// crash.
    pub commit_log_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Sync,
            sync_interval: Duration::from_millis(100),
            memtable_stripe_bytes: 4 << 20,
            wal_stripe_bytes: 16 << 20,
            memtable_budget: 128 << 20,
            compaction_trigger: 8,
            compression: Compression::None,
            block_cache_bytes: 32 << 20,
            background_threads: 2,
            flush_on_close: true,
            commit_log_bytes: 16 << 20,
        }
    }
}
