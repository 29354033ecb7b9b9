//! The restore procedure: build the database in a staging directory beside
//! the target, verify it, then swap it into place. An existing target is
//! moved aside (never deleted); a target another process has open is refused;
//! a failure at any point leaves the target exactly as it was.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use kstone_core::lock::DbLock;
use kstone_core::manifest::Origin;
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

/// Count live items by scanning a database.
pub fn count_items(db: &Database) -> Result<u64> {
    db.for_each_item(|_, _| Ok::<(), Error>(()))
}

/// Open a database, read every SST block and count its items.
pub fn check_database(dir: &Path) -> Result<u64> {
    let db = Database::open(dir, Options::default())?;
    db.verify_tables()?;
    let n = count_items(&db)?;
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
        recovered_to: Option<u64>,
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
            let (n, sha) = self.storage.download(&f.object, f.codec, &mut out)?;
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
        let mut dbm = m.db_manifest.clone();
        // A restored database starts a new history: its backups and WAL
        // archive never mix with those of the database it came from.
        dbm.history = kstone_core::manifest::new_history_id();
        dbm.origin = Some(Origin {
            repository: self.location().to_string(),
            repository_id: self.config.repository_id.clone(),
            backup_id: m.id.clone(),
            snapshot_lsn: m.snapshot_lsn,
            recovered_to_lsn: recovered_to,
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

fn staging_path(target: &Path) -> Result<PathBuf> {
    let name = target
        .file_name()
        .ok_or_else(|| Error::Invalid(format!("bad restore target {}", target.display())))?;
    let parent = kstone_core::fsio::parent(target);
    Ok(parent.join(format!(
        ".{}.restore-{}-{}",
        name.to_string_lossy(),
        kstone_core::fsio::now_micros(),
        std::process::id()
    )))
}

/// Build into staging with `build` (which also verifies), then swap into
/// place. Shared by backup restores and archive restores.
pub(crate) fn restore_with(
    target: &Path,
    build: impl FnOnce(&Path) -> Result<u64>,
) -> Result<RestoreReport> {
    let parent = kstone_core::fsio::parent(target).to_path_buf();
    fs::create_dir_all(&parent).ctx(&parent)?;
    // Refuse early what we will refuse later anyway.
    let _lock = check_target(target)?;
    let staging = staging_path(target)?;
    let items = match build(&staging) {
        Ok(n) => n,
        Err(e) => {
            // The staging directory is ours alone; the target was never touched.
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    let moved_aside = if target.exists() {
        let aside = PathBuf::from(format!(
            "{}.before-restore-{}",
            target.display(),
            crate::manifest::rfc3339(kstone_core::fsio::now_micros()).replace(':', "")
        ));
        let aside = unique(aside);
        // Atomic exchange: at every instant `target` is either the old or the
        // new database, never missing.
        exchange(&staging, target)?;
        fs::rename(&staging, &aside).ctx(&aside)?;
        Some(aside)
    } else {
        fs::rename(&staging, target).ctx(target)?;
        None
    };
    kstone_core::fsio::sync_dir(&parent)?;
    Ok(RestoreReport {
        target: target.to_path_buf(),
        moved_aside,
        items,
        bytes: 0,
        snapshot_lsn: 0,
    })
}

fn unique(p: PathBuf) -> PathBuf {
    if !p.exists() {
        return p;
    }
    (1..)
        .map(|i| PathBuf::from(format!("{}-{i}", p.display())))
        .find(|c| !c.exists())
        .unwrap_or(p)
}

/// Refuse targets that are open, or that are something other than a
/// database or an empty directory; hold the target's lock while we work.
fn check_target(target: &Path) -> Result<Option<DbLock>> {
    if !target.exists() {
        return Ok(None);
    }
    if !target.is_dir() {
        return Err(Error::Refused(format!(
            "{} exists and is not a directory",
            target.display()
        )));
    }
    let is_db = target.join(kstone_core::manifest::FILE_NAME).exists();
    let empty = fs::read_dir(target).ctx(target)?.next().is_none();
    if !is_db && !empty {
        return Err(Error::Refused(format!(
            "{} exists and is not a KeystoneDB database; choose another target",
            target.display()
        )));
    }
    if !is_db {
        return Ok(None);
    }
    match DbLock::acquire(target) {
        Ok(l) => Ok(Some(l)),
        Err(kstone_core::Error::Locked { pid, .. }) => Err(Error::Refused(format!(
            "{} is open by process {pid}; stop it first",
            target.display()
        ))),
        Err(e) => Err(e.into()),
    }
}

/// `renameat2(RENAME_EXCHANGE)`: swap two paths atomically.
fn exchange(a: &Path, b: &Path) -> Result<()> {
    let ca = CString::new(a.as_os_str().as_bytes()).map_err(|e| Error::Invalid(e.to_string()))?;
    let cb = CString::new(b.as_os_str().as_bytes()).map_err(|e| Error::Invalid(e.to_string()))?;
    // SAFETY: both pointers are valid NUL-terminated strings for the call.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r != 0 {
        return Err(Error::Io {
            path: b.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}
