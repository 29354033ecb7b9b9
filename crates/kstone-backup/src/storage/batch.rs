//! Objects of a local repository made durable together: a backup writes
//! hundreds of small objects, and the file store's fsync of each file and
//! of its directory per object cost more than the copy itself.
//!
//! Each object is written under its staging name (`NAME#0`: listings skip
//! it, as the file store's own staging files) with its writeback started
//! at once; [`Batch::publish`] then fsyncs every staged file, renames each
//! into place and fsyncs each directory once, bottom up. The order per
//! object is the file store's (write, fsync, rename, directory fsync);
//! only the fsyncs are batched, and nothing refers to an object before
//! `publish` returns (the backup's manifest is written after it). A crash
//! before then leaves invisible staging files, removed with the backup's
//! data prefix by the next backup's cleanup.

use std::collections::{BTreeSet, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
#[cfg(target_os = "linux")]
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{IoContext, Result};

/// Fsyncs in flight at once when publishing.
const SYNC_THREADS: usize = 8;

/// Staged objects of one local repository, published by [`Batch::publish`].
pub struct Batch {
    root: PathBuf,
    /// (staging path, final path) of every object written so far; files
    /// are reopened to be fsynced (fsync is per file, not per descriptor),
    /// so a large batch holds no descriptors.
    staged: Mutex<Vec<(PathBuf, PathBuf)>>,
    /// Directories known to exist (one `mkdir -p` each, not one per object).
    dirs: Mutex<HashSet<PathBuf>>,
}

/// The file store maps such keys to `root/key` unchanged; any other key
/// goes through it as a single object.
fn plain_key(key: &str) -> bool {
    !key.is_empty()
        && key.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        })
}

impl Batch {
    pub(super) fn new(root: &Path) -> Batch {
        Batch {
            root: root.to_path_buf(),
            staged: Mutex::new(Vec::new()),
            dirs: Mutex::new(HashSet::new()),
        }
    }

    /// Write `bytes` as `key`'s staging file; `false` if the key is not one
    /// this batch can stage (then the caller stores it the usual way).
    pub(super) fn stage(&self, key: &str, bytes: &[u8]) -> Result<bool> {
        if !plain_key(key) {
            return Ok(false);
        }
        let dest = self.root.join(key);
        let mut name = dest.as_os_str().to_owned();
        name.push("#0");
        let tmp = PathBuf::from(name);
        if let Some(dir) = tmp.parent() {
            let mut made = self.dirs.lock().unwrap_or_else(|p| p.into_inner());
            if !made.contains(dir) {
                std::fs::create_dir_all(dir).ctx(dir)?;
                made.insert(dir.to_path_buf());
            }
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .ctx(&tmp)?;
        f.write_all(bytes).ctx(&tmp)?;
        // Start writing back now, so publish's fsyncs mostly wait for I/O
        // that is already done (a hint: its failure changes nothing).
        // SAFETY: a valid open descriptor; the call reads no memory.
        #[cfg(target_os = "linux")]
        unsafe {
            libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
        }
        self.staged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((tmp, dest));
        Ok(true)
    }

    /// Make every staged object durable and visible: fsync the files,
    /// rename them into place, fsync each directory from the deepest up to
    /// the repository's root (new directories' entries included).
    pub(super) fn publish(self) -> Result<()> {
        let staged = self.staged.into_inner().unwrap_or_else(|p| p.into_inner());
        sync_all_of(&staged)?;
        let mut dirs = BTreeSet::new();
        for (tmp, dest) in &staged {
            std::fs::rename(tmp, dest).ctx(dest)?;
            let mut d = dest.parent();
            while let Some(dir) = d.filter(|d| d.starts_with(&self.root)) {
                dirs.insert(dir.to_path_buf());
                d = dir.parent();
            }
        }
        // Deepest first: a directory's entry is made durable after its
        // contents.
        for dir in dirs.iter().rev() {
            kstone_core::fsio::sync_dir(dir)?;
        }
        Ok(())
    }
}

/// Fsync every staged file, several at once: each fsync mostly waits for
/// the device, and concurrent waits share its cache flushes.
fn sync_all_of(staged: &[(PathBuf, PathBuf)]) -> Result<()> {
    kstone_core::parallel::try_map(staged, SYNC_THREADS, |(tmp, _)| {
        File::open(tmp).and_then(|f| f.sync_all()).ctx(tmp)
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_keys_are_staged() {
        assert!(plain_key("data/20260101-x/sst/000-000000000001.sst"));
        for k in ["", "a//b", "../x", "a/./b", "a b", "a#1", "a/%2F", "/a"] {
            assert!(!plain_key(k), "{k}");
        }
    }

    /// Nothing is visible before publish; everything is after, and
    /// staging files are not listed by the file store meanwhile.
    #[test]
    fn staged_objects_appear_only_when_published() {
        let tmp = tempfile::tempdir().unwrap();
        let storage = super::super::Storage::open(tmp.path().to_str().unwrap(), false).unwrap();
        let batch = storage.batch().unwrap();
        storage
            .put_in(Some(&batch), "data/b1/sst/a.sst", b"one".to_vec())
            .unwrap();
        storage
            .put_in(Some(&batch), "data/b1/wal/b.wal", b"two".to_vec())
            .unwrap();
        assert!(storage.list("data").unwrap().is_empty());
        assert_eq!(storage.get("data/b1/sst/a.sst").unwrap(), None);
        storage.publish(Some(batch)).unwrap();
        let mut listed = storage.list("data").unwrap();
        listed.sort();
        assert_eq!(
            listed,
            vec![
                ("data/b1/sst/a.sst".into(), 3),
                ("data/b1/wal/b.wal".into(), 3)
            ]
        );
        assert_eq!(storage.get("data/b1/wal/b.wal").unwrap().unwrap(), b"two");
        assert!(!tmp.path().join("data/b1/sst/a.sst#0").exists());
    }

    /// A backup that fails before publishing leaves only staging files,
    /// which deleting its data prefix removes.
    #[test]
    fn unpublished_objects_go_with_their_prefix() {
        let tmp = tempfile::tempdir().unwrap();
        let storage = super::super::Storage::open(tmp.path().to_str().unwrap(), false).unwrap();
        let batch = storage.batch().unwrap();
        storage
            .put_in(Some(&batch), "data/b2/sst/a.sst", b"one".to_vec())
            .unwrap();
        drop(batch);
        storage.delete_prefix("data/b2").unwrap();
        assert!(!tmp.path().join("data/b2").exists());
    }
}
