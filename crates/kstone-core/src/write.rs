//! Writes on their way in: validating and encoding puts and deletes into the
//! form the WAL and the memtable keep ([`WriteBatch`]). Logging and applying
//! them is the database's write path (`db/write_path.rs`).

use crate::error::{Error, Result};
use crate::memtable::MemEntry;
use crate::model::key::KeyRef;
use crate::model::value::{
    encode_item, item_size, validate_item, Item, MAX_ITEM_BYTES, MAX_STORED_ITEM_BYTES,
};

/// A pending write and, when replaying a log, its original (LSN, timestamp).
pub(crate) type Stamped = (Pending, Option<(u64, u64)>);

/// A validated write on its way to the WAL, already in the form (and the
/// one allocation) the memtable keeps; its LSN is set when it is logged.
pub(crate) enum Pending {
    Data(MemEntry),
    Marker(String),
}

impl Pending {
    pub(crate) fn stripe(&self) -> usize {
        match self {
            Pending::Data(e) => e.stripe(),
            Pending::Marker(name) => crate::model::key::stripe_of(name.as_bytes()),
        }
    }
}

/// One operation of [`Database::write_batch`](crate::Database::write_batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    Put {
        pk: Vec<u8>,
        sk: Option<Vec<u8>>,
        item: Item,
    },
    Delete {
        pk: Vec<u8>,
        sk: Option<Vec<u8>>,
    },
}

/// Puts and deletes for [`Database::write`](crate::Database::write),
/// validated and encoded as they are added: a batch holds each operation in
/// the one allocation the memtable will keep, so the caller's item can be
/// reused for the next operation, and a bad item is refused by `put` itself.
/// A crash during `write` (before it returns), or an error it returns, may
/// leave any of the batch's operations applied and the others not; every operation of a batch that
/// `write` acknowledged survives, as a single put's does.
///
/// ```
/// use kstone_core::{Database, Item, Options, Value, WriteBatch};
/// let dir = tempfile::tempdir().unwrap();
/// let db = Database::create(dir.path().join("app.keystone"), Options::default()).unwrap();
/// let mut batch = WriteBatch::new();
/// let mut item = Item::new();
/// for i in 0..3u8 {
///     item.insert("n".into(), Value::B(vec![i]));
///     batch.put(b"counter", Some(&[i]), &item).unwrap();
/// }
/// batch.delete(b"counter", Some(&[0])).unwrap();
/// assert_eq!(db.write(batch).unwrap().len(), 4);
/// assert!(db.get(b"counter", Some(&[0])).unwrap().is_none());
/// assert!(db.get(b"counter", Some(&[2])).unwrap().is_some());
/// ```
#[derive(Default)]
pub struct WriteBatch {
    pub(crate) ops: Vec<Stamped>,
}

impl WriteBatch {
    pub fn new() -> WriteBatch {
        WriteBatch::default()
    }

    /// An empty batch with room for `n` operations.
    pub fn with_capacity(n: usize) -> WriteBatch {
        WriteBatch {
            ops: Vec::with_capacity(n),
        }
    }

    /// Add a put of `item` at (pk, sk). An invalid key or item is refused
    /// here and leaves the batch as it was.
    pub fn put(&mut self, pk: &[u8], sk: Option<&[u8]>, item: &Item) -> Result<()> {
        let e = prepare_entry(pk, sk, item)?;
        self.ops.push((Pending::Data(e), None));
        Ok(())
    }

    /// Add a delete of (pk, sk).
    pub fn delete(&mut self, pk: &[u8], sk: Option<&[u8]>) -> Result<()> {
        let e = MemEntry::new(KeyRef::new(pk, sk)?, 0, None);
        self.ops.push((Pending::Data(e), None));
        Ok(())
    }

    /// Number of operations added.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

impl std::fmt::Debug for WriteBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBatch")
            .field("ops", &self.ops.len())
            .finish()
    }
}

thread_local! {
    /// Items are encoded here first, so a write costs one allocation of
    /// exact size (the memtable entry) instead of a growing `Vec` and a copy.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Scratch buffers above this are freed after use, so one huge batch does
/// not keep its memory per thread.
pub(crate) const SCRATCH_KEEP: usize = 64 << 10;

/// Validate an operation and encode its item.
pub(crate) fn prepare(op: &WriteOp) -> Result<MemEntry> {
    match op {
        WriteOp::Delete { pk, sk } => Ok(MemEntry::new(KeyRef::new(pk, sk.as_deref())?, 0, None)),
        WriteOp::Put { pk, sk, item } => prepare_entry(pk, sk.as_deref(), item),
    }
}

/// Validate a put and encode its item into the entry the memtable keeps.
pub(crate) fn prepare_entry(pk: &[u8], sk: Option<&[u8]>, item: &Item) -> Result<MemEntry> {
    SCRATCH.with_borrow_mut(|buf| prepare_put(pk, sk, item, buf))
}

/// Check that a put would be accepted (key, item rules, size limit) without
/// writing it: the same rule [`WriteBatch::put`] and `Database::put` apply,
/// for callers that must refuse a whole input before writing any of it.
///
/// ```
/// use kstone_core::{check_put, Item, Value};
/// let mut item = Item::new();
/// item.insert("big".into(), Value::B(vec![0; 500 * 1024]));
/// assert!(check_put(b"k", None, &item).is_err());
/// ```
pub fn check_put(pk: &[u8], sk: Option<&[u8]>, item: &Item) -> Result<()> {
    SCRATCH
        .with_borrow_mut(|buf| prepare_put(pk, sk, item, buf))
        .map(|_| ())
}

/// Validate a put and encode its item (`buf` is scratch space).
pub(crate) fn prepare_put(
    pk: &[u8],
    sk: Option<&[u8]>,
    item: &Item,
    buf: &mut Vec<u8>,
) -> Result<MemEntry> {
    let key = KeyRef::new(pk, sk)?;
    validate_item(item)?;
    buf.clear();
    encode_item(item, buf);
    // DynamoDB's rule; key parts count at their stored length.
    let size = pk.len() + sk.map_or(0, <[u8]>::len) + item_size(item);
    let stored = key.encoded_len() + buf.len();
    let e = if size > MAX_ITEM_BYTES {
        Err(Error::InvalidInput(format!(
            "item is {size} bytes by DynamoDB's size rule; the limit is {MAX_ITEM_BYTES} (400 KB)"
        )))
    } else if stored > MAX_STORED_ITEM_BYTES {
        Err(Error::InvalidInput(format!(
            "item's stored form is {stored} bytes; the limit is {MAX_STORED_ITEM_BYTES} (1 MiB): \
             numbers are stored as decimal text, so long runs of zeros (1E+125) count in full"
        )))
    } else {
        Ok(MemEntry::new(key, 0, Some(buf)))
    };
    // A rare large (or rejected oversized) item must not stay allocated per thread.
    if buf.capacity() > SCRATCH_KEEP {
        *buf = Vec::new();
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::value::Value;
    use crate::{Database, Options};

    fn item(b: &[u8]) -> Item {
        Item::from([("v".to_string(), Value::B(b.to_vec()))])
    }

    #[test]
    fn batch_refuses_bad_ops_and_applies_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("db"), Options::default()).unwrap();
        let mut b = WriteBatch::new();
        b.put(b"a", None, &item(b"1")).unwrap();
        assert!(b.put(b"", None, &item(b"x")).is_err());
        assert!(b.put(b"a", None, &item(&vec![0; 500_000])).is_err());
        assert!(b.delete(&[0; 3000], None).is_err());
        assert_eq!(b.len(), 1, "a refused op leaves the batch as it was");
        // Many stripes, and one key written three times: the last op wins.
        for i in 0..300u32 {
            b.put(&i.to_be_bytes(), Some(b"s"), &item(&i.to_le_bytes()))
                .unwrap();
        }
        b.put(b"a", None, &item(b"2")).unwrap();
        b.delete(b"a", None).unwrap();
        b.put(b"a", None, &item(b"3")).unwrap();
        let lsns = db.write(b).unwrap();
        assert_eq!(lsns.len(), 304);
        // LSNs are given stripe by stripe; ops on one key keep input order.
        assert!(lsns[301] < lsns[302] && lsns[302] < lsns[303] && lsns[0] < lsns[301]);
        let distinct: std::collections::BTreeSet<u64> = lsns.iter().copied().collect();
        assert_eq!(distinct.len(), lsns.len());
        assert_eq!(db.get(b"a", None).unwrap(), Some(item(b"3")));
        for i in 0..300u32 {
            let got = db.get(&i.to_be_bytes(), Some(b"s")).unwrap();
            assert_eq!(got, Some(item(&i.to_le_bytes())));
        }
        db.close().unwrap();
        let db = Database::open(dir.path().join("db"), Options::default()).unwrap();
        assert_eq!(db.get(b"a", None).unwrap(), Some(item(b"3")));
    }
}
