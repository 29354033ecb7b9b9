//! The restore procedure: build the database in a staging directory beside
//! the target, verify it, then swap it into place. An existing target is
//! moved aside (never deleted); a target another process has open is refused;
//! a failure at any point leaves the target exactly as it was.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use kstone_core::Origin;
use kstone_core::{Database, Options};

use crate::chunk_map;
use crate::chunk_store::{self, RebuildStats};
use crate::error::{Error, IoContext, Result};
use crate::index::ChunkIndex;
use crate::layout;
use crate::manifest::{BackupManifest, REPO_FORMAT_V2};
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
    /// Where the bytes came from (a delta restore reuses the existing
    /// database's).
    pub transfer: RebuildStats,
}

/// How a restore builds the new database.
#[derive(Debug, Clone, Copy, Default)]
pub struct RestoreOptions {
    /// Format 2, over an existing database at the target: reuse its
    /// unchanged SSTs (hard links) and the chunks its files already hold,
    /// reading only the rest from the repository (pgBackRest's `--delta`).
    /// The result is checked and swapped in exactly as a full restore's.
    pub delta: bool,
    /// Packs read at once (each held whole in memory); 0 means
    /// [`chunk_store::READ_WORKERS`].
    pub parallelism: usize,
    /// Owner and mode of the new database, given in staging before the
    /// swap (empty: as created).
    pub ownership: crate::ownership::Ownership,
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
        self.materialize_as(m, dir, None, None, 0).map(|_| ())
    }

    /// As [`Repository::materialize`]; `recovered_to` records a PITR target.
    pub(crate) fn materialize_as(
        &self,
        m: &BackupManifest,
        dir: &Path,
        recovered_to: Option<(u64, u64)>,
        existing: Option<&Path>,
        workers: usize,
    ) -> Result<RebuildStats> {
        // `dir` exists when it is a killed restore's staging directory taken
        // over (see [`crate::swap::Leftovers`]): format 2 continues in it.
        let resume = dir.is_dir() && m.format_version >= REPO_FORMAT_V2;
        if dir.is_dir() && !resume {
            fs::remove_dir_all(dir).ctx(dir)?;
        }
        if !resume {
            fs::create_dir(dir).ctx(dir)?;
            for sub in ["wal", "sst", "pins"] {
                let d = dir.join(sub);
                fs::create_dir(&d).ctx(&d)?;
            }
            let marker = dir.join(crate::swap::BUILDING);
            fs::File::create(&marker).ctx(&marker)?;
        }
        for f in &m.files {
            if !f.name.starts_with("sst/") && !f.name.starts_with("wal/") || f.name.contains("..") {
                return Err(Error::Corrupt {
                    object: f.object.clone(),
                    detail: format!("bad file name {:?} in manifest", f.name),
                });
            }
        }
        let stats = if m.format_version >= REPO_FORMAT_V2 {
            self.rebuild_chunked(m, dir, existing, resume, workers)?
        } else {
            self.download_files(m, dir)?;
            RebuildStats {
                fetched: m.bytes_total,
                ..RebuildStats::default()
            }
        };
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
        Ok(stats)
    }

    /// Format 1: each file is one object, streamed and checked against its
    /// size and SHA-256.
    fn download_files(&self, m: &BackupManifest, dir: &Path) -> Result<()> {
        for f in &m.files {
            let path = dir.join(&f.name);
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
        Ok(())
    }

    /// Format 2: the files are rebuilt from their chunks (each pack read
    /// once, every chunk checked against its keyed id); the chunk map must
    /// describe exactly the manifest's files.
    fn rebuild_chunked(
        &self,
        m: &BackupManifest,
        dir: &Path,
        existing: Option<&Path>,
        resume: bool,
        workers: usize,
    ) -> Result<RebuildStats> {
        let obj = layout::chunk_map(&m.id);
        let map = chunk_map::read_for(&self.storage, m)?;
        let (mut index, damaged) = ChunkIndex::load(&self.storage)?;
        let present: HashMap<String, u64> = self.storage.list(layout::PACKS)?.into_iter().collect();
        let absent = index.retain_present(&present);
        // Read another copy of a chunk than one in a pack verify found
        // damaged, where there is one (each chunk is checked either way).
        let bad = self.damaged_packs()?;
        index.prefer_not(|p| bad.contains(&p.key));
        chunk_store::rebuild(
            &self.storage,
            &index,
            &map,
            &obj,
            dir,
            existing,
            resume,
            workers,
            &self.config.repository_id,
        )
        .map_err(|e| match e {
            Error::Corrupt { object, detail } if !damaged.is_empty() || !absent.is_empty() => {
                let mut why = Vec::new();
                if !absent.is_empty() {
                    let shown = absent
                        .iter()
                        .take(5)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ");
                    let more = absent.len().saturating_sub(5);
                    why.push(format!(
                        "{} pack(s) missing, truncated or found damaged by verify: {shown}{}",
                        absent.len(),
                        if more > 0 {
                            format!(" and {more} more")
                        } else {
                            String::new()
                        }
                    ));
                }
                if !damaged.is_empty() {
                    why.push(format!(
                        "damaged index objects, which may list it: {}",
                        damaged
                            .iter()
                            .map(|d| d.0.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                Error::Corrupt {
                    object,
                    detail: format!("{detail} ({})", why.join("; ")),
                }
            }
            e => e,
        })
    }

    /// Restore backup `id` (or `latest`) to `target`.
    pub fn restore(&self, id: &str, target: &Path) -> Result<RestoreReport> {
        self.restore_with_options(id, target, RestoreOptions::default())
    }

    /// [`Repository::restore`] with options (a delta restore).
    pub fn restore_with_options(
        &self,
        id: &str,
        target: &Path,
        opts: RestoreOptions,
    ) -> Result<RestoreReport> {
        let _lock = self.lock_for_read("a restore")?;
        let m = self.manifest(id)?;
        // A delta restore reads the database it replaces (which the swap
        // refuses if a process has it open); a target that is not a
        // database gives nothing to reuse.
        let existing = Some(target)
            .filter(|t| opts.delta && t.join("MANIFEST").is_file())
            .map(Path::to_path_buf);
        let stats = std::cell::Cell::new(RebuildStats::default());
        let leftovers = Leftovers::for_format(m.format_version);
        let report = restore_with(target, leftovers, |staging| {
            stats.set(self.materialize_as(
                &m,
                staging,
                None,
                existing.as_deref(),
                opts.parallelism,
            )?);
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
            // Linked tables the owner or mode change are copied after all.
            let unshared = opts.ownership.apply(staging)?;
            let mut t = stats.get();
            t.linked = t.linked.saturating_sub(unshared);
            t.copied += unshared;
            stats.set(t);
            Ok(items)
        })?;
        Ok(RestoreReport {
            bytes: m.bytes_total,
            snapshot_lsn: m.snapshot_lsn,
            transfer: stats.get(),
            ..report
        })
    }
}

pub(crate) use crate::swap::{restore_with, Leftovers};
