//! The write path: validating and encoding puts and deletes, logging them to
//! their stripes' WAL segments and applying them to the memtables.

use std::sync::atomic::Ordering;

use crate::db::{lock, Shared};
use crate::error::{Error, Result};
use crate::memtable::MemEntry;
use crate::model::key::{KeyRef, STRIPES};
use crate::model::value::{
    encode_item, item_size, validate_item, Item, MAX_ITEM_BYTES, MAX_STORED_ITEM_BYTES,
};
use crate::options::Durability;
use crate::wal::commit_log::Retired;
use crate::wal::record::{Op, Record};
use crate::wal::segment::{ActiveSegment, Header};

/// A pending write and, when replaying a log, its original (LSN, timestamp).
pub(crate) type Stamped = (Pending, Option<(u64, u64)>);

/// A validated write on its way to the WAL, already in the form (and the
/// one allocation) the memtable keeps; its LSN is set when it is logged.
pub(crate) enum Pending {
    Data(MemEntry),
    Marker(String),
}

impl Pending {
    fn stripe(&self) -> usize {
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
        let e = SCRATCH.with_borrow_mut(|buf| prepare_put(pk, sk, item, buf))?;
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

/// Framed records of one stripe's share of a write, and the entries that
/// wait beside them until the WAL write succeeded.
type LogScratch = (Vec<u8>, Vec<(MemEntry, u64)>);

thread_local! {
    /// Items are encoded here first, so a write costs one allocation of
    /// exact size (the memtable entry) instead of a growing `Vec` and a copy.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    static LOG_SCRATCH: std::cell::RefCell<LogScratch> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Scratch buffers above this are freed after use, so one huge batch does
/// not keep its memory per thread.
const SCRATCH_KEEP: usize = 64 << 10;

/// Validate an operation and encode its item.
pub(crate) fn prepare(op: &WriteOp) -> Result<MemEntry> {
    match op {
        WriteOp::Delete { pk, sk } => Ok(MemEntry::new(KeyRef::new(pk, sk.as_deref())?, 0, None)),
        WriteOp::Put { pk, sk, item } => {
            SCRATCH.with_borrow_mut(|buf| prepare_put(pk, sk.as_deref(), item, buf))
        }
    }
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

impl Shared {
    pub(crate) fn restore_point(&self, name: &str) -> Result<(u64, u64)> {
        if name.is_empty() || name.len() > 256 {
            return Err(Error::InvalidInput(
                "a restore point name must be 1..=256 bytes".into(),
            ));
        }
        let r = self.write_prepared(vec![(Pending::Marker(name.to_string()), None)])?[0];
        self.commit.sync_all_written()?;
        Ok(r)
    }

    /// Log and apply `ops`: one WAL write per touched stripe, then (in `Sync`
    /// mode) one shared group-commit wait. Returns each op's (LSN, timestamp)
    /// in input order.
    pub(crate) fn write_prepared(&self, ops: Vec<Stamped>) -> Result<Vec<(u64, u64)>> {
        self.check_writable()?;
        self.commit.check()?;
        self.throttle()?;
        let mut stamps = vec![(0u64, 0u64); ops.len()];
        let mut last_seq = 0;
        let mut retired = Vec::new();
        if ops.len() == 1 {
            let s = ops[0].0.stripe();
            last_seq =
                self.log_stripe(s, ops.into_iter().enumerate(), &mut stamps, &mut retired)?;
        } else {
            // Grouped by stripe, input order within one (later ops on a key win).
            let mut tagged: Vec<(usize, usize, Stamped)> = ops
                .into_iter()
                .enumerate()
                .map(|(i, op)| (op.0.stripe(), i, op))
                .collect();
            tagged.sort_unstable_by_key(|t| (t.0, t.1));
            let mut it = tagged.into_iter().peekable();
            while let Some(&(s, _, _)) = it.peek() {
                let group =
                    std::iter::from_fn(|| it.next_if(|t| t.0 == s)).map(|(_, i, op)| (i, op));
                last_seq = self.log_stripe(s, group, &mut stamps, &mut retired)?;
            }
        }
        for r in retired {
            self.retire(r)?;
        }
        if self.opts.durability == Durability::Sync && last_seq > 0 {
            self.commit.wait_durable(last_seq)?;
        }
        Ok(stamps)
    }

    /// Retire a full commit log. If that fails, whether its records are
    /// durable is unknown: the database stops acknowledging writes.
    fn retire(&self, r: Retired) -> Result<()> {
        r.finish().inspect_err(|e| {
            self.commit
                .poison(format!("retiring a full commit log failed: {e}"))
        })
    }

    /// Log one stripe's share of a write in one WAL write and apply it to the
    /// memtable, sealing it when full. Returns the group-commit sequence;
    /// adds to `retired` a commit log this write filled (retired once every
    /// stripe's share is applied).
    fn log_stripe(
        &self,
        s: usize,
        group: impl Iterator<Item = (usize, Stamped)>,
        stamps: &mut [(u64, u64)],
        retired: &mut Vec<Retired>,
    ) -> Result<u64> {
        let (mut buf, mut staged) = LOG_SCRATCH.with_borrow_mut(std::mem::take);
        buf.clear();
        staged.clear();
        let mut st = lock(&self.stripes[s]);
        // A new segment's header, which the commit log must hold too.
        let mut header = None;
        if st.wal.is_none() {
            let id = self.next_file_id.fetch_add(1, Ordering::SeqCst);
            header = Some(
                Header {
                    stripe: s as u32,
                    id,
                    prev: st.last_wal_id,
                }
                .encode(),
            );
            st.wal = Some(ActiveSegment::create(
                &self.dir.join("wal"),
                s,
                id,
                st.last_wal_id,
                self.opts.durability == Durability::Buffered,
            )?);
            self.commit
                .note_created(crate::wal::sync::WAL_DIR_KEY, &self.wal_dir);
            st.wal_ids.push(id);
            st.last_wal_id = id;
        }
        let mut max_lsn = 0;
        {
            let mut clock = lock(&self.clock);
            for (i, (pending, fixed)) in group {
                let (lsn, ts) = match fixed {
                    Some((lsn, ts)) => {
                        clock.lsn = clock.lsn.max(lsn);
                        clock.ts = clock.ts.max(ts);
                        (lsn, ts)
                    }
                    None => clock.next(),
                };
                stamps[i] = (lsn, ts);
                max_lsn = max_lsn.max(lsn);
                match pending {
                    Pending::Data(mut e) => {
                        e.set_lsn(lsn);
                        crate::wal::record::encode_data(lsn, ts, e.key_ref(), e.value(), &mut buf);
                        staged.push((e, ts));
                    }
                    Pending::Marker(name) => Record {
                        lsn,
                        ts,
                        op: Op::Marker { name },
                    }
                    .encode_framed(&mut buf),
                }
            }
        }
        let seg = st
            .wal
            .as_mut()
            .ok_or_else(|| Error::Internal("no active WAL segment".into()))?;
        let before = seg.len;
        let logged = seg.append(&buf).and_then(|()| match &self.commit_log {
            None => Ok((self.commit.note_written(seg.id, &seg.file), None)),
            Some(log) => {
                let new_id = || self.next_file_id.fetch_add(1, Ordering::SeqCst);
                match header {
                    Some(h) => {
                        log.append(s, seg, 0, &[&h[..], &buf].concat(), new_id, &self.commit)
                    }
                    None => log.append(s, seg, before, &buf, new_id, &self.commit),
                }
            }
        });
        let seg_id = seg.id;
        let seq = match logged {
            Ok((seq, full)) => {
                retired.extend(full);
                seq
            }
            Err(e) => {
                // Cut off a partial record, or one the commit log could not
                // take (not durable), so later records do not follow it.
                let cut = seg.abandon(before);
                st.wal = None;
                if cut.is_err() {
                    return Err(Error::Poisoned(format!(
                        "WAL append failed and could not be undone: {e}"
                    )));
                }
                return Err(e);
            }
        };
        st.wal_bytes += buf.len() as u64;
        self.written
            .wal
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        let m = st.wal_max_lsn.entry(seg_id).or_default();
        *m = (*m).max(max_lsn);
        let before = st.mem.bytes();
        for (e, ts) in staged.drain(..) {
            st.mem.insert(e, ts);
        }
        let grown = st.mem.bytes().saturating_sub(before);
        let total = self.mem_total.fetch_add(grown, Ordering::Relaxed) + grown;
        let bytes = st.mem.bytes();
        if bytes >= self.opts.memtable_stripe_bytes
            || st.wal_bytes >= self.opts.wal_stripe_bytes
            || (total >= self.opts.memtable_budget && bytes >= self.opts.memtable_budget / STRIPES)
        {
            self.seal(s, &mut st)?;
        }
        drop(st);
        if buf.capacity() <= SCRATCH_KEEP && staged.capacity() <= SCRATCH_KEEP / 32 {
            LOG_SCRATCH.with_borrow_mut(|slot| *slot = (buf, staged));
        }
        Ok(seq)
    }
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
