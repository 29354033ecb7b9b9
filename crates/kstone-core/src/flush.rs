//! Flushing: the oldest sealed memtable of a stripe becomes an SST. The SST
//! is built and fsynced without the stripe lock (readers and writers go on);
//! the manifest switch, under the stripe lock, is the commit point, after
//! which the memtable's WAL segments are retired.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use crate::background::Background;
use crate::error::{Error, Result};
use crate::manifest::SstMeta;
use crate::memory::MemoryBudget;
use crate::memtable::Memtable;
use crate::mutex::lock;
use crate::sst::reader::TableReader;
use crate::stripe::{FlushCtx, Sealed, StripeState};

/// Flush the stripe's sealed memtables, oldest first. The caller holds the
/// stripe's job lock, so only one flush or compaction runs per stripe.
pub(crate) fn flush_sealed(
    cx: &FlushCtx<'_>,
    stripe: &Mutex<StripeState>,
    budget: &MemoryBudget,
    bg: &Background,
) -> Result<()> {
    loop {
        let Some(sealed) = lock(stripe).sealed.last().cloned() else {
            return Ok(());
        };
        flush_one(cx, stripe, &sealed)?;
        budget.flushed(sealed.mem.bytes());
        bg.note_progress();
    }
}

/// An SST of the stripe holding `mem`'s entries, fsynced and opened, not yet
/// in any manifest (the caller commits it). With `sync_dir` false the caller
/// fsyncs the `sst` directory before that commit (one fsync for many tables).
pub(crate) fn write_table(
    cx: &FlushCtx<'_>,
    mem: &Memtable,
    sync_dir: bool,
) -> Result<(SstMeta, Arc<TableReader>)> {
    let (id, path, mut b) = cx.new_table()?;
    for (key, lsn, value) in mem.iter_refs() {
        b.add_ref(key, lsn, value)?;
    }
    let built = if sync_dir {
        b.finish()?
    } else {
        b.finish_leaving_dir_sync()?
    };
    cx.written.flush.fetch_add(built.size, Ordering::Relaxed);
    let table = match TableReader::open_cached(&path, cx.cache, id) {
        Ok(t) => Arc::new(t),
        Err(e) => {
            // Not referenced by any manifest yet: safe to drop.
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
    };
    let meta = SstMeta {
        id,
        size: built.size,
        entries: built.props.entries,
        min_lsn: built.props.min_lsn,
        max_lsn: built.props.max_lsn,
    };
    Ok((meta, table))
}

fn flush_one(cx: &FlushCtx<'_>, stripe: &Mutex<StripeState>, sealed: &Arc<Sealed>) -> Result<()> {
    let (meta, table) = write_table(cx, &sealed.mem, true)?;
    let mut st = lock(stripe);
    if !st.sealed.last().is_some_and(|x| Arc::ptr_eq(x, sealed)) {
        return Err(Error::Internal(
            "a sealed memtable changed while it was flushed".into(),
        ));
    }
    cx.versions.commit(|next| {
        let next_id = next.next_file_id;
        let sm = next.stripes.entry(cx.stripe as u16).or_default();
        sm.ssts.insert(0, meta);
        sm.flushed_lsn = sm.flushed_lsn.max(sealed.mem.max_lsn());
        sm.max_ts = sm.max_ts.max(sealed.mem.max_ts());
        // Segments older than the first one still holding unflushed records
        // are obsolete; with none left, every future segment is newer.
        let n = st.sealed.len();
        sm.log_start = st.sealed[..n - 1]
            .iter()
            .flat_map(|s| s.wal_ids.iter().copied())
            .chain(st.wal_ids.iter().copied())
            .min()
            .unwrap_or(next_id);
        Ok(())
    })?;
    // The new manifest is durable: the memtable's segments are obsolete.
    st.sealed.pop();
    st.tables.insert(0, table);
    let retired = sealed
        .wal_ids
        .iter()
        .map(|&id| {
            let max = st.wal_max_lsn.remove(&id).unwrap_or(0);
            (
                Path::new("wal").join(crate::wal::segment::file_name(cx.stripe, id)),
                Some(max),
            )
        })
        .collect();
    cx.pins.retire(retired)
}
