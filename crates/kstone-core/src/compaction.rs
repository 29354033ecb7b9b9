//! Compaction, size-tiered with a bound: a stripe's newest SSTs are merged
//! into one when there are too many; the oldest (largest) "base" SST joins
//! the merge only once the newer data has grown to a quarter of its size.
//! So a byte is rewritten a bounded number of times (write amplification
//! about 5 plus the tiers above the base), and a read looks at no more than
//! `compaction_trigger + 1` SSTs. A merge that includes the base drops
//! tombstones (nothing older remains below them); one that does not keeps
//! them. The manifest switch is the commit point; replaced files are deleted
//! only after it is durable. `Database::compact` forces a full merge.

use std::sync::Arc;

use crate::entry::Entry;
use crate::error::{IoContext, Result};
use crate::manifest::SstMeta;
use crate::read::range::{KeyRange, Merge};
use crate::sst::builder::TableBuilder;
use crate::sst::reader::TableReader;
use crate::stripe::{FlushCtx, StripeState};

/// The base joins a merge once newer data reaches this fraction of it.
const BASE_RATIO: u64 = 4;

impl StripeState {
    /// Merge every SST of the stripe into at most one. Returns the number of
    /// input tables (0 if there was nothing to do).
    pub fn compact(&mut self, cx: &FlushCtx<'_>) -> Result<usize> {
        if self.tables.len() < 2 && self.tables.iter().all(|t| t.props().tombstones == 0) {
            return Ok(0);
        }
        self.merge(cx, self.tables.len())
    }

    /// The automatic compaction after a flush: merge the newer tables, and
    /// the base too when the newer data is large enough relative to it.
    pub fn compact_tiered(&mut self, cx: &FlushCtx<'_>) -> Result<usize> {
        let n = self.tables.len();
        if n < 2 {
            return Ok(0);
        }
        let base = self.tables[n - 1].size();
        let newer: u64 = self.tables[..n - 1].iter().map(|t| t.size()).sum();
        if newer * BASE_RATIO >= base {
            self.merge(cx, n)
        } else {
            self.merge(cx, n - 1)
        }
    }

    /// Merge the `count` newest tables into one.
    fn merge(&mut self, cx: &FlushCtx<'_>, count: usize) -> Result<usize> {
        let inputs: Vec<Arc<TableReader>> = self.tables[..count].to_vec();
        let bottom = count == self.tables.len();
        let sources: Vec<_> = inputs
            .iter()
            .map(|t| t.range(&KeyRange::all(), false))
            .collect();
        let id = (cx.alloc_id)();
        let path = cx
            .dir
            .join("sst")
            .join(crate::sst::file_name(cx.stripe, id));
        let mut b = TableBuilder::create(&path, cx.stripe, cx.compression)?;
        let mut written = 0u64;
        for e in Merge::new(sources, false) {
            let e: Entry = e?;
            // Tombstones must stay while an older table below may hold the key.
            if e.value.is_some() || !bottom {
                b.add(&e)?;
                written += 1;
            }
        }
        let built = b.finish()?;
        cx.written
            .compaction
            .fetch_add(built.size, std::sync::atomic::Ordering::Relaxed);
        let output = if written > 0 {
            Some(Arc::new(TableReader::open_cached(&path, cx.cache, id)?))
        } else {
            None
        };
        {
            let mut m = cx.manifest.lock().unwrap_or_else(|p| p.into_inner());
            let mut next = m.clone();
            next.next_file_id = next.next_file_id.max((cx.peek_next_id)());
            let sm = next.stripes.entry(cx.stripe as u16).or_default();
            let kept: Vec<SstMeta> = sm.ssts[count.min(sm.ssts.len())..].to_vec();
            sm.ssts = output
                .as_ref()
                .map(|_| SstMeta {
                    id,
                    size: built.size,
                    entries: built.props.entries,
                    min_lsn: built.props.min_lsn,
                    max_lsn: built.props.max_lsn,
                })
                .into_iter()
                .chain(kept)
                .collect();
            next.store(cx.dir)?;
            *m = next;
        }
        if output.is_none() {
            std::fs::remove_file(&path).ctx(&path)?;
        }
        let rest: Vec<Arc<TableReader>> = self.tables[count..].to_vec();
        self.tables = output.into_iter().chain(rest).collect();
        (cx.retire)(
            inputs
                .iter()
                .map(|t| {
                    (
                        std::path::Path::new("sst").join(t.path().file_name().unwrap_or_default()),
                        None,
                    )
                })
                .collect(),
        )?;
        Ok(inputs.len())
    }
}
