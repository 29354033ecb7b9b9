//! The in-memory table of a stripe's writes that are in the WAL but not yet
//! in an SST. It keeps only the newest version of each key.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::entry::Entry;
use crate::model::key::Key;
use crate::read::range::KeyRange;

/// Approximate per-entry overhead of the B-tree node and `Arc`, for budgeting.
const ENTRY_OVERHEAD: usize = 64;

/// A key's LSN and value (`None` = tombstone).
type Version = (u64, Option<Arc<[u8]>>);

#[derive(Debug, Default)]
pub struct Memtable {
    map: BTreeMap<Key, Version>,
    bytes: usize,
    max_lsn: u64,
    max_ts: u64,
}

fn cost(key: &Key, value: &Option<Arc<[u8]>>) -> usize {
    key.pk.len()
        + key.sk.as_ref().map_or(0, Vec::len)
        + value.as_ref().map_or(0, |v| v.len())
        + ENTRY_OVERHEAD
}

impl Memtable {
    /// Insert a version; an older LSN never replaces a newer one.
    pub fn insert(&mut self, key: Key, lsn: u64, ts: u64, value: Option<Arc<[u8]>>) {
        self.max_lsn = self.max_lsn.max(lsn);
        self.max_ts = self.max_ts.max(ts);
        let add = cost(&key, &value);
        // One search per insert (the memtable is on every write's path).
        match self.map.entry(key) {
            std::collections::btree_map::Entry::Occupied(mut o) => {
                let old = o.get_mut();
                if old.0 <= lsn {
                    self.bytes = self.bytes + value.as_ref().map_or(0, |v| v.len())
                        - old.1.as_ref().map_or(0, |v| v.len());
                    *old = (lsn, value);
                }
            }
            std::collections::btree_map::Entry::Vacant(v) => {
                self.bytes += add;
                v.insert((lsn, value));
            }
        }
    }

    pub fn get(&self, key: &Key) -> Option<Entry> {
        self.map.get(key).map(|(lsn, value)| Entry {
            key: key.clone(),
            lsn: *lsn,
            value: value.clone(),
        })
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Approximate memory used.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn max_lsn(&self) -> u64 {
        self.max_lsn
    }

    pub fn max_ts(&self) -> u64 {
        self.max_ts
    }

    /// A copy of the entries in `range`, ascending (descending if `reverse`).
    pub fn range(&self, range: &KeyRange, reverse: bool) -> Vec<Entry> {
        use std::ops::Bound::*;
        let empty = match (&range.lo, &range.hi) {
            (Included(a), Included(b)) => a > b,
            (Included(a), Excluded(b))
            | (Excluded(a), Included(b))
            | (Excluded(a), Excluded(b)) => a >= b,
            _ => false,
        };
        if empty {
            return Vec::new();
        }
        let it = self
            .map
            .range::<Key, _>((range.lo.as_ref(), range.hi.as_ref()))
            .map(|(k, (lsn, v))| Entry {
                key: k.clone(),
                lsn: *lsn,
                value: v.clone(),
            });
        if reverse {
            it.rev().collect()
        } else {
            it.collect()
        }
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = Entry> + '_ {
        self.map.iter().map(|(k, (lsn, v))| Entry {
            key: k.clone(),
            lsn: *lsn,
            value: v.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_wins_and_bytes_track() {
        let mut m = Memtable::default();
        let k = Key::new(b"a", None).unwrap();
        m.insert(k.clone(), 5, 50, Some(Arc::from(&b"new"[..])));
        m.insert(k.clone(), 3, 30, Some(Arc::from(&b"old-value"[..])));
        assert_eq!(m.get(&k).unwrap().lsn, 5);
        let b = m.bytes();
        m.insert(k.clone(), 6, 60, None);
        assert_eq!(m.bytes(), b - 3);
        assert_eq!(m.get(&k).unwrap().value, None);
        assert_eq!((m.max_lsn(), m.max_ts(), m.len()), (6, 60, 1));
    }
}
