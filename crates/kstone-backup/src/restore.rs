//! The restore procedure: build the database in a staging directory beside
//! the target, verify it, then swap it into place. An existing target is
//! moved aside (never deleted); a target another process has open is refused;
//! a failure at any point leaves the target exactly as it was.

use std::fs;
use std::path::{Path, PathBuf};

use kstone_core::Origin;
use kstone_core::{Database, Options};

use crate::error::{Error, IoContext, Result};
use crate::manifest::BackupManifest;
use crate::repository::Repository;

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    pub target: PathBuf,
    /// Where the previous contents of the target went, if it existed.
    pub moved_aside: Option<PathBuf>,
    pub items: u64,
    pub bytes: u64,
    pub snapshot_lsn: u64,
}

/// Open a database, read every SST block and decode and count its items.
pub fn check_database(dir: &Path) -> Result<u64> {
    let db = Database::open(dir, Options::default())?;
    let n = db.check_items()?;
    db.close()?;
    Ok(n)
}

impl Repository {
    /// Download a backup's files into the new directory `dir` and write its
    /// MANIFEST; every object is checked against its size and SHA-256.
    pub fn materialize(&self, m: &BackupManifest, dir: &Path) -> Result<()> {
        self.materialize_as(m, dir, None)
    }

    /// As [`Repository::materialize`]; `recovered_to` records a PITR target.
    pub(crate) fn materialize_as(
        &self,
        m: &BackupManifest,
        dir: &Path,
        recovered_to: Option<(u64, u64)>,
    ) -> Result<()> {
        fs::create_dir(dir).ctx(dir)?;
        for sub in ["wal", "sst", "pins"] {
            let d = dir.join(sub);
            fs::create_dir(&d).ctx(&d)?;
        }
        for f in &m.files {
            let path = dir.join(&f.name);
            if !f.name.starts_with("sst/") && !f.name.starts_with("wal/") || f.name.contains("..") {
                return Err(Error::Corrupt {
                    object: f.object.clone(),
                    detail: format!("bad file name {:?} in manifest", f.name),
                });
            }
            let mut out = fs::File::create(&path).ctx(&path)?;
            let (n, sha) = self
                .storage
                .download(&f.object, f.codec, &mut out)
                .map_err(|e| match e {
                    Error::Io { path: p, source } if p.as_os_str().is_empty() => Error::Io {
                        path: path.clone(),
                        source,
                    },
                    e => e,
                })?;
            if n != f.size || sha != f.sha256 {
                return Err(Error::Corrupt {
                    object: f.object.clone(),
                    detail: format!(
                        "content does not match the manifest ({n} bytes, sha256 {sha}; expected {} bytes, {})",
                        f.size, f.sha256
                    ),
                });
            }
            out.sync_all().ctx(&path)?;
        }
        let dbm = m.db_manifest.restored(Origin {
            repository: self.location().to_string(),
            repository_id: self.config.repository_id.clone(),
            backup_id: m.id.clone(),
            snapshot_lsn: m.snapshot_lsn,
            recovered_to_lsn: recovered_to.map(|r| r.0),
            parent_history: Some(m.history.clone()),
            fork_ts: Some(recovered_to.map_or(m.snapshot_commit_us, |r| r.1)),
            restored_at_us: kstone_core::fsio::now_micros(),
        });
        dbm.store(dir)?;
        for sub in ["wal", "sst", "pins"] {
            kstone_core::fsio::sync_dir(&dir.join(sub))?;
        }
        kstone_core::fsio::sync_dir(dir)?;
        Ok(())
    }

    /// Restore backup `id` (or `latest`) to `target`.
    pub fn restore(&self, id: &str, target: &Path) -> Result<RestoreReport> {
        let _lock = self.lock_for_read("a restore")?;
        let m = self.manifest(id)?;
        let report = restore_with(target, |staging| {
            self.materialize(&m, staging)?;
            let items = check_database(staging)?;
            if items != m.item_count {
                return Err(Error::Corrupt {
                    object: crate::manifest::manifest_object(&m.id),
                    detail: format!(
                        "restored database has {items} items, the manifest says {}",
                        m.item_count
                    ),
                });
            }
            Ok(items)
        })?;
        Ok(RestoreReport {
            bytes: m.bytes_total,
            snapshot_lsn: m.snapshot_lsn,
            ..report
        })
    }
}

pub(crate) use crate::swap::restore_with;
