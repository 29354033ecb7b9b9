//! Reading a snapshot's contents straight from its pinned files (without
//! copying them): used to count the items a backup holds.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use super::{FileKind, Snapshot};
use crate::entry::Entry;
use crate::error::{IoContext, Result};
use crate::memtable::{MemEntry, Memtable};
use crate::read::range::{KeyRange, Merge};
use crate::sst::reader::TableReader;
use crate::wal::record::Op;

/// A stripe's SST names and (WAL name, length to read) pairs.
type StripeFiles = (Vec<String>, Vec<(String, u64)>);

impl Snapshot {
    /// Count the live items of the snapshot, reading its files under `dir`
    /// (the database directory, or a copy of the snapshot).
    pub fn count_items(&self, dir: &Path) -> Result<u64> {
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
                FileKind::Sst => e.0.push(f.name.clone()),
                FileKind::Wal => e.1.push((f.name.clone(), f.len)),
            }
        }
        let mut count = 0;
        for (stripe, (ssts, wals)) in per_stripe {
            let flushed = self.manifest.stripe(stripe).flushed_lsn;
            let mut mem = Memtable::default();
            for (name, len) in wals {
                let p = dir.join(&name);
                let mut buf = Vec::new();
                std::fs::File::open(&p)
                    .ctx(&p)?
                    .take(len)
                    .read_to_end(&mut buf)
                    .ctx(&p)?;
                for r in crate::wal::segment::scan_bytes(&buf, &p)?.records {
                    if r.lsn <= flushed || r.lsn > self.lsn {
                        continue;
                    }
                    match r.op {
                        Op::Put { key, value } => {
                            mem.insert(MemEntry::new(key.as_key_ref(), r.lsn, Some(&value)), r.ts)
                        }
                        Op::Delete { key } => {
                            mem.insert(MemEntry::new(key.as_key_ref(), r.lsn, None), r.ts)
                        }
                        Op::Marker { .. } => {}
                    }
                }
            }
            let all = KeyRange::all();
            let mut sources: Vec<Box<dyn Iterator<Item = Result<Entry>>>> =
                vec![Box::new(mem.range(&all, false).into_iter().map(Ok))];
            for name in ssts {
                let t = Arc::new(TableReader::open(&dir.join(&name))?);
                sources.push(Box::new(t.range(&all, false)));
            }
            for e in Merge::new(sources, false) {
                if e?.value.is_some() {
                    count += 1;
                }
            }
        }
        Ok(count)
    }
}
