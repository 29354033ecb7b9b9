//! The memory budget: how many bytes the memtables hold, when a stripe's
//! memtable is sealed, and how writers are paced when flushes fall behind.
//! Writers never wait for a flush directly; past 1.25× the budget each write
//! pauses in proportion, and past 2× writers are held until a flush frees
//! memory (or refused, if the background is failing).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::background::Background;
use crate::closing::Closing;
use crate::error::Result;
use crate::model::key::STRIPES;
use crate::options::Options;

/// The longest pause a single write takes while memory is between the soft
/// and the hard limit (scaled by how far past the soft limit it is).
const MAX_DELAY: Duration = Duration::from_millis(1);

pub(crate) struct MemoryBudget {
    budget: usize,
    stripe_bytes: usize,
    wal_stripe_bytes: u64,
    /// Bytes in every memtable, active and sealed.
    held: AtomicUsize,
    /// Bytes of sealed memtables waiting for a flush (part of `held`).
    sealed: AtomicUsize,
}

impl MemoryBudget {
    pub(crate) fn new(opts: &Options, held: usize) -> MemoryBudget {
        MemoryBudget {
            budget: opts.memtable_budget,
            stripe_bytes: opts.memtable_stripe_bytes,
            wal_stripe_bytes: opts.wal_stripe_bytes,
            held: AtomicUsize::new(held),
            sealed: AtomicUsize::new(0),
        }
    }

    /// Bytes the memtables hold now.
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// A memtable grew by `n` bytes; returns the new total.
    pub(crate) fn grew(&self, n: usize) -> usize {
        self.held.fetch_add(n, Ordering::Relaxed) + n
    }

    /// A memtable of `n` bytes was sealed (it waits for a flush).
    pub(crate) fn sealed(&self, n: usize) {
        self.sealed.fetch_add(n, Ordering::Relaxed);
    }

    /// A sealed memtable of `n` bytes is in an SST: its memory is free.
    pub(crate) fn flushed(&self, n: usize) {
        self.held.fetch_sub(n, Ordering::Relaxed);
        self.sealed.fetch_sub(n, Ordering::Relaxed);
    }

    /// Whether a stripe whose memtable holds `mem` bytes (and whose WAL
    /// `wal` bytes since it started) is sealed, with `total` held in all.
    pub(crate) fn must_seal(&self, mem: usize, wal: u64, total: usize) -> bool {
        mem >= self.stripe_bytes
            || wal >= self.wal_stripe_bytes
            || (total >= self.budget && mem >= self.budget / STRIPES)
    }

    /// Whether a replayed or unflushed stripe is over its own limits.
    pub(crate) fn stripe_over(&self, mem: usize, wal: u64) -> bool {
        mem >= self.stripe_bytes || wal >= self.wal_stripe_bytes
    }

    /// Pace a writer by the memory held: free below 1.25× the budget, a
    /// pause growing to `MAX_DELAY` up to 2×, held above while flushes are
    /// pending until one frees memory — or refused if the background is
    /// failing or the database closing.
    pub(crate) fn throttle(&self, bg: &Background, closing: &Closing) -> Result<()> {
        let budget = self.budget.max(1);
        let (soft, hard) = (budget + budget / 4, budget.saturating_mul(2));
        let total = self.held();
        if total < soft {
            return Ok(());
        }
        if total < hard {
            let f = (total - soft) as f64 / (hard - soft).max(1) as f64;
            std::thread::sleep(MAX_DELAY.mul_f64(f));
            return Ok(());
        }
        bg.wait_for(
            || self.held() < hard || self.sealed.load(Ordering::Relaxed) == 0,
            closing,
        )
    }
}
