//! The block cache: decoded SST data blocks shared by every table of a
//! database, bounded by a byte budget (`Options::block_cache_bytes`).
//! Point lookups fill it; scans and compactions read around it so that one
//! full scan does not evict the working set. `quick_cache`'s policy (CLOCK-Pro
//! style, scan resistant) decides what stays.

use std::sync::Arc;

use crate::entry::Entry;

/// A decoded block and what it costs to keep.
pub struct CachedBlock {
    pub entries: Vec<Entry>,
    weight: u64,
}

impl CachedBlock {
    pub fn new(entries: Vec<Entry>) -> CachedBlock {
        // Per entry: the Entry itself, the key's bytes, the value's bytes.
        let weight = entries
            .iter()
            .map(|e| {
                (std::mem::size_of::<Entry>()
                    + e.key.pk.len()
                    + e.key.sk.as_ref().map_or(0, |s| s.len())
                    + e.value.as_ref().map_or(0, |v| v.len() + 16)) as u64
            })
            .sum::<u64>()
            + 64;
        CachedBlock { entries, weight }
    }
}

#[derive(Clone)]
struct ByWeight;

impl quick_cache::Weighter<(u64, u64), Arc<CachedBlock>> for ByWeight {
    fn weight(&self, _key: &(u64, u64), val: &Arc<CachedBlock>) -> u64 {
        val.weight
    }
}

/// Blocks keyed by (SST file id, block offset). File ids are never reused,
/// so a block of a deleted table can only age out, never be read wrongly.
pub struct BlockCache {
    inner: quick_cache::sync::Cache<(u64, u64), Arc<CachedBlock>, ByWeight>,
    capacity: u64,
}

impl BlockCache {
    /// A cache of at most `bytes`; `None` for 0 (no cache).
    pub fn new(bytes: usize) -> Option<Arc<BlockCache>> {
        if bytes == 0 {
            return None;
        }
        // quick_cache wants an item-count estimate; blocks decode to ~8 KiB.
        let items = (bytes / 8192).max(16);
        Some(Arc::new(BlockCache {
            inner: quick_cache::sync::Cache::with_weighter(items, bytes as u64, ByWeight),
            capacity: bytes as u64,
        }))
    }

    pub fn get(&self, file: u64, offset: u64) -> Option<Arc<CachedBlock>> {
        self.inner.get(&(file, offset))
    }

    pub fn insert(&self, file: u64, offset: u64, block: Arc<CachedBlock>) {
        self.inner.insert((file, offset), block);
    }

    /// Bytes held now (never more than the capacity).
    pub fn used(&self) -> u64 {
        self.inner.weight()
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::key::Key;

    fn block(n: usize, size: usize) -> Arc<CachedBlock> {
        Arc::new(CachedBlock::new(
            (0..n)
                .map(|i| Entry {
                    key: Key::new(format!("k{i}").as_bytes(), None).unwrap(),
                    lsn: i as u64,
                    value: Some(vec![7u8; size].into()),
                })
                .collect(),
        ))
    }

    #[test]
    fn stays_within_its_budget() {
        let c = BlockCache::new(1 << 20).unwrap();
        for i in 0..1000 {
            c.insert(i, 0, block(10, 1000));
            assert!(c.used() <= c.capacity(), "{} > {}", c.used(), c.capacity());
        }
        assert!(c.used() > (1 << 19), "cache barely used: {}", c.used());
        assert!(c.get(999, 0).is_some());
        assert!(BlockCache::new(0).is_none());
    }
}
