//! What a prune does to a format-2 repository's chunks: reference counting
//! over the chunk maps of the backups that remain, then packs with no live
//! chunk deleted and packs mostly dead repacked, under the exclusive lock.
//!
//! Order, so that a crash at any point leaves every remaining backup
//! restorable: (1) new packs for the live chunks of repacked packs, (2) one
//! new index naming every pack that stays, (3) the old index objects
//! deleted, (4) only then the packs no index names. Anything a crash leaves
//! behind is an unindexed pack or a duplicate index entry, both harmless and
//! removed by the next prune.

use std::collections::{BTreeSet, HashMap, HashSet};

use sha2::{Digest, Sha256};

use crate::chunk_map;
use crate::chunk_store;
use crate::chunking::ChunkId;
use crate::error::{Error, Result};
use crate::index::{self, ChunkIndex, PackInfo};
use crate::layout;
use crate::manifest::REPO_FORMAT_V2;
use crate::pack::{self, PackBuilder};
use crate::repository::Repository;

/// A pack is repacked when less than this share of its blob bytes is live.
const REPACK_BELOW: f64 = 0.5;

/// What the chunk collection did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChunkGc {
    pub packs_deleted: usize,
    pub packs_repacked: usize,
    pub packs_written: usize,
    /// Stored bytes of the packs deleted, less those of the packs written.
    pub bytes_freed: u64,
    /// Why nothing was collected, if so (damage that could hide a chunk a
    /// backup needs: then every pack is kept).
    pub skipped: Option<String>,
    /// Packs that were to be repacked but whose stored bytes no longer
    /// match their SHA-256: kept as they are (never copied into a new pack
    /// with a fresh checksum), for `verify` to name and an operator to see.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub damaged: Vec<String>,
}

impl Repository {
    /// Collect the chunks no remaining backup needs. Call under the
    /// exclusive lock, after the doomed manifests are gone.
    /// The backups in `gone` count as deleted already (a dry run).
    pub(crate) fn collect_chunks(&self, gone: &BTreeSet<String>, dry_run: bool) -> Result<ChunkGc> {
        let objs = &self.storage;
        let mut gc = ChunkGc::default();
        let skip = |why: String| {
            Ok(ChunkGc {
                skipped: Some(why),
                ..ChunkGc::default()
            })
        };
        let ids: BTreeSet<String> = self
            .backup_ids()?
            .into_iter()
            .filter(|id| !gone.contains(id))
            .collect();
        // Chunk maps left by an interrupted prune (their manifest is gone).
        let mut stale_maps = Vec::new();
        for (k, _) in objs.list(layout::MANIFESTS)? {
            if layout::chunk_map_id(&k).is_some_and(|id| !ids.contains(id)) {
                stale_maps.push(k);
            }
        }
        let mut live: HashSet<ChunkId> = HashSet::new();
        let mut live_keys: HashSet<String> = HashSet::new();
        for id in &ids {
            let m = match self.manifest(id) {
                Ok(m) => m,
                Err(Error::NoSuchBackup(_)) => continue,
                Err(Error::Corrupt { .. }) => {
                    return skip(format!("backup {id}'s manifest is damaged"))
                }
                Err(e) => return Err(e),
            };
            if m.format_version < REPO_FORMAT_V2 {
                continue;
            }
            let obj = layout::chunk_map(id);
            let map = match objs.get(&obj)?.map(|b| chunk_map::decode(&b, &obj)) {
                Some(Ok(map)) => map,
                Some(Err(Error::Corrupt { .. })) | None => {
                    return skip(format!("backup {id}'s chunk map is missing or damaged"))
                }
                Some(Err(e)) => return Err(e),
            };
            for f in &map.files {
                live.extend(f.chunks.iter().map(|c| c.0));
            }
            // Every key a map names is opened by its restore.
            live_keys.extend(map.keys.iter().cloned());
        }
        let (ix, damaged) = ChunkIndex::load(objs)?;
        if let Some((k, _)) = damaged.first() {
            return skip(format!("index {k} is damaged"));
        }
        let present: HashMap<String, u64> = objs.list(layout::PACKS)?.into_iter().collect();
        // Each live chunk is owned by the one pack its lookup finds; other
        // copies (two backups that stored it at once) are dead. A copy in a
        // pack verify found damaged owns a chunk only if there is no other.
        let damaged = self.damaged_packs()?;
        let mut clean = ChunkIndex::default();
        for p in ix.packs().iter().filter(|p| !damaged.contains(&p.key)) {
            clean.add(p.clone());
        }
        let owned: HashSet<(&str, ChunkId)> = live
            .iter()
            .filter_map(|id| {
                clean
                    .locate(id)
                    .or_else(|| ix.locate(id))
                    .map(|(p, _)| (p.key.as_str(), *id))
            })
            .collect();
        let can_read = objs.keys().is_none_or(|k| k.can_open());
        let mut keep: Vec<PackInfo> = Vec::new();
        let mut doomed: Vec<(String, u64)> = Vec::new();
        let mut repack: Vec<&PackInfo> = Vec::new();
        for p in ix.packs() {
            let Some(&size) = present.get(&p.key) else {
                // Gone already (an interrupted prune): nothing to delete.
                continue;
            };
            let total: u64 = p.entries.iter().map(|e| u64::from(e.stored_len)).sum();
            let alive: u64 = p
                .entries
                .iter()
                .filter(|e| owned.contains(&(p.key.as_str(), e.id)))
                .map(|e| u64::from(e.stored_len))
                .sum();
            if alive == 0 {
                doomed.push((p.key.clone(), size));
            } else if can_read && (alive as f64) < REPACK_BELOW * total as f64 {
                repack.push(p);
                doomed.push((p.key.clone(), size));
            } else {
                keep.push(p.clone());
            }
        }
        let indexed = ix.pack_keys();
        for (k, &n) in &present {
            if !indexed.contains(k.as_str()) {
                doomed.push((k.clone(), n));
            }
        }
        let dead_keys: Vec<String> = objs
            .list(layout::BACKUP_CHUNK_KEYS)?
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| !live_keys.contains(k))
            .collect();
        gc.packs_deleted = doomed.len() - repack.len();
        gc.packs_repacked = repack.len();
        let freed: u64 = doomed.iter().map(|d| d.1).sum();
        if dry_run {
            gc.bytes_freed = freed;
            return Ok(gc);
        }
        // (1) The live chunks of mostly dead packs, into new packs.
        let mut written: Vec<PackInfo> = Vec::new();
        let mut b = PackBuilder::default();
        for p in &repack {
            // Damage is never laundered into a new pack with a fresh
            // checksum: a pack whose stored bytes do not match is kept.
            let stored = objs.raw().get(&p.key)?;
            let sound = stored
                .as_ref()
                .is_some_and(|b| <[u8; 32]>::from(Sha256::digest(b)) == p.stored_sha256);
            let bytes = match stored.filter(|_| sound) {
                Some(b) => objs.open_stored(&p.key, b)?,
                None => {
                    gc.damaged.push(p.key.clone());
                    doomed.retain(|(k, _)| k != &p.key);
                    keep.push((*p).clone());
                    continue;
                }
            };
            for e in p
                .entries
                .iter()
                .filter(|e| owned.contains(&(p.key.as_str(), e.id)))
            {
                b.add_stored(e, pack::stored_blob(&bytes, e, &p.key)?)?;
                if b.full() {
                    written.push(chunk_store::upload_pack(objs, &mut b)?);
                }
            }
        }
        if !b.is_empty() {
            written.push(chunk_store::upload_pack(objs, &mut b)?);
        }
        gc.packs_written = written.len();
        gc.packs_repacked -= gc.damaged.len();
        let added: u64 = written.iter().map(|p| p.stored_size).sum();
        let freed: u64 = doomed.iter().map(|d| d.1).sum();
        gc.bytes_freed = freed.saturating_sub(added);
        // (2) One index for everything that stays, (3) the old ones go.
        let changed = !doomed.is_empty() || ix.objects().len() > 1;
        if changed {
            keep.extend(written);
            let name = format!(
                "gc-{}-{}",
                kstone_core::fsio::now_micros(),
                kstone_core::fsio::random_hex(4)?
            );
            if !keep.is_empty() {
                objs.put(&layout::index(&name), index::encode(&keep)?)?;
            }
            for k in ix.objects() {
                objs.delete(k)?;
            }
        }
        // (4) Packs no index names any more, then keys and maps nobody uses.
        for (k, _) in &doomed {
            objs.delete(k)?;
        }
        for k in dead_keys.iter().chain(&stale_maps) {
            objs.delete(k)?;
        }
        // A local directory's staging files of packs whose writer was
        // killed (`NAME#N`, which listings skip): under the exclusive lock
        // no backup is writing one now.
        if let Some(root) = objs.local_root() {
            let dir = root.join(layout::PACKS);
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if e.file_name().to_string_lossy().contains('#') {
                    let path = e.path();
                    std::fs::remove_file(&path).map_err(|source| Error::Io { path, source })?;
                }
            }
        }
        Ok(gc)
    }
}
