//! Compaction, size-tiered with a bound: a stripe's newest SSTs are merged
//! into one when there are too many; the oldest (largest) "base" SST joins
//! the merge only once the newer data has grown to a quarter of its size.
//! So a byte is rewritten a bounded number of times (write amplification
//! about 5 plus the tiers above the base), and a read looks at no more than
//! `compaction_trigger + 1` SSTs. A merge that includes the base drops
//! tombstones (nothing older remains below them); one that does not keeps
//! them. Overwritten versions are always dropped: a snapshot that needs them
//! holds the input files themselves, which a pin keeps until it is released.
//!
//! The merge runs in the background without the stripe lock (flushes may add
//! newer tables meanwhile; the inputs stay a contiguous run of the list). The
//! manifest switch is the commit point; inputs are deleted only after it is
//! durable, so a crash at any point leaves either the inputs or the output.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use crate::entry::Entry;
use crate::error::{Error, IoContext, Result};
use crate::manifest::SstMeta;
use crate::mutex::lock;
use crate::read::range::{KeyRange, Merge};
use crate::sst::reader::TableReader;
use crate::stripe::{FlushCtx, StripeState};

/// The base joins a merge once newer data reaches this fraction of it.
const BASE_RATIO: u64 = 4;

/// How many of the newest tables the automatic compaction merges.
fn tiered_count(tables: &[Arc<TableReader>]) -> usize {
    let n = tables.len();
    let base = tables[n - 1].size();
    let newer: u64 = tables[..n - 1].iter().map(|t| t.size()).sum();
    if newer * BASE_RATIO >= base {
        n
    } else {
        n - 1
    }
}

/// The automatic compaction after a flush, once the stripe has more than
/// `trigger` tables. The caller holds the stripe's job lock.
pub(crate) fn compact_if_needed(
    cx: &FlushCtx<'_>,
    stripe: &Mutex<StripeState>,
    trigger: usize,
) -> Result<()> {
    let tables = lock(stripe).tables.clone();
    if tables.len() <= trigger.max(1) {
        return Ok(());
    }
    let count = tiered_count(&tables);
    merge(cx, stripe, &tables[..count], &tables)
}

/// Merge every table of the stripe into at most one. The caller holds the
/// stripe's job lock.
pub(crate) fn compact_full(cx: &FlushCtx<'_>, stripe: &Mutex<StripeState>) -> Result<()> {
    let tables = lock(stripe).tables.clone();
    if tables.len() < 2 && tables.iter().all(|t| t.props().tombstones == 0) {
        return Ok(());
    }
    merge(cx, stripe, &tables, &tables)
}

fn file_id(t: &TableReader) -> Option<u64> {
    let name = t.path().file_name()?.to_str()?;
    crate::sst::parse_name(name).map(|(_, id)| id)
}

/// Merge `inputs` (a contiguous run of `all`, the stripe's tables when the
/// job started) into one table and commit it in their place.
fn merge(
    cx: &FlushCtx<'_>,
    stripe: &Mutex<StripeState>,
    inputs: &[Arc<TableReader>],
    all: &[Arc<TableReader>],
) -> Result<()> {
    // Only flushes run beside a compaction, and they add tables at the
    // front, so "nothing older than the inputs" stays true.
    let bottom = inputs.len() == all.len()
        || all
            .last()
            .zip(inputs.last())
            .is_some_and(|(a, b)| Arc::ptr_eq(a, b));
    let sources: Vec<_> = inputs
        .iter()
        .map(|t| t.range(&KeyRange::all(), false))
        .collect();
    let (id, path, mut b) = cx.new_table()?;
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
        .fetch_add(built.size, Ordering::Relaxed);
    let output = if written > 0 {
        match TableReader::open_cached(&path, cx.cache, id) {
            Ok(t) => Some(Arc::new(t)),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        }
    } else {
        std::fs::remove_file(&path).ctx(&path)?;
        None
    };

    let mut st = lock(stripe);
    let changed = || Error::Internal("a stripe's tables changed under its compaction".into());
    let at = st
        .tables
        .iter()
        .position(|t| Arc::ptr_eq(t, &inputs[0]))
        .ok_or_else(changed)?;
    let run_matches = st.tables.len() >= at + inputs.len()
        && st.tables[at..at + inputs.len()]
            .iter()
            .zip(inputs)
            .all(|(a, b)| Arc::ptr_eq(a, b));
    if !run_matches {
        return Err(changed());
    }
    let first_id = file_id(&inputs[0]).ok_or_else(changed)?;
    cx.versions.commit(|next| {
        let sm = next.stripes.entry(cx.stripe as u16).or_default();
        let mat = sm
            .ssts
            .iter()
            .position(|t| t.id == first_id)
            .filter(|&p| p + inputs.len() <= sm.ssts.len())
            .ok_or_else(changed)?;
        let meta = output.as_ref().map(|_| SstMeta {
            id,
            size: built.size,
            entries: built.props.entries,
            min_lsn: built.props.min_lsn,
            max_lsn: built.props.max_lsn,
        });
        sm.ssts.splice(mat..mat + inputs.len(), meta);
        Ok(())
    })?;
    st.tables.splice(at..at + inputs.len(), output);
    cx.pins.retire(
        inputs
            .iter()
            .map(|t| {
                (
                    Path::new("sst").join(t.path().file_name().unwrap_or_default()),
                    None,
                )
            })
            .collect(),
    )
}
