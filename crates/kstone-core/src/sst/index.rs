//! An SST's block index as held in memory: each data block's last key and
//! handle, packed (the keys back to back in one buffer, a fixed-size slot per
//! block) so that an open table costs a few dozen bytes per block rather than
//! a `Key` with two heap allocations. Lookups compare borrowed [`KeyRef`]s.
//!
//! The on-disk index block it is parsed from is described in `docs/formats.md`.

use super::block::Handle;
use crate::error::{Error, Result};
use crate::model::key::{Key, KeyRef};
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
        Ok(idx)
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
        let (mut lo, mut hi) = (0, self.slots.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(self.last_key(mid)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Heap memory held.
    pub fn heap_bytes(&self) -> usize {
        self.keys.capacity() + self.slots.capacity() * std::mem::size_of::<Slot>()
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
}
