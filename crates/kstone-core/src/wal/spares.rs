//! Empty files made ahead of time for new WAL segments.
//!
//! Creating a file is not cheap on every filesystem: on ext4 the inode
//! allocator skips inodes freed in the last few seconds, and a database
//! that retires a segment and an SST per flush frees many, so one `open`
//! with `O_CREAT` measured ~0.5 ms of kernel CPU here, against ~20 µs for a
//! `rename`. A memtable budget that fills seals up to 256 stripes at once,
//! each needing a new segment on the write path. So a background thread
//! keeps a few empty files named `spare-<n>.tmp` in `wal/`, and a writer
//! renames one to its new segment's name. It starts once the first segment
//! is wanted: a process that only reads, or writes to segments it already
//! has, makes none.
//!
//! A spare holds no byte until it is renamed; the segment's header is
//! written after the rename. So a file under a spare's name with bytes in it
//! is a rename a power cut lost before the `wal/` fsync that would have
//! made it durable: its records are in the commit log (`Sync` mode: redo has
//! rebuilt the segment) or were never acknowledged as durable (`Buffered`
//! mode), and the next owner removes it. Every reader of `wal/` ignores
//! names that are not segments. `close` removes the spares; the next owner
//! adopts the empty ones a crash left.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::closing::Closing;
use crate::mutex::lock;

/// Spares kept ready: enough for a wave of seals to begin on them while the
/// refill keeps up (a seal also waits for its segment's fsync).
const TARGET: usize = 64;

/// How often a full pool looks again whether a writer took one.
const POLL: Duration = Duration::from_millis(20);

const PREFIX: &str = "spare-";
const SUFFIX: &str = ".tmp";

/// The spare whose name holds `n`.
fn file_name(n: u64) -> String {
    format!("{PREFIX}{n:012}{SUFFIX}")
}

/// The number in a spare's name, or `None` for any other name.
fn parse_name(name: &str) -> Option<u64> {
    name.strip_prefix(PREFIX)?
        .strip_suffix(SUFFIX)?
        .parse()
        .ok()
}

#[derive(Default)]
struct Pool {
    /// Ready spares: path and an open read-write handle.
    ready: Vec<(PathBuf, File)>,
    /// Number of the next spare made.
    next: u64,
    /// The filesystem has no no-replace rename: spares are not made.
    unsupported: bool,
    /// A segment was wanted: the refill has begun.
    wanted: bool,
}

/// The spare files of one open database's `wal/` directory.
pub(crate) struct Spares {
    dir: PathBuf,
    pool: Mutex<Pool>,
}

impl Spares {
    /// Adopt the empty spares a previous owner of `wal_dir` left, and remove
    /// any other file under a spare's name (a spare holds no data).
    pub(crate) fn open(wal_dir: &Path) -> Spares {
        let mut pool = Pool::default();
        for e in std::fs::read_dir(wal_dir).into_iter().flatten().flatten() {
            let Some(n) = parse_name(&e.file_name().to_string_lossy()) else {
                continue;
            };
            pool.next = pool.next.max(n.saturating_add(1));
            let path = e.path();
            let empty_file = std::fs::symlink_metadata(&path)
                .is_ok_and(|m| m.is_file() && m.len() == 0 && nlink(&m) == 1);
            let opened = empty_file
                .then(|| File::options().read(true).write(true).open(&path).ok())
                .flatten();
            match opened {
                Some(f) if pool.ready.len() < TARGET => pool.ready.push((path, f)),
                // A directory was not made here: left alone.
                _ if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) => {}
                _ => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        Spares {
            dir: wal_dir.to_path_buf(),
            pool: Mutex::new(pool),
        }
    }

    /// A ready spare, renamed to `dest` (which must not exist): its open
    /// handle, or `None` if there is none (the caller creates the file).
    pub(crate) fn take(&self, dest: &Path) -> Option<File> {
        let (path, file) = {
            let mut p = lock(&self.pool);
            p.wanted = true;
            p.ready.pop()?
        };
        match rename_noreplace(&path, dest) {
            Ok(()) => Some(file),
            Err(e) => {
                // Whatever stood in the way, this spare is not used again.
                let _ = std::fs::remove_file(&path);
                if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS))
                    || e.kind() == std::io::ErrorKind::Unsupported
                {
                    let mut p = lock(&self.pool);
                    p.unsupported = true;
                    p.ready.drain(..).for_each(|(path, _)| {
                        let _ = std::fs::remove_file(path);
                    });
                }
                None
            }
        }
    }

    /// Keep the pool full until the database closes, from the first segment
    /// wanted on. A spare that cannot be made (a full disk) is tried again
    /// later: writers create their own.
    pub(crate) fn refill(&self, closing: &Closing) {
        loop {
            let n = {
                let mut p = lock(&self.pool);
                // At u64::MAX (only a planted name gets there) every
                // create fails and writers create their own files.
                (p.wanted && p.ready.len() < TARGET && !p.unsupported).then(|| {
                    let n = p.next;
                    p.next = n.saturating_add(1);
                    n
                })
            };
            let made = n.and_then(|n| {
                let path = self.dir.join(file_name(n));
                let f = File::options()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .ok()?;
                Some((path, f))
            });
            match made {
                Some(spare) => lock(&self.pool).ready.push(spare),
                None if !closing.sleep(POLL) => return,
                None => {}
            }
            if closing.is_closing() {
                return;
            }
        }
    }

    /// Remove the ready spares (at close, after the refill stopped), so a
    /// closed database's `wal/` holds segments only. One left by a crash
    /// is adopted by the next owner.
    pub(crate) fn remove_all(&self) {
        for (path, _) in lock(&self.pool).ready.drain(..) {
            let _ = std::fs::remove_file(&path);
        }
    }

    /// Spares ready now.
    #[cfg(test)]
    fn ready(&self) -> usize {
        lock(&self.pool).ready.len()
    }
}

fn nlink(m: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::nlink(m)
}

/// Rename `from` to `to`, failing if `to` exists: a segment's name is new,
/// and a rename must never replace a file that holds records.
#[cfg(target_os = "linux")]
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    };
    let (f, t) = (c(from)?, c(to)?);
    // SAFETY: both are valid NUL-terminated paths that outlive the call.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Without an atomic no-replace rename, spares are not used.
#[cfg(not(target_os = "linux"))]
fn rename_noreplace(_from: &Path, _to: &Path) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn names_round_trip_and_segments_are_not_spares() {
        assert_eq!(parse_name(&file_name(7)), Some(7));
        assert_eq!(parse_name("000-000000000007.wal"), None);
        assert_eq!(crate::wal::segment::parse_name(&file_name(7)), None);
    }

    #[test]
    fn refill_fills_take_renames_and_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let spares = Arc::new(Spares::open(dir.path()));
        let closing = Arc::new(Closing::default());
        let t = {
            let (s, c) = (Arc::clone(&spares), Arc::clone(&closing));
            std::thread::spawn(move || s.refill(&c))
        };
        // Nothing is made before a segment is wanted.
        std::thread::sleep(3 * POLL);
        assert_eq!(spares.ready(), 0);
        assert!(spares.take(&dir.path().join("first")).is_none());
        while spares.ready() < TARGET {
            std::thread::sleep(Duration::from_millis(5));
        }
        let dest = dir.path().join("seg");
        let f = spares.take(&dest).expect("a spare");
        assert!(dest.exists());
        std::os::unix::fs::FileExt::write_all_at(&f, b"head", 0).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"head");
        // An existing file is never replaced: the spare is dropped instead.
        assert!(spares.take(&dest).is_none());
        assert_eq!(std::fs::read(&dest).unwrap(), b"head");
        closing.close();
        t.join().unwrap();
        let left = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| parse_name(&e.as_ref().unwrap().file_name().to_string_lossy()).is_some())
            .count();
        assert_eq!(left, spares.ready());
        assert!(left >= TARGET - 2, "{left} spares left");
        spares.remove_all();
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["seg"]);
    }

    #[test]
    fn leftovers_are_adopted_when_empty_and_removed_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(file_name(3)), b"").unwrap();
        std::fs::write(dir.path().join(file_name(9)), b"not empty").unwrap();
        std::fs::create_dir(dir.path().join(file_name(4))).unwrap();
        std::fs::write(dir.path().join("other.tmp"), b"x").unwrap();
        let spares = Spares::open(dir.path());
        assert_eq!(spares.ready(), 1);
        assert!(dir.path().join(file_name(3)).exists());
        assert!(!dir.path().join(file_name(9)).exists());
        assert!(dir.path().join(file_name(4)).is_dir(), "not a file we made");
        assert!(dir.path().join("other.tmp").exists(), "not ours");
        assert_eq!(lock(&spares.pool).next, 10);

        // The largest number a name can hold does not overflow the count.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(file_name(u64::MAX)), b"").unwrap();
        let spares = Spares::open(dir.path());
        assert_eq!(lock(&spares.pool).next, u64::MAX);
        let closing = Closing::default();
        closing.close();
        spares.refill(&closing);
    }
}
