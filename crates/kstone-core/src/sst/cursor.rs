//! A forward cursor over every entry of a table that lends each entry out of
//! the current block's buffer instead of allocating it (the whole-database
//! scan's path; ranged reads use [`super::reader::RangeIter`]). Like range
//! reads, it reads around the block cache so a scan does not evict the
//! point-lookup working set.

use std::sync::Arc;

use super::builder::{KIND_PUT, KIND_TOMBSTONE};
use super::reader::TableReader;
use crate::error::{Error, Result};
use crate::model::key::KeyRef;
use crate::model::varint::Reader;

/// One version of one key, borrowed from where it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef<'a> {
    pub key: KeyRef<'a>,
    pub lsn: u64,
    /// The encoded item, or `None` for a tombstone.
    pub value: Option<&'a [u8]>,
}

/// Parse the data-block entry at the reader's position (format in
/// `docs/formats.md`: key, LSN, kind, value).
pub fn parse_entry<'a>(r: &mut Reader<'a>) -> Result<EntryRef<'a>> {
    let key = KeyRef::decode(&mut Reader::new(r.len_prefixed()?))?;
    let lsn = r.uvarint()?;
    let value = match r.u8()? {
        KIND_PUT => Some(r.len_prefixed()?),
        KIND_TOMBSTONE => None,
        k => return Err(Error::Malformed(format!("unknown entry kind {k}"))),
    };
    Ok(EntryRef { key, lsn, value })
}

pub struct TableCursor {
    table: Arc<TableReader>,
    next_block: usize,
    block: Vec<u8>,
    block_offset: u64,
    /// The current entry, parsed once into ranges of `block`.
    cur: Option<Parsed>,
}

/// Where the current entry's parts lie in the block.
#[derive(Clone, Copy)]
struct Parsed {
    pk: (usize, usize),
    sk: Option<(usize, usize)>,
    lsn: u64,
    value: Option<(usize, usize)>,
    end: usize,
}

/// `part`'s range within `base` (`part` is a subslice of it).
fn span(base: &[u8], part: &[u8]) -> (usize, usize) {
    let at = part.as_ptr() as usize - base.as_ptr() as usize;
    (at, at + part.len())
}

impl TableCursor {
    /// A cursor on the table's first entry.
    pub fn new(table: Arc<TableReader>) -> Result<TableCursor> {
        let mut c = TableCursor {
            table,
            next_block: 0,
            block: Vec::new(),
            block_offset: 0,
            cur: None,
        };
        c.parse_at(0)?;
        Ok(c)
    }

    fn corrupt(&self, e: Error) -> Error {
        Error::Corruption {
            path: self.table.path().to_path_buf(),
            offset: self.block_offset,
            detail: format!("bad data block: {e}"),
        }
    }

    /// Make the entry at `pos` current, loading blocks until one has an
    /// entry there (or the table ends).
    fn parse_at(&mut self, mut pos: usize) -> Result<()> {
        while pos >= self.block.len() {
            let Some((offset, block)) = self.table.data_block(self.next_block) else {
                self.block.clear();
                self.cur = None;
                return Ok(());
            };
            self.next_block += 1;
            self.block_offset = offset;
            self.block = block?;
            pos = 0;
        }
        let base = &self.block[..];
        let mut r = Reader::new(&base[pos..]);
        let parsed = parse_entry(&mut r).map(|e| Parsed {
            pk: span(base, e.key.pk),
            sk: e.key.sk.map(|sk| span(base, sk)),
            lsn: e.lsn,
            value: e.value.map(|v| span(base, v)),
            end: pos + r.position(),
        });
        match parsed {
            Ok(p) => {
                self.cur = Some(p);
                Ok(())
            }
            Err(e) => {
                self.cur = None;
                Err(self.corrupt(e))
            }
        }
    }

    /// The current entry; `None` once the table is done.
    pub fn head(&self) -> Option<EntryRef<'_>> {
        let p = self.cur?;
        let b = &self.block;
        Some(EntryRef {
            key: KeyRef {
                pk: &b[p.pk.0..p.pk.1],
                sk: p.sk.map(|(a, z)| &b[a..z]),
            },
            lsn: p.lsn,
            value: p.value.map(|(a, z)| &b[a..z]),
        })
    }

    /// The number and file offset of the current entry's data block.
    pub fn block(&self) -> Option<(usize, u64)> {
        self.cur
            .map(|_| (self.next_block.saturating_sub(1), self.block_offset))
    }

    /// Move to the next entry.
    pub fn advance(&mut self) -> Result<()> {
        match self.cur {
            Some(p) => self.parse_at(p.end),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::block::Compression;
    use super::super::builder::TableBuilder;
    use super::*;
    use crate::entry::Entry;
    use crate::model::key::Key;

    #[test]
    fn lends_every_entry_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let es: Vec<Entry> = (0..2000u32)
            .map(|i| Entry {
                key: Key::new(format!("p{i:05}").as_bytes(), (i % 3 == 0).then_some(b"s")).unwrap(),
                lsn: u64::from(i) + 1,
                value: (i % 5 != 0).then(|| Arc::from(vec![i as u8; 60].as_slice())),
            })
            .collect();
        for c in [Compression::None, Compression::Zstd(1)] {
            let p = dir.path().join("t.sst");
            let mut b = TableBuilder::create(&p, 1, c).unwrap();
            es.iter().for_each(|e| b.add(e).unwrap());
            b.finish().unwrap();
            let t = Arc::new(TableReader::open(&p).unwrap());
            assert!(t.props().data_blocks > 5);
            let mut cur = TableCursor::new(t).unwrap();
            for e in &es {
                let h = cur.head().unwrap();
                assert_eq!(h.key, e.key.as_key_ref());
                assert_eq!(h.lsn, e.lsn);
                assert_eq!(h.value, e.value.as_deref());
                cur.advance().unwrap();
            }
            assert!(cur.head().is_none());
            cur.advance().unwrap();
        }
    }

    /// A flipped byte in any data block stops the walk with a corruption
    /// error naming the table, never a wrong entry.
    #[test]
    fn flipped_data_bytes_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.sst");
        let mut b = TableBuilder::create(&p, 1, Compression::None).unwrap();
        for i in 0..3000u32 {
            let e = Entry {
                key: Key::new(format!("p{i:05}").as_bytes(), None).unwrap(),
                lsn: 1,
                value: Some(Arc::from(vec![7u8; 50].as_slice())),
            };
            b.add(&e).unwrap();
        }
        b.finish().unwrap();
        let good = std::fs::read(&p).unwrap();
        // Data blocks come first; the last one starts before this.
        let data_end = {
            let t = TableReader::open(&p).unwrap();
            let mut i = 0;
            let mut end = 0;
            while let Some((offset, block)) = t.data_block(i) {
                block.unwrap();
                end = offset;
                i += 1;
            }
            end as usize
        };
        for at in (0..data_end).step_by(997) {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            std::fs::write(&p, &bad).unwrap();
            let t = Arc::new(TableReader::open(&p).unwrap());
            let walk = (|| -> Result<u32> {
                let mut c = TableCursor::new(t)?;
                let mut n = 0;
                while c.head().is_some() {
                    n += 1;
                    c.advance()?;
                }
                Ok(n)
            })();
            match walk {
                Err(Error::Corruption { path, .. }) => assert_eq!(path, p),
                other => panic!("flip at {at}: {other:?}"),
            }
        }
    }
}
