//! Repository locks (`locks/<name>`), so that prune never races a backup,
//! restore or verify. Backups and reads take a shared lock, prune an
//! exclusive one. Each side writes its lock first and then looks for
//! conflicting ones, so of two racing parties at least one sees the other.
//! Locks of processes that are gone (same host) are ignored and removed.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::repository::Repository;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LockInfo {
    pid: u32,
    host: String,
    exclusive: bool,
    created_at_us: u64,
    purpose: String,
}

/// A held repository lock; released on drop.
pub struct RepoLock<'a> {
    repo: &'a Repository,
    key: String,
}

impl Drop for RepoLock<'_> {
    fn drop(&mut self) {
        let _ = self.repo.storage.delete(&self.key);
    }
}

/// Locks of other hosts older than this are considered abandoned.
const FOREIGN_STALE_US: u64 = 24 * 3600 * 1_000_000;

impl Repository {
    fn live_locks(&self, except: &str) -> Result<Vec<LockInfo>> {
        let host = crate::create::hostname();
        let now = kstone_core::fsio::now_micros();
        let mut out = Vec::new();
        for (key, _) in self.storage.list("locks")? {
            if key == except {
                continue;
            }
            let Some(b) = self.storage.get(&key)? else {
                continue;
            };
            let Ok(l) = serde_json::from_slice::<LockInfo>(&b) else {
                continue;
            };
            let gone = if l.host == host {
                !std::path::Path::new("/proc")
                    .join(l.pid.to_string())
                    .exists()
            } else {
                now.saturating_sub(l.created_at_us) > FOREIGN_STALE_US
            };
            if gone {
                self.storage.delete(&key)?;
            } else {
                out.push(l);
            }
        }
        Ok(out)
    }

    /// A shared lock for an operation that only reads the repository
    /// (restore, verify, export). If the lock cannot even be written — a full
    /// or read-only backup disk — the read goes ahead without it: a prune
    /// could not write its own lock there either, and being able to restore
    /// from a full backup disk matters more.
    pub fn lock_for_read(&self, purpose: &str) -> Result<Option<RepoLock<'_>>> {
        match self.lock(false, purpose) {
            Ok(l) => Ok(Some(l)),
            Err(Error::Store { .. } | Error::Io { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Take a lock: shared (backup, restore, verify) or exclusive (prune).
    pub fn lock(&self, exclusive: bool, purpose: &str) -> Result<RepoLock<'_>> {
        let key = crate::layout::lock(std::process::id(), &kstone_core::fsio::random_hex(8)?);
        let info = LockInfo {
            pid: std::process::id(),
            host: crate::create::hostname(),
            exclusive,
            created_at_us: kstone_core::fsio::now_micros(),
            purpose: purpose.into(),
        };
        self.storage
            .put(&key, serde_json::to_vec(&info).unwrap_or_default())?;
        let lock = RepoLock { repo: self, key };
        let conflict = self
            .live_locks(&lock.key)?
            .into_iter()
            .find(|l| exclusive || l.exclusive);
        if let Some(l) = conflict {
            return Err(Error::Busy(format!(
                "the repository is in use by {} (pid {} on {}); try again when it has finished",
                l.purpose, l.pid, l.host
            )));
        }
        Ok(lock)
    }
}
