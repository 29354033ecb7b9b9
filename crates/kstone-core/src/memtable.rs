//! The in-memory table of a stripe's writes that are in the WAL but not yet
//! in an SST. It keeps only the newest version of each key.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::Arc;

use crate::entry::Entry;
use crate::model::key::{word, Key, KeyRef};
use crate::read::range::KeyRange;
use crate::slab_region::{Region, RegionBuf};

/// One version of a key as a memtable holds it: the key's first bytes inline
/// ([`Head`]), so most comparisons in the B-tree are decided without
/// following a pointer (a cache miss each on a large memtable), and pk, sk
/// and value in one allocation, so a write costs one allocation (and the
/// flush that retires it one free) instead of three.
#[derive(Debug)]
pub struct MemEntry {
    head: Head,
    lsn: u64,
    /// The pk's bytes, then the sk's, then the value's.
    bytes: Bytes,
    /// Length of the pk (at most 2048 bytes: `KeyRef::new` and
    /// `KeyRef::decode` check it).
    pk_len: u16,
    /// Length of the sk plus one, or 0 when there is no sk (at most 1024).
    sk_tag: u16,
    tombstone: bool,
}

impl MemEntry {
    /// A version of a key validated by `KeyRef::new` or `KeyRef::decode`
    /// (its lengths are stored as `u16`); `value: None` is a tombstone.
    pub(crate) fn new(key: KeyRef<'_>, lsn: u64, value: Option<&[u8]>) -> MemEntry {
        let sk = key.sk.unwrap_or_default();
        let v = value.unwrap_or_default();
        let mut bytes = Vec::with_capacity(key.pk.len() + sk.len() + v.len());
        bytes.extend_from_slice(key.pk);
        bytes.extend_from_slice(sk);
        bytes.extend_from_slice(v);
        let (pk_len, sk_tag) = key_lens(key);
        MemEntry {
            head: Head::of(key),
            lsn,
            bytes: Bytes::Own(bytes.into_boxed_slice()),
            pk_len,
            sk_tag,
            tombstone: value.is_none(),
        }
    }

    /// A version replayed from a WAL segment `map` ([`Bytes::Mapped`]):
    /// `key` and `value` are slices of it. `None` if they are not, or
    /// their offsets do not fit the entry (a segment over 4 GiB).
    pub(crate) fn in_map(
        map: &Arc<memmap2::Mmap>,
        key: KeyRef<'_>,
        lsn: u64,
        value: Option<&[u8]>,
    ) -> Option<MemEntry> {
        let base = map.as_ptr() as usize;
        let at = |b: &[u8]| {
            let start = (b.as_ptr() as usize).checked_sub(base)?;
            (start + b.len() <= map.len()).then_some(start)
        };
        let pk_at = at(key.pk)?;
        let pk_end = pk_at + key.pk.len();
        // Without an sk, "its" bytes are the empty slice after the pk.
        let sk_at = key.sk.map_or(Some(pk_end), at)?;
        let sk_end = sk_at + key.sk.map_or(0, <[u8]>::len);
        let (v_at, v_len) = match value {
            Some(v) => (at(v)?, v.len()),
            None => (sk_end, 0),
        };
        let (pk_len, sk_tag) = key_lens(key);
        Some(MemEntry {
            head: Head::of(key),
            lsn,
            bytes: Bytes::Mapped {
                map: Arc::clone(map),
                pk_at: u32::try_from(pk_at).ok()?,
                v_len: u32::try_from(v_len).ok()?,
                sk_gap: u8::try_from(sk_at.checked_sub(pk_end)?).ok()?,
                v_gap: u8::try_from(v_at.checked_sub(sk_end)?).ok()?,
            },
            pk_len,
            sk_tag,
            tombstone: value.is_none(),
        })
    }

    /// The pk's, the sk's and the value's bytes.
    fn parts(&self) -> (&[u8], &[u8], &[u8]) {
        let pk_len = usize::from(self.pk_len);
        let sk_len = usize::from(self.sk_tag.saturating_sub(1));
        match &self.bytes {
            Bytes::Mapped {
                map,
                pk_at,
                v_len,
                sk_gap,
                v_gap,
            } => {
                let pk_at = *pk_at as usize;
                let sk_at = pk_at + pk_len + usize::from(*sk_gap);
                let v_at = sk_at + sk_len + usize::from(*v_gap);
                let get = |at: usize, len: usize| map.get(at..at + len).unwrap_or_default();
                (
                    get(pk_at, pk_len),
                    get(sk_at, sk_len),
                    get(v_at, *v_len as usize),
                )
            }
            b => {
                let b = b.get();
                let (pk, rest) = b.split_at(pk_len.min(b.len()));
                let (sk, v) = rest.split_at(sk_len.min(rest.len()));
                (pk, sk, v)
            }
        }
    }

    pub fn key_ref(&self) -> KeyRef<'_> {
        let (pk, sk, _) = self.parts();
        KeyRef {
            pk,
            sk: (self.sk_tag > 0).then_some(sk),
        }
    }

    /// The value, or `None` for a tombstone.
    pub fn value(&self) -> Option<&[u8]> {
        (!self.tombstone).then(|| self.parts().2)
    }

    pub fn lsn(&self) -> u64 {
        self.lsn
    }

    /// Stamp the entry with its LSN (the write path assigns LSNs after
    /// validating and encoding a batch).
    pub fn set_lsn(&mut self, lsn: u64) {
        self.lsn = lsn;
    }

    pub fn stripe(&self) -> usize {
        crate::model::key::stripe_of(self.key_ref().pk)
    }

    /// Memory the entry holds, for the budget.
    fn cost(&self) -> usize {
        let (pk, sk, v) = self.parts();
        pk.len() + sk.len() + v.len() + ENTRY_OVERHEAD
    }

    /// Memory freed when the entry is dropped: a slab's bytes stay until
    /// every entry of the slab is gone (its memtable is flushed).
    fn freed(&self) -> usize {
        match self.bytes {
            Bytes::Own(_) => self.cost(),
            Bytes::Shared { .. } | Bytes::Mapped { .. } => ENTRY_OVERHEAD,
        }
    }

    fn to_entry(&self) -> Entry {
        Entry {
            key: self.key_ref().to_key(),
            lsn: self.lsn,
            value: self.value().map(Arc::from),
        }
    }
}

/// A key's `pk_len` and `sk_tag` as a [`MemEntry`] stores them.
fn key_lens(key: KeyRef<'_>) -> (u16, u16) {
    (
        key.pk.len() as u16,
        key.sk.map_or(0, |sk| sk.len() as u16 + 1),
    )
}

/// Where an entry's bytes live: its own allocation (every write), or a
/// range of a slab shared by the entries replay read from one WAL segment.
/// Replay builds hundreds of thousands of entries at once on several
/// threads; one allocation per record there spent most of `open` in malloc
/// growing each thread's arena (an `mprotect` per 128 KiB, each stalling the
/// other threads' page faults).
///
/// Or, where the database appends to its WAL through memory maps
/// (`Buffered` mode), bytes of a read-only map of the segment itself: replay
/// then copies nothing, and the pages are the page cache's, not fresh
/// memory the kernel must zero (half of replay's CPU when copied). The pk,
/// sk and value are not adjacent there (lengths are framed between them).
/// The map is safe for the reason the write path's is: the segment is this
/// process's (the database lock), it is never truncated below a record
/// replayed from it (a torn tail is cut after the scan, `trim` and
/// `abandon` cut only what was appended since), never rewritten, and a
/// deleted file stays mapped.
enum Bytes {
    Own(Box<[u8]>),
    Shared {
        slab: Arc<SlabBuf>,
        start: u32,
        len: u32,
    },
    Mapped {
        map: Arc<memmap2::Mmap>,
        pk_at: u32,
        v_len: u32,
        /// Bytes between the pk's end and the sk's start (the sk's flag and
        /// length; without an sk, the flag).
        sk_gap: u8,
        /// Bytes between the sk's (or flag's) end and the value's start.
        v_gap: u8,
    },
}

/// A slab's memory: the heap, or a range of its replay thread's map
/// (`slab_region.rs`).
enum SlabBuf {
    Heap(Vec<u8>),
    Region(RegionBuf),
}

impl SlabBuf {
    fn as_slice(&self) -> &[u8] {
        match self {
            SlabBuf::Heap(v) => v,
            SlabBuf::Region(r) => r.as_slice(),
        }
    }

    fn len(&self) -> usize {
        match self {
            SlabBuf::Heap(v) => v.len(),
            SlabBuf::Region(r) => r.len(),
        }
    }

    /// Append `b`; `false` if a region's range has no room for it.
    fn extend_from_slice(&mut self, b: &[u8]) -> bool {
        match self {
            SlabBuf::Heap(v) => {
                v.extend_from_slice(b);
                true
            }
            SlabBuf::Region(r) => r.extend_from_slice(b),
        }
    }

    fn room_for(&self, n: usize) -> bool {
        match self {
            SlabBuf::Heap(_) => true,
            SlabBuf::Region(r) => r.remaining() >= n,
        }
    }
}

impl Bytes {
    /// An entry's bytes where they are adjacent (empty for `Mapped`).
    fn get(&self) -> &[u8] {
        match self {
            Bytes::Own(b) => b,
            Bytes::Shared { slab, start, len } => {
                let start = *start as usize;
                slab.as_slice()
                    .get(start..start + *len as usize)
                    .unwrap_or_default()
            }
            Bytes::Mapped { .. } => &[],
        }
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bytes::Mapped { pk_at, v_len, .. } => write!(f, "Mapped({pk_at}, {v_len})"),
            b => b.get().fmt(f),
        }
    }
}

/// Entries whose bytes share one allocation (see [`Bytes`]): pushed one by
/// one, made entries by [`Slab::finish`].
pub(crate) struct Slab {
    buf: SlabBuf,
    pending: Vec<Parked>,
}

/// An entry pushed into a slab, before the slab is shared.
struct Parked {
    head: Head,
    lsn: u64,
    start: u32,
    len: u32,
    pk_len: u16,
    sk_tag: u16,
    tombstone: bool,
}

impl Slab {
    /// A slab for entries of about `bytes` bytes in all (a segment's length
    /// bounds its records' keys and values).
    pub(crate) fn with_capacity(bytes: usize) -> Slab {
        Slab {
            buf: SlabBuf::Heap(Vec::with_capacity(bytes.min(u32::MAX as usize))),
            pending: Vec::new(),
        }
    }

    /// A slab of at most `bytes` bytes in `region` (on the heap if the
    /// region has no room left).
    pub(crate) fn in_region(region: Option<&mut Region>, bytes: usize) -> Slab {
        let bytes = bytes.min(u32::MAX as usize);
        match region.and_then(|r| r.take(bytes)) {
            Some(r) => Slab {
                buf: SlabBuf::Region(r),
                pending: Vec::new(),
            },
            None => Slab::with_capacity(bytes),
        }
    }

    /// Add a version, as [`MemEntry::new`] would make it. A slab never
    /// grows past `u32::MAX` bytes: the rest go into entries of their own.
    pub(crate) fn push(
        &mut self,
        key: KeyRef<'_>,
        lsn: u64,
        value: Option<&[u8]>,
        spill: &mut Vec<MemEntry>,
    ) {
        let sk = key.sk.unwrap_or_default();
        let v = value.unwrap_or_default();
        let len = key.pk.len() + sk.len() + v.len();
        let (Ok(start), Ok(len32)) = (u32::try_from(self.buf.len()), u32::try_from(len)) else {
            spill.push(MemEntry::new(key, lsn, value));
            return;
        };
        if start.checked_add(len32).is_none() || !self.buf.room_for(len) {
            spill.push(MemEntry::new(key, lsn, value));
            return;
        }
        for part in [key.pk, sk, v] {
            // Cannot fail: `room_for` checked the whole record.
            self.buf.extend_from_slice(part);
        }
        let (pk_len, sk_tag) = key_lens(key);
        self.pending.push(Parked {
            head: Head::of(key),
            lsn,
            start,
            len: len32,
            pk_len,
            sk_tag,
            tombstone: value.is_none(),
        });
    }

    /// The entries pushed, appended to `out`.
    pub(crate) fn finish(mut self, out: &mut Vec<MemEntry>) {
        // The capacity was a bound (a segment's frames, and any zeros
        // allocated ahead of them); shrinking in place copies nothing. A
        // region's unused pages were never touched, so hold no memory.
        if let SlabBuf::Heap(v) = &mut self.buf {
            v.shrink_to_fit();
        }
        let slab = Arc::new(self.buf);
        out.extend(self.pending.into_iter().map(|p| MemEntry {
            head: p.head,
            lsn: p.lsn,
            bytes: Bytes::Shared {
                slab: Arc::clone(&slab),
                start: p.start,
                len: p.len,
            },
            pk_len: p.pk_len,
            sk_tag: p.sk_tag,
            tombstone: p.tombstone,
        }));
    }
}

/// The first 16 bytes of the pk and the first 8 of the sk, zero-padded,
/// as big-endian words. Keys are often ids with a long common prefix
/// (`user#0000012345`), which 8 bytes alone cannot tell apart; 16 hold a
/// whole key of that shape, and the sk's head decides among the items of
/// one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    pk: [u64; 2],
    sk: u64,
}

impl Head {
    fn of(key: KeyRef<'_>) -> Head {
        Head {
            pk: [word(key.pk, 0), word(key.pk, 8)],
            sk: key.sk.map_or(0, |sk| word(sk, 0)),
        }
    }
}

/// Order two keys exactly as `KeyRef`'s `Ord` does, reading the heads first
/// and the keys' bytes (behind a pointer) only when the heads cannot decide.
fn cmp_keys(a: (Head, KeyRef<'_>), b: (Head, KeyRef<'_>)) -> Ordering {
    let ((ha, ka), (hb, kb)) = (a, b);
    if ha.pk != hb.pk {
        return ha.pk.cmp(&hb.pk);
    }
    // Equal heads and equal lengths up to 16 bytes: the pks are equal, so the
    // sks decide (no sk first), by their heads when those differ.
    if ka.pk.len() <= 16 && ka.pk.len() == kb.pk.len() {
        return match (ka.sk, kb.sk) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(_), Some(_)) if ha.sk != hb.sk => ha.sk.cmp(&hb.sk),
            (Some(x), Some(y)) if x.len() <= 8 && x.len() == y.len() => Ordering::Equal,
            (Some(x), Some(y)) => crate::model::key::cmp_bytes(x, y),
        };
    }
    ka.cmp(&kb)
}

/// What a lookup compares: an owned [`MemEntry`] or a borrowed probe, so
/// that `get` and `range` need not build (allocate) an entry.
trait Lookup {
    fn parts(&self) -> (Head, KeyRef<'_>);
}

impl Lookup for MemEntry {
    fn parts(&self) -> (Head, KeyRef<'_>) {
        (self.head, self.key_ref())
    }
}

impl Lookup for (Head, &Key) {
    fn parts(&self) -> (Head, KeyRef<'_>) {
        (self.0, self.1.as_key_ref())
    }
}

impl Lookup for (Head, KeyRef<'_>) {
    fn parts(&self) -> (Head, KeyRef<'_>) {
        (self.0, self.1)
    }
}

fn probe(key: &Key) -> (Head, &Key) {
    (Head::of(key.as_key_ref()), key)
}

fn as_dyn<'a, 'k>(b: &'a Bound<(Head, &'k Key)>) -> Bound<&'a (dyn Lookup + 'k)> {
    match b {
        Bound::Included(p) => Bound::Included(p),
        Bound::Excluded(p) => Bound::Excluded(p),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl<'a> Borrow<dyn Lookup + 'a> for MemEntry {
    fn borrow(&self) -> &(dyn Lookup + 'a) {
        self
    }
}

impl Ord for dyn Lookup + '_ {
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_keys(self.parts(), other.parts())
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

/// Entries order by key alone (a set holds one version per key). Static,
/// not through `dyn Lookup`: an insert compares entries with entries, and
/// most comparisons end at the pk heads.
impl Ord for MemEntry {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        if self.head.pk != other.head.pk {
            return self.head.pk.cmp(&other.head.pk);
        }
        cmp_keys((self.head, self.key_ref()), (other.head, other.key_ref()))
    }
}

impl PartialOrd for MemEntry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for MemEntry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for MemEntry {}

/// Approximate per-entry overhead of the B-tree node and the entry, for budgeting.
const ENTRY_OVERHEAD: usize = 64;

#[derive(Debug, Default)]
pub struct Memtable {
    set: BTreeSet<MemEntry>,
    bytes: usize,
    max_lsn: u64,
    max_ts: u64,
}

impl Memtable {
    /// Insert a version (committed at `ts`); an older LSN never replaces a
    /// newer one.
    pub fn insert(&mut self, e: MemEntry, ts: u64) {
        let lsn = e.lsn;
        self.max_lsn = self.max_lsn.max(lsn);
        self.max_ts = self.max_ts.max(ts);
        let add = e.cost();
        // One search per insert (the memtable is on every write's path); the
        // rare older version (a replay out of order) is put back.
        match self.set.replace(e) {
            None => self.bytes += add,
            Some(old) if old.lsn > lsn => {
                self.set.replace(old);
            }
            Some(old) => self.bytes = self.bytes + add - old.freed(),
        }
    }

    /// A memtable of `versions` (any order; of each key the highest LSN
    /// is kept), whose newest commit time is `max_ts`. Replay builds a
    /// stripe's memtable this way: one sort and a bulk build of the B-tree
    /// cost a fraction of inserting the versions one by one.
    pub fn from_versions(versions: Vec<MemEntry>, max_ts: u64) -> Memtable {
        // Sort (pk head, index) pairs rather than the entries: most
        // comparisons end at the heads, and a swap moves 24 bytes, not 64.
        let mut order: Vec<([u64; 2], u32)> = versions
            .iter()
            .enumerate()
            .map(|(i, e)| (e.head.pk, i as u32))
            .collect();
        order.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0).then_with(|| {
                let (x, y) = (&versions[a.1 as usize], &versions[b.1 as usize]);
                x.cmp(y).then(y.lsn.cmp(&x.lsn))
            })
        });
        let mut slots: Vec<Option<MemEntry>> = versions.into_iter().map(Some).collect();
        let mut sorted: Vec<MemEntry> = Vec::with_capacity(order.len());
        // Bytes older versions leave behind in their slabs.
        let mut stranded = 0;
        for (_, i) in order {
            if let Some(e) = slots[i as usize].take() {
                // Of equal keys the newest comes first; the rest are older.
                if sorted.last() != Some(&e) {
                    sorted.push(e);
                } else {
                    stranded += e.cost() - e.freed();
                }
            }
        }
        let bytes = stranded + sorted.iter().map(MemEntry::cost).sum::<usize>();
        let max_lsn = sorted.iter().map(|e| e.lsn).max().unwrap_or(0);
        Memtable {
            // Sorted and distinct: the set's own sort finds one run.
            set: sorted.into_iter().collect(),
            bytes,
            max_lsn,
            max_ts,
        }
    }

    pub fn get(&self, key: &Key) -> Option<Entry> {
        let p = probe(key);
        self.set.get(&p as &dyn Lookup).map(MemEntry::to_entry)
    }

    /// The version of `key` held here, lent (a read needs no copy of it).
    pub fn get_ref(&self, key: KeyRef<'_>) -> Option<&MemEntry> {
        let p = (Head::of(key), key);
        self.set.get(&p as &dyn Lookup)
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
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
            .set
            .range::<dyn Lookup, _>((as_dyn(&lo), as_dyn(&hi)))
            .map(MemEntry::to_entry);
        if reverse {
            it.rev().collect()
        } else {
            it.collect()
        }
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = Entry> + '_ {
        self.set.iter().map(MemEntry::to_entry)
    }

    /// Entries in key order, borrowed (a flush copies them straight into
    /// table blocks).
    pub fn iter_refs(&self) -> impl Iterator<Item = (KeyRef<'_>, u64, Option<&[u8]>)> + '_ {
        self.set.iter().map(|e| (e.key_ref(), e.lsn, e.value()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::record::OpRef;
    use std::collections::BTreeMap;

    /// A common prefix of one of `lens` bytes, then a short tail: keys that
    /// share the inline heads, end inside or just past them, or end in zero
    /// bytes (the heads' padding value).
    fn shared_prefix(
        lens: &'static [usize],
        tail: usize,
    ) -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        let bytes = proptest::prop_oneof![Just(0u8), Just(1u8), Just(b'0'), Just(0xffu8)];
        (
            proptest::sample::select(lens),
            proptest::collection::vec(bytes, 0..tail),
        )
            .prop_map(|(n, tail)| {
                let mut k = vec![b'0'; n];
                k.extend(tail);
                k
            })
    }

    /// Partition keys around the 16-byte head (never empty).
    fn pk_strategy() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        shared_prefix(&[0, 6, 8, 12, 15, 16], 6).prop_map(|mut k| {
            if k.is_empty() {
                k.push(1);
            }
            k
        })
    }
    use proptest::prelude::*;

    /// Lookups and ranges agree with a map ordered by `Key` alone.
    fn agrees_with_model(
        keys: &[(Vec<u8>, Option<Vec<u8>>)],
        lo: usize,
        hi: usize,
        reverse: bool,
    ) -> Result<(), TestCaseError> {
        let mut m = Memtable::default();
        let mut model = BTreeMap::new();
        // Every third write a tombstone, the others a value of i bytes,
        // so entries with and without sks, values and tombstones mix.
        let value = |i: usize| (!i.is_multiple_of(3)).then(|| vec![i as u8; i]);
        for (i, (pk, sk)) in keys.iter().enumerate() {
            let k = Key::new(pk, sk.as_deref()).unwrap();
            let v = value(i);
            m.insert(MemEntry::new(k.as_key_ref(), i as u64 + 1, v.as_deref()), 0);
            model.insert(k, (i as u64 + 1, v));
        }
        let all: Vec<Key> = model.keys().cloned().collect();
        for k in &all {
            let got = m
                .get(k)
                .map(|e| (e.key, e.lsn, e.value.map(|v| v.to_vec())));
            let (lsn, v) = model[k].clone();
            prop_assert_eq!(got, Some((k.clone(), lsn, v)));
        }
        let refs: Vec<(Key, u64, Option<Vec<u8>>)> = m
            .iter_refs()
            .map(|(k, lsn, v)| (k.to_key(), lsn, v.map(<[u8]>::to_vec)))
            .collect();
        let want_refs: Vec<(Key, u64, Option<Vec<u8>>)> = model
            .iter()
            .map(|(k, (lsn, v))| (k.clone(), *lsn, v.clone()))
            .collect();
        prop_assert_eq!(refs, want_refs);
        let (a, b) = (&all[lo % all.len()], &all[hi % all.len()]);
        let range = KeyRange {
            lo: Bound::Included(a.clone()),
            hi: Bound::Excluded(b.clone()),
        };
        let got: Vec<Key> = m
            .range(&range, reverse)
            .into_iter()
            .map(|e| e.key)
            .collect();
        let mut want: Vec<Key> = if a < b {
            model
                .range(a.clone()..b.clone())
                .map(|(k, _)| k.clone())
                .collect()
        } else {
            Vec::new()
        };
        if reverse {
            want.reverse();
        }
        prop_assert_eq!(got, want);
        let iterated: Vec<Key> = m.iter().map(|e| e.key).collect();
        prop_assert_eq!(iterated, all);
        Ok(())
    }

    proptest! {
        #[test]
        fn prefix_keys_order_like_keys(
            keys in proptest::collection::vec(
                (pk_strategy(), proptest::option::of(shared_prefix(&[0, 4, 7, 8], 4))),
                1..40),
            lo in 0usize..40, hi in 0usize..40, reverse in any::<bool>(),
        ) {
            agrees_with_model(&keys, lo, hi, reverse)?;
        }

        /// Many items in a few partitions whose pks fill the head or pass
        /// it: the sks' heads and lengths decide.
        #[test]
        fn sort_keys_order_like_keys(
            keys in proptest::collection::vec(
                (
                    proptest::sample::select(vec![vec![b'0'; 15], vec![b'0'; 16], vec![b'0'; 17]]),
                    proptest::option::of(shared_prefix(&[0, 7, 8, 8], 3)),
                ),
                1..40),
            lo in 0usize..40, hi in 0usize..40, reverse in any::<bool>(),
        ) {
            agrees_with_model(&keys, lo, hi, reverse)?;
        }
    }

    proptest::proptest! {
        /// A memtable built in bulk holds what inserting the same versions
        /// one by one holds: the newest version of each key, the same bytes.
        #[test]
        fn bulk_build_agrees_with_inserts(
            ops in proptest::collection::vec((0u8..12, 0u8..3, proptest::option::of(0u8..4)), 0..120),
            seed in 0u64..1009,
        ) {
            let mut one_by_one = Memtable::default();
            let mut versions = Vec::new();
            let (mut slabs, mut shared, mut all_bytes) = (Vec::new(), Vec::new(), 0);
            // The same versions as WAL records, to be replayed from a map.
            let (mut framed, mut frames) = (Vec::new(), Vec::new());
            let mut region = Region::for_sizes(vec![7 * 25; ops.len() / 14 + 1]);
            let mut max_ts = 0;
            for (i, (pk, sk, v)) in ops.iter().enumerate() {
                // Distinct LSNs in a shuffled order (a stripe's WAL never
                // repeats one): 7919 is invertible modulo the prime 1009.
                let lsn = &(1 + (i as u64 * 7919 + seed) % 1009);
                let pk = [b'p'; 20].iter().copied().chain([*pk]).collect::<Vec<u8>>();
                let sk = [*sk];
                let key = Key::new(&pk, (sk[0] != 0).then_some(&sk[..])).unwrap();
                let value = v.map(|n| vec![n; n as usize]);
                let ts = i as u64 * 7;
                max_ts = max_ts.max(ts);
                one_by_one.insert(MemEntry::new(key.as_key_ref(), *lsn, value.as_deref()), ts);
                versions.push(MemEntry::new(key.as_key_ref(), *lsn, value.as_deref()));
                // The same versions as replay makes them: a slab per 7,
                // every other one in a region (room for 7 of the largest).
                if i % 7 == 0 {
                    slabs.push(if i % 14 == 0 {
                        Slab::with_capacity(0)
                    } else {
                        Slab::in_region(region.as_mut(), 7 * 25)
                    });
                }
                if let Some(slab) = slabs.last_mut() {
                    slab.push(key.as_key_ref(), *lsn, value.as_deref(), &mut shared);
                }
                let at = framed.len();
                crate::wal::record::encode_data(*lsn, ts, key.as_key_ref(), value.as_deref(), &mut framed);
                frames.push(at..framed.len());
                all_bytes += pk.len() + usize::from(sk[0] != 0) + value.map_or(0, |v| v.len());
            }
            for slab in slabs {
                slab.finish(&mut shared);
            }
            let map = mapped(&framed);
            let in_map = frames
                .iter()
                .map(|f| {
                    let p = &map[f.start + crate::wal::record::FRAME_HEADER..f.end];
                    let r = crate::wal::record::RecordRef::decode_payload(p).unwrap();
                    let (key, value) = match r.op {
                        OpRef::Put { key, value } => (key, Some(value)),
                        OpRef::Delete { key } => (key, None),
                        OpRef::Marker { .. } => unreachable!(),
                    };
                    MemEntry::in_map(&map, key, r.lsn, value).unwrap()
                })
                .collect();
            let bulk = Memtable::from_versions(versions, max_ts);
            let from_slabs = Memtable::from_versions(shared, max_ts);
            let from_map = Memtable::from_versions(in_map, max_ts);
            let all = |m: &Memtable| m.iter().map(|e| (e.key, e.lsn, e.value)).collect::<Vec<_>>();
            proptest::prop_assert_eq!(all(&bulk), all(&one_by_one));
            proptest::prop_assert_eq!(all(&from_slabs), all(&one_by_one));
            proptest::prop_assert_eq!(all(&from_map), all(&one_by_one));
            // The map, like a slab, stays until the memtable goes.
            proptest::prop_assert_eq!(from_map.bytes(), from_slabs.bytes());
            // Slabs hold every version's bytes until the memtable goes,
            // and the budget counts them all.
            proptest::prop_assert_eq!(
                from_slabs.bytes(),
                all_bytes + from_slabs.len() * ENTRY_OVERHEAD
            );
            proptest::prop_assert_eq!(bulk.bytes(), one_by_one.bytes());
            proptest::prop_assert_eq!(bulk.max_lsn(), one_by_one.max_lsn());
            proptest::prop_assert_eq!(bulk.max_ts(), one_by_one.max_ts());
        }
    }

    /// A read-only map of a file holding `bytes`, as replay maps a segment.
    fn mapped(bytes: &[u8]) -> Arc<memmap2::Mmap> {
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, bytes).unwrap();
        // SAFETY: an unnamed temporary file no one else can reach.
        Arc::new(unsafe { memmap2::Mmap::map(&f) }.unwrap())
    }

    /// Keys and values outside the map, or too far apart for the entry's
    /// offsets, make no mapped entry (replay then copies them).
    #[test]
    fn a_version_not_in_the_map_makes_no_mapped_entry() {
        let mut framed = Vec::new();
        let key = Key::new(b"pk", Some(b"sk")).unwrap();
        crate::wal::record::encode_data(1, 1, key.as_key_ref(), Some(b"value"), &mut framed);
        let map = mapped(&framed);
        let at = |b: &[u8]| map.windows(b.len()).position(|w| w == b).unwrap();
        let (pk, sk, v) = (at(b"pk"), at(b"sk"), at(b"value"));
        let k = KeyRef {
            pk: &map[pk..pk + 2],
            sk: Some(&map[sk..sk + 2]),
        };
        let e = MemEntry::in_map(&map, k, 1, Some(&map[v..v + 5])).unwrap();
        assert_eq!(e.key_ref(), key.as_key_ref());
        assert_eq!(e.value(), Some(&b"value"[..]));
        assert_eq!(e.cost(), 9 + ENTRY_OVERHEAD);
        // A value elsewhere in memory.
        assert!(MemEntry::in_map(&map, k, 1, Some(b"value")).is_none());
        // An sk before its pk.
        let swapped = KeyRef {
            pk: &map[sk..sk + 2],
            sk: Some(&map[pk..pk + 2]),
        };
        assert!(MemEntry::in_map(&map, swapped, 1, None).is_none());
        // A value more than 255 bytes after the key.
        let far = vec![7u8; 600];
        let map = mapped(&far);
        let k = KeyRef {
            pk: &map[..2],
            sk: None,
        };
        assert!(MemEntry::in_map(&map, k, 1, Some(&map[400..410])).is_none());
        let e = MemEntry::in_map(&map, k, 1, Some(&map[3..10])).unwrap();
        assert_eq!(e.value(), Some(&far[3..10]));
        let tomb = MemEntry::in_map(&map, k, 2, None).unwrap();
        assert_eq!((tomb.value(), tomb.key_ref().pk), (None, &far[..2]));
    }

    #[test]
    fn entry_size() {
        // The bulk build's comment and the budget's overhead assume it.
        assert_eq!(std::mem::size_of::<MemEntry>(), 64);
    }

    /// A record that does not fit its slab's range in the region becomes
    /// an entry of its own: every version reads back, and the budget
    /// counts each once.
    #[test]
    fn a_record_past_a_region_slab_s_room_gets_its_own_entry() {
        let mut region = Region::for_sizes([12]);
        let mut slab = Slab::in_region(region.as_mut(), 12);
        let mut versions = Vec::new();
        let keys = [b"k1", b"k2", b"k3"];
        for (i, k) in keys.iter().enumerate() {
            let key = Key::new(&k[..], None).unwrap();
            slab.push(key.as_key_ref(), i as u64 + 1, Some(b"vvvv"), &mut versions);
        }
        // k1 and k2 (6 bytes each) fill the range; k3 spilled at once.
        assert_eq!(versions.len(), 1);
        assert!(matches!(versions[0].bytes, Bytes::Own(_)));
        slab.finish(&mut versions);
        assert_eq!(versions.len(), 3);
        let m = Memtable::from_versions(versions, 0);
        for k in keys {
            let e = m.get(&Key::new(&k[..], None).unwrap()).unwrap();
            assert_eq!(e.value.as_deref(), Some(&b"vvvv"[..]));
        }
        assert_eq!(m.bytes(), 3 * (6 + ENTRY_OVERHEAD));
    }

    #[test]
    fn a_replaced_slab_entry_keeps_its_bytes_counted() {
        let k = Key::new(b"a", None).unwrap();
        let (mut slab, mut versions) = (Slab::with_capacity(64), Vec::new());
        slab.push(k.as_key_ref(), 5, Some(b"slab-value"), &mut versions);
        slab.finish(&mut versions);
        let mut m = Memtable::from_versions(versions, 50);
        let b = m.bytes();
        assert_eq!(b, 11 + ENTRY_OVERHEAD);
        assert_eq!(
            m.get(&k).unwrap().value.as_deref(),
            Some(&b"slab-value"[..])
        );
        // The slab stays until the memtable goes: only the entry is freed.
        let newer = MemEntry::new(k.as_key_ref(), 6, Some(b"v"));
        let add = newer.cost();
        m.insert(newer, 60);
        assert_eq!(m.bytes(), b + add - ENTRY_OVERHEAD);
        assert_eq!(m.get(&k).unwrap().value.as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn newest_wins_and_bytes_track() {
        let mut m = Memtable::default();
        let k = Key::new(b"a", None).unwrap();
        m.insert(MemEntry::new(k.as_key_ref(), 5, Some(b"new")), 50);
        let b = m.bytes();
        // An older version (a replay out of order) changes nothing.
        m.insert(MemEntry::new(k.as_key_ref(), 3, Some(b"old-value")), 30);
        assert_eq!(m.get(&k).unwrap().lsn, 5);
        assert_eq!(m.get(&k).unwrap().value.as_deref(), Some(&b"new"[..]));
        assert_eq!(m.bytes(), b);
        m.insert(MemEntry::new(k.as_key_ref(), 6, None), 60);
        assert_eq!(m.bytes(), b - 3);
        assert_eq!(m.get(&k).unwrap().value, None);
        assert_eq!((m.max_lsn(), m.max_ts(), m.len()), (6, 60, 1));
    }
}
