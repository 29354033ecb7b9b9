//! Locking a mutex whose holder may have panicked.
//!
//! The engine's state behind a mutex stays consistent at every await-free
//! step (a panic is caught, recorded and turned into an error for writers by
//! the background worker), so a poisoned lock is taken over, not propagated.

use std::sync::{Mutex, MutexGuard};

/// Lock `m`, taking it over if a previous holder panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
