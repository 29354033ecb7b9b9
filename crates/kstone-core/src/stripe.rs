//! One stripe: its memtable, active WAL segment, live SSTs, and the flush
//! that turns the memtable into an SST.

use std::path::Path;
use std::sync::Arc;

use crate::error::{IoContext, Result};
use crate::manifest::{Manifest, SstMeta};
use crate::memtable::Memtable;
use crate::options::Compression;
use crate::sst::builder::TableBuilder;
use crate::sst::reader::TableReader;
use crate::wal::segment::ActiveSegment;

/// Everything a stripe owns, guarded by the stripe's mutex.
#[derive(Debug, Default)]
pub struct StripeState {
    pub mem: Memtable,
    /// The segment new records go to; created lazily on the first write.
    pub wal: Option<ActiveSegment>,
    /// Ids of this stripe's WAL segments that may hold unflushed records,
    /// oldest first (includes the active one).
    pub wal_ids: Vec<u64>,
    /// Id of the newest segment this stripe ever had (0 if none): the next
    /// segment records it as its predecessor.
    pub last_wal_id: u64,
    /// Largest LSN written to each of this stripe's segments (for archiving).
    pub wal_max_lsn: std::collections::HashMap<u64, u64>,
    /// Bytes of WAL written since the last flush (replayed bytes included).
    pub wal_bytes: u64,
    /// Live SSTs, newest first.
    pub tables: Vec<Arc<TableReader>>,
}

/// Paths and counters a flush needs from the database.
pub struct FlushCtx<'a> {
    pub dir: &'a Path,
    pub stripe: usize,
    pub compression: Compression,
    pub cache: Option<&'a Arc<crate::sst::cache::BlockCache>>,
    pub written: &'a crate::stats::WriteCounters,
    pub alloc_id: &'a dyn Fn() -> u64,
    pub peek_next_id: &'a dyn Fn() -> u64,
    pub manifest: &'a std::sync::Mutex<Manifest>,
    /// Delete obsolete files (paths relative to `dir`), deferring those a pin holds.
    pub retire: &'a dyn Fn(Vec<(std::path::PathBuf, Option<u64>)>) -> Result<()>,
}

impl StripeState {
    /// Write the memtable to a new SST and commit it in the manifest, then
    /// delete the WAL segments it made obsolete. Returns the bytes freed from
    /// the memtable.
    pub fn flush(&mut self, cx: &FlushCtx<'_>) -> Result<usize> {
        if self.mem.is_empty() {
            return Ok(0);
        }
        // Seal the active segment so records after the flush go to a new one.
        if let Some(seg) = self.wal.take() {
            seg.file.sync_data().ctx(&seg.path)?;
        }
        let id = (cx.alloc_id)();
        let path = cx
            .dir
            .join("sst")
            .join(crate::sst::file_name(cx.stripe, id));
        let mut b = TableBuilder::create(&path, cx.stripe, cx.compression)?;
        for e in self.mem.iter() {
            b.add(&e)?;
        }
        let built = b.finish()?;
        let table = Arc::new(TableReader::open_cached(&path, cx.cache, id)?);

        let obsolete: Vec<u64> = self.wal_ids.clone();
        {
            let mut m = cx.manifest.lock().unwrap_or_else(|p| p.into_inner());
            let mut next = m.clone();
            next.next_file_id = next.next_file_id.max((cx.peek_next_id)());
            let sm = next.stripes.entry(cx.stripe as u16).or_default();
            sm.ssts.insert(
                0,
                SstMeta {
                    id,
                    size: {
                        cx.written
                            .flush
                            .fetch_add(built.size, std::sync::atomic::Ordering::Relaxed);
                        built.size
                    },
                    entries: built.props.entries,
                    min_lsn: built.props.min_lsn,
                    max_lsn: built.props.max_lsn,
                },
            );
            sm.flushed_lsn = sm.flushed_lsn.max(self.mem.max_lsn());
            sm.max_ts = sm.max_ts.max(self.mem.max_ts());
            sm.log_start = (cx.peek_next_id)();
            next.store(cx.dir)?;
            *m = next;
        }
        // The new manifest is durable: the sealed segments are obsolete.
        self.wal_ids.clear();
        self.wal_bytes = 0;
        let retired = obsolete
            .into_iter()
            .map(|id| {
                let max = self.wal_max_lsn.remove(&id).unwrap_or(0);
                (
                    Path::new("wal").join(crate::wal::segment::file_name(cx.stripe, id)),
                    Some(max),
                )
            })
            .collect();
        (cx.retire)(retired)?;
        let freed = self.mem.bytes();
        self.mem = Memtable::default();
        self.tables.insert(0, table);
        Ok(freed)
    }
}
