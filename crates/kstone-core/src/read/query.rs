//! Query (one partition, sort-key conditions) and scan (whole database,
//! parallel segments), both paginated DynamoDB-style.

use std::ops::Bound;

use super::range::{partition_end, partition_start, KeyRange, Merge};
use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::model::key::{stripe_of, Key, KeyRef, STRIPES};
use crate::model::value::{decode_item, Item};
use crate::Database;

/// A condition on the sort key of a query. Items without a sort key match
/// only a query without a condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortKeyCondition {
    Eq(Vec<u8>),
    Lt(Vec<u8>),
    Le(Vec<u8>),
    Gt(Vec<u8>),
    Ge(Vec<u8>),
    /// Both ends inclusive; `low` must not be greater than `high`.
    Between(Vec<u8>, Vec<u8>),
    BeginsWith(Vec<u8>),
    /// Between two bounds of any kind (what a typed condition becomes: see
    /// [`crate::KeySchema::condition`]).
    Range(Bound<Vec<u8>>, Bound<Vec<u8>>),
}

impl SortKeyCondition {
    /// Does a sort key satisfy the condition?
    pub fn matches(&self, sk: Option<&[u8]>) -> bool {
        let Some(sk) = sk else { return false };
        match self {
            SortKeyCondition::Eq(x) => sk == x.as_slice(),
            SortKeyCondition::Lt(x) => sk < x.as_slice(),
            SortKeyCondition::Le(x) => sk <= x.as_slice(),
            SortKeyCondition::Gt(x) => sk > x.as_slice(),
            SortKeyCondition::Ge(x) => sk >= x.as_slice(),
            SortKeyCondition::Between(a, b) => sk >= a.as_slice() && sk <= b.as_slice(),
            SortKeyCondition::BeginsWith(p) => sk.starts_with(p),
            SortKeyCondition::Range(lo, hi) => within(sk, lo, hi),
        }
    }
}

/// Is `x` within `lo..hi`?
pub fn within(x: &[u8], lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>) -> bool {
    let above = match lo {
        Bound::Included(l) => x >= l.as_slice(),
        Bound::Excluded(l) => x > l.as_slice(),
        Bound::Unbounded => true,
    };
    above
        && match hi {
            Bound::Included(h) => x <= h.as_slice(),
            Bound::Excluded(h) => x < h.as_slice(),
            Bound::Unbounded => true,
        }
}

/// A query of one partition.
///
/// ```
/// use kstone_core::{Database, Options, Query, SortKeyCondition, item_from_plain_json};
/// let dir = tempfile::tempdir().unwrap();
/// let db = Database::create(dir.path().join("q"), Options::default()).unwrap();
/// for sk in ["2024-01", "2024-02", "2025-01"] {
///     db.put(b"user#1", Some(sk.as_bytes()), &item_from_plain_json("{}").unwrap()).unwrap();
/// }
/// let mut q = Query::new(b"user#1");
/// q.condition = Some(SortKeyCondition::BeginsWith(b"2024".to_vec()));
/// q.reverse = true;
/// let page = db.query(&q).unwrap();
/// assert_eq!(page.items[0].0.sk.as_deref(), Some(&b"2024-02"[..]));
/// assert_eq!(page.items.len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub pk: Vec<u8>,
    pub condition: Option<SortKeyCondition>,
    /// Descending sort-key order.
    pub reverse: bool,
    /// At most this many items in the page.
    pub limit: Option<usize>,
    /// Continue after this key (a previous page's `last_evaluated_key`).
    pub exclusive_start: Option<Key>,
}

impl Query {
    pub fn new(pk: &[u8]) -> Query {
        Query {
            pk: pk.to_vec(),
            condition: None,
            reverse: false,
            limit: None,
            exclusive_start: None,
        }
    }
}

/// A scan of the whole database, or of one segment of a parallel scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    pub limit: Option<usize>,
    /// This worker's segment, `0..total_segments`.
    pub segment: usize,
    /// Number of disjoint segments (1 = the whole table), 1 to 1,000,000 as
    /// in DynamoDB. Segments split the 256 stripes, so more than 256
    /// segments leaves some empty.
    pub total_segments: usize,
    pub exclusive_start: Option<Key>,
}

/// DynamoDB's bounds on `TotalSegments`.
pub const MAX_TOTAL_SEGMENTS: usize = 1_000_000;

impl Default for Scan {
    /// The whole table in one segment, no limit.
    fn default() -> Scan {
        Scan {
            limit: None,
            segment: 0,
            total_segments: 1,
            exclusive_start: None,
        }
    }
}

/// One page of results.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    pub items: Vec<(Key, Item)>,
    /// Set when more results may follow; pass it as `exclusive_start`.
    pub last_evaluated_key: Option<Key>,
}

/// The smallest key above every key starting with `p` (None if unbounded).
fn prefix_successor(p: &[u8]) -> Option<Vec<u8>> {
    let mut v = p.to_vec();
    while let Some(&last) = v.last() {
        if last == 0xff {
            v.pop();
        } else {
            let n = v.len();
            v[n - 1] += 1;
            return Some(v);
        }
    }
    None
}

fn query_range(q: &Query) -> Result<KeyRange> {
    let k = |sk: &[u8]| Key {
        pk: q.pk.clone(),
        sk: Some(sk.to_vec()),
    };
    let any_sk = Bound::Included(k(b""));
    let end = Bound::Included(partition_end(&q.pk));
    let (lo, hi) = match &q.condition {
        None => (Bound::Included(partition_start(&q.pk)), end),
        Some(c) => match c {
            SortKeyCondition::Eq(x) => (Bound::Included(k(x)), Bound::Included(k(x))),
            SortKeyCondition::Lt(x) => (any_sk, Bound::Excluded(k(x))),
            SortKeyCondition::Le(x) => (any_sk, Bound::Included(k(x))),
            SortKeyCondition::Gt(x) => (Bound::Excluded(k(x)), end),
            SortKeyCondition::Ge(x) => (Bound::Included(k(x)), end),
            SortKeyCondition::Between(a, b) => {
                if a > b {
                    return Err(Error::InvalidInput(
                        "between: the low sort key is greater than the high one".into(),
                    ));
                }
                (Bound::Included(k(a)), Bound::Included(k(b)))
            }
            SortKeyCondition::Range(lo, hi) => {
                let empty = match (lo, hi) {
                    (Bound::Included(a), Bound::Included(b)) => a > b,
                    (Bound::Included(a) | Bound::Excluded(a), Bound::Excluded(b))
                    | (Bound::Excluded(a), Bound::Included(b)) => a >= b,
                    _ => false,
                };
                if empty {
                    // Nothing matches; an empty range of this partition.
                    (Bound::Excluded(k(b"")), Bound::Excluded(k(b"")))
                } else {
                    (
                        match lo {
                            Bound::Included(x) => Bound::Included(k(x)),
                            Bound::Excluded(x) => Bound::Excluded(k(x)),
                            Bound::Unbounded => any_sk,
                        },
                        match hi {
                            Bound::Included(x) => Bound::Included(k(x)),
                            Bound::Excluded(x) => Bound::Excluded(k(x)),
                            Bound::Unbounded => end,
                        },
                    )
                }
            }
            SortKeyCondition::BeginsWith(p) => (
                Bound::Included(k(p)),
                match prefix_successor(p) {
                    Some(s) => Bound::Excluded(k(&s)),
                    None => end,
                },
            ),
        },
    };
    let mut r = KeyRange { lo, hi };
    if let Some(start) = &q.exclusive_start {
        if start.pk != q.pk {
            return Err(Error::InvalidInput(
                "exclusive start key belongs to another partition".into(),
            ));
        }
        if q.reverse {
            if r.below_hi(start) {
                r.hi = Bound::Excluded(start.clone());
            }
        } else if !r.below_lo(start) {
            r.lo = Bound::Excluded(start.clone());
        }
    }
    Ok(r)
}

impl Database {
    /// Merged, newest-wins entries of one stripe in `range` (tombstones included).
    pub(crate) fn stripe_range(
        &self,
        stripe: usize,
        range: &KeyRange,
        reverse: bool,
    ) -> Merge<Box<dyn Iterator<Item = Result<Entry>> + Send>> {
        let (mems, tables) = {
            let st = self.stripe_state(stripe);
            let mems: Vec<Vec<Entry>> = std::iter::once(&st.mem)
                .chain(st.sealed.iter().map(|s| &s.mem))
                .map(|m| m.range(range, reverse))
                .collect();
            (mems, st.tables.clone())
        };
        // Newest first: the active memtable, the sealed ones, then the tables.
        let mut sources: Vec<Box<dyn Iterator<Item = Result<Entry>> + Send>> = mems
            .into_iter()
            .map(|m| Box::new(m.into_iter().map(Ok)) as Box<dyn Iterator<Item = _> + Send>)
            .collect();
        for t in &tables {
            sources.push(Box::new(t.range(range, reverse)));
        }
        Merge::new(sources, reverse)
    }

    /// Items of one partition matching the query, one page at a time.
    pub fn query(&self, q: &Query) -> Result<Page> {
        Key::new(&q.pk, None)?;
        if q.limit == Some(0) {
            return Err(Error::InvalidInput("a limit must be at least 1".into()));
        }
        let range = query_range(q)?;
        let it = self.stripe_range(stripe_of(&q.pk), &range, q.reverse);
        let cond = q.condition.clone();
        collect_page(
            it.filter(move |e| match (e, &cond) {
                (Ok(e), Some(c)) => c.matches(e.key.sk.as_deref()),
                _ => true,
            }),
            q.limit,
        )
    }

    /// Call `f` for every item, in scan order (stripe, then key); returns the
    /// number of items. Each stripe is read from one consistent view, its
    /// entries lent from the table blocks (no per-item copy of the key).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = kstone_core::Database::create(dir.path().join("d"), Default::default()).unwrap();
    /// # db.put(b"a", None, &kstone_core::item_from_plain_json("{}").unwrap()).unwrap();
    /// let n = db.for_each_item(|_key, _item| Ok::<(), kstone_core::Error>(())).unwrap();
    /// assert_eq!(n, 1);
    /// ```
    pub fn for_each_item<E>(
        &self,
        mut f: impl FnMut(&Key, &Item) -> std::result::Result<(), E>,
    ) -> std::result::Result<u64, E>
    where
        E: From<Error>,
    {
        let mut key = Key {
            pk: Vec::new(),
            sk: None,
        };
        self.for_each_encoded(|k, bytes| {
            k.copy_into(&mut key);
            f(&key, &decode_item(bytes)?)
        })
    }

    /// [`Database::for_each_item`] without the typed decode: `f` gets each
    /// item's key and its stored bytes (the binary item encoding of
    /// `docs/formats.md`; [`decode_item`] turns them into an [`Item`]), both
    /// lent from the table block being read: for work that copies, hashes or
    /// counts items and has no use for them typed.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let db = kstone_core::Database::create(dir.path().join("d"), Default::default()).unwrap();
    /// # db.put(b"a", None, &kstone_core::item_from_plain_json(r#"{"n":"x"}"#).unwrap()).unwrap();
    /// let mut bytes = 0;
    /// let n = db
    ///     .for_each_encoded(|_key, item| {
    ///         bytes += item.len();
    ///         Ok::<(), kstone_core::Error>(())
    ///     })
    ///     .unwrap();
    /// assert_eq!(n, 1);
    /// assert!(bytes > 0);
    /// ```
    pub fn for_each_encoded<E>(
        &self,
        mut f: impl FnMut(KeyRef<'_>, &[u8]) -> std::result::Result<(), E>,
    ) -> std::result::Result<u64, E>
    where
        E: From<Error>,
    {
        let mut n = 0;
        for stripe in 0..STRIPES {
            self.stream_stripe(stripe, |e| {
                n += 1;
                f(e.key, e.value.unwrap_or_default())
            })?;
        }
        Ok(n)
    }

    /// All items (or one segment's), in stripe order then key order.
    pub fn scan(&self, s: &Scan) -> Result<Page> {
        let total = s.total_segments;
        if !(1..=MAX_TOTAL_SEGMENTS).contains(&total) {
            return Err(Error::InvalidInput(format!(
                "total segments must be 1 to {MAX_TOTAL_SEGMENTS}, got {total}"
            )));
        }
        if s.limit == Some(0) {
            return Err(Error::InvalidInput("a limit must be at least 1".into()));
        }
        if s.segment >= total {
            return Err(Error::InvalidInput(format!(
                "segment {} is not below total segments {total}",
                s.segment
            )));
        }
        let first = s.segment * STRIPES / total;
        let end = (s.segment + 1) * STRIPES / total;
        let mut start_stripe = first;
        if let Some(k) = &s.exclusive_start {
            start_stripe = k.stripe();
            if !(first..end).contains(&start_stripe) {
                return Err(Error::InvalidInput(
                    "exclusive start key is not in this scan segment".into(),
                ));
            }
        }
        let limit = s.limit.unwrap_or(usize::MAX);
        let mut page = Page::default();
        for stripe in start_stripe..end {
            let mut range = KeyRange::all();
            if stripe == start_stripe {
                if let Some(k) = &s.exclusive_start {
                    range.lo = Bound::Excluded(k.clone());
                }
            }
            let want = limit - page.items.len();
            let mut sub = collect_page(self.stripe_range(stripe, &range, false), Some(want))?;
            page.items.append(&mut sub.items);
            if sub.last_evaluated_key.is_some() {
                page.last_evaluated_key = sub.last_evaluated_key;
                return Ok(page);
            }
            if page.items.len() == limit {
                // Full page: say where to resume if anything follows.
                let more = (stripe + 1..end).any(|st| {
                    self.stripe_range(st, &KeyRange::all(), false)
                        .any(|e| e.map_or(true, |e| e.value.is_some()))
                });
                if more {
                    page.last_evaluated_key = page.items.last().map(|(k, _)| k.clone());
                }
                return Ok(page);
            }
        }
        Ok(page)
    }
}

/// Decode live entries into a page of at most `limit` items, setting
/// `last_evaluated_key` only when another item follows.
fn collect_page(it: impl Iterator<Item = Result<Entry>>, limit: Option<usize>) -> Result<Page> {
    let limit = limit.unwrap_or(usize::MAX);
    let mut page = Page::default();
    for e in it {
        let e = e?;
        let Some(v) = e.value else { continue };
        if page.items.len() == limit {
            page.last_evaluated_key = page.items.last().map(|(k, _)| k.clone());
            break;
        }
        page.items.push((e.key, decode_item(&v)?));
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successor() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_successor(&[0xff, 0xff]), None);
        assert_eq!(prefix_successor(b""), None);
    }
}
