//! Format 2's chunk store: files in (cut, named, deduplicated, packed),
//! chunks out (each pack read once, every chunk checked against its keyed
//! id), and the chunk-key objects ids are keyed with.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

use kstone_core::fsio::hex;
use sha2::{Digest, Sha256};

use crate::chunk_map::FileChunks;
use crate::chunking::{self, ChunkId, ChunkKey};
use crate::error::{Error, IoContext, Result};
use crate::index::{ChunkIndex, PackInfo};
use crate::layout;
use crate::objects::Objects;
use crate::pack::{self, Entry, PackBuilder};

pub const CHUNK_KEY_MAGIC: &[u8; 8] = b"KSTNBKCK";
pub const CHUNK_KEY_VERSION: u32 = 2;

/// Packs a restore or verify reads at once by default (each held whole in memory:
/// bounded at this many times the pack size, twice over in an encrypted
/// repository).
pub const READ_WORKERS: usize = 4;

/// Write a new chunk key (32 random bytes, then the id of the repository
/// it belongs to) to the object `key`: sealed in an encrypted repository,
/// like all user data.
pub(crate) fn create_chunk_key(objs: &Objects, key: &str, repo_id: &str) -> Result<ChunkKey> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| Error::Invalid(format!("random: {e}")))?;
    let mut body = secret.to_vec();
    body.extend_from_slice(repo_id.as_bytes());
    objs.put(
        key,
        kstone_core::framed::encode(CHUNK_KEY_MAGIC, CHUNK_KEY_VERSION, &body),
    )?;
    ChunkKey::new(&secret)
}

/// The chunk key in object `key`; `None` when it is sealed and this
/// process has no identity to open it. A key of another repository (an
/// object copied in) is damage, named as such: its ids would match nothing.
pub(crate) fn open_chunk_key(objs: &Objects, key: &str, repo_id: &str) -> Result<Option<ChunkKey>> {
    if objs.keys().is_some_and(|k| !k.can_open()) {
        return Ok(None);
    }
    let corrupt = |d: String| Error::Corrupt {
        object: key.to_string(),
        detail: d,
    };
    let bytes = objs
        .get(key)?
        .ok_or_else(|| corrupt("the chunk key is missing".into()))?;
    let (version, body) = kstone_core::framed::decode(&bytes, CHUNK_KEY_MAGIC, Path::new(key))
        .map_err(|e| corrupt(e.to_string()))?;
    if version != CHUNK_KEY_VERSION || body.len() < 32 {
        return Err(corrupt("not a chunk key of version 2".into()));
    }
    let (secret, owner) = body.split_at(32);
    if owner != repo_id.as_bytes() {
        return Err(corrupt(format!(
            "the chunk key belongs to repository {}, not this one ({repo_id}): it was copied in from another repository",
            String::from_utf8_lossy(owner)
        )));
    }
    let secret: [u8; 32] = secret
        .try_into()
        .map_err(|_| corrupt("not a 32-byte chunk key".into()))?;
    ChunkKey::new(&secret).map(Some)
}

/// What storing one file produced.
pub(crate) struct StoredFile {
    pub chunks: Vec<(ChunkId, u32)>,
    pub sha256: String,
    /// Bytes of blobs this file added to new packs.
    pub stored: u64,
}

/// Stores files as chunks into new packs, skipping every chunk `index`
/// (the repository's present chunks) or another file of this run holds.
/// One pack is filled per worker at a time; each is uploaded, durable and
/// visible, as soon as it is full, so an interrupted run's packs can be
/// reused by the next (they describe themselves: [`pack::entries`]).
pub(crate) struct ChunkWriter<'a> {
    objs: &'a Objects,
    key: &'a ChunkKey,
    index: &'a ChunkIndex,
    level: Option<i32>,
    /// Blob bytes a pack is sealed at.
    target: usize,
    claimed: Mutex<HashSet<ChunkId>>,
    idle: Mutex<Vec<PackBuilder>>,
    written: Mutex<Vec<PackInfo>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<'a> ChunkWriter<'a> {
    pub fn new(
        objs: &'a Objects,
        key: &'a ChunkKey,
        index: &'a ChunkIndex,
        level: Option<i32>,
        target: usize,
    ) -> ChunkWriter<'a> {
        ChunkWriter {
            objs,
            key,
            index,
            level,
            target,
            claimed: Mutex::new(HashSet::new()),
            idle: Mutex::new(Vec::new()),
            written: Mutex::new(Vec::new()),
        }
    }

    /// Cut the first `len` bytes of the file `path` (`name` inside the
    /// database directory) into chunks and store the new ones. The file is
    /// streamed: memory holds one chunk of it at a time.
    pub fn store_file(&self, name: &str, path: &Path, len: u64) -> Result<StoredFile> {
        // A sample of the start decides whether the file's chunks are
        // compressed (an SST's blocks usually are already).
        let mut sample = vec![0u8; (len as usize).min(crate::objects::SAMPLE)];
        File::open(path)
            .ctx(path)?
            .read_exact(&mut sample)
            .ctx(path)?;
        let level = match self.level {
            Some(l) if crate::objects::compresses(&sample, l).ctx(path)? => Some(l),
            _ => None,
        };
        drop(sample);
        let mut hasher = Sha256::new();
        let mut chunks = Vec::new();
        let mut builder = lock(&self.idle).pop().unwrap_or_default();
        let mut stored = 0u64;
        let result = chunking::for_each_chunk(name, path, len, |raw| {
            hasher.update(raw);
            let id = self.key.id(raw);
            chunks.push((id, raw.len() as u32));
            if self.index.contains(&id) || !lock(&self.claimed).insert(id) {
                return Ok(());
            }
            stored += u64::from(builder.add(id, raw, level)?);
            if builder.len() >= self.target {
                self.upload(&mut builder)?;
            }
            Ok(())
        });
        lock(&self.idle).push(builder);
        result?;
        Ok(StoredFile {
            chunks,
            sha256: hex(&hasher.finalize()),
            stored,
        })
    }

    fn upload(&self, b: &mut PackBuilder) -> Result<()> {
        let p = upload_pack(self.objs, b)?;
        lock(&self.written).push(p);
        Ok(())
    }

    /// Upload the packs still being filled, their blobs gathered into as
    /// few packs as the target allows (each worker filled its own: a small
    /// backup would otherwise make one small pack per worker); every pack
    /// this run wrote.
    pub fn finish(self) -> Result<Vec<PackInfo>> {
        let builders = std::mem::take(&mut *lock(&self.idle));
        let mut out = PackBuilder::default();
        for mut b in builders.into_iter().filter(|b| !b.is_empty()) {
            if out.len() + b.len() > self.target && !out.is_empty() {
                self.upload(&mut out)?;
            }
            if out.is_empty() {
                out = b;
            } else {
                out.append(&mut b)?;
            }
        }
        if !out.is_empty() {
            self.upload(&mut out)?;
        }
        Ok(self.written.into_inner().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Seal and store the pack `b` holds under a new random name, durable and
/// visible when this returns; the builder is empty again.
pub(crate) fn upload_pack(objs: &Objects, b: &mut PackBuilder) -> Result<PackInfo> {
    let (body, entries) = b.finish();
    let key = layout::pack(&kstone_core::fsio::random_hex(16)?);
    let (stored_size, stored_sha256) = objs.put_digest(&key, body)?;
    Ok(PackInfo {
        key,
        stored_size,
        stored_sha256,
        entries,
    })
}

/// One wanted chunk: which file, at which offset, checked with which key.
#[derive(Clone, Copy)]
struct Target {
    file: usize,
    offset: u64,
}

/// One pack to read, and each entry wanted from it with where it goes.
type PackWork<'i> = (&'i PackInfo, Vec<(&'i Entry, Vec<Target>)>);

/// [`PackWork`] while it is gathered, entries by id.
type Gathering<'i> = (&'i PackInfo, HashMap<ChunkId, (&'i Entry, Vec<Target>)>);

/// The packs holding `files`' chunks, each with the entries wanted from it
/// and where each goes. A chunk no index lists is damage to the backup.
fn plan<'i>(
    index: &'i ChunkIndex,
    files: &[FileChunks],
    map_object: &str,
    wanted: impl Fn(usize, usize) -> bool,
) -> Result<Vec<PackWork<'i>>> {
    let mut by_pack: HashMap<&str, Gathering<'i>> = HashMap::new();
    for (fi, f) in files.iter().enumerate() {
        let mut offset = 0u64;
        for (ci, (id, len)) in f.chunks.iter().enumerate() {
            if !wanted(fi, ci) {
                offset += u64::from(*len);
                continue;
            }
            let (p, e) = index.locate(id).ok_or_else(|| Error::Corrupt {
                object: map_object.to_string(),
                detail: format!(
                    "{}: chunk {id} at byte {offset} is in no pack that is present whole \
                     (its pack was deleted or truncated, or its index lost)",
                    f.name
                ),
            })?;
            if e.raw_len != *len {
                return Err(Error::Corrupt {
                    object: map_object.to_string(),
                    detail: format!(
                        "{}: chunk {id} is {len} bytes here, {} in {}",
                        f.name, e.raw_len, p.key
                    ),
                });
            }
            by_pack
                .entry(p.key.as_str())
                .or_insert_with(|| (p, HashMap::new()))
                .1
                .entry(*id)
                .or_insert_with(|| (e, Vec::new()))
                .1
                .push(Target { file: fi, offset });
            offset += u64::from(*len);
        }
    }
    let mut v: Vec<_> = by_pack
        .into_values()
        .map(|(p, es)| {
            let mut es: Vec<_> = es.into_values().collect();
            es.sort_by_key(|(e, _)| e.offset);
            (p, es)
        })
        .collect();
    v.sort_by(|a, b| a.0.key.cmp(&b.0.key));
    Ok(v)
}

/// Read a pack whole (opened, in an encrypted repository).
pub(crate) fn fetch(objs: &Objects, p: &PackInfo) -> Result<Vec<u8>> {
    objs.get(&p.key)?.ok_or_else(|| Error::Corrupt {
        object: p.key.clone(),
        detail: "the pack is missing".into(),
    })
}

/// A chunk's bytes out of its pack, checked against its keyed id.
fn checked(bytes: &[u8], p: &PackInfo, e: &Entry, key: &ChunkKey) -> Result<Vec<u8>> {
    let raw = pack::blob(bytes, e, &p.key)?;
    if key.id(&raw) != e.id {
        return Err(Error::Corrupt {
            object: p.key.clone(),
            detail: format!("chunk {} does not match its id (damaged)", e.id),
        });
    }
    Ok(raw)
}

/// The chunk keys a map's files use, opened; an error if one cannot be.
pub(crate) fn open_keys(objs: &Objects, keys: &[String], repo_id: &str) -> Result<Vec<ChunkKey>> {
    keys.iter()
        .map(|k| {
            open_chunk_key(objs, k, repo_id)?.ok_or_else(|| {
                Error::CannotDecrypt(
                    "the repository is encrypted: pass --identity FILE (or set KSTONE_IDENTITY_FILE) to read its data".into(),
                )
            })
        })
        .collect()
}

/// What rebuilding a backup's files took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RebuildStats {
    /// Bytes of chunks read from packs.
    pub fetched: u64,
    /// Bytes of chunks copied from the existing database (delta restore).
    pub copied: u64,
    /// Bytes of SSTs hard-linked from the existing database, unchanged
    /// (delta restore: neither read from the repository nor written).
    pub linked: u64,
    /// Bytes of chunks a killed restore had already written to the staging
    /// directory this one continued in (each checked against its id).
    pub resumed: u64,
}

/// What an existing database directory holds, read once: every chunk's
/// location (id → file, offset, len), and each file's chunk list under each
/// key (by the key's position).
#[derive(Default)]
struct Local {
    chunks: HashMap<ChunkId, (std::path::PathBuf, u64, u32)>,
    files: HashMap<String, Vec<Vec<(ChunkId, u32)>>>,
}

/// [`Local`] of the SSTs and WAL segments under `existing`, named under
/// each of `keys`; a file that cannot be cut (damaged, not a table) is
/// skipped: its chunks are fetched instead.
fn local_chunks(existing: &Path, keys: &[ChunkKey]) -> Local {
    let mut local = Local::default();
    for sub in ["sst", "wal"] {
        let Ok(rd) = std::fs::read_dir(existing.join(sub)) else {
            continue;
        };
        for e in rd.flatten() {
            let path = e.path();
            let (Some(n), Ok(meta)) = (e.file_name().to_str().map(String::from), e.metadata())
            else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let name = format!("{sub}/{n}");
            let mut lists = vec![Vec::new(); keys.len()];
            let mut at = 0u64;
            let cut = chunking::for_each_chunk(&name, &path, meta.len(), |c| {
                for (k, list) in keys.iter().zip(lists.iter_mut()) {
                    let id = k.id(c);
                    list.push((id, c.len() as u32));
                    local
                        .chunks
                        .entry(id)
                        .or_insert_with(|| (path.clone(), at, c.len() as u32));
                }
                at += c.len() as u64;
                Ok(())
            });
            if cut.is_ok() {
                local.files.insert(name, lists);
            }
        }
    }
    local
}

/// Write `files` into the directory `dir` (which exists) from their chunks:
/// each pack is read once, by up to `workers` ([`READ_WORKERS`] for 0) at a time, and every chunk is
/// checked against its id before it is written. Files are fsynced.
///
/// With `existing` (a delta restore over that database directory): an SST
/// whose chunks are exactly the backup's is hard-linked (SSTs are never
/// modified in place, and the old directory is only moved aside), and any
/// chunk found in its files is copied from there after its id is checked
/// again; only the rest is read from packs.
///
/// With `resume`, `dir` is the staging directory of a killed restore: the
/// chunks it already holds in place are kept (see [`crate::staged`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn rebuild(
    objs: &Objects,
    index: &ChunkIndex,
    map: &crate::chunk_map::ChunkMap,
    map_object: &str,
    dir: &Path,
    existing: Option<&Path>,
    resume: bool,
    workers: usize,
    repo_id: &str,
) -> Result<RebuildStats> {
    let workers = if workers == 0 { READ_WORKERS } else { workers };
    let keys = open_keys(objs, &map.keys, repo_id)?;
    let mut stats = RebuildStats::default();
    let mut staged = if resume {
        match crate::staged::adopt(dir, map, &keys) {
            Ok(s) => s,
            Err(_) => {
                // Only a cache: start from nothing rather than fail on it;
                // if even that fails, unmark it so that no later restore
                // tries it again.
                if let Err(e) = crate::staged::clear(dir) {
                    let _ = std::fs::remove_file(dir.join(crate::swap::BUILDING));
                    return Err(e);
                }
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    let local = existing.map(|e| local_chunks(e, &keys)).unwrap_or_default();
    // Per file: `None` = linked whole; else which chunks still need a pack.
    let mut out: Vec<Option<File>> = Vec::with_capacity(map.files.len());
    let mut need: Vec<Vec<bool>> = Vec::with_capacity(map.files.len());
    let mut sources: HashMap<std::path::PathBuf, File> = HashMap::new();
    for (fi, f) in map.files.iter().enumerate() {
        let path = dir.join(&f.name);
        let key = &keys[f.key as usize];
        let mut staged_file = staged.get_mut(fi).and_then(Option::take);
        // An SST of the same name holding exactly these chunks: linked (in
        // place of a staged copy too: a link takes no space).
        let same = local
            .files
            .get(&f.name)
            .and_then(|lists| lists.get(f.key as usize))
            .is_some_and(|l| *l == f.chunks);
        if let Some(e) = existing.filter(|_| same && f.name.starts_with("sst/")) {
            if staged_file.take().is_some() {
                std::fs::remove_file(&path).ctx(&path)?;
            }
            if std::fs::hard_link(e.join(&f.name), &path).is_ok() {
                stats.linked += f.size;
                out.push(None);
                need.push(Vec::new());
                continue;
            }
        }
        let (file, have) = match staged_file {
            Some(s) => {
                stats.resumed += s.bytes;
                (s.file, s.have)
            }
            None => {
                let file = File::create(&path).ctx(&path)?;
                file.set_len(f.size).ctx(&path)?;
                (file, vec![false; f.chunks.len()])
            }
        };
        let mut wanted = Vec::with_capacity(f.chunks.len());
        let mut off = 0u64;
        for ((id, len), in_place) in f.chunks.iter().zip(have) {
            let mut fetch = !in_place;
            if let Some((src, o, l)) = local.chunks.get(id).filter(|(_, _, l)| fetch && l == len) {
                if !sources.contains_key(src) {
                    if let Ok(h) = File::open(src) {
                        sources.insert(src.clone(), h);
                    }
                }
                if let Some(h) = sources.get(src) {
                    let mut buf = vec![0u8; *l as usize];
                    // Checked again: the directory may have changed since.
                    if h.read_exact_at(&mut buf, *o).is_ok() && key.id(&buf) == *id {
                        file.write_all_at(&buf, off).ctx(&path)?;
                        stats.copied += u64::from(*l);
                        fetch = false;
                    }
                }
            }
            wanted.push(fetch);
            off += u64::from(*len);
        }
        out.push(Some(file));
        need.push(wanted);
    }
    drop(sources);
    let plan = plan(index, &map.files, map_object, |fi, ci| {
        need.get(fi)
            .and_then(|n| n.get(ci))
            .copied()
            .unwrap_or(false)
    })?;
    stats.fetched = plan
        .iter()
        .flat_map(|(_, es)| es.iter().map(|(e, _)| u64::from(e.raw_len)))
        .sum();
    let packs_done = std::sync::atomic::AtomicUsize::new(0);
    kstone_core::parallel::try_map(&plan, workers, |(p, wanted)| -> Result<()> {
        let bytes = fetch(objs, p)?;
        for (e, targets) in wanted {
            let key = &keys[map.files[targets[0].file].key as usize];
            let raw = checked(&bytes, p, e, key)?;
            for t in targets {
                // A chunk wanted under two keys is checked under each.
                let k = &keys[map.files[t.file].key as usize];
                if !std::ptr::eq(k, key) && k.id(&raw) != e.id {
                    return Err(Error::Corrupt {
                        object: p.key.clone(),
                        detail: format!("chunk {} does not match its id (damaged)", e.id),
                    });
                }
                let path = dir.join(&map.files[t.file].name);
                let file = out[t.file].as_ref().ok_or_else(|| {
                    Error::Invalid(format!(
                        "internal: {} is linked, not written",
                        path.display()
                    ))
                })?;
                file.write_all_at(&raw, t.offset).ctx(&path)?;
            }
        }
        let done = packs_done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        crate::swap::fault_point_at("KSTONE_TEST_KILL_RESTORE_AFTER_PACKS", Some(done));
        Ok(())
    })?;
    let files: Vec<(usize, &File)> = out
        .iter()
        .enumerate()
        .filter_map(|(i, f)| f.as_ref().map(|f| (i, f)))
        .collect();
    kstone_core::parallel::try_map(&files, 8, |(i, f)| {
        let path = dir.join(&map.files[*i].name);
        f.sync_all().ctx(&path)
    })?;
    Ok(stats)
}

/// Check the chunks of `files` that lie in the packs `choose` picks: each
/// such pack read once, every wanted chunk decoded and checked against its
/// id. One problem line per bad pack or chunk.
pub(crate) fn check(
    objs: &Objects,
    index: &ChunkIndex,
    map: &crate::chunk_map::ChunkMap,
    map_object: &str,
    workers: usize,
    choose: impl Fn(&PackInfo) -> bool,
    repo_id: &str,
) -> Result<Vec<String>> {
    let keys = open_keys(objs, &map.keys, repo_id)?;
    let plan: Vec<_> = plan(index, &map.files, map_object, |_, _| true)?
        .into_iter()
        .filter(|(p, _)| choose(p))
        .collect();
    let found = kstone_core::parallel::try_map(&plan, workers, |(p, wanted)| {
        // The stored bytes against their digest first: damage anywhere in
        // the pack (a dead blob, the trailer) is found, not only in the
        // chunks this backup wants.
        let Some(stored) = objs.raw().get(&p.key)? else {
            return Ok(vec![format!("{}: the pack is missing", p.key)]);
        };
        if <[u8; 32]>::from(Sha256::digest(&stored)) != p.stored_sha256 {
            return Ok(vec![format!(
                "{}: SHA-256 of the stored bytes does not match (damaged)",
                p.key
            )]);
        }
        let bytes = match objs.open_stored(&p.key, stored) {
            Ok(b) => b,
            Err(Error::Corrupt { object, detail }) => {
                return Ok(vec![format!("{object}: {detail}")])
            }
            Err(e) => return Err(e),
        };
        // One line per pack, however many of its chunks are bad.
        let mut bad = 0usize;
        let mut first = None;
        for (e, targets) in wanted {
            let f = &map.files[targets[0].file];
            if let Err(err) = checked(&bytes, p, e, &keys[f.key as usize]) {
                bad += 1;
                first.get_or_insert_with(|| {
                    format!("{} (byte {}): {err}", f.name, targets[0].offset)
                });
            }
        }
        Ok(first
            .map(|f| {
                vec![format!(
                    "{}: {bad} of {} chunk(s) wanted from it are damaged, the first: {f}",
                    p.key,
                    wanted.len()
                )]
            })
            .unwrap_or_default())
    })?;
    Ok(found.into_iter().flatten().collect())
}
