//! Background work: a small pool of threads flushes sealed memtables and
//! compacts stripes, one job per stripe at a time. Writers never wait for a
//! flush directly; when memory runs ahead of the flushes they are slowed in
//! proportion, and held only at twice the memtable budget.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::db::{lock, Shared};
use crate::error::{Error, Result};
use crate::model::key::STRIPES;

/// The longest pause a single write takes while memory is between the soft
/// and the hard limit (scaled by how far past the soft limit it is).
const MAX_DELAY: Duration = Duration::from_millis(1);
/// How long a failed job waits before it is tried again.
const RETRY_AFTER: Duration = Duration::from_millis(200);

#[derive(Default)]
struct Queue {
    pending: VecDeque<usize>,
    queued: Vec<bool>,
    /// The last background failure, cleared by the next success.
    error: Option<String>,
}

/// The job queue, and the condition variables workers and held writers wait on.
#[derive(Default)]
pub(crate) struct Background {
    queue: Mutex<Queue>,
    work: Condvar,
    progress: Condvar,
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
    fn next(&self, closing: &AtomicBool) -> Option<usize> {
        let mut q = lock(&self.queue);
        loop {
            if closing.load(Ordering::SeqCst) {
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

    /// The last background failure, if the work has not succeeded since.
    pub fn error(&self) -> Option<String> {
        lock(&self.queue).error.clone()
    }
}

/// A worker thread: flush, then compact if needed, each scheduled stripe.
/// A failure (a full disk, say) is kept for writers to see and the stripe is
/// tried again later; its data is safe in the WAL meanwhile.
pub(crate) fn worker(sh: &Shared) {
    while let Some(s) = sh.bg.next(&sh.closing) {
        let result = {
            let _job = lock(&sh.jobs[s]);
            sh.flush_sealed(s).and_then(|()| sh.compact_if_needed(s))
        };
        match result {
            Ok(()) => {
                if sh.bg.error().is_some() {
                    sh.bg.set_error(None);
                }
            }
            Err(e) => {
                sh.bg.set_error(Some(e.to_string()));
                std::thread::sleep(RETRY_AFTER);
                sh.bg.schedule(s);
            }
        }
        sh.bg.note_progress();
    }
}

impl Shared {
    /// Pace a writer by the memory held in memtables: free below 1.25× the
    /// budget, a pause growing to `MAX_DELAY` up to 2×, held above while
    /// flushes are pending, until one frees memory — or refused if the
    /// background is failing.
    pub(crate) fn throttle(&self) -> Result<()> {
        let budget = self.opts.memtable_budget.max(1);
        let (soft, hard) = (budget + budget / 4, budget.saturating_mul(2));
        let total = self.mem_total.load(Ordering::Relaxed);
        if total < soft {
            return Ok(());
        }
        if total < hard {
            let f = (total - soft) as f64 / (hard - soft).max(1) as f64;
            std::thread::sleep(MAX_DELAY.mul_f64(f));
            return Ok(());
        }
        let mut q = lock(&self.bg.queue);
        loop {
            if self.mem_total.load(Ordering::Relaxed) < hard
                || self.sealed_bytes.load(Ordering::Relaxed) == 0
            {
                return Ok(());
            }
            if let Some(e) = &q.error {
                return Err(Error::Background(e.clone()));
            }
            if self.closing.load(Ordering::SeqCst) {
                return Err(Error::Background("the database is closing".into()));
            }
            q = self
                .bg
                .progress
                .wait_timeout(q, Duration::from_millis(100))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }
}
