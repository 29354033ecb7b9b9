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
        let mut stamps = [(0u64, 0u64)];
        let mut retired = Vec::new();
        let s = op.0.stripe();
        let seq = self.log_stripe(s, std::iter::once((0, op)), &mut stamps, &mut retired)?;
        for r in retired {
            self.wal.retire(r)?;
        }
        self.wal.wait_durable(seq)?;
        Ok(stamps[0])
    }

    /// Log and apply `ops`: one WAL write per touched stripe, then (in `Sync`
    /// mode) one shared group-commit wait. Returns each op's (LSN, timestamp)
    /// in input order.
    pub(crate) fn write_prepared(&self, ops: Vec<Stamped>) -> Result<Vec<(u64, u64)>> {
        self.check_writable()?;
        self.wal.check()?;
        self.memory.throttle(&self.bg, &self.closing)?;
        let mut stamps = vec![(0u64, 0u64); ops.len()];
        let mut last_seq = 0;
        let mut retired = Vec::new();
        // Grouped by stripe, input order within one (later ops on a key
        // win): a counting sort of indices, since an op is large to move
        // around in a comparison sort.
        let stripes: Vec<u16> = ops.iter().map(|op| op.0.stripe() as u16).collect();
        let mut start = vec![0usize; STRIPES + 1];
        for &s in &stripes {
            start[usize::from(s) + 1] += 1;
        }
        for s in 0..STRIPES {
            start[s + 1] += start[s];
        }
        let mut order = vec![0usize; ops.len()];
        let mut next = start.clone();
        for (i, &s) in stripes.iter().enumerate() {
            order[next[usize::from(s)]] = i;
            next[usize::from(s)] += 1;
        }
        let mut slots: Vec<Option<Stamped>> = ops.into_iter().map(Some).collect();
        for s in 0..STRIPES {
            let members = &order[start[s]..start[s + 1]];
            if members.is_empty() {
                continue;
            }
            let group = members
                .iter()
                .filter_map(|&i| slots[i].take().map(|op| (i, op)));
            last_seq = self.log_stripe(s, group, &mut stamps, &mut retired)?;
        }
        for r in retired {
            self.wal.retire(r)?;
        }
        self.wal.wait_durable(last_seq)?;
        Ok(stamps)
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
