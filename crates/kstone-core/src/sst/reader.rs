//! Reading an SST: the footer, index, filter and properties are held in
//! memory; data blocks are read one at a time with positioned reads, so a
//! table is never loaded whole.

use std::fs::File;
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::block::{self, Handle};
use super::bloom;
use super::builder::{KIND_PUT, KIND_TOMBSTONE};
use super::cache::{BlockCache, CachedBlock};
use super::cursor::parse_entry;
use super::footer::{Footer, Props, FOOTER_LEN};
use super::index::BlockIndex;
use crate::entry::Entry;
use crate::error::{Error, IoContext, Result};
use crate::model::key::{Key, KeyRef};
use crate::model::varint::Reader;
use crate::read::range::KeyRange;

/// An open, immutable SST.
#[derive(Debug)]
pub struct TableReader {
    path: PathBuf,
    file: File,
    size: u64,
    index: BlockIndex,
    filter: Vec<u8>,
    props: Props,
    /// The database's block cache and this table's file id in it.
    cache: Option<(Arc<BlockCache>, u64)>,
    /// Bytes of index and filter charged to the cache while the table is open.
    charged: u64,
}

impl Drop for TableReader {
    fn drop(&mut self) {
        if let Some((cache, _)) = &self.cache {
            cache.release(self.charged);
        }
    }
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "BlockCache({} of {} bytes)",
            self.used(),
            self.capacity()
        )
    }
}

impl TableReader {
    pub fn open(path: &Path) -> Result<TableReader> {
        let file = File::open(path).ctx(path)?;
        let size = file.metadata().ctx(path)?.len();
        let corrupt = |offset: u64, detail: String| Error::Corruption {
            path: path.to_path_buf(),
            offset,
            detail,
        };
        if size < FOOTER_LEN as u64 {
            return Err(corrupt(0, "file too short to be an SST".into()));
        }
        let mut fb = vec![0u8; FOOTER_LEN];
        let foot_at = size - FOOTER_LEN as u64;
        file.read_exact_at(&mut fb, foot_at).ctx(path)?;
        let footer = Footer::decode(&fb, path, foot_at)?;
        let mut t = TableReader {
            path: path.to_path_buf(),
            file,
            size,
            index: BlockIndex::default(),
            filter: Vec::new(),
            props: Props::default(),
            cache: None,
            charged: 0,
        };
        let index = t.read_block(footer.index)?;
        t.filter = t.read_block(footer.filter)?;
        t.props = Props::decode(&t.read_block(footer.props)?)
            .map_err(|e| corrupt(footer.props.offset, e.to_string()))?;
        t.index = BlockIndex::decode(&index)
            .map_err(|e| corrupt(footer.index.offset, format!("bad index: {e}")))?;
        for i in 0..t.index.len() {
            let h = t.index.handle(i).unwrap_or_default();
            if h.offset + u64::from(h.size) > foot_at {
                return Err(corrupt(
                    footer.index.offset,
                    "index points past the data".into(),
                ));
            }
        }
        t.filter.shrink_to_fit();
        Ok(t)
    }

    /// Open, sharing `cache` (if any) for point lookups under file id `id`.
    pub fn open_cached(
        path: &Path,
        cache: Option<&Arc<BlockCache>>,
        id: u64,
    ) -> Result<TableReader> {
        let mut t = TableReader::open(path)?;
        if let Some(c) = cache {
            // The index and filter live as long as the table: they count
            // against the cache's budget so that the budget bounds both.
            t.charged = (t.index.heap_bytes() + t.filter.capacity()) as u64;
            c.reserve(t.charged);
            t.cache = Some((Arc::clone(c), id));
        }
        Ok(t)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn props(&self) -> &Props {
        &self.props
    }

    fn corrupt_at(&self, h: Handle, detail: String) -> Error {
        Error::Corruption {
            path: self.path.clone(),
            offset: h.offset,
            detail,
        }
    }

    /// A block's bytes as on disk, bounds-checked, not yet verified.
    fn read_raw(&self, h: Handle) -> Result<Vec<u8>> {
        if h.offset.saturating_add(u64::from(h.size)) > self.size
            || h.size as usize > block::MAX_RAW_BLOCK + 64
        {
            return Err(self.corrupt_at(h, "block handle out of bounds".into()));
        }
        let mut buf = vec![0u8; h.size as usize];
        self.file
            .read_exact_at(&mut buf, h.offset)
            .ctx(&self.path)?;
        Ok(buf)
    }

    fn read_block(&self, h: Handle) -> Result<Vec<u8>> {
        block::open_owned(self.read_raw(h)?).map_err(|e| self.corrupt_at(h, e.to_string()))
    }

    /// Check every data block's checksum without decoding it (`open`
    /// checked the footer, index, filter and properties, so every byte of
    /// the file is covered): what a backup does to each table it stores.
    /// Returns the number of data blocks.
    pub fn check_blocks(&self) -> Result<usize> {
        for i in 0..self.index.len() {
            let h = self.index.handle(i).unwrap_or_default();
            block::check(&self.read_raw(h)?).map_err(|e| self.corrupt_at(h, e.to_string()))?;
        }
        Ok(self.index.len())
    }

    /// The on-disk byte ranges of the data blocks, in file order. They are
    /// contiguous from offset 0; the index, filter, properties and footer
    /// follow the last one. A block's bytes depend only on its entries
    /// (`sst/cut.rs`), so a backup can store a table as these pieces and
    /// keep each piece once, whatever table it reappears in.
    pub fn data_block_spans(&self) -> Vec<std::ops::Range<u64>> {
        (0..self.index.len())
            .filter_map(|i| self.index.handle(i))
            .map(|h| h.offset..h.offset + u64::from(h.size))
            .collect()
    }

    /// Data block `i`'s offset and verified payload; `None` past the last.
    pub(crate) fn data_block(&self, i: usize) -> Option<(u64, Result<Vec<u8>>)> {
        let h = self.index.handle(i)?;
        Some((h.offset, self.read_block(h)))
    }

    fn decode_block(&self, h: Handle) -> Result<Vec<Entry>> {
        let raw = self.read_block(h)?;
        decode_entries(&raw).map_err(|e| Error::Corruption {
            path: self.path.clone(),
            offset: h.offset,
            detail: format!("bad data block: {e}"),
        })
    }

    /// The newest version of `key` in this table, if it has one.
    pub fn get(&self, key: &Key) -> Result<Option<Entry>> {
        let mut enc = Vec::with_capacity(key.encoded_len());
        key.encode(&mut enc);
        Ok(self.find(key.as_key_ref(), &enc)?.map(|f| Entry {
            key: key.clone(),
            lsn: f.lsn,
            value: f.value().map(Arc::from),
        }))
    }

    /// The newest version of `key` (`enc` is its encoding), lent from its
    /// data block without copying it out.
    pub fn find(&self, key: KeyRef<'_>, enc: &[u8]) -> Result<Option<Found>> {
        if !bloom::may_contain(&self.filter, enc) {
            return Ok(None);
        }
        let i = self.index.find(key);
        let Some(handle) = self.index.handle(i) else {
            return Ok(None);
        };
        let block = match &self.cache {
            Some((cache, id)) => match cache.get(*id, handle.offset) {
                Some(b) => FoundBlock::Cached(b),
                None => {
                    let b = Arc::new(CachedBlock::new(self.read_block(handle)?));
                    cache.insert(*id, handle.offset, Arc::clone(&b));
                    FoundBlock::Cached(b)
                }
            },
            None => FoundBlock::Read(self.read_block(handle)?),
        };
        let raw = match &block {
            FoundBlock::Cached(b) => &b.raw,
            FoundBlock::Read(v) => v,
        };
        let at = find_in_block(raw, enc).map_err(|e| Error::Corruption {
            path: self.path.clone(),
            offset: handle.offset,
            detail: format!("bad data block: {e}"),
        })?;
        Ok(at.map(|(lsn, value)| Found { block, lsn, value }))
    }

    /// Every entry in key order, one block in memory at a time.
    pub fn iter(self: &Arc<Self>) -> TableIter {
        TableIter {
            table: Arc::clone(self),
            next_block: 0,
            buf: Vec::new().into_iter(),
        }
    }

    /// Read and check every block (used by integrity checks).
    pub fn verify(self: &Arc<Self>) -> Result<u64> {
        // Entries lent from the block (no copy per entry); the previous key
        // kept in one reused buffer.
        let mut c = super::cursor::TableCursor::new(Arc::clone(self))?;
        let mut n = 0;
        let mut prev: Option<Key> = None;
        while let Some(e) = c.head() {
            match prev.as_mut() {
                Some(p) if p.as_key_ref() >= e.key => {
                    return Err(Error::Corruption {
                        path: self.path.clone(),
                        offset: 0,
                        detail: "keys out of order".into(),
                    });
                }
                Some(p) => e.key.copy_into(p),
                None => prev = Some(e.key.to_key()),
            }
            // A lookup of the key must reach its block: an index whose keys
            // are wrong but checksummed (tampering, a bug) fails here, not
            // as a `get` that silently misses.
            if let Some((block, offset)) = c.block() {
                if self.index.find(e.key) != block {
                    return Err(Error::Corruption {
                        path: self.path.clone(),
                        offset,
                        detail: format!("the index does not lead to data block {block}'s keys"),
                    });
                }
            }
            n += 1;
            c.advance()?;
        }
        Ok(n)
    }
}

impl TableReader {
    /// Entries with keys in `range`, ascending (or descending if `reverse`),
    /// reading only the blocks that overlap it.
    pub fn range(self: &Arc<Self>, range: &KeyRange, reverse: bool) -> RangeIter {
        let start = if reverse {
            // The first block whose last key reaches the upper bound holds it.
            let i = match &range.hi {
                Bound::Unbounded => self.index.len(),
                Bound::Included(k) | Bound::Excluded(k) => {
                    let k = k.as_key_ref();
                    self.index.partition_point(|lk| lk < k)
                }
            };
            i.min(self.index.len().saturating_sub(1))
        } else {
            self.index.partition_point(|lk| range.below_lo_ref(lk))
        };
        RangeIter {
            table: Arc::clone(self),
            range: range.clone(),
            reverse,
            next_block: if self.index.is_empty() {
                None
            } else {
                Some(start)
            },
            buf: Vec::new().into_iter(),
            done: false,
        }
    }
}

/// Iterator over the entries of one table within a key range.
pub struct RangeIter {
    table: Arc<TableReader>,
    range: KeyRange,
    reverse: bool,
    next_block: Option<usize>,
    buf: std::vec::IntoIter<Entry>,
    done: bool,
}

impl Iterator for RangeIter {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        loop {
            if self.done {
                return None;
            }
            for e in self.buf.by_ref() {
                if self.reverse {
                    if !self.range.below_hi(&e.key) {
                        continue;
                    }
                    if self.range.below_lo(&e.key) {
                        self.done = true;
                        return None;
                    }
                } else {
                    if self.range.below_lo(&e.key) {
                        continue;
                    }
                    if !self.range.below_hi(&e.key) {
                        self.done = true;
                        return None;
                    }
                }
                return Some(Ok(e));
            }
            let Some(i) = self.next_block else {
                self.done = true;
                return None;
            };
            let Some(handle) = self.table.index.handle(i) else {
                self.done = true;
                return None;
            };
            self.next_block = if self.reverse {
                i.checked_sub(1)
            } else {
                Some(i + 1)
            };
            match self.table.decode_block(handle) {
                Ok(mut v) => {
                    if self.reverse {
                        v.reverse();
                    }
                    self.buf = v.into_iter();
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// Find the entry whose encoded key is `enc` in a data block, decoding only
/// that entry (keys are compared as encoded bytes: equality is all a point
/// lookup needs, so this skips [`parse_entry`]'s key decoding per entry).
/// A version found by [`TableReader::find`], with the block that holds its value.
pub struct Found {
    block: FoundBlock,
    pub lsn: u64,
    /// Where the value lies in the block (`None`: a tombstone).
    value: Option<std::ops::Range<usize>>,
}

enum FoundBlock {
    Cached(Arc<CachedBlock>),
    Read(Vec<u8>),
}

impl Found {
    /// The stored value, or `None` for a tombstone.
    pub fn value(&self) -> Option<&[u8]> {
        let raw = match &self.block {
            FoundBlock::Cached(b) => &b.raw,
            FoundBlock::Read(v) => v,
        };
        self.value.clone().and_then(|r| raw.get(r))
    }
}

/// An entry's LSN and where its value lies in the block (`None`: a tombstone).
type Located = (u64, Option<std::ops::Range<usize>>);

/// The entry whose encoded key is `enc`.
fn find_in_block(raw: &[u8], enc: &[u8]) -> Result<Option<Located>> {
    let mut r = Reader::new(raw);
    while !r.is_empty() {
        let k = r.len_prefixed()?;
        let lsn = r.uvarint()?;
        let kind = r.u8()?;
        let value = match kind {
            KIND_PUT => {
                let v = r.len_prefixed()?;
                let end = r.position();
                Some(end - v.len()..end)
            }
            KIND_TOMBSTONE => None,
            k => return Err(Error::Malformed(format!("unknown entry kind {k}"))),
        };
        if k == enc {
            return Ok(Some((lsn, value)));
        }
    }
    Ok(None)
}

fn decode_entries(raw: &[u8]) -> Result<Vec<Entry>> {
    let mut r = Reader::new(raw);
    let mut out = Vec::new();
    while !r.is_empty() {
        let e = parse_entry(&mut r)?;
        out.push(Entry {
            key: e.key.to_key(),
            lsn: e.lsn,
            value: e.value.map(Arc::from),
        });
    }
    Ok(out)
}

/// Iterator over a table's entries.
pub struct TableIter {
    table: Arc<TableReader>,
    next_block: usize,
    buf: std::vec::IntoIter<Entry>,
}

impl Iterator for TableIter {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        loop {
            if let Some(e) = self.buf.next() {
                return Some(Ok(e));
            }
            let handle = self.table.index.handle(self.next_block)?;
            self.next_block += 1;
            match self.table.decode_block(handle) {
                Ok(v) => self.buf = v.into_iter(),
                Err(e) => {
                    self.next_block = usize::MAX;
                    return Some(Err(e));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::block::Compression;
    use super::super::builder::TableBuilder;
    use super::*;

    fn entries(n: u32) -> Vec<Entry> {
        let mut v: Vec<Entry> = (0..n)
            .map(|i| Entry {
                key: Key::new(format!("pk{:06}", i / 3).as_bytes(), Some(&i.to_be_bytes()))
                    .unwrap(),
                lsn: u64::from(i) + 1,
                value: (i % 7 != 0).then(|| Arc::from(vec![i as u8; 100].as_slice())),
            })
            .collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    }

    fn build(dir: &Path, c: Compression, es: &[Entry]) -> Arc<TableReader> {
        let p = dir.join("t.sst");
        let mut b = TableBuilder::create(&p, 5, c).unwrap();
        es.iter().for_each(|e| b.add(e).unwrap());
        let built = b.finish().unwrap();
        assert_eq!(built.props.entries, es.len() as u64);
        Arc::new(TableReader::open(&p).unwrap())
    }

    /// `verify` follows every key through the index: an index whose keys
    /// were changed (its checksum made to match) is damage, although every
    /// block's checksum holds.
    #[test]
    fn verify_refuses_an_index_that_misleads_lookups() {
        use crate::model::varint::{put_len_prefixed, put_uvarint};
        let dir = tempfile::tempdir().unwrap();
        let es = entries(3000);
        let t = build(dir.path(), Compression::None, &es);
        assert_eq!(t.verify().unwrap(), 3000);
        assert!(t.index.len() > 3);
        let index_with = |forge: &dyn Fn(usize, Key) -> Key| {
            let mut raw = Vec::new();
            for i in 0..t.index.len() {
                let mut enc = Vec::new();
                forge(i, t.index.last_key(i).to_key()).encode(&mut enc);
                put_len_prefixed(&mut raw, &enc);
                let h = t.index.handle(i).unwrap();
                put_uvarint(&mut raw, h.offset);
                put_uvarint(&mut raw, u64::from(h.size));
            }
            BlockIndex::decode(&raw).unwrap()
        };
        let mut forged = TableReader::open(&dir.path().join("t.sst")).unwrap();
        // Block 1's last key made smaller: a lookup of it goes to block 2.
        forged.index = index_with(&|i, k| {
            if i == 1 {
                let mut sk = k.sk.clone().unwrap();
                *sk.last_mut().unwrap() = 0;
                Key::new(&k.pk, Some(&sk)).unwrap()
            } else {
                k
            }
        });
        let e = Arc::new(forged).verify().unwrap_err().to_string();
        assert!(e.contains("does not lead to data block 1"), "{e}");
        let mut same = TableReader::open(&dir.path().join("t.sst")).unwrap();
        same.index = index_with(&|_, k| k);
        assert_eq!(Arc::new(same).verify().unwrap(), 3000);
    }

    #[test]
    fn write_read_iterate() {
        let dir = tempfile::tempdir().unwrap();
        for c in [Compression::None, Compression::Zstd(1)] {
            let es = entries(3000);
            let t = build(dir.path(), c, &es);
            assert!(t.props().data_blocks > 10);
            for e in es.iter().step_by(37) {
                assert_eq!(t.get(&e.key).unwrap().as_ref(), Some(e));
            }
            assert_eq!(t.get(&Key::new(b"zzz", None).unwrap()).unwrap(), None);
            assert_eq!(t.get(&Key::new(b"pk000001", None).unwrap()).unwrap(), None);
            let all: Vec<Entry> = t.iter().collect::<Result<_>>().unwrap();
            assert_eq!(all, es);
            assert_eq!(t.verify().unwrap(), 3000);
        }
    }

    #[test]
    fn ranges_forward_and_reverse() {
        use std::ops::Bound;
        let dir = tempfile::tempdir().unwrap();
        let es = entries(3000);
        let t = build(dir.path(), Compression::None, &es);
        let cases = [
            (Bound::Unbounded, Bound::Unbounded),
            (
                Bound::Included(es[10].key.clone()),
                Bound::Excluded(es[2000].key.clone()),
            ),
            (
                Bound::Excluded(es[10].key.clone()),
                Bound::Included(es[2000].key.clone()),
            ),
            (
                Bound::Included(Key::new(b"pk000100", None).unwrap()),
                Bound::Excluded(Key::new(b"pk000101", None).unwrap()),
            ),
            (Bound::Included(es[2999].key.clone()), Bound::Unbounded),
            (Bound::Excluded(es[2999].key.clone()), Bound::Unbounded),
        ];
        for (lo, hi) in cases {
            let r = KeyRange {
                lo: lo.clone(),
                hi: hi.clone(),
            };
            let want: Vec<Entry> = es.iter().filter(|e| r.contains(&e.key)).cloned().collect();
            let fwd: Vec<Entry> = t.range(&r, false).collect::<Result<_>>().unwrap();
            assert!(
                fwd == want,
                "forward range differs ({} vs {} entries)",
                fwd.len(),
                want.len()
            );
            let mut rev: Vec<Entry> = t.range(&r, true).collect::<Result<_>>().unwrap();
            rev.reverse();
            assert!(
                rev == want,
                "reverse range differs ({} vs {} entries)",
                rev.len(),
                want.len()
            );
        }
    }

    #[test]
    fn out_of_order_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut es = entries(3);
        es.swap(0, 1);
        let mut b = TableBuilder::create(&dir.path().join("x.sst"), 0, Compression::None).unwrap();
        b.add(&es[0]).unwrap();
        assert!(b.add(&es[1]).is_err());
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let es = entries(40);
        build(dir.path(), Compression::None, &es);
        let p = dir.path().join("t.sst");
        let orig = std::fs::read(&p).unwrap();
        for i in 0..orig.len() {
            let mut b = orig.clone();
            b[i] ^= 0x01;
            std::fs::write(&p, &b).unwrap();
            let r = TableReader::open(&p).map(Arc::new).and_then(|t| t.verify());
            assert!(
                matches!(
                    r,
                    Err(Error::Corruption { .. }) | Err(Error::UnsupportedVersion { .. })
                ),
                "flip at {i}: {r:?}"
            );
        }
    }
}
