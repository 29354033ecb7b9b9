//! A bounded pool for independent jobs: the stripes of an ingest or a
//! check, the objects of a replay, the files of a publish. One place owns
//! how work is handed out, when it stops, and what a panic becomes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Threads for CPU-bound jobs: the machine's cores, at least one, at most
/// four (beyond that the jobs' reads and fsyncs, not the CPU, set the pace).
pub fn cpu_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4)
}

/// Run `f` on every item on up to `threads` threads, handing items out in
/// order. Results come back in input order. Once a result satisfies `stop`,
/// no further item is started; items never started, and those whose job
/// panicked, are `None`.
///
/// ```
/// let squares = kstone_core::parallel::map(&[1, 2, 3], 2, |x| x * x, |_| false);
/// assert_eq!(squares, vec![Some(1), Some(4), Some(9)]);
/// ```
pub fn map<T, R>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
    stop: impl Fn(&R) -> bool + Sync,
) -> Vec<Option<R>>
where
    T: Sync,
    R: Send,
{
    let slots: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let threads = threads.clamp(1, items.len().max(1));
    let job = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let (Some(item), Some(slot)) = (items.get(i), slots.get(i)) else {
            return;
        };
        let r = f(item);
        let halt = stop(&r);
        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
        if halt {
            next.store(items.len(), Ordering::Relaxed);
            return;
        }
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads).map(|_| scope.spawn(job)).collect();
        // A panicked job is joined here (not re-raised): its slot stays empty.
        for h in handles {
            let _ = h.join();
        }
    });
    slots
        .into_iter()
        .map(|s| s.into_inner().unwrap_or_else(|p| p.into_inner()))
        .collect()
}

/// [`map`] for fallible jobs: every result in input order, or the first
/// error in input order (no item is started after an error). A job that
/// panicked is `Error::Internal`.
///
/// ```
/// use kstone_core::{parallel::try_map, Error};
/// let r: Result<Vec<u32>, Error> = try_map(&[1, 2, 0, 4], 2, |&x| {
///     if x == 0 { Err(Error::InvalidInput("zero".into())) } else { Ok(10 / x) }
/// });
/// assert!(r.is_err());
/// ```
pub fn try_map<T, R, E>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> Result<R, E> + Sync,
) -> Result<Vec<R>, E>
where
    T: Sync,
    R: Send,
    E: Send + From<crate::Error>,
{
    map(items, threads, f, Result::is_err)
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(panicked())))
        .collect()
}

/// What a job that never reported became: its thread panicked (an empty
/// slot before the first error can mean nothing else).
fn panicked<E: From<crate::Error>>() -> E {
    E::from(crate::Error::Internal("a worker thread panicked".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn results_keep_input_order_on_many_threads() {
        let items: Vec<u64> = (0..500).collect();
        let out = try_map(&items, 4, |&x| Ok::<_, Error>(x * 3)).unwrap();
        assert_eq!(out, items.iter().map(|x| x * 3).collect::<Vec<_>>());
        assert!(try_map(&[] as &[u8], 4, |_| Ok::<_, Error>(()))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn the_first_error_in_order_wins_and_later_items_are_not_started() {
        let started = AtomicUsize::new(0);
        let items: Vec<usize> = (0..1000).collect();
        let r = try_map(&items, 1, |&x| {
            started.fetch_add(1, Ordering::Relaxed);
            if x == 10 || x == 20 {
                Err(Error::InvalidInput(format!("bad {x}")))
            } else {
                Ok(x)
            }
        });
        assert!(matches!(r, Err(Error::InvalidInput(m)) if m == "bad 10"));
        assert_eq!(
            started.load(Ordering::Relaxed),
            11,
            "one thread stops at the error"
        );
    }

    #[test]
    fn a_panicking_job_is_an_internal_error_not_a_panic() {
        let r = try_map(&[1, 2, 3], 2, |&x| {
            if x == 2 {
                panic!("job panicked");
            }
            Ok::<_, Error>(x)
        });
        assert!(matches!(r, Err(Error::Internal(_))));
    }
}
