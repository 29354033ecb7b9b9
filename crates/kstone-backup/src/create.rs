//! Taking a backup: pin a snapshot, upload the files the chosen parent does
//! not already hold (stripes in parallel), write the manifest last.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use kstone_core::snapshot::{FileKind, SnapshotFile};
use kstone_core::sst::reader::TableReader;
use kstone_core::{Database, HeldSnapshot, Options, Snapshot};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layout;
use crate::manifest::{
    self, BackupManifest, BackupType, FileEntry, FORMAT_VERSION, MANIFEST_MAGIC,
};
use crate::repository::Repository;

/// Options of a backup.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// `None`: incremental if this database has a full backup, else full.
    pub kind: Option<BackupType>,
    /// Files uploaded at once (default 4).
    pub parallelism: usize,
    /// Refuse (with [`Error::Unchanged`]) an incremental or differential
    /// that would hold no write its reference does not (nothing changed
    /// since); what `kstone backup create` does unless `--allow-empty`.
    pub skip_unchanged: bool,
}

/// A marker for a backup in progress: `inprogress/<id>`.
#[derive(Serialize, Deserialize)]
struct Marker {
    pid: u32,
    host: String,
    started_at_us: u64,
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn pid_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// A backup never stores a damaged table: every block's checksum is
/// checked before its bytes go up (the item count reads only table
/// properties, so it no longer finds a damaged block on the way).
fn check_table(f: &SnapshotFile, db_dir: &Path) -> Result<()> {
    if f.kind == FileKind::Sst {
        TableReader::open(&db_dir.join(&f.name))?.check_blocks()?;
    }
    Ok(())
}

/// Progress callback: (bytes done, bytes to do).
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Sync);

impl Repository {
    /// Remove what interrupted backups of this host left behind (their
    /// process is gone and they never wrote a manifest). Returns how many.
    pub fn clean_interrupted(&self) -> Result<usize> {
        let host = hostname();
        let done: std::collections::HashSet<String> = self.backup_ids()?.into_iter().collect();
        let mut cleaned = 0;
        for (key, _) in self.storage.list("inprogress")? {
            let Some(id) = layout::in_progress_id(&key) else {
                continue;
            };
            let Some(bytes) = self.storage.get(&key)? else {
                continue;
            };
            let Ok(m) = serde_json::from_slice::<Marker>(&bytes) else {
                continue;
            };
            if m.host != host || pid_alive(m.pid) {
                continue;
            }
            if !done.contains(id) {
                self.storage.delete_prefix(&layout::data_of(id))?;
                cleaned += 1;
            }
            self.storage.delete(&key)?;
        }
        Ok(cleaned)
    }

    /// Back up a database directory, whether or not another process has it
    /// open (then that process pins the snapshot for us).
    pub fn backup_dir(
        &self,
        db_dir: &Path,
        opts: &BackupOptions,
        progress: Option<Progress<'_>>,
    ) -> Result<BackupManifest> {
        let held = HeldSnapshot::acquire(db_dir, Options::default())?;
        self.backup_snapshot(held.snapshot(), db_dir, opts, progress)
    }

    /// Back up a pinned snapshot whose files live under `db_dir`.
    pub fn backup_snapshot(
        &self,
        snap: &Snapshot,
        db_dir: &Path,
        opts: &BackupOptions,
        progress: Option<Progress<'_>>,
    ) -> Result<BackupManifest> {
        let started = kstone_core::fsio::now_micros();
        let _lock = self.lock(false, "a backup")?;
        self.clean_interrupted()?;
        let mine: Vec<BackupManifest> = self
            .list()?
            .into_iter()
            .filter(|m| m.db_id == snap.db_id && m.history == snap.manifest.history)
            .collect();
        let last_full = mine.iter().rev().find(|m| m.kind == BackupType::Full);
        // An incremental or differential needs a full backup of this
        // history to build on (a first run, or right after a restore started
        // a new history): then the backup is a full one, and its manifest
        // says so (callers compare with what they asked for).
        let kind = match (opts.kind, last_full) {
            (_, None) => BackupType::Full,
            (None, Some(_)) => BackupType::Incremental,
            (Some(k), Some(_)) => k,
        };
        let reference: Option<&BackupManifest> = match kind {
            BackupType::Full => None,
            BackupType::Incremental => mine.last(),
            BackupType::Differential => last_full,
        };
        if let Some(r) = reference.filter(|r| opts.skip_unchanged && r.snapshot_lsn == snap.lsn) {
            return Err(Error::Unchanged {
                kind: kind.to_string(),
                since: r.id.clone(),
                lsn: r.snapshot_lsn,
            });
        }
        let id = manifest::new_backup_id(started);
        let marker = Marker {
            pid: std::process::id(),
            host: hostname(),
            started_at_us: started,
        };
        self.storage.put(
            &layout::in_progress(&id),
            serde_json::to_vec(&marker).unwrap_or_default(),
        )?;

        let stored = (|| -> Result<BackupManifest> {
            // A file is reused only if the object holding it is still there
            // whole: a new manifest never claims bytes the repository lacks
            // (an object deleted or truncated under an older backup is stored
            // again instead).
            let mut present: HashMap<String, u64> = HashMap::new();
            if let Some(r) = reference {
                let holders: std::collections::BTreeSet<&str> =
                    r.files.iter().map(|f| f.stored_in.as_str()).collect();
                for h in holders {
                    present.extend(self.storage.list(&layout::data_of(h))?);
                }
            }
            let known: HashMap<(&str, u64), &FileEntry> = reference
                .map(|r| {
                    r.files
                        .iter()
                        .filter(|f| present.get(&f.object) == Some(&f.stored_size))
                        .map(|f| ((f.name.as_str(), f.size), f))
                        .collect()
                })
                .unwrap_or_default();
            let mut entries: Vec<Option<FileEntry>> = vec![None; snap.files.len()];
            let mut todo = Vec::new();
            for (i, f) in snap.files.iter().enumerate() {
                match known.get(&(f.name.as_str(), f.len)) {
                    Some(e) => entries[i] = Some((*e).clone()),
                    None => todo.push(i),
                }
            }
            let total: u64 = todo.iter().map(|&i| snap.files[i].len).sum();
            let done = Mutex::new(0u64);
            let level = self.config.compression_level;
            // The uploads' fsyncs are batched: published (durable and
            // visible) together below, before the manifest names them.
            let batch = self.storage.batch();
            let workers = if opts.parallelism == 0 {
                4
            } else {
                opts.parallelism.min(16)
            };
            let uploaded = kstone_core::parallel::try_map(&todo, workers, |&i| {
                let f = &snap.files[i];
                let object = layout::data_file(&id, &f.name);
                let r = check_table(f, db_dir).and_then(|()| {
                    self.storage
                        .upload_file_in(
                            batch.as_ref(),
                            &object,
                            &db_dir.join(&f.name),
                            f.len,
                            level,
                        )
                        .map(|u| FileEntry {
                            name: f.name.clone(),
                            size: f.len,
                            sha256: u.sha256,
                            stored_in: id.clone(),
                            object,
                            stored_size: u.stored_size,
                            codec: u.codec,
                            stored_sha256: Some(u.stored_sha256),
                        })
                });
                if let Some(p) = progress {
                    let mut d = done.lock().unwrap_or_else(|p| p.into_inner());
                    *d += f.len;
                    p(*d, total);
                }
                r
            })?;
            for (&i, e) in todo.iter().zip(uploaded) {
                entries[i] = Some(e);
            }
            self.storage.publish(batch)?;
            let files: Vec<FileEntry> = entries.into_iter().flatten().collect();
            if files.len() != snap.files.len() {
                return Err(Error::Invalid(
                    "internal: a snapshot file was not backed up".into(),
                ));
            }
            let item_count = snap.count_items(db_dir)?;
            let m = BackupManifest {
                format_version: FORMAT_VERSION,
                id: id.clone(),
                kind,
                parent: reference.map(|r| r.id.clone()),
                base_full: match kind {
                    BackupType::Full => id.clone(),
                    _ => last_full.map(|f| f.id.clone()).unwrap_or_default(),
                },
                db_id: snap.db_id.clone(),
                history: snap.manifest.history.clone(),
                db_path: db_dir.display().to_string(),
                host: hostname(),
                snapshot_lsn: snap.lsn,
                snapshot_commit_us: snap.commit_ts,
                started_at_us: started,
                completed_at_us: kstone_core::fsio::now_micros(),
                item_count,
                bytes_stored: files
                    .iter()
                    .filter(|f| f.stored_in == id)
                    .map(|f| f.stored_size)
                    .sum(),
                bytes_total: files.iter().map(|f| f.size).sum(),
                files,
                db_manifest: snap.manifest.clone(),
                kstone_version: env!("CARGO_PKG_VERSION").to_string(),
                repository: Some(self.config.clone()),
            };
            // The manifest is written last: only now does the backup exist.
            self.storage.put(
                &manifest::manifest_object(&id),
                manifest::encode(MANIFEST_MAGIC, &m),
            )?;
            Ok(m)
        })();
        match stored {
            Ok(m) => {
                self.storage.delete(&layout::in_progress(&id))?;
                Ok(m)
            }
            Err(e) => {
                // Leave nothing behind, whatever failed after the marker:
                // this backup's objects go, then the marker.
                let _ = self.storage.delete_prefix(&layout::data_of(&id));
                let _ = self.storage.delete(&layout::in_progress(&id));
                Err(e)
            }
        }
    }
}

/// Back up an open database from inside its own process.
pub trait DatabaseBackupExt {
    /// Pin a snapshot of this database and back it up into `repo`.
    fn backup(&self, repo: &Repository, opts: &BackupOptions) -> Result<BackupManifest>;
}

impl DatabaseBackupExt for Database {
    fn backup(&self, repo: &Repository, opts: &BackupOptions) -> Result<BackupManifest> {
        let pin = self.pin()?;
        repo.backup_snapshot(pin.snapshot(), self.path(), opts, None)
    }
}
