//! Reading a snapshot's contents straight from its pinned files (without
//! copying them): the state a read-only [`crate::Database`] opens on (the
//! item count a backup records is in `count.rs`).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use super::{FileKind, Snapshot};
use crate::error::{IoContext, Result};
use crate::memtable::{MemEntry, Memtable};
use crate::recovery::Recovered;
use crate::sst::cache::BlockCache;
use crate::sst::reader::TableReader;
use crate::stripe::StripeState;
use crate::wal::record::OpRef;

/// A stripe's SST names (newest first) and (WAL name, length to read) pairs.
type StripeFiles = (Vec<String>, Vec<(String, u64)>);

impl Snapshot {
    /// The snapshot's files grouped by stripe.
    pub(super) fn per_stripe(&self) -> BTreeMap<usize, StripeFiles> {
        let mut per_stripe: BTreeMap<usize, StripeFiles> = BTreeMap::new();
        for f in &self.files {
            let base = f.name.rsplit('/').next().unwrap_or_default();
            let parsed = match f.kind {
                FileKind::Sst => crate::sst::parse_name(base),
                FileKind::Wal => crate::wal::segment::parse_name(base),
            };
            let Some((stripe, _)) = parsed else { continue };
            let e = per_stripe.entry(stripe).or_default();
            match f.kind {
                // Listed newest first, as the stripe reads them.
                FileKind::Sst => e.0.push(f.name.clone()),
                FileKind::Wal => e.1.push((f.name.clone(), f.len)),
            }
        }
        // Segment names sort by id within a stripe.
        per_stripe.values_mut().for_each(|e| e.1.sort());
        per_stripe
    }

    /// Stripe `stripe`'s writes above its flushed LSN, up to the snapshot's
    /// LSN, read from the pinned prefixes of its WAL segments.
    pub(super) fn memtable(
        &self,
        dir: &Path,
        stripe: usize,
        wals: &[(String, u64)],
    ) -> Result<Memtable> {
        let flushed = self.manifest.stripe(stripe).flushed_lsn;
        let mut mem = Memtable::default();
        for (name, len) in wals {
            let p = dir.join(name);
            let mut buf = Vec::new();
            crate::wal::segment::open_for_read(&p)?
                .take(*len)
                .read_to_end(&mut buf)
                .ctx(&p)?;
            crate::wal::segment::scan_stripe(&buf, &p, stripe, |r| {
                if r.lsn <= flushed || r.lsn > self.lsn {
                    return;
                }
                match r.op {
                    OpRef::Put { key, value } => {
                        mem.insert(MemEntry::new(key, r.lsn, Some(value)), r.ts)
                    }
                    OpRef::Delete { key } => mem.insert(MemEntry::new(key, r.lsn, None), r.ts),
                    OpRef::Marker { .. } => {}
                }
            })?;
        }
        Ok(mem)
    }
}

/// The state a read-only database opens on: the snapshot's tables and, in
/// memtables, its WAL records above each stripe's flushed LSN.
pub(crate) fn recovered(
    snap: &Snapshot,
    dir: &Path,
    cache: Option<&Arc<BlockCache>>,
) -> Result<Recovered> {
    let mut stripes: Vec<StripeState> = (0..crate::model::key::STRIPES)
        .map(|_| StripeState::default())
        .collect();
    for (stripe, (ssts, wals)) in snap.per_stripe() {
        let Some(st) = stripes.get_mut(stripe) else {
            continue;
        };
        for name in ssts {
            let base = name.rsplit('/').next().unwrap_or_default();
            let id = crate::sst::parse_name(base).map_or(0, |(_, id)| id);
            st.tables.push(Arc::new(TableReader::open_cached(
                &dir.join(&name),
                cache,
                id,
            )?));
        }
        st.mem = snap.memtable(dir, stripe, &wals)?;
    }
    Ok(Recovered {
        manifest: snap.manifest.clone(),
        stripes,
        last_lsn: snap.lsn,
        last_ts: snap.commit_ts,
        next_file_id: snap.manifest.next_file_id,
        registry: Default::default(),
    })
}
