//! The block cache: verified, decompressed SST data blocks shared by every
//! table of a database, bounded by a byte budget (`Options::block_cache_bytes`).
//! Blocks stay in their on-disk encoding and point lookups search them in
//! place, so the budget is what the cache really holds (a decoded block of
//! many small allocations would cost a third more than it weighs) and a hit
//! allocates only the entry it returns. Point lookups fill it; scans and
//! compactions read around it so that one full scan does not evict the
//! working set. `quick_cache`'s policy (CLOCK-Pro style, scan resistant)
//! decides what stays.
//!
//! Open tables' indexes and filters are charged to the same budget
//! ([`BlockCache::reserve`]): the blocks get what they leave, but never less
//! than a quarter of it, so `block_cache_bytes` bounds the memory that grows
//! with the database, not only the blocks.

use std::sync::{Arc, Mutex};

use crate::mutex::lock;

/// A block's payload (checksum already verified) and what it costs to keep.
pub struct CachedBlock {
    pub raw: Vec<u8>,
    weight: u64,
}

impl CachedBlock {
    pub fn new(mut raw: Vec<u8>) -> CachedBlock {
        raw.shrink_to_fit();
        // The bytes, plus the Arc, the Vec header and the cache's own entry.
        let weight = raw.len() as u64 + 96;
        CachedBlock { raw, weight }
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
    /// (bytes reserved by open tables, capacity last given to `inner`).
    reserved: Mutex<(u64, u64)>,
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
            reserved: Mutex::new((0, bytes as u64)),
        }))
    }

    /// Take `bytes` of the budget away from the blocks (an open table's
    /// index and filter), evicting blocks if needed.
    pub fn reserve(&self, bytes: u64) {
        let mut r = lock(&self.reserved);
        r.0 += bytes;
        self.resize(&mut r);
    }

    /// Give back what [`BlockCache::reserve`] took.
    pub fn release(&self, bytes: u64) {
        let mut r = lock(&self.reserved);
        r.0 = r.0.saturating_sub(bytes);
        self.resize(&mut r);
    }

    fn resize(&self, r: &mut (u64, u64)) {
        let want = self.capacity.saturating_sub(r.0).max(self.capacity / 4);
        // Resizing rescales the cache's bookkeeping: skip changes under 1/64
        // of it, except to reach either end.
        let end = want == self.capacity || want == self.capacity / 4;
        if want != r.1 && (end || want.abs_diff(r.1) > self.capacity / 64) {
            self.inner.set_capacity(want);
            r.1 = want;
        }
    }

    /// Capacity left for blocks after open tables' reservations.
    pub fn block_capacity(&self) -> u64 {
        lock(&self.reserved).1
    }

    pub fn get(&self, file: u64, offset: u64) -> Option<Arc<CachedBlock>> {
        self.inner.get(&(file, offset))
    }

    pub fn insert(&self, file: u64, offset: u64, block: Arc<CachedBlock>) {
        self.inner.insert((file, offset), block);
    }

    /// Bytes of blocks held now (never more than the capacity).
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

    fn block(n: usize, size: usize) -> Arc<CachedBlock> {
        Arc::new(CachedBlock::new(vec![7u8; n * size]))
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

    #[test]
    fn reservations_shrink_the_blocks_share() {
        let c = BlockCache::new(1 << 20).unwrap();
        for i in 0..1000 {
            c.insert(i, 0, block(10, 1000));
        }
        c.reserve(600 << 10);
        assert!(
            c.used() <= (1 << 20) - (600 << 10) + (1 << 14),
            "{}",
            c.used()
        );
        // Never below a quarter, however much is reserved.
        c.reserve(10 << 20);
        assert_eq!(c.block_capacity(), (1 << 20) / 4);
        assert!(c.used() <= (1 << 20) / 4 + (1 << 14));
        c.release(10 << 20);
        c.release(600 << 10);
        assert_eq!(c.block_capacity(), 1 << 20);
    }
}
