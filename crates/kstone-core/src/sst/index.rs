//! An SST's block index as held in memory: each data block's last key and
//! handle, packed (the keys back to back in one buffer, a fixed-size slot per
//! block) so that an open table costs a few dozen bytes per block rather than
//! a `Key` with two heap allocations. Lookups compare borrowed [`KeyRef`]s.
//!
//! A lookup first searches one `u64` per block, the 8 bytes of its last
//! key's pk after the prefix every block's last pk shares (a table's keys
//! are often ids with a long common prefix), and compares whole keys only
//! among blocks whose words tie: the words of a table's blocks are 8 bytes
//! each in one array, where whole keys are a slot and a key elsewhere, two
//! cache misses per step of a search on a large database.
//!
//! The on-disk index block it is parsed from is described in `docs/formats.md`.

use super::block::Handle;
use crate::error::{Error, Result};
use crate::model::key::{word, Key, KeyRef};
use crate::model::varint::Reader;

/// `sk_len` of a key without a sort key.
const NO_SK: u16 = u16::MAX;

#[derive(Debug, Clone, Copy)]
struct Slot {
    key_at: u32,
    pk_len: u16,
    sk_len: u16,
    size: u32,
    offset: u64,
}

#[derive(Debug, Default)]
pub struct BlockIndex {
    keys: Vec<u8>,
    slots: Vec<Slot>,
    /// Per block, `word(pk, prefix)` of its last key.
    words: Vec<u64>,
    /// Length of the pk prefix all blocks' last keys share (the first
    /// block's key holds it).
    prefix: usize,
}

impl BlockIndex {
    /// Parse an index block: per data block, its last key (length-prefixed
    /// [`Key`] encoding), then the block's offset and size as varints.
    pub fn decode(raw: &[u8]) -> Result<BlockIndex> {
        let mut idx = BlockIndex::default();
        let mut r = Reader::new(raw);
        while !r.is_empty() {
            let key = Key::decode(&mut Reader::new(r.len_prefixed()?))?;
            let offset = r.uvarint()?;
            let size = u32::try_from(r.uvarint()?)
                .map_err(|_| Error::Malformed("block size too large".into()))?;
            let key_at = u32::try_from(idx.keys.len())
                .map_err(|_| Error::Malformed("index too large".into()))?;
            // Key::decode bounds pk to 2048 and sk to 1024 bytes.
            let pk_len = key.pk.len() as u16;
            let sk_len = key.sk.as_ref().map_or(NO_SK, |s| s.len() as u16);
            idx.keys.extend_from_slice(&key.pk);
            idx.keys
                .extend_from_slice(key.sk.as_deref().unwrap_or_default());
            idx.slots.push(Slot {
                key_at,
                pk_len,
                sk_len,
                size,
                offset,
            });
        }
        idx.keys.shrink_to_fit();
        idx.slots.shrink_to_fit();
        if let (Some(first), Some(last)) = (idx.slots.first(), idx.slots.last()) {
            // Keys are in order, so every pk between the first and the last
            // starts with what those two share.
            let (a, b) = (idx.pk(*first), idx.pk(*last));
            idx.prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
            idx.words = idx
                .slots
                .iter()
                .map(|s| word(idx.pk(*s), idx.prefix))
                .collect();
        }
        Ok(idx)
    }

    fn pk(&self, s: Slot) -> &[u8] {
        let at = s.key_at as usize;
        &self.keys[at..at + usize::from(s.pk_len)]
    }

    /// The first block whose last key is not below `key`: the block that
    /// holds `key` if any does (`len()` if `key` is past every block).
    pub fn find(&self, key: KeyRef<'_>) -> usize {
        let shared = self.slots.first().map(|s| &self.pk(*s)[..self.prefix]);
        if shared.is_none_or(|p| !key.pk.starts_with(p)) {
            return self.partition_point(|lk| lk < key);
        }
        // Blocks whose word is below the key's hold only keys below it,
        // blocks whose word is above only keys above it.
        let w = word(key.pk, self.prefix);
        let lo = self.words.partition_point(|&x| x < w);
        let tied = self.words[lo..].partition_point(|&x| x == w);
        lo + Self::search(tied, |i| self.last_key(lo + i) < key)
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The last key of block `i` (`i < len()`).
    pub fn last_key(&self, i: usize) -> KeyRef<'_> {
        let s = self.slots[i];
        let pk_at = s.key_at as usize;
        let sk_at = pk_at + usize::from(s.pk_len);
        KeyRef {
            pk: &self.keys[pk_at..sk_at],
            sk: (s.sk_len != NO_SK).then(|| &self.keys[sk_at..sk_at + usize::from(s.sk_len)]),
        }
    }

    pub fn handle(&self, i: usize) -> Option<Handle> {
        self.slots.get(i).map(|s| Handle {
            offset: s.offset,
            size: s.size,
        })
    }

    /// The first block whose last key does not satisfy `pred` (blocks are in
    /// key order, so `pred` holds for a prefix of them).
    pub fn partition_point(&self, pred: impl Fn(KeyRef<'_>) -> bool) -> usize {
        Self::search(self.slots.len(), |i| pred(self.last_key(i)))
    }

    /// The first of `0..n` for which `below` is false (it holds for a prefix).
    fn search(n: usize, below: impl Fn(usize) -> bool) -> usize {
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if below(mid) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Heap memory held.
    pub fn heap_bytes(&self) -> usize {
        self.keys.capacity()
            + self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.words.capacity() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::varint::{put_len_prefixed, put_uvarint};

    #[test]
    fn packs_and_finds() {
        let keys = [
            Key::new(b"a", None).unwrap(),
            Key::new(b"a", Some(b"")).unwrap(),
            Key::new(b"a", Some(b"zz")).unwrap(),
            Key::new(b"bb", None).unwrap(),
        ];
        let mut raw = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let mut enc = Vec::new();
            k.encode(&mut enc);
            put_len_prefixed(&mut raw, &enc);
            put_uvarint(&mut raw, i as u64 * 100);
            put_uvarint(&mut raw, 50 + i as u64);
        }
        let idx = BlockIndex::decode(&raw).unwrap();
        assert_eq!(idx.len(), 4);
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(idx.last_key(i), k.as_key_ref());
            assert_eq!(
                idx.handle(i),
                Some(Handle {
                    offset: i as u64 * 100,
                    size: 50 + i as u32
                })
            );
            assert_eq!(idx.partition_point(|lk| lk < k.as_key_ref()), i);
        }
        assert_eq!(idx.handle(4), None);
        assert!(BlockIndex::decode(&raw[..raw.len() - 1]).is_err());
    }

    fn index_of(keys: &[Key]) -> BlockIndex {
        let mut raw = Vec::new();
        for k in keys {
            let mut enc = Vec::new();
            k.encode(&mut enc);
            put_len_prefixed(&mut raw, &enc);
            put_uvarint(&mut raw, 0);
            put_uvarint(&mut raw, 1);
        }
        BlockIndex::decode(&raw).unwrap()
    }

    /// Keys like ids: a shared prefix of some length, then a few bytes from
    /// a small alphabet (ties in the words), sometimes ending early.
    fn id_key() -> impl proptest::strategy::Strategy<Value = Key> {
        use proptest::prelude::*;
        (
            proptest::sample::select(vec![0usize, 3, 8, 13]),
            proptest::collection::vec(proptest::sample::select(vec![0u8, 1, b'0', 0xff]), 1..12),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..3)),
        )
            .prop_map(|(n, tail, sk)| {
                let pk: Vec<u8> = std::iter::repeat_n(b'u', n).chain(tail).collect();
                Key::new(&pk, sk.as_deref()).unwrap()
            })
    }

    proptest::proptest! {
        /// The word search finds the block a whole-key search finds, for
        /// probes inside, outside and around the shared prefix.
        #[test]
        fn find_agrees_with_a_whole_key_search(
            mut keys in proptest::collection::vec(id_key(), 1..60),
            probes in proptest::collection::vec(id_key(), 1..30),
        ) {
            keys.sort();
            keys.dedup();
            let idx = index_of(&keys);
            for p in probes.iter().chain(&keys) {
                let p = p.as_key_ref();
                proptest::prop_assert_eq!(idx.find(p), idx.partition_point(|lk| lk < p));
            }
        }
    }

    #[test]
    fn find_in_a_single_and_an_empty_index() {
        let k = |pk: &[u8]| Key::new(pk, None).unwrap();
        let one = index_of(&[k(b"user#0042")]);
        assert_eq!(one.find(k(b"user#0041").as_key_ref()), 0);
        assert_eq!(one.find(k(b"user#0042").as_key_ref()), 0);
        assert_eq!(one.find(k(b"user#0043").as_key_ref()), 1);
        assert_eq!(one.find(k(b"a").as_key_ref()), 0);
        let empty = BlockIndex::default();
        assert_eq!(empty.find(k(b"a").as_key_ref()), 0);
    }
}
