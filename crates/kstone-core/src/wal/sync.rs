//! Group commit: writers append records to their stripes' active segments,
//! then wait here until some thread (the first to arrive, the "leader") has
//! fsynced every dirty segment. One leader's round covers every record written
//! before it started, across all stripes, so concurrent writers share fsyncs.

use std::collections::HashMap;
use std::fs::File;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::error::{Error, Result};

#[derive(Default)]
struct State {
    /// Sequence number of the last record batch written to a segment.
    written: u64,
    /// Every batch with a sequence ≤ this is on stable storage.
    synced: u64,
    syncing: bool,
    /// Segments written since the last round, by stripe.
    dirty: HashMap<usize, Arc<File>>,
    /// Set when an fsync fails: durability of later writes is unknown, so the
    /// database stops acknowledging writes.
    failed: Option<String>,
}

#[derive(Default)]
pub struct GroupCommit {
    state: Mutex<State>,
    cv: Condvar,
}

impl GroupCommit {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in another writer must not stop durability bookkeeping.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record that a batch was written to `file` (call right after the write,
    /// still holding the stripe lock). Returns the batch's sequence number.
    pub fn note_written(&self, stripe: usize, file: &Arc<File>) -> u64 {
        let mut s = self.lock();
        s.written += 1;
        s.dirty.insert(stripe, Arc::clone(file));
        s.written
    }

    /// Refuse new writes after an fsync failure.
    pub fn check(&self) -> Result<()> {
        match &self.lock().failed {
            Some(e) => Err(Error::Poisoned(e.clone())),
            None => Ok(()),
        }
    }

    /// Return once batch `seq` is durable, fsyncing as the leader if nobody is.
    pub fn wait_durable(&self, seq: u64) -> Result<()> {
        let mut s = self.lock();
        loop {
            if let Some(e) = &s.failed {
                return Err(Error::Poisoned(e.clone()));
            }
            if s.synced >= seq {
                return Ok(());
            }
            if s.syncing {
                s = self.cv.wait(s).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            s.syncing = true;
            let target = s.written;
            let files: Vec<Arc<File>> = s.dirty.drain().map(|(_, f)| f).collect();
            drop(s);
            let result = files.iter().try_for_each(|f| f.sync_data());
            s = self.lock();
            s.syncing = false;
            match result {
                Ok(()) => s.synced = s.synced.max(target),
                Err(e) => s.failed = Some(format!("fsync of a WAL segment failed: {e}")),
            }
            self.cv.notify_all();
        }
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
                        let seq = gc.note_written(i, &f);
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
}
