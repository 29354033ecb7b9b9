//! Taking a backup: pin a snapshot, upload the files the chosen parent does
//! not already hold (stripes in parallel), write the manifest last.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use kstone_core::snapshot::{FileKind, SnapshotFile};
use kstone_core::sst::reader::TableReader;
use kstone_core::{Database, HeldSnapshot, Options, Snapshot};
use serde::{Deserialize, Serialize};

use sha2::{Digest, Sha256};

use crate::chunk_map::{self, ChunkMap, FileChunks};
use crate::chunk_store::{self, ChunkWriter};
use crate::chunking::ChunkKey;
use crate::error::{Error, Result};
use crate::index::{self, ChunkIndex, PackInfo};
use crate::layout;
use crate::manifest::{
    self, BackupManifest, BackupType, FileEntry, FORMAT_VERSION, MANIFEST_MAGIC, REPO_FORMAT_V2,
};
use crate::pack;
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
    /// Format 2: bytes of blobs a pack is sealed at (0: 32 MiB).
    pub pack_target: usize,
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

/// Files stored at once.
fn workers(opts: &BackupOptions) -> usize {
    if opts.parallelism == 0 {
        4
    } else {
        opts.parallelism.min(16)
    }
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
        // Unchanged, but a pack verify found damaged may hold its chunks:
        // then the backup is taken (storing those chunks again) rather than
        // skipped, so that the newest backup restores.
        let damage_known = self.config.format_version >= REPO_FORMAT_V2
            && opts.skip_unchanged
            && !self.damaged_packs()?.is_empty();
        if let Some(r) =
            reference.filter(|r| opts.skip_unchanged && r.snapshot_lsn == snap.lsn && !damage_known)
        {
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
            let format = self.config.format_version.max(FORMAT_VERSION);
            let (files, bytes_stored, resumed_bytes) = if format >= REPO_FORMAT_V2 {
                self.store_chunks(snap, db_dir, reference, &id, opts, progress)?
            } else {
                let files = self.store_files(snap, db_dir, reference, &id, opts, progress)?;
                let stored = files
                    .iter()
                    .filter(|f| f.stored_in == id)
                    .map(|f| f.stored_size)
                    .sum();
                (files, stored, 0)
            };
            let item_count = snap.count_items(db_dir)?;
            let m = BackupManifest {
                format_version: format,
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
                bytes_stored,
                resumed_bytes,
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
                // Format 2: its packs and index stay (they hold what they
                // say, another backup may already use them, and the next
                // run reuses them); its chunk map goes with the backup.
                let _ = self.storage.delete_prefix(&layout::data_of(&id));
                let _ = self.storage.delete(&layout::chunk_map(&id));
                let _ = self.storage.delete(&layout::in_progress(&id));
                Err(e)
            }
        }
    }

    /// Format 2: each file is cut into chunks and only chunks the
    /// repository does not hold are packed and uploaded; a file the
    /// reference holds (same name and size; SSTs never change) whose chunks
    /// are all present is not read at all. Writes the packs' index and the
    /// chunk map (the manifest, written last by the caller, names them).
    /// Returns the files and the bytes of the packs written.
    fn store_chunks(
        &self,
        snap: &Snapshot,
        db_dir: &Path,
        reference: Option<&BackupManifest>,
        id: &str,
        opts: &BackupOptions,
        progress: Option<Progress<'_>>,
    ) -> Result<(Vec<FileEntry>, u64, u64)> {
        let objs = &self.storage;
        let (mut index, _damaged) = ChunkIndex::load(objs)?;
        let present: HashMap<String, u64> = objs.list(layout::PACKS)?.into_iter().collect();
        index.retain_present(&present);
        // A pack verify found damaged is not trusted: its chunks are stored
        // again, so that the new backup restores.
        let damaged = self.damaged_packs()?;
        index.retain(|p| !damaged.contains(&p.key));
        // The repository's chunk key; a backup made without the identity
        // of an encrypted repository cannot read it and keys its chunks
        // with a key of its own (its new chunks are then not deduplicated
        // against the repository's; unchanged files still are reused).
        let repo_id = &self.config.repository_id;
        let (key, key_object) = match chunk_store::open_chunk_key(objs, layout::CHUNK_KEY, repo_id)?
        {
            Some(k) => (k, layout::CHUNK_KEY.to_string()),
            None => {
                let o = layout::backup_chunk_key(id);
                (chunk_store::create_chunk_key(objs, &o, repo_id)?, o)
            }
        };
        // Packs an interrupted backup uploaded and no index names: reused.
        let adopted = if key_object == layout::CHUNK_KEY {
            self.adopt_orphan_packs(&mut index, &present, &damaged, &key)?
        } else {
            Vec::new()
        };
        let mut map = ChunkMap::default();
        let reused: HashMap<(&str, u64), (FileChunks, String, &FileEntry)> = match reference {
            Some(r) if r.format_version >= REPO_FORMAT_V2 => {
                match chunk_map::read_for(objs, r) {
                    Ok(rmap) => {
                        let sha: HashMap<&str, &FileEntry> =
                            r.files.iter().map(|f| (f.name.as_str(), f)).collect();
                        rmap.files
                            .iter()
                            .filter(|f| f.chunks.iter().all(|(c, _)| index.contains(c)))
                            .filter_map(|f| {
                                let e = sha.get(f.name.as_str())?;
                                let k = rmap.key_of(f).to_string();
                                Some(((e.name.as_str(), f.size), (f.clone(), k, *e)))
                            })
                            .collect()
                    }
                    // An unreadable reference: every file is read again.
                    Err(Error::Corrupt { .. }) => HashMap::new(),
                    Err(e) => return Err(e),
                }
            }
            _ => HashMap::new(),
        };
        let mut entries: Vec<Option<(FileChunks, FileEntry)>> = vec![None; snap.files.len()];
        let mut todo = Vec::new();
        for (i, f) in snap.files.iter().enumerate() {
            match reused.get(&(f.name.as_str(), f.len)) {
                Some((fc, k, e)) => {
                    let mut fc = fc.clone();
                    fc.key = map.key_slot(k);
                    let mut e = (*e).clone();
                    e.stored_in = id.to_string();
                    e.object = layout::chunk_map(id);
                    e.stored_size = 0;
                    entries[i] = Some((fc, e));
                }
                None => todo.push(i),
            }
        }
        let total: u64 = todo.iter().map(|&i| snap.files[i].len).sum();
        let done = Mutex::new(0u64);
        let target = if opts.pack_target == 0 {
            pack::PACK_TARGET
        } else {
            opts.pack_target
        };
        let writer = ChunkWriter::new(objs, &key, &index, self.config.compression_level, target);
        let slot = map.key_slot(&key_object);
        let stored = kstone_core::parallel::try_map(&todo, workers(opts), |&i| {
            let f = &snap.files[i];
            let path = db_dir.join(&f.name);
            let r = check_table(f, db_dir).and_then(|()| writer.store_file(&f.name, &path, f.len));
            if let Some(p) = progress {
                let mut d = done.lock().unwrap_or_else(|p| p.into_inner());
                *d += f.len;
                p(*d, total);
            }
            r
        })?;
        let packs = writer.finish()?;
        for (&i, s) in todo.iter().zip(stored) {
            let f = &snap.files[i];
            let e = FileEntry {
                name: f.name.clone(),
                size: f.len,
                sha256: s.sha256,
                stored_in: id.to_string(),
                object: layout::chunk_map(id),
                stored_size: s.stored,
                codec: crate::objects::Codec::None,
                stored_sha256: None,
            };
            let fc = FileChunks {
                name: f.name.clone(),
                size: f.len,
                key: slot,
                chunks: s.chunks,
            };
            entries[i] = Some((fc, e));
        }
        let bytes_stored = packs.iter().map(|p| p.stored_size).sum();
        let resumed = adopted.iter().map(|p| p.stored_size).sum();
        let indexed: Vec<PackInfo> = packs.into_iter().chain(adopted).collect();
        if !indexed.is_empty() {
            objs.put(&layout::index(id), index::encode(&indexed)?)?;
        }
        let mut files = Vec::with_capacity(entries.len());
        for (fc, e) in entries.into_iter().flatten() {
            map.files.push(fc);
            files.push(e);
        }
        if files.len() != snap.files.len() {
            return Err(Error::Invalid(
                "internal: a snapshot file was not backed up".into(),
            ));
        }
        objs.put(&layout::chunk_map(id), chunk_map::encode(&map)?)?;
        Ok((files, bytes_stored, resumed))
    }

    /// Packs no index names (a backup interrupted before writing its
    /// index uploaded them): each is read, and if its trailer and every
    /// chunk check out under `key`, added to `index` and returned, to be
    /// named by the new backup's index. Others are left for prune.
    fn adopt_orphan_packs(
        &self,
        index: &mut ChunkIndex,
        present: &HashMap<String, u64>,
        damaged: &std::collections::HashSet<String>,
        key: &ChunkKey,
    ) -> Result<Vec<PackInfo>> {
        let known = index.pack_keys();
        let orphans: Vec<(&String, u64)> = present
            .iter()
            .filter(|(k, _)| !known.contains(k.as_str()) && !damaged.contains(*k))
            .map(|(k, &n)| (k, n))
            .collect();
        drop(known);
        let found = kstone_core::parallel::map(
            &orphans,
            4,
            |(k, n)| -> Result<Option<PackInfo>> {
                let Some(stored) = self.storage.raw().get(k)? else {
                    return Ok(None);
                };
                let stored_sha256: [u8; 32] = Sha256::digest(&stored).into();
                let Ok(body) = self.storage.open_stored(k, stored) else {
                    return Ok(None);
                };
                let Ok(entries) = pack::entries(&body, k) else {
                    return Ok(None);
                };
                let sound = entries
                    .iter()
                    .all(|e| pack::blob(&body, e, k).is_ok_and(|raw| key.id(&raw) == e.id));
                Ok(sound.then(|| PackInfo {
                    key: k.to_string(),
                    stored_size: *n,
                    stored_sha256,
                    entries,
                }))
            },
            |_| false,
        );
        let mut adopted = Vec::new();
        for r in found.into_iter().flatten() {
            if let Some(p) = r? {
                index.add(p.clone());
                adopted.push(p);
            }
        }
        Ok(adopted)
    }

    /// Format 1: each file the reference does not hold whole is uploaded
    /// as one object under `data/<id>/`.
    fn store_files(
        &self,
        snap: &Snapshot,
        db_dir: &Path,
        reference: Option<&BackupManifest>,
        id: &str,
        opts: &BackupOptions,
        progress: Option<Progress<'_>>,
    ) -> Result<Vec<FileEntry>> {
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
        let uploaded = kstone_core::parallel::try_map(&todo, workers(opts), |&i| {
            let f = &snap.files[i];
            let object = layout::data_file(id, &f.name);
            let r = check_table(f, db_dir).and_then(|()| {
                self.storage
                    .upload_file_in(batch.as_ref(), &object, &db_dir.join(&f.name), f.len, level)
                    .map(|u| FileEntry {
                        name: f.name.clone(),
                        size: f.len,
                        sha256: u.sha256,
                        stored_in: id.to_string(),
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
        Ok(files)
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
