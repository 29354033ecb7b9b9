//! The database's "closing" flag and the tick its periodic threads sleep on
//! (the buffered-mode fsync loop, the snapshot server), so that `close`
//! wakes them at once instead of after their interval.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::mutex::lock;

#[derive(Default)]
pub(crate) struct Closing {
    flag: AtomicBool,
    tick: Mutex<()>,
    wake: Condvar,
}

impl Closing {
    pub(crate) fn is_closing(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Set the flag and wake every sleeper.
    pub(crate) fn close(&self) {
        self.flag.store(true, Ordering::SeqCst);
        // Taking the lock orders this after any sleeper's check of the flag.
        let _g = lock(&self.tick);
        self.wake.notify_all();
    }

    /// Sleep up to `d`; false once the database is closing.
    pub(crate) fn sleep(&self, d: Duration) -> bool {
        let g = lock(&self.tick);
        if self.is_closing() {
            return false;
        }
        drop(
            self.wake
                .wait_timeout(g, d)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0),
        );
        !self.is_closing()
    }
}
