//! Compaction: merge all of a stripe's SSTs into one, keeping only the newest
//! version of each key and dropping tombstones (nothing older remains below
//! them once every SST of the stripe takes part). The manifest switch is the
//! commit point; the old files are deleted only after it is durable.

use std::sync::Arc;

use crate::entry::Entry;
use crate::error::{IoContext, Result};
use crate::manifest::SstMeta;
use crate::read::range::{KeyRange, Merge};
use crate::sst::builder::TableBuilder;
use crate::sst::reader::TableReader;
use crate::stripe::{FlushCtx, StripeState};

impl StripeState {
    /// Merge every SST of the stripe into at most one. Returns the number of
    /// input tables (0 if there was nothing to do).
    pub fn compact(&mut self, cx: &FlushCtx<'_>) -> Result<usize> {
        if self.tables.len() < 2 && self.tables.iter().all(|t| t.props().tombstones == 0) {
            return Ok(0);
        }
        let inputs = self.tables.clone();
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
        let mut live = 0u64;
        for e in Merge::new(sources, false) {
            let e: Entry = e?;
            if e.value.is_some() {
                b.add(&e)?;
                live += 1;
            }
        }
        let built = b.finish()?;
        let output = if live > 0 {
            Some(Arc::new(TableReader::open(&path)?))
        } else {
            None
        };
        {
            let mut m = cx.manifest.lock().unwrap_or_else(|p| p.into_inner());
            let mut next = m.clone();
            next.next_file_id = next.next_file_id.max((cx.peek_next_id)());
            let sm = next.stripes.entry(cx.stripe as u16).or_default();
            sm.ssts = match &output {
                Some(_) => vec![SstMeta {
                    id,
                    size: built.size,
                    entries: built.props.entries,
                    min_lsn: built.props.min_lsn,
                    max_lsn: built.props.max_lsn,
                }],
                None => Vec::new(),
            };
            next.store(cx.dir)?;
            *m = next;
        }
        if output.is_none() {
            std::fs::remove_file(&path).ctx(&path)?;
        }
        self.tables = output.into_iter().collect();
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
