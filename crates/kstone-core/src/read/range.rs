//! Key ranges and the merge of a stripe's sources (memtable + SSTs) into one
//! ordered stream where the newest version of each key wins.

use std::ops::Bound;

use crate::entry::Entry;
use crate::error::Result;
use crate::model::key::{Key, KeyRef, MAX_SK_BYTES};

/// A range of keys, each end inclusive, exclusive or open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    pub lo: Bound<Key>,
    pub hi: Bound<Key>,
}

impl KeyRange {
    pub fn all() -> KeyRange {
        KeyRange {
            lo: Bound::Unbounded,
            hi: Bound::Unbounded,
        }
    }

    /// Every key of one partition.
    pub fn partition(pk: &[u8]) -> KeyRange {
        KeyRange {
            lo: Bound::Included(partition_start(pk)),
            hi: Bound::Included(partition_end(pk)),
        }
    }

    /// `key` is below the lower bound.
    pub fn below_lo(&self, key: &Key) -> bool {
        self.below_lo_ref(key.as_key_ref())
    }

    pub fn below_lo_ref(&self, key: KeyRef<'_>) -> bool {
        match &self.lo {
            Bound::Included(b) => key < b.as_key_ref(),
            Bound::Excluded(b) => key <= b.as_key_ref(),
            Bound::Unbounded => false,
        }
    }

    /// `key` is below the upper bound (i.e. not past it).
    pub fn below_hi(&self, key: &Key) -> bool {
        match &self.hi {
            Bound::Included(b) => key <= b,
            Bound::Excluded(b) => key < b,
            Bound::Unbounded => true,
        }
    }

    pub fn contains(&self, key: &Key) -> bool {
        !self.below_lo(key) && self.below_hi(key)
    }
}

/// The smallest key of a partition (the item without a sort key).
pub fn partition_start(pk: &[u8]) -> Key {
    Key {
        pk: pk.to_vec(),
        sk: None,
    }
}

/// A key above every valid key of the partition (sort keys are at most
/// 1024 bytes, this one is longer and all 0xff).
pub fn partition_end(pk: &[u8]) -> Key {
    Key {
        pk: pk.to_vec(),
        sk: Some(vec![0xff; MAX_SK_BYTES + 1]),
    }
}

/// Merge sorted sources (each ascending, or each descending if `reverse`),
/// yielding for each key only the version with the highest LSN. Tombstones
/// are yielded too; callers drop them.
pub struct Merge<I: Iterator<Item = Result<Entry>>> {
    sources: Vec<std::iter::Peekable<I>>,
    reverse: bool,
}

impl<I: Iterator<Item = Result<Entry>>> Merge<I> {
    pub fn new(sources: Vec<I>, reverse: bool) -> Self {
        Merge {
            sources: sources.into_iter().map(Iterator::peekable).collect(),
            reverse,
        }
    }
}

impl<I: Iterator<Item = Result<Entry>>> Iterator for Merge<I> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        // Find the next key among the heads (few sources: a linear pass is fine).
        let mut best: Option<Key> = None;
        for s in &mut self.sources {
            match s.peek() {
                Some(Err(_)) => return s.next(),
                Some(Ok(e)) => {
                    let better = match &best {
                        None => true,
                        Some(b) if self.reverse => e.key > *b,
                        Some(b) => e.key < *b,
                    };
                    if better {
                        best = Some(e.key.clone());
                    }
                }
                None => {}
            }
        }
        let key = best?;
        let mut winner: Option<Entry> = None;
        for s in &mut self.sources {
            if matches!(s.peek(), Some(Ok(e)) if e.key == key) {
                if let Some(Ok(e)) = s.next() {
                    if winner.as_ref().is_none_or(|w| e.lsn > w.lsn) {
                        winner = Some(e);
                    }
                }
            }
        }
        winner.map(Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn e(k: &str, lsn: u64, v: Option<&str>) -> Result<Entry> {
        Ok(Entry {
            key: Key::new(k.as_bytes(), None).unwrap(),
            lsn,
            value: v.map(|v| Arc::from(v.as_bytes())),
        })
    }

    #[test]
    fn newest_wins() {
        let a = vec![e("a", 5, Some("new")), e("c", 1, Some("c"))];
        let b = vec![e("a", 2, Some("old")), e("b", 3, None)];
        let out: Vec<Entry> = Merge::new(vec![a.into_iter(), b.into_iter()], false)
            .collect::<Result<_>>()
            .unwrap();
        let keys: Vec<(&[u8], u64)> = out.iter().map(|e| (&e.key.pk[..], e.lsn)).collect();
        assert_eq!(keys, vec![(&b"a"[..], 5), (b"b", 3), (b"c", 1)]);
    }

    #[test]
    fn partition_bounds() {
        let r = KeyRange::partition(b"p");
        assert!(r.contains(&Key::new(b"p", None).unwrap()));
        assert!(r.contains(&Key::new(b"p", Some(&[0xff; 1024])).unwrap()));
        assert!(!r.contains(&Key::new(b"p\0", None).unwrap()));
        assert!(!r.contains(&Key::new(b"o", Some(b"z")).unwrap()));
    }
}
