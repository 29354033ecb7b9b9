//! Histories and their lineage. A restored database starts a new history;
//! its lineage object (`wal/<db_id>/<history>/lineage`, written by the
//! archiver's first round for that history) names the history it forked
//! from, the fork point and the backup it was restored from — as PostgreSQL
//! timelines do. A point of the new history is then reachable from any
//! backup of its own, or from a backup of the parent history at or before
//! the fork, replaying the parent's archive up to the fork and the new
//! history's archive after it.
//!
//! Object body: the shared framing with magic `KSTNLNAG`, version 1, JSON
//! [`Lineage`].

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::manifest::BackupManifest;
use crate::repository::Repository;
use crate::wal_archive::ArchiveRange;

const MAGIC: &[u8; 8] = b"KSTNLNAG";
const VERSION: u32 = 1;
/// Restores of restores of …: deeper lineages are not followed.
const MAX_DEPTH: usize = 16;

/// Where a history came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lineage {
    pub history: String,
    pub parent_history: String,
    /// The last LSN the new history shares with its parent.
    pub fork_lsn: u64,
    pub fork_ts: u64,
    /// The backup (of the parent history) the database was restored from.
    pub base_backup: String,
    pub restored_at_us: u64,
}

fn key(db_id: &str, history: &str) -> String {
    crate::layout::lineage(db_id, history)
}

/// What a restore of one history can build on: backups (its own, and its
/// ancestors' at or before each fork) and archive objects (its own, and its
/// ancestors' clipped at each fork: a clipped object's `last_lsn` is the
/// fork and replay stops there).
pub(crate) struct Material {
    pub db_id: String,
    pub history: String,
    pub backups: Vec<BackupManifest>,
    pub ranges: Vec<(String, ArchiveRange)>,
}

impl Repository {
    /// The lineage of a history, if one was recorded.
    pub fn lineage(&self, db_id: &str, history: &str) -> Result<Option<Lineage>> {
        let k = key(db_id, history);
        match self.storage.get(&k)? {
            None => Ok(None),
            Some(b) => {
                let (version, body) =
                    kstone_core::framed::decode(&b, MAGIC, std::path::Path::new(&k)).map_err(
                        |e| Error::Corrupt {
                            object: k.clone(),
                            detail: e.to_string(),
                        },
                    )?;
                if version != VERSION {
                    return Err(Error::Corrupt {
                        object: k,
                        detail: format!("unsupported version {version}"),
                    });
                }
                serde_json::from_slice(body)
                    .map(Some)
                    .map_err(|e| Error::Corrupt {
                        object: k,
                        detail: e.to_string(),
                    })
            }
        }
    }

    /// Record where `history` came from, once, if the database was restored
    /// from a backup of this repository.
    pub(crate) fn record_lineage(
        &self,
        db_id: &str,
        history: &str,
        origin: &kstone_core::Origin,
    ) -> Result<()> {
        if origin.repository_id != self.config.repository_id
            || self.storage.head(&key(db_id, history))?.is_some()
        {
            return Ok(());
        }
        // Databases restored by older versions did not record the parent:
        // the backup they came from names it, while it exists.
        let parent = match &origin.parent_history {
            Some(p) => p.clone(),
            None => match self.manifest(&origin.backup_id) {
                Ok(m) => m.history,
                Err(Error::NoSuchBackup(_) | Error::Corrupt { .. }) => return Ok(()),
                Err(e) => return Err(e),
            },
        };
        if parent == history {
            return Ok(());
        }
        let l = Lineage {
            history: history.to_string(),
            parent_history: parent,
            fork_lsn: origin.recovered_to_lsn.unwrap_or(origin.snapshot_lsn),
            fork_ts: origin.fork_ts.unwrap_or(0),
            base_backup: origin.backup_id.clone(),
            restored_at_us: origin.restored_at_us,
        };
        let body = serde_json::to_vec(&l).unwrap_or_default();
        self.storage.put(
            &key(db_id, history),
            kstone_core::framed::encode(MAGIC, VERSION, &body),
        )
    }

    /// Every recorded lineage of database `db_id` (damaged ones are left out).
    fn lineages(&self, db_id: &str) -> Result<Vec<Lineage>> {
        let mut out = Vec::new();
        for (k, _) in self.storage.list(&crate::layout::archive_of_db(db_id))? {
            if let Some(h) = k
                .strip_suffix("/lineage")
                .and_then(|p| p.rsplit('/').next())
            {
                if let Ok(Some(l)) = self.lineage(db_id, h) {
                    out.push(l);
                }
            }
        }
        Ok(out)
    }

    /// The history a restore works on when none is given: that of the
    /// newest backup, followed down its lineage to the newest history
    /// restored from it (by restore time) that this repository archived.
    fn default_history(&self, all: &[BackupManifest]) -> Result<(String, String)> {
        let newest = all.last().ok_or(Error::NoBackups)?;
        let db_id = newest.db_id.clone();
        let lineages = self.lineages(&db_id)?;
        let mut h = newest.history.clone();
        // A child counts only if it is newer than the newest backup of its parent.
        let mut since = newest.completed_at_us;
        for _ in 0..MAX_DEPTH {
            let child = lineages
                .iter()
                .filter(|l| l.parent_history == h && l.restored_at_us > since)
                .max_by_key(|l| l.restored_at_us);
            match child {
                Some(c) => {
                    h = c.history.clone();
                    since = all
                        .iter()
                        .filter(|b| b.history == h)
                        .map(|b| b.completed_at_us)
                        .max()
                        .unwrap_or(c.restored_at_us)
                        .max(c.restored_at_us);
                }
                None => break,
            }
        }
        Ok((db_id, h))
    }

    /// Backups and archive objects a restore of `history` (default: the
    /// newest) can use.
    pub(crate) fn material(&self, history: Option<&str>) -> Result<Material> {
        let all = self.list()?;
        let (db_id, h) = match history {
            Some(h) => {
                let db = match all.iter().find(|m| m.history == h) {
                    Some(m) => m.db_id.clone(),
                    None => self.db_of_history(h)?,
                };
                (db, h.to_string())
            }
            None => self.default_history(&all)?,
        };
        let mut m = Material {
            db_id: db_id.clone(),
            history: h.clone(),
            backups: Vec::new(),
            ranges: Vec::new(),
        };
        // Walk up the lineage: each ancestor contributes what lies at or
        // before the fork its child was made at.
        let (mut cur, mut cap, mut cap_ts) = (h.clone(), u64::MAX, u64::MAX);
        for _ in 0..MAX_DEPTH {
            m.backups.extend(
                all.iter()
                    .filter(|b| b.db_id == db_id && b.history == cur && b.snapshot_lsn <= cap)
                    .cloned(),
            );
            for (k, mut r) in self.archive_ranges(&db_id, &cur)? {
                if r.first_lsn > cap {
                    continue;
                }
                if r.last_lsn > cap {
                    r.last_lsn = cap;
                    r.last_ts = r.last_ts.min(cap_ts);
                }
                m.ranges.push((k, r));
            }
            match self.lineage(&db_id, &cur) {
                Ok(Some(l)) => {
                    cap = cap.min(l.fork_lsn);
                    cap_ts = cap_ts.min(l.fork_ts);
                    cur = l.parent_history;
                }
                // A damaged lineage object: this history's own material only.
                Ok(None) | Err(Error::Corrupt { .. }) => break,
                Err(e) => return Err(e),
            }
        }
        if m.backups.is_empty() {
            return Err(Error::NoSuchBackup(format!(
                "of history {h} (nor of the history it was restored from)"
            )));
        }
        m.backups
            .sort_by(|a, b| (a.started_at_us, &a.id).cmp(&(b.started_at_us, &b.id)));
        m.ranges
            .sort_by_key(|(_, r)| (r.first_lsn, std::cmp::Reverse(r.last_lsn)));
        Ok(m)
    }

    /// The database a history without backups belongs to (from its archive).
    fn db_of_history(&self, history: &str) -> Result<String> {
        for (k, _) in self.storage.list(crate::layout::ARCHIVE)? {
            let parts: Vec<&str> = k.split('/').collect();
            if parts.len() == 4 && parts[2] == history {
                return Ok(parts[1].to_string());
            }
        }
        Err(Error::NoSuchBackup(format!("of history {history}")))
    }
}
