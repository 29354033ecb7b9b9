//! The write path: log each stripe's share of a write to its WAL segment in
//! one append, apply it to the memtable, seal a memtable that is full, and
//! (in `Sync` mode) wait for the shared group commit.

use crate::error::{Error, Result};
use crate::memtable::MemEntry;
use crate::model::key::STRIPES;
use crate::mutex::lock;
use crate::wal::commit_log::Retired;
use crate::wal::record::{Op, Record};
use crate::write::{Pending, Stamped, SCRATCH_KEEP};

use super::Shared;

/// Framed records of one stripe's share of a write, and the entries that
/// wait beside them until the WAL write succeeded.
type LogScratch = (Vec<u8>, Vec<(MemEntry, u64)>);

/// A batch whose keys and values reach this many bytes logs the stripes of
/// its second half on a second thread. Each stripe's share is one `pwrite`
/// to its own segment plus memtable inserts under its own lock, so the
/// halves share nothing but the clock. A batch of 1000 one-KiB puts spent
/// half of the writer's time in those ~256 `pwrite`s (the kernel's
/// page-cache work for as many files); two threads made 1000-op batches of
/// 100 B and 1 KiB values 1.10–1.24× faster (`docs/benchmarks.md`). A
/// smaller batch is not split: starting a thread (tens of microseconds)
/// would be a larger share of its time.
const PARALLEL_MIN_BYTES: usize = 64 << 10;

/// Where to split `sorted` (the batch's `n` ops, grouped by stripe) for two
/// threads: at the first stripe boundary from the middle on, or `None` to
/// log it on this thread. Ops with a fixed stamp (a replayed log) and
/// markers keep one thread.
fn parallel_split<'a>(sorted: impl Iterator<Item = (u16, &'a Stamped)>, n: usize) -> Option<usize> {
    let (mut bytes, mut prev, mut mid) = (0, None, None);
    for (i, (stripe, (op, fixed))) in sorted.enumerate() {
        let Pending::Data(e) = op else { return None };
        if fixed.is_some() {
            return None;
        }
        if bytes < PARALLEL_MIN_BYTES {
            bytes += e.key_ref().encoded_len() + e.value().map_or(0, <[u8]>::len);
        }
        if mid.is_none() && i > 0 && i >= n / 2 && prev != Some(stripe) {
            mid = Some(i);
        }
        prev = Some(stripe);
    }
    mid.filter(|_| bytes >= PARALLEL_MIN_BYTES)
}

/// An op to log: its stripe, its index in the batch, and the op.
type Indexed = (u16, usize, Stamped);

thread_local! {
    static LOG_SCRATCH: std::cell::RefCell<LogScratch> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

impl Shared {
    pub(crate) fn restore_point(&self, name: &str) -> Result<(u64, u64)> {
        if name.is_empty() || name.len() > 256 {
            return Err(Error::InvalidInput(
                "a restore point name must be 1..=256 bytes".into(),
            ));
        }
        let r = self.write_prepared(vec![(Pending::Marker(name.to_string()), None)])?[0];
        self.wal.sync_all_written()?;
        Ok(r)
    }

    /// [`write_prepared`](Self::write_prepared) of one operation, without
    /// the vectors a batch needs (a single put is the common write).
    pub(crate) fn write_one(&self, op: Stamped) -> Result<(u64, u64)> {
        self.check_writable()?;
        self.wal.check()?;
        self.memory.throttle(&self.bg, &self.closing)?;
        let mut stamp = (0, 0);
        let mut retired = Vec::new();
        let s = op.0.stripe();
        let group = std::iter::once((0, op));
        let seq = self.log_stripe(s, group, &mut |_, st| stamp = st, &mut retired);
        let (seq, retired) = self.retire_after(seq, retired)?;
        for r in retired {
            self.wal.retire(r)?;
        }
        self.wal.wait_durable(seq)?;
        Ok(stamp)
    }

    /// Log and apply `ops`: one WAL write per touched stripe, then (in `Sync`
    /// mode) one shared group-commit wait. Returns each op's (LSN, timestamp)
    /// in input order. A large batch logs half of its stripes on a second
    /// thread (see [`PARALLEL_MIN_BYTES`]).
    pub(crate) fn write_prepared(&self, ops: Vec<Stamped>) -> Result<Vec<(u64, u64)>> {
        self.check_writable()?;
        self.wal.check()?;
        self.memory.throttle(&self.bg, &self.closing)?;
        let n = ops.len();
        // Grouped by stripe, input order within one (later ops on a key
        // win): a counting sort, which moves each op once.
        let mut start = vec![0usize; STRIPES + 1];
        for op in &ops {
            start[op.0.stripe() + 1] += 1;
        }
        for s in 0..STRIPES {
            start[s + 1] += start[s];
        }
        let mut sorted: Vec<Option<Indexed>> = (0..n).map(|_| None).collect();
        for (i, op) in ops.into_iter().enumerate() {
            let s = op.0.stripe();
            sorted[start[s]] = Some((s as u16, i, op));
            start[s] += 1;
        }
        let mut stamps = vec![(0u64, 0u64); n];
        let mut stamp = |i: usize, st| stamps[i] = st;
        let split = parallel_split(sorted.iter().flatten().map(|(s, _, op)| (*s, op)), n);
        let (last_seq, retired) = match split {
            Some(mid) => {
                let second: Vec<Indexed> = sorted.drain(mid..).flatten().collect();
                let first = sorted.into_iter().flatten();
                self.log_halves(first, second, &mut stamp)?
            }
            None => {
                let mut retired = Vec::new();
                let all = sorted.into_iter().flatten();
                let seq = self.log_stripes(all, &mut stamp, &mut retired);
                self.retire_after(seq, retired)?
            }
        };
        for r in retired {
            self.wal.retire(r)?;
        }
        self.wal.wait_durable(last_seq)?;
        Ok(stamps)
    }

    /// The group-commit sequence and commit logs to retire of a logging
    /// that succeeded; if it failed, the commit logs it filled are retired
    /// and its error returned.
    fn retire_after(&self, seq: Result<u64>, retired: Vec<Retired>) -> Result<(u64, Vec<Retired>)> {
        match seq {
            Ok(seq) => Ok((seq, retired)),
            Err(e) => {
                for r in retired {
                    self.wal.retire(r)?;
                }
                Err(e)
            }
        }
    }

    /// [`log_stripes`](Self::log_stripes) of `first` here and of `second`
    /// on a second thread. Either half may fail after the other logged its
    /// share: a batch is not atomic across stripes (as after a crash, part
    /// of it may be applied); the commit logs either half filled are
    /// retired all the same.
    fn log_halves(
        &self,
        first: impl Iterator<Item = Indexed>,
        second: Vec<Indexed>,
        stamp: &mut impl FnMut(usize, (u64, u64)),
    ) -> Result<(u64, Vec<Retired>)> {
        let (mut retired, mut second_retired) = (Vec::new(), Vec::new());
        let mut second_stamps = Vec::with_capacity(second.len());
        let (first, second) = std::thread::scope(|scope| {
            let helper = scope.spawn(|| {
                let mut stamp = |i, st| second_stamps.push((i, st));
                self.log_stripes(second.into_iter(), &mut stamp, &mut second_retired)
            });
            let first = self.log_stripes(first, stamp, &mut retired);
            let second = helper
                .join()
                .unwrap_or_else(|_| Err(Error::Internal("a write thread panicked".into())));
            (first, second)
        });
        retired.append(&mut second_retired);
        let seq = first.and_then(|a| second.map(|b| a.max(b)));
        for (i, st) in second_stamps {
            stamp(i, st);
        }
        self.retire_after(seq, retired)
    }

    /// Log `sorted` (ops grouped by stripe), one WAL write per stripe,
    /// passing each op's input index and (LSN, timestamp) to `stamp`.
    /// Returns the last group-commit sequence; adds the commit logs to
    /// retire to `retired`.
    fn log_stripes(
        &self,
        sorted: impl Iterator<Item = Indexed>,
        stamp: &mut impl FnMut(usize, (u64, u64)),
        retired: &mut Vec<Retired>,
    ) -> Result<u64> {
        let mut last_seq = 0;
        let mut ops = sorted.peekable();
        while let Some(&(s, _, _)) = ops.peek() {
            let group =
                std::iter::from_fn(|| ops.next_if(|op| op.0 == s)).map(|(_, i, op)| (i, op));
            let seq = self.log_stripe(usize::from(s), group, stamp, retired)?;
            last_seq = last_seq.max(seq);
        }
        Ok(last_seq)
    }

    /// Log one stripe's share of a write in one WAL write and apply it to the
    /// memtable, sealing it when full. Returns the group-commit sequence;
    /// adds to `retired` a commit log this write filled (retired once every
    /// stripe's share is applied).
    fn log_stripe(
        &self,
        s: usize,
        group: impl Iterator<Item = (usize, Stamped)>,
        stamp: &mut impl FnMut(usize, (u64, u64)),
        retired: &mut Vec<Retired>,
    ) -> Result<u64> {
        let (mut buf, mut staged) = LOG_SCRATCH.with_borrow_mut(std::mem::take);
        buf.clear();
        staged.clear();
        let mut st = lock(&self.stripes[s]);
        // A new segment's header, which the commit log must hold too.
        let mut header = None;
        if st.wal.is_none() {
            let id = self.versions.new_file_id();
            let (seg, h) = self.wal.new_segment(s, id, st.last_wal_id)?;
            header = Some(h);
            st.wal = Some(seg);
            st.wal_ids.push(id);
            st.last_wal_id = id;
        }
        let mut max_lsn = 0;
        self.wal.stamp(|clock| {
            for (i, (pending, fixed)) in group {
                let (lsn, ts) = match fixed {
                    Some((lsn, ts)) => {
                        clock.follow(lsn, ts);
                        (lsn, ts)
                    }
                    None => clock.next(),
                };
                stamp(i, (lsn, ts));
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
        });
        let seg = st
            .wal
            .as_mut()
            .ok_or_else(|| Error::Internal("no active WAL segment".into()))?;
        let seg_id = seg.id;
        let mapped_before = seg.mapped_bytes();
        let logged = self.wal.append(s, seg, header.as_ref(), &buf, || {
            self.versions.new_file_id()
        });
        let seq = match logged {
            Ok((seq, full)) => {
                retired.extend(full);
                seq
            }
            Err(e) => {
                // The segment was cut back (or the log poisoned): later
                // records go to a new segment, never after a partial one.
                st.wal = None;
                return Err(e);
            }
        };
        st.wal_bytes += buf.len() as u64;
        let mapped = st
            .wal
            .as_ref()
            .map_or(0, |w| w.mapped_bytes() - mapped_before);
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        self.written.wal.fetch_add(buf.len() as u64, relaxed);
        self.written.wal_mapped.fetch_add(mapped, relaxed);
        let m = st.wal_max_lsn.entry(seg_id).or_default();
        *m = (*m).max(max_lsn);
        let before = st.mem.bytes();
        for (e, ts) in staged.drain(..) {
            st.mem.insert(e, ts);
        }
        let total = self.memory.grew(st.mem.bytes().saturating_sub(before));
        if self.memory.must_seal(st.mem.bytes(), st.wal_bytes, total) {
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
    use crate::model::value::{Item, Value};
    use crate::options::Durability;
    use crate::write::WriteBatch;
    use crate::{Database, Options};

    fn item(i: u32, round: u32) -> Item {
        let mut v = vec![round as u8; 200];
        v[..4].copy_from_slice(&i.to_le_bytes());
        Item::from([("v".to_string(), Value::B(v))])
    }

    /// A batch over the threshold, logged on two threads: every op gets its
    /// own LSN, ops on one key keep input order (the last wins), and all of
    /// it is read back before and after a reopen, in both modes.
    #[test]
    fn a_large_batch_on_two_threads_keeps_input_order_per_key() {
        for durability in [Durability::Buffered, Durability::Sync] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("db");
            let opts = Options {
                durability,
                ..Options::default()
            };
            let db = Database::create(&path, opts.clone()).unwrap();
            let mut b = WriteBatch::new();
            // 1000 keys, three times each, interleaved: 3000 ops, ~600 KB.
            for round in 0..3u32 {
                for i in 0..1000u32 {
                    b.put(&i.to_be_bytes(), None, &item(i, round)).unwrap();
                }
            }
            let lsns = db.write(b).unwrap();
            assert_eq!(lsns.len(), 3000);
            let distinct: std::collections::BTreeSet<u64> = lsns.iter().copied().collect();
            assert_eq!(distinct.len(), 3000, "{durability:?}");
            // Every op was logged, by one of the halves (LSNs start at 1).
            assert!(lsns.iter().all(|&l| l > 0));
            for i in 0..1000 {
                assert!(lsns[i] < lsns[1000 + i] && lsns[1000 + i] < lsns[2000 + i]);
            }
            let check = |db: &Database| {
                for i in 0..1000u32 {
                    let got = db.get(&i.to_be_bytes(), None).unwrap();
                    assert_eq!(got, Some(item(i, 2)), "key {i}, {durability:?}");
                }
            };
            check(&db);
            // Without a close: what open replays from the log.
            drop(db);
            let db = Database::open(
                &path,
                Options {
                    flush_on_close: false,
                    ..opts.clone()
                },
            )
            .unwrap();
            check(&db);
            db.close().unwrap();
        }
    }

    fn data(pk: &[u8], value_len: usize, fixed: Option<(u64, u64)>) -> (u16, usize, Stamped) {
        let key = crate::model::key::KeyRef::new(pk, None).unwrap();
        let e = MemEntry::new(key, 0, Some(&vec![7; value_len]));
        (e.stripe() as u16, 0, (Pending::Data(e), fixed))
    }

    fn split(ops: &[Indexed]) -> Option<usize> {
        parallel_split(ops.iter().map(|(s, _, op)| (*s, op)), ops.len())
    }

    #[test]
    fn only_large_batches_of_new_writes_split_at_a_stripe_boundary() {
        let mut ops: Vec<_> = (0..3000u32)
            .map(|i| data(&i.to_be_bytes(), 100, None))
            .collect();
        ops.sort_by_key(|op| op.0);
        let mid = split(&ops).expect("a 300 KB batch over many stripes splits");
        assert!(mid >= ops.len() / 2 && mid < ops.len());
        assert_ne!(ops[mid].0, ops[mid - 1].0, "a stripe is never split");
        // Small batches, one stripe, replayed stamps and markers stay whole.
        assert_eq!(split(&ops[..500]), None);
        let one: Vec<_> = (0..300).map(|_| data(b"k", 1000, None)).collect();
        assert_eq!(split(&one), None);
        ops[7].2 .1 = Some((5, 5));
        assert_eq!(split(&ops), None);
    }
}
