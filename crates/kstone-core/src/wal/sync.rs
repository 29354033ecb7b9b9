//! Group commit: writers append records (in `Sync` mode to their stripes'
//! segments and the commit log; in `Buffered` mode to the segments), then
//! wait here until their batch is on stable storage. The first waiter opens
//! a "round" covering every file written so far; every waiting writer then
//! helps by fsyncing one of the round's files at a time, so a round's fsyncs
//! run in parallel and all its writers share them. A waiter that would open
//! a round with fewer batches than the last one covered first gathers: it
//! waits briefly for the last round's writers, who are about to write again.

use std::collections::BTreeMap;
use std::fs::File;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

struct Round {
    /// Every batch with a sequence ≤ this is covered by the round.
    target: u64,
    /// Batches it covers, and when its fsyncs began.
    batches: u64,
    started: Instant,
    /// Segments not yet picked up by a helper.
    pending: Vec<Arc<File>>,
    /// Segments picked up or pending whose fsync has not finished.
    outstanding: usize,
    /// Files created before the round opened (their directories are in it).
    created: u64,
}

#[derive(Default)]
struct State {
    /// Sequence number of the last record batch written to a segment.
    written: u64,
    /// Every batch with a sequence ≤ this is on stable storage.
    synced: u64,
    round: Option<Round>,
    /// Segments written since the last round opened, by segment id (a
    /// stripe may have sealed one segment and started another meanwhile).
    dirty: BTreeMap<u64, Arc<File>>,
    /// Set when an fsync fails: durability of later writes is unknown, so the
    /// database stops acknowledging writes.
    failed: Option<String>,
    /// Batches covered by the last round, and how long its fsyncs took.
    last_batches: u64,
    last_took: Duration,
    /// A writer is holding the next round open for more batches.
    gathering: bool,
    /// Files created so far ([`GroupCommit::note_created`]), and how many of
    /// them a finished round has made durable in their directories.
    created: u64,
    created_synced: u64,
}

/// Keys of the WAL and commit-log directories among the dirty files
/// (segment ids never reach them).
pub const WAL_DIR_KEY: u64 = u64::MAX;
pub const COMMIT_DIR_KEY: u64 = u64::MAX - 1;

/// Longest a round is held open for more batches.
const MAX_GATHER: Duration = Duration::from_micros(200);

#[derive(Default)]
pub struct GroupCommit {
    state: Mutex<State>,
    cv: Condvar,
    /// Wakes a gathering writer when a batch is written.
    arrivals: Condvar,
}

impl GroupCommit {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in another writer must not stop durability bookkeeping.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record that a batch was written to segment `segment` (call right after
    /// the write, still holding the stripe lock). Returns the batch's sequence number.
    pub fn note_written(&self, segment: u64, file: &Arc<File>) -> u64 {
        let mut s = self.lock();
        s.written += 1;
        // Usually already dirty since the last round: no Arc traffic then.
        s.dirty.entry(segment).or_insert_with(|| Arc::clone(file));
        if s.gathering {
            self.arrivals.notify_one();
        }
        s.written
    }

    /// Record that a file was created in `dir` (an open handle of the
    /// directory named by `key`): the next round fsyncs the directory too.
    /// Returns the creation's number, for [`GroupCommit::entry_durable`].
    pub fn note_created(&self, key: u64, dir: &Arc<File>) -> u64 {
        let mut s = self.lock();
        s.dirty.insert(key, Arc::clone(dir));
        s.created += 1;
        s.created
    }

    /// Whether creation number `n` (0: unknown) is durable in its
    /// directory: a round that opened after it has finished without error.
    pub fn entry_durable(&self, n: u64) -> bool {
        let s = self.lock();
        n > 0 && s.failed.is_none() && s.created_synced >= n
    }

    /// Stop acknowledging writes: durability of what was written is unknown
    /// (an fsync outside a round failed).
    pub fn poison(&self, why: String) {
        self.lock().failed.get_or_insert(why);
        self.cv.notify_all();
    }

    /// Refuse new writes after an fsync failure.
    pub fn check(&self) -> Result<()> {
        match &self.lock().failed {
            Some(e) => Err(Error::Poisoned(e.clone())),
            None => Ok(()),
        }
    }

    /// Return once batch `seq` is durable, helping with fsyncs meanwhile.
    pub fn wait_durable(&self, seq: u64) -> Result<()> {
        let mut s = self.lock();
        let mut gathered = false;
        loop {
            if let Some(e) = &s.failed {
                return Err(Error::Poisoned(e.clone()));
            }
            if s.synced >= seq {
                return Ok(());
            }
            let st = &mut *s;
            match &mut st.round {
                None if st.gathering => s = self.cv.wait(s).unwrap_or_else(|p| p.into_inner()),
                None if !gathered && st.written - st.synced < st.last_batches => {
                    // The last round's writers are most likely about to
                    // write again (each waited for it, then returns and
                    // writes): a moment's wait lets them share this round
                    // instead of alternating between two half-full ones.
                    gathered = true;
                    st.gathering = true;
                    let until = Instant::now() + (st.last_took / 2).min(MAX_GATHER);
                    while s.written - s.synced < s.last_batches {
                        let Some(left) = until.checked_duration_since(Instant::now()) else {
                            break;
                        };
                        s = self
                            .arrivals
                            .wait_timeout(s, left)
                            .map(|(g, _)| g)
                            .unwrap_or_else(|p| p.into_inner().0);
                    }
                    s.gathering = false;
                }
                None => {
                    let pending: Vec<Arc<File>> =
                        std::mem::take(&mut st.dirty).into_values().collect();
                    if pending.is_empty() {
                        st.synced = st.written;
                        self.cv.notify_all();
                    } else {
                        st.round = Some(Round {
                            target: st.written,
                            batches: st.written - st.synced,
                            started: Instant::now(),
                            outstanding: pending.len(),
                            pending,
                            created: st.created,
                        });
                    }
                }
                Some(round) => match round.pending.pop() {
                    Some(file) => {
                        drop(s);
                        let result = file.sync_data();
                        s = self.lock();
                        if let Err(e) = result {
                            s.failed = Some(format!("fsync of a WAL segment failed: {e}"));
                        }
                        let st = &mut *s;
                        if let Some(round) = &mut st.round {
                            round.outstanding -= 1;
                            if round.outstanding == 0 {
                                st.last_batches = round.batches;
                                st.last_took = round.started.elapsed();
                                st.synced = st.synced.max(round.target);
                                if st.failed.is_none() {
                                    st.created_synced = st.created_synced.max(round.created);
                                }
                                st.round = None;
                                self.cv.notify_all();
                            }
                        }
                        if s.failed.is_some() {
                            self.cv.notify_all();
                        }
                    }
                    None => s = self.cv.wait(s).unwrap_or_else(|p| p.into_inner()),
                },
            }
        }
    }

    /// Sequence number of the last batch written.
    pub fn written(&self) -> u64 {
        self.lock().written
    }

    /// Make everything written so far durable (interval syncs in buffered
    /// mode, and close).
    pub fn sync_all_written(&self) -> Result<()> {
        let seq = self.lock().written;
        self.wait_durable(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_writers_all_become_durable() {
        let dir = tempfile::tempdir().unwrap();
        let gc = Arc::new(GroupCommit::default());
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let gc = Arc::clone(&gc);
                let f = Arc::new(File::create(dir.path().join(format!("f{i}"))).unwrap());
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let seq = gc.note_written(i as u64, &f);
                        gc.wait_durable(seq).unwrap();
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let s = gc.lock();
        assert_eq!(s.synced, 400);
        assert!(s.dirty.is_empty());
    }

    #[test]
    fn a_created_entry_is_durable_only_after_a_round_that_opened_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let gc = GroupCommit::default();
        let d = Arc::new(File::open(dir.path()).unwrap());
        let f = Arc::new(File::create(dir.path().join("seg")).unwrap());
        let first = gc.note_created(WAL_DIR_KEY, &d);
        assert!(!gc.entry_durable(first) && !gc.entry_durable(0));
        gc.wait_durable(gc.note_written(1, &f)).unwrap();
        assert!(gc.entry_durable(first));
        let second = gc.note_created(WAL_DIR_KEY, &d);
        assert!(gc.entry_durable(first) && !gc.entry_durable(second));
        gc.note_written(2, &f);
        gc.sync_all_written().unwrap();
        assert!(gc.entry_durable(second));
        gc.poison("test".into());
        assert!(!gc.entry_durable(second), "no promise once fsyncs failed");
    }
}
