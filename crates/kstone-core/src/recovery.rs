//! Open-time recovery: load the manifest, open the live SSTs, remove files a
//! crash left unreferenced, and replay each stripe's WAL past its flushed LSN.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, IoContext, Result};
use crate::fsio::sync_dir;
use crate::manifest::Manifest;
use crate::memtable::{MemEntry, Slab};
use crate::model::key::{KeyRef, STRIPES};
use crate::slab_region::Region;
use crate::sst::reader::TableReader;
use crate::stripe::StripeState;
use crate::wal::record::OpRef;
use crate::wal::segment;

pub(crate) struct Recovered {
    pub manifest: Manifest,
    pub stripes: Vec<StripeState>,
    pub last_lsn: u64,
    pub last_ts: u64,
    pub next_file_id: u64,
    pub registry: crate::snapshot::registry::PinRegistry,
}

fn list(dir: &Path) -> Result<Vec<String>> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir).ctx(dir)? {
        v.push(e.ctx(dir)?.file_name().to_string_lossy().into_owned());
    }
    v.sort();
    Ok(v)
}

fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).ctx(path),
        _ => Ok(()),
    }
}

/// Recover the database in `dir`. A stripe whose replayed memtable reaches
/// `flush_at` bytes is written to an SST at once, so replaying a long WAL
/// holds one stripe in memory at a time (like RocksDB, which flushes during
/// recovery too); those SSTs are committed by one manifest write at the end.
pub(crate) fn recover(
    dir: &Path,
    cache: Option<&std::sync::Arc<crate::sst::cache::BlockCache>>,
    flush_at: usize,
    compression: crate::options::Compression,
    mapped: bool,
) -> Result<Recovered> {
    let mut manifest = Manifest::load(dir)?;
    // Put back what a power cut took from `Sync` mode's unsynced segments.
    crate::wal::commit_log::redo(dir, &manifest)?;
    let (sst_dir, wal_dir) = (dir.join("sst"), dir.join("wal"));
    let mut max_id = manifest.next_file_id.saturating_sub(1);
    let mut last_lsn = 0;
    let mut last_ts = 0;
    let mut stripes: Vec<StripeState> = (0..STRIPES).map(|_| StripeState::default()).collect();

    // SSTs: open every live one; delete leftovers of flushes that crashed
    // before their manifest commit (their data is still in the WAL).
    let live: HashSet<u64> = manifest
        .stripes
        .values()
        .flat_map(|s| s.ssts.iter().map(|t| t.id))
        .collect();
    let mut removed = false;
    // Files another process may still be reading (an on-disk hold, or a
    // snapshot a previous owner pinned for it): kept until it is done, then
    // deleted by this owner. An unreadable one keeps every obsolete file
    // (left for a later open to delete).
    let holds = crate::snapshot::hold::live(dir);
    let hold = holds.unreadable;
    let held: HashSet<std::path::PathBuf> = holds.files.values().flatten().cloned().collect();
    let archived = crate::wal::archive_mark::read(dir)?;
    let mut registry = crate::snapshot::registry::PinRegistry::default();
    registry.set_holds(holds);
    for name in list(&sst_dir)? {
        if let Some((_, id)) = crate::sst::parse_name(&name) {
            max_id = max_id.max(id);
            let rel = Path::new("sst").join(&name);
            if live.contains(&id) || hold {
            } else if held.contains(&rel) {
                registry.defer(rel, None);
            } else {
                remove(&sst_dir.join(&name))?;
                removed = true;
            }
        } else if name.ends_with(".tmp") {
            remove(&sst_dir.join(&name))?;
            removed = true;
        }
    }
    for (&s, sm) in &manifest.stripes {
        let s = s as usize;
        if s >= STRIPES {
            return Err(Error::Corruption {
                path: dir.join(crate::manifest::FILE_NAME),
                offset: 0,
                detail: format!("stripe {s} out of range"),
            });
        }
        for t in &sm.ssts {
            let path = sst_dir.join(crate::sst::file_name(s, t.id));
            if !path.exists() {
                return Err(Error::Corruption {
                    path,
                    offset: 0,
                    detail: "SST listed in the MANIFEST is missing".into(),
                });
            }
            let table = TableReader::open_cached(&path, cache, t.id)?;
            if table.size() != t.size {
                return Err(Error::Corruption {
                    path,
                    offset: table.size(),
                    detail: format!(
                        "SST is {} bytes, the MANIFEST says {}",
                        table.size(),
                        t.size
                    ),
                });
            }
            stripes[s].tables.push(Arc::new(table));
        }
        last_lsn = last_lsn.max(sm.flushed_lsn);
        last_ts = last_ts.max(sm.max_ts);
    }

    // WAL: group segments by stripe, drop obsolete ones, replay the rest.
    let mut segs: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    // (stripe, segment, its largest LSN) replayed into SSTs during recovery.
    let mut replayed: Vec<(usize, std::path::PathBuf, u64)> = Vec::new();
    for name in list(&wal_dir)? {
        if let Some((s, id)) = segment::parse_name(&name) {
            max_id = max_id.max(id);
            segs.entry(s).or_default().push(id);
        }
    }
    // Stripes replay independently (disjoint segments, state and SST ids)
    // on a few threads, so reading, decoding and the SSTs' fsyncs overlap.
    let base_id = max_id + 1;
    let ctx = ReplayCtx {
        dir,
        wal_dir: &wal_dir,
        sst_dir: &sst_dir,
        archived,
        hold,
        held: &held,
        cache,
        flush_at,
        compression,
        mapped,
    };
    let mut work: Vec<Vec<(usize, Vec<u64>, &mut StripeState)>> =
        (0..REPLAY_THREADS).map(|_| Vec::new()).collect();
    for (s, st) in stripes.iter_mut().enumerate() {
        if let Some(ids) = segs.remove(&s) {
            work[s % REPLAY_THREADS].push((s, ids, st));
        }
    }
    let manifest_ref = &manifest;
    let replayed_any = work.iter().any(|w| !w.is_empty());
    let results: Vec<Result<Vec<(usize, StripeReplay)>>> = std::thread::scope(|sc| {
        let handles: Vec<_> = work
            .into_iter()
            .map(|jobs| {
                let ctx = &ctx;
                sc.spawn(move || {
                    // One read buffer per thread: its pages are faulted in once.
                    let mut buf = Vec::new();
                    // Room for every slab this thread fills (`slab_region.rs`),
                    // unless entries are slices of the segments' maps.
                    let mut region = if ctx.mapped {
                        None
                    } else {
                        let sizes = jobs
                            .iter()
                            .flat_map(|(s, ids, _)| ids.iter().map(move |&id| (*s, id)))
                            .filter_map(|(s, id)| {
                                fs::metadata(ctx.wal_dir.join(segment::file_name(s, id))).ok()
                            })
                            .map(|m| m.len() as usize);
                        Region::for_sizes(sizes)
                    };
                    jobs.into_iter()
                        .map(|(s, ids, st)| {
                            let meta = manifest_ref.stripe(s);
                            let id = base_id + s as u64;
                            let mem = ReplayMemory {
                                buf: &mut buf,
                                region: region.as_mut(),
                            };
                            replay_stripe(ctx, s, ids, &meta, st, id, mem).map(|r| (s, r))
                        })
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Internal("WAL replay thread panicked".into())))
            })
            .collect()
    });
    if replayed_any {
        release_freed_memory();
    }
    for r in results {
        for (s, out) in r? {
            last_lsn = last_lsn.max(out.last_lsn);
            last_ts = last_ts.max(out.last_ts);
            removed |= out.removed;
            for rel in out.deferred {
                registry.defer(rel, None);
            }
            for (rel, max) in out.unarchived {
                registry.keep_unarchived(rel, max);
            }
            if let Some((meta, flushed_lsn, max_ts)) = out.flushed {
                max_id = max_id.max(meta.id);
                let sm = manifest.stripes.entry(s as u16).or_default();
                sm.ssts.insert(0, meta);
                sm.flushed_lsn = sm.flushed_lsn.max(flushed_lsn);
                sm.max_ts = sm.max_ts.max(max_ts);
                replayed.extend(out.replayed.into_iter().map(|(rel, max)| (s, rel, max)));
            }
        }
    }
    if !replayed.is_empty() {
        // Every replayed segment of a flushed stripe is below the new log
        // start; the manifest write is the commit point, as for any flush.
        let log_start = max_id + 1;
        for &(s, _, _) in &replayed {
            manifest.stripes.entry(s as u16).or_default().log_start = log_start;
        }
        manifest.next_file_id = manifest.next_file_id.max(log_start);
        manifest.store(dir)?;
        for (_, rel, max) in replayed {
            if archived.is_some_and(|a| max > a) {
                registry.keep_unarchived(rel, max);
            } else if held.contains(&rel) {
                registry.defer(rel, Some(max));
            } else if !hold {
                remove(&dir.join(&rel))?;
                removed = true;
            }
        }
    }
    if removed {
        sync_dir(&sst_dir)?;
        sync_dir(&wal_dir)?;
    }
    Ok(Recovered {
        last_lsn,
        last_ts,
        next_file_id: max_id + 1,
        manifest,
        stripes,
        registry,
    })
}

/// Hand the heap that replay used and freed back to the OS. Replay threads
/// leave their freed memtables in their own malloc arenas, where the block
/// cache (filled from other threads) never reuses them: without this, a
/// database reopened after a long WAL keeps that much more resident.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of glibc's arenas to the
    // kernel; it touches no memory that is in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Threads replaying stripes at open.
const REPLAY_THREADS: usize = 4;

/// What every stripe's replay reads.
struct ReplayCtx<'a> {
    dir: &'a Path,
    wal_dir: &'a Path,
    sst_dir: &'a Path,
    archived: Option<u64>,
    hold: bool,
    /// Files held on disk by other processes: deferred, not deleted.
    held: &'a HashSet<std::path::PathBuf>,
    cache: Option<&'a std::sync::Arc<crate::sst::cache::BlockCache>>,
    flush_at: usize,
    compression: crate::options::Compression,
    /// Reopened segments append through a memory map (`Buffered` mode).
    mapped: bool,
}

/// A replay thread's memory: the buffer each segment is read into, and the
/// map its slabs are copied into.
struct ReplayMemory<'a> {
    buf: &'a mut Vec<u8>,
    region: Option<&'a mut Region>,
}

/// Where replay keeps a segment's records: slices of the segment's map, or
/// copies in a slab shared by the segment's entries.
enum Kept<'a> {
    Mapped(&'a Arc<memmap2::Mmap>),
    Copied(Slab),
}

impl Kept<'_> {
    /// Add a replayed version (`value: None` is a delete) to `versions`
    /// (a copied one when [`Kept::finish`] is called).
    fn push(
        &mut self,
        key: KeyRef<'_>,
        lsn: u64,
        value: Option<&[u8]>,
        versions: &mut Vec<MemEntry>,
    ) {
        match self {
            Kept::Mapped(m) => versions.push(
                MemEntry::in_map(m, key, lsn, value)
                    .unwrap_or_else(|| MemEntry::new(key, lsn, value)),
            ),
            Kept::Copied(slab) => slab.push(key, lsn, value, versions),
        }
    }

    fn finish(self, versions: &mut Vec<MemEntry>) {
        if let Kept::Copied(slab) = self {
            slab.finish(versions);
        }
    }
}

/// One stripe's replay, merged into the recovery's result afterwards.
#[derive(Default)]
struct StripeReplay {
    last_lsn: u64,
    last_ts: u64,
    removed: bool,
    /// Obsolete segments another process holds (deleted when released).
    deferred: Vec<std::path::PathBuf>,
    /// Obsolete segments kept until the WAL archive has them.
    unarchived: Vec<(std::path::PathBuf, u64)>,
    /// The SST the replayed memtable went to: (meta, flushed LSN, max ts).
    flushed: Option<(crate::manifest::SstMeta, u64, u64)>,
    /// Segments that SST made obsolete, with their largest LSN.
    replayed: Vec<(std::path::PathBuf, u64)>,
}

/// Replay stripe `s`'s segments `ids` into `st`, and write the result to
/// SST `sst_id` if it reaches `flush_at` bytes (the caller commits it).
fn replay_stripe(
    cx: &ReplayCtx<'_>,
    s: usize,
    ids: Vec<u64>,
    meta: &crate::manifest::StripeMeta,
    st: &mut StripeState,
    sst_id: u64,
    mem: ReplayMemory<'_>,
) -> Result<StripeReplay> {
    let ReplayMemory { buf, mut region } = mem;
    let (dir, wal_dir, sst_dir) = (cx.dir, cx.wal_dir, cx.sst_dir);
    let (archived, hold, cache) = (cx.archived, cx.hold, cx.cache);
    let (flush_at, compression) = (cx.flush_at, cx.compression);
    let mut out = StripeReplay::default();
    let mut live_ids = Vec::new();
    for id in ids {
        if id < meta.log_start {
            let rel = Path::new("wal").join(segment::file_name(s, id));
            if let Some(a) = archived {
                // Flushed, but the archive may not have it yet.
                let scan = segment::scan(&dir.join(&rel))?;
                let max = scan.records.iter().map(|r| r.lsn).max().unwrap_or(0);
                if max > a {
                    out.unarchived.push((rel, max));
                    continue;
                }
            }
            // Flushed, but the crash came before the delete.
            if cx.held.contains(&rel) {
                out.deferred.push(rel);
            } else if !hold {
                remove(&dir.join(&rel))?;
                out.removed = true;
            }
        } else {
            live_ids.push(id);
        }
    }
    let n = live_ids.len();
    let mut prev: Option<u64> = None;
    // Every version replayed, in LSN order; the memtable is built from them
    // at the end.
    let mut versions = Vec::new();
    let mut max_ts = 0;
    for (i, &id) in live_ids.iter().enumerate() {
        let path = wal_dir.join(segment::file_name(s, id));
        // Where appends go through maps, entries are slices of a map of the
        // segment (`memtable::Bytes::Mapped`); otherwise records go from
        // the segment's bytes into the segment's slab as the scan checks
        // them (one copy, no record list) and become entries sharing it.
        let map = if cx.mapped {
            segment::map_for_replay(&path)?
        } else {
            None
        };
        let bytes: &[u8] = match &map {
            Some(m) => m,
            None => {
                buf.clear();
                std::io::Read::read_to_end(&mut segment::open_for_read(&path)?, buf).ctx(&path)?;
                buf
            }
        };
        let (mut last_in_seg, mut last_ts_seen) = (0, 0);
        let mut kept = match &map {
            Some(m) => Kept::Mapped(m),
            None => Kept::Copied(Slab::in_region(region.as_deref_mut(), bytes.len())),
        };
        let mut scan = segment::scan_stripe(bytes, &path, s, |r| {
            last_in_seg = r.lsn;
            last_ts_seen = last_ts_seen.max(r.ts);
            if r.lsn <= meta.flushed_lsn {
                return;
            }
            let (key, value) = match r.op {
                OpRef::Put { key, value } => (key, Some(value)),
                OpRef::Delete { key } => (key, None),
                OpRef::Marker { .. } => return,
            };
            max_ts = max_ts.max(r.ts);
            kept.push(key, r.lsn, value, &mut versions);
        })?;
        kept.finish(&mut versions);
        let Some(h) = scan.header else {
            // Created but never written (a crash or a full disk during
            // creation): it holds no record, wherever it is.
            if i + 1 == n
                || scan.file_len == 0
                || std::fs::read(&path).ctx(&path)?.iter().all(|&b| b == 0)
            {
                remove(&path)?;
                out.removed = true;
                continue;
            }
            return Err(Error::Corruption {
                path,
                offset: 0,
                detail: "WAL segment has no header but later segments exist".into(),
            });
        };
        let corrupt = |d: String| Error::Corruption {
            path: path.clone(),
            offset: 0,
            detail: d,
        };
        if h.stripe as usize != s || h.id != id {
            return Err(corrupt(format!(
                "header says stripe {} segment {}, the name says stripe {s} segment {id}",
                h.stripe, h.id
            )));
        }
        match prev {
            Some(p) if h.prev != p => {
                return Err(corrupt(format!(
                    "WAL segment {} of stripe {s} is missing",
                    h.prev
                )))
            }
            None if h.prev >= meta.log_start && h.prev != 0 => {
                return Err(corrupt(format!(
                    "WAL segment {} of stripe {s} is missing",
                    h.prev
                )))
            }
            _ => {}
        }
        if scan.is_torn() {
            if let Some(&next) = live_ids.get(i + 1) {
                let what = if scan.zero_tail {
                    "zeros after the records of"
                } else {
                    "damaged record in"
                };
                return Err(Error::Corruption {
                    path,
                    offset: scan.valid_len,
                    detail: format!(
                        "{what} a WAL segment that is not the stripe's last ({} follows it)",
                        segment::file_name(s, next)
                    ),
                });
            }
            if !scan.zero_tail {
                // A torn record: cut it off so later appends and readers never see it.
                let f = fs::OpenOptions::new().write(true).open(&path).ctx(&path)?;
                f.set_len(scan.valid_len).ctx(&path)?;
                f.sync_all().ctx(&path)?;
                scan.file_len = scan.valid_len;
            }
            // Zeros allocated ahead by a mapped segment stay: appends go over them.
        }
        // LSNs increase within a segment: the last is the largest.
        st.wal_max_lsn.insert(id, last_in_seg);
        out.last_lsn = out.last_lsn.max(last_in_seg);
        out.last_ts = out.last_ts.max(last_ts_seen);
        prev = Some(id);
        st.wal_bytes += scan.valid_len;
        st.wal_ids.push(id);
        st.last_wal_id = id;
        if i + 1 == n {
            if !cx.mapped {
                // `Sync` mode logs only what it appends to the segment in the
                // commit log, so what the segment already holds (perhaps
                // written but never fsynced by a `Buffered` session) must be
                // durable before that.
                fs::File::open(&path)
                    .and_then(|f| f.sync_data())
                    .ctx(&path)?;
            }
            // New writes continue in the stripe's last segment.
            st.wal = Some(segment::ActiveSegment::reopen(
                &path,
                id,
                scan.valid_len,
                scan.file_len,
                cx.mapped,
            )?);
        }
    }
    st.mem = crate::memtable::Memtable::from_versions(versions, max_ts);
    if !st.mem.is_empty() && st.mem.bytes() >= flush_at {
        let id = sst_id;
        let path = sst_dir.join(crate::sst::file_name(s, id));
        let mut b = crate::sst::builder::TableBuilder::create(&path, s, compression)?;
        for (key, lsn, value) in st.mem.iter_refs() {
            b.add_ref(key, lsn, value)?;
        }
        let built = b.finish()?;
        let table = TableReader::open_cached(&path, cache, id)?;
        out.flushed = Some((
            crate::manifest::SstMeta {
                id,
                size: built.size,
                entries: built.props.entries,
                min_lsn: built.props.min_lsn,
                max_lsn: built.props.max_lsn,
            },
            st.mem.max_lsn(),
            st.mem.max_ts(),
        ));
        st.tables.insert(0, Arc::new(table));
        st.mem = crate::memtable::Memtable::default();
        st.wal = None;
        st.wal_bytes = 0;
        for seg in std::mem::take(&mut st.wal_ids) {
            let max = st.wal_max_lsn.remove(&seg).unwrap_or(0);
            out.replayed
                .push((Path::new("wal").join(segment::file_name(s, seg)), max));
        }
    }
    Ok(out)
}
