//! The in-memory table of a stripe's writes that are in the WAL but not yet
//! in an SST. It keeps only the newest version of each key.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use crate::entry::Entry;
use crate::model::key::{Key, KeyRef};
use crate::read::range::KeyRange;

/// A memtable key with the first 8 bytes of its partition key inline. Most
/// comparisons in the B-tree are decided by the prefix alone, without
/// following the key's heap pointers (a cache miss each on a large memtable).
#[derive(Debug)]
struct MemKey {
    prefix: u64,
    key: Key,
}

/// First 8 bytes of `pk`, zero-padded, big-endian: if two prefixes differ,
/// they order as the keys do (padding is the smallest byte).
fn prefix(pk: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = pk.len().min(8);
    b[..n].copy_from_slice(&pk[..n]);
    u64::from_be_bytes(b)
}

/// What a lookup compares: an owned [`MemKey`] or a borrowed probe, so that
/// `get` and `range` need not build (allocate) a `MemKey`.
trait Lookup {
    fn parts(&self) -> (u64, KeyRef<'_>);
}

impl Lookup for MemKey {
    fn parts(&self) -> (u64, KeyRef<'_>) {
        (self.prefix, self.key.as_key_ref())
    }
}

impl Lookup for (u64, &Key) {
    fn parts(&self) -> (u64, KeyRef<'_>) {
        (self.0, self.1.as_key_ref())
    }
}

fn probe(key: &Key) -> (u64, &Key) {
    (prefix(&key.pk), key)
}

fn as_dyn<'a, 'k>(b: &'a Bound<(u64, &'k Key)>) -> Bound<&'a (dyn Lookup + 'k)> {
    match b {
        Bound::Included(p) => Bound::Included(p),
        Bound::Excluded(p) => Bound::Excluded(p),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl<'a> Borrow<dyn Lookup + 'a> for MemKey {
    fn borrow(&self) -> &(dyn Lookup + 'a) {
        self
    }
}

impl Ord for dyn Lookup + '_ {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (self.parts(), other.parts());
        a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1))
    }
}

impl PartialOrd for dyn Lookup + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for dyn Lookup + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for dyn Lookup + '_ {}

impl Ord for MemKey {
    fn cmp(&self, other: &Self) -> Ordering {
        (self as &dyn Lookup).cmp(other as &dyn Lookup)
    }
}

impl PartialOrd for MemKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for MemKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for MemKey {}

/// Approximate per-entry overhead of the B-tree node and `Arc`, for budgeting.
const ENTRY_OVERHEAD: usize = 64;

/// A key's LSN and value (`None` = tombstone).
type Version = (u64, Option<Arc<[u8]>>);

#[derive(Debug, Default)]
pub struct Memtable {
    map: BTreeMap<MemKey, Version>,
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
        let key = MemKey {
            prefix: prefix(&key.pk),
            key,
        };
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
        let p = probe(key);
        self.map.get(&p as &dyn Lookup).map(|(lsn, value)| Entry {
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
        let lo = range.lo.as_ref().map(probe);
        let hi = range.hi.as_ref().map(probe);
        let it = self
            .map
            .range::<dyn Lookup, _>((as_dyn(&lo), as_dyn(&hi)))
            .map(|(k, (lsn, v))| Entry {
                key: k.key.clone(),
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
            key: k.key.clone(),
            lsn: *lsn,
            value: v.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Partition keys around the 8-byte inline prefix: short, exactly 8,
    /// longer, with zero bytes (the prefix's padding value) at the end.
    fn pk_strategy() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            proptest::prop_oneof![Just(0u8), Just(1u8), Just(0xffu8)],
            1..11,
        )
    }
    use proptest::prelude::*;

    proptest! {
        /// Lookups and ranges agree with a map ordered by `Key` alone.
        #[test]
        fn prefix_keys_order_like_keys(
            keys in proptest::collection::vec(
                (pk_strategy(), proptest::option::of(proptest::collection::vec(0u8..3, 0..3))),
                1..40),
            lo in 0usize..40, hi in 0usize..40, reverse in any::<bool>(),
        ) {
            let mut m = Memtable::default();
            let mut model = BTreeMap::new();
            for (i, (pk, sk)) in keys.iter().enumerate() {
                let k = Key::new(pk, sk.as_deref()).unwrap();
                m.insert(k.clone(), i as u64 + 1, 0, None);
                model.insert(k, i as u64 + 1);
            }
            let all: Vec<Key> = model.keys().cloned().collect();
            for k in &all {
                prop_assert_eq!(m.get(k).map(|e| e.lsn), model.get(k).copied());
            }
            let (a, b) = (&all[lo % all.len()], &all[hi % all.len()]);
            let range = KeyRange { lo: Bound::Included(a.clone()), hi: Bound::Excluded(b.clone()) };
            let got: Vec<Key> = m.range(&range, reverse).into_iter().map(|e| e.key).collect();
            let mut want: Vec<Key> = if a < b {
                model.range(a.clone()..b.clone()).map(|(k, _)| k.clone()).collect()
            } else {
                Vec::new()
            };
            if reverse {
                want.reverse();
            }
            prop_assert_eq!(got, want);
            let iterated: Vec<Key> = m.iter().map(|e| e.key).collect();
            prop_assert_eq!(iterated, all);
        }
    }

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
