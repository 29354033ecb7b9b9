//! Background work: a small pool of threads flushes sealed memtables and
//! compacts stripes, one job per stripe at a time. The queue knows nothing
//! of what a job does: the database hands each worker the job to run.

use std::collections::VecDeque;
#[cfg(test)]
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::closing::Closing;
use crate::error::{Error, Result};
use crate::model::key::STRIPES;
use crate::mutex::lock;

/// How long a failed job waits before it is tried again.
const RETRY_AFTER: Duration = Duration::from_millis(200);

#[derive(Default)]
struct Queue {
    pending: VecDeque<usize>,
    queued: Vec<bool>,
    /// The last background failure, cleared by the next success.
    error: Option<String>,
    /// A worker that panicked: a broken invariant, never cleared.
    fatal: Option<String>,
}

/// The job queue, and the condition variables workers and held writers wait on.
#[derive(Default)]
pub(crate) struct Background {
    queue: Mutex<Queue>,
    work: Condvar,
    progress: Condvar,
    /// Set by unit tests: this database's next job panics.
    #[cfg(test)]
    pub(crate) panic_next_job: AtomicBool,
}

impl Background {
    /// Ask for stripe `s` to be flushed (and compacted if needed).
    pub fn schedule(&self, s: usize) {
        let mut q = lock(&self.queue);
        if q.queued.is_empty() {
            q.queued = vec![false; STRIPES];
        }
        if !q.queued[s] {
            q.queued[s] = true;
            q.pending.push_back(s);
            self.work.notify_one();
        }
    }

    /// The next stripe to work on; `None` once the database is closing.
    fn next(&self, closing: &Closing) -> Option<usize> {
        let mut q = lock(&self.queue);
        loop {
            if closing.is_closing() {
                return None;
            }
            if let Some(s) = q.pending.pop_front() {
                q.queued[s] = false;
                return Some(s);
            }
            q = self.work.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Wake writers held for memory and anyone waiting for a close.
    pub fn note_progress(&self) {
        let _q = lock(&self.queue);
        self.progress.notify_all();
    }

    /// Wake every worker (on close).
    pub fn wake_all(&self) {
        let _q = lock(&self.queue);
        self.work.notify_all();
        self.progress.notify_all();
    }

    fn set_error(&self, e: Option<String>) {
        let mut q = lock(&self.queue);
        q.error = e;
        self.progress.notify_all();
    }

    /// The last background failure, if the work has not succeeded since
    /// (or the panic of a worker, for good).
    pub fn error(&self) -> Option<String> {
        let q = lock(&self.queue);
        q.fatal.clone().or_else(|| q.error.clone())
    }

    fn set_fatal(&self, why: String) {
        let mut q = lock(&self.queue);
        q.fatal.get_or_insert(why);
        self.progress.notify_all();
    }

    /// Wait until `done()` (checked whenever a job makes progress, and every
    /// 100 ms); an error if the background is failing or the database closing
    /// first, so a held writer never waits for work that will not come.
    pub fn wait_for(&self, done: impl Fn() -> bool, closing: &Closing) -> Result<()> {
        let mut q = lock(&self.queue);
        loop {
            if done() {
                return Ok(());
            }
            if let Some(e) = q.fatal.as_ref().or(q.error.as_ref()) {
                return Err(Error::Background(e.clone()));
            }
            if closing.is_closing() {
                return Err(Error::Background("the database is closing".into()));
            }
            q = self
                .progress
                .wait_timeout(q, Duration::from_millis(100))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }
}

/// A worker thread: flush, then compact if needed, each scheduled stripe.
/// A failure (a full disk, say) is kept for writers to see and the stripe is
/// tried again later; its data is safe in the WAL meanwhile.
///
/// A panic is a broken invariant: the worker records it, the database stops
/// acknowledging writes (they fail with the reason, held writers included),
/// and the worker goes on, so that `close` and reads still work.
/// `job(s)` does the stripe's work; `poison(why)` stops the database
/// acknowledging writes.
pub(crate) fn worker(
    bg: &Background,
    closing: &Closing,
    job: impl Fn(usize) -> Result<()>,
    poison: impl Fn(String),
) {
    while let Some(s) = bg.next(closing) {
        let job = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            #[cfg(test)]
            if bg.panic_next_job.swap(false, Ordering::SeqCst) {
                panic!("injected by a test");
            }
            job(s)
        }));
        let result = match job {
            Ok(r) => r,
            Err(p) => {
                let what = p
                    .downcast_ref::<&str>()
                    .map(|m| m.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".into());
                let why = format!(
                    "a background worker panicked on stripe {s} ({what}); reopen the database"
                );
                poison(why.clone());
                bg.set_fatal(why);
                bg.note_progress();
                continue;
            }
        };
        match result {
            Ok(()) => {
                if bg.error().is_some() {
                    bg.set_error(None);
                }
            }
            Err(e) => {
                bg.set_error(Some(e.to_string()));
                std::thread::sleep(RETRY_AFTER);
                bg.schedule(s);
            }
        }
        bg.note_progress();
    }
}

#[cfg(test)]
mod tests {
    use crate::{item_from_plain_json, Database, Options};
    use std::sync::atomic::Ordering;

    /// A worker that panics does not leave writers held for memory waiting
    /// for ever: they, and every later write, fail with the reason; reads
    /// and close still work.
    #[test]
    fn a_panicked_worker_surfaces_as_an_error_to_writers() {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options {
            memtable_budget: 64 << 10,
            ..Options::default()
        };
        let db = Database::create(dir.path().join("db"), opts).unwrap();
        db.put(b"before", None, &item_from_plain_json("{}").unwrap())
            .unwrap();
        db.background().panic_next_job.store(true, Ordering::SeqCst);
        let item = item_from_plain_json(&format!(r#"{{"v":"{}"}}"#, "x".repeat(900))).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut i = 0u64;
        let err = loop {
            assert!(
                std::time::Instant::now() < deadline,
                "writers never saw the panic"
            );
            i += 1;
            let k = format!("k{i}");
            if let Err(e) = db.put(k.as_bytes(), None, &item) {
                break e;
            }
        };
        assert!(err.to_string().contains("panicked"), "{err}");
        assert!(db.put(b"after", None, &item).is_err());
        assert!(db.get(b"before", None).unwrap().is_some());
        // Close returns (with the reason); the writes are in the WAL.
        let closed = db.close();
        assert!(closed.is_err_and(|e| e.to_string().contains("panicked")));
        let db = Database::open(dir.path().join("db"), Options::default()).unwrap();
        assert!(db.get(b"before", None).unwrap().is_some());
        db.close().unwrap();
    }
}
