//! `Sync` mode's commit log: one file that every stripe's WAL appends are
//! also written to, so a round of the group commit makes the writes of any
//! number of stripes durable with one fdatasync (with per-stripe segments
//! alone, four writers on four stripes cost four device flushes a round).
//!
//! The stripes' segments still get every byte first (they stay the log that
//! recovery, flushes, snapshots, backups and the WAL archive read), but in
//! `Sync` mode they are only fsynced when sealed. Until a segment is durable
//! by itself, the commit log holds what was appended to it as physical redo:
//! each entry is "these bytes at this offset of this segment". Open writes
//! every entry back into its segment ([`redo`]) before recovery reads the
//! WAL, so a power cut that lost or tore an unsynced segment's tail (or a
//! page in its middle) leaves exactly what was acknowledged. The log rotates
//! after `Options::commit_log_bytes`: the writer that fills it fsyncs every
//! segment written meanwhile (and the WAL directory), then deletes it.
//!
//! A commit log file has a WAL segment's header (naming stripe
//! [`ANY_STRIPE`] and, as `prev`, the previous log) and its frames; a
//! frame's payload is an entry: `stripe u32 | segment u64 | offset u64 |
//! bytes` (`docs/formats.md`).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use std::os::unix::fs::FileExt;

use crate::error::{Error, IoContext, Result};
use crate::manifest::Manifest;
use crate::model::key::STRIPES;
use crate::wal::record::{encode_frame, MAX_PAYLOAD};
use crate::wal::segment::{self, ActiveSegment, Header, Scan};
use crate::wal::sync::GroupCommit;

/// Directory of the commit logs, beside `wal/` (nothing that copies or
/// archives a database's WAL lists it).
pub const DIR: &str = "commit";

/// The `stripe` of a commit log's header: it holds records of every stripe.
pub const ANY_STRIPE: u32 = u32::MAX;

/// File name of commit log `id`.
pub fn file_name(id: u64) -> String {
    format!("{id:012}.log")
}

/// The id in a commit log's file name, or `None` for any other file.
pub fn parse_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".log")?;
    (stem.len() == 12).then_some(())?;
    stem.parse().ok()
}

/// The commit logs in `db_dir`, oldest first (none if the directory is absent).
pub fn list(db_dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let dir = db_dir.join(DIR);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).ctx(&dir),
    };
    let mut v = Vec::new();
    for e in rd {
        let name = e.ctx(&dir)?.file_name().to_string_lossy().into_owned();
        if let Some(id) = parse_name(&name) {
            v.push((id, dir.join(name)));
        }
    }
    v.sort();
    Ok(v)
}

/// Bytes before an entry's data in its frame's payload.
const ENTRY_PREFIX: usize = 20;

/// One entry of a commit log: `bytes` were written at `offset` of segment
/// `segment` of stripe `stripe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub stripe: usize,
    pub segment: u64,
    pub offset: u64,
    pub bytes: Vec<u8>,
}

impl Entry {
    fn decode(p: &[u8]) -> std::result::Result<Entry, String> {
        if p.len() < ENTRY_PREFIX {
            return Err("commit log entry is too short".into());
        }
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&p[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let stripe = u32::from_le_bytes([p[0], p[1], p[2], p[3]]) as usize;
        if stripe >= STRIPES {
            return Err(format!("commit log entry names stripe {stripe}"));
        }
        Ok(Entry {
            stripe,
            segment: u64_at(4),
            offset: u64_at(12),
            bytes: p[ENTRY_PREFIX..].to_vec(),
        })
    }
}

/// Append entries for `bytes` written at `offset` of a segment, split so
/// each frame stays under the WAL's largest payload.
fn encode_entries(stripe: usize, segment: u64, offset: u64, bytes: &[u8], out: &mut Vec<u8>) {
    let mut at = offset;
    for chunk in bytes.chunks(MAX_PAYLOAD - ENTRY_PREFIX) {
        encode_frame(out, |o| {
            o.extend_from_slice(&(stripe as u32).to_le_bytes());
            o.extend_from_slice(&segment.to_le_bytes());
            o.extend_from_slice(&at.to_le_bytes());
            o.extend_from_slice(chunk);
        });
        at += chunk.len() as u64;
    }
}

/// Scan commit log bytes read from `path`: a torn tail (the crash that
/// left the log) is tolerated, any other damage is `Error::Corruption`.
pub fn scan_bytes(buf: &[u8], path: &Path) -> Result<Scan<Entry>> {
    segment::scan_frames(buf, path, Entry::decode)
}

/// The entries of commit log `id` at `path`, checking its header.
pub fn read(path: &Path, id: u64) -> Result<Vec<Entry>> {
    let buf = std::fs::read(path).ctx(path)?;
    let scan = scan_bytes(&buf, path)?;
    let Some(h) = scan.header else {
        // Created, but its header never reached the disk: no entry either.
        return Ok(Vec::new());
    };
    if h.stripe != ANY_STRIPE || h.id != id {
        return Err(Error::Corruption {
            path: path.to_path_buf(),
            offset: 0,
            detail: format!(
                "not commit log {id}: its header names stripe {} segment {}",
                h.stripe, h.id
            ),
        });
    }
    Ok(scan.records)
}

/// Entries by (stripe, segment), in order: what open writes back.
pub type Redo = std::collections::BTreeMap<(usize, u64), Vec<Entry>>;

/// Read the commit logs in `db_dir` and group their entries by segment,
/// leaving out segments a flush has retired (below their stripe's log
/// start: the segment may be gone). A segment's entries must be contiguous
/// (each append starts where the last ended). Returns the logs' paths too.
pub fn read_all(db_dir: &Path, manifest: &Manifest) -> Result<(Vec<PathBuf>, Redo)> {
    let mut redo = Redo::new();
    let mut paths = Vec::new();
    for (id, path) in list(db_dir)? {
        for e in read(&path, id)? {
            if e.segment < manifest.stripe(e.stripe).log_start {
                continue;
            }
            let v = redo.entry((e.stripe, e.segment)).or_default();
            if let Some(p) = v.last() {
                if p.offset + p.bytes.len() as u64 != e.offset {
                    return Err(Error::Corruption {
                        path,
                        offset: 0,
                        detail: format!(
                            "entries for WAL segment {} of stripe {} are not contiguous",
                            e.segment, e.stripe
                        ),
                    });
                }
            }
            v.push(e);
        }
        paths.push(path);
    }
    Ok((paths, redo))
}

/// Write every entry of the commit logs in `db_dir` back into its segment,
/// make the segments durable, then delete the logs. Rewriting is
/// idempotent, so a crash in here is followed by the same redo at the next
/// open. Every log is read before any segment is touched: a damaged log
/// fails the open and changes nothing. Returns the number of entries
/// written back.
pub fn redo(db_dir: &Path, manifest: &Manifest) -> Result<usize> {
    let (logs, redo) = read_all(db_dir, manifest)?;
    if logs.is_empty() {
        return Ok(0);
    }
    let wal_dir = db_dir.join("wal");
    let mut created = false;
    let mut n = 0;
    for ((s, id), entries) in &redo {
        let path = wal_dir.join(segment::file_name(*s, *id));
        let Some(first) = entries.first() else {
            continue;
        };
        let mut o = std::fs::OpenOptions::new();
        o.read(true).write(true);
        // Before its first entry a segment was durable (its header
        // included), so only one whose start is logged may be missing.
        if first.offset == 0 {
            o.create(true);
        }
        let f = match o.open(&path) {
            Ok(f) => f,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Corruption {
                    path,
                    offset: first.offset,
                    detail: "WAL segment is missing; the commit log only has its tail".into(),
                })
            }
            Err(err) => return Err(err).ctx(&path),
        };
        let len = f.metadata().ctx(&path)?.len();
        if len < first.offset {
            return Err(Error::Corruption {
                path,
                offset: len,
                detail: format!(
                    "WAL segment ends at {len}, before the commit log's first entry for it at {}",
                    first.offset
                ),
            });
        }
        created |= first.offset == 0;
        for e in entries {
            f.write_all_at(&e.bytes, e.offset).ctx(&path)?;
            n += 1;
        }
        f.sync_data().ctx(&path)?;
    }
    if created {
        crate::fsio::sync_dir(&wal_dir)?;
    }
    for path in &logs {
        std::fs::remove_file(path).ctx(path)?;
    }
    crate::fsio::sync_dir(&db_dir.join(DIR))?;
    Ok(n)
}

/// The commit log being appended to.
struct Active {
    /// `None` until the first append after open or a rotation.
    log: Option<ActiveSegment>,
    prev: u64,
    /// Stripe segments written while `log` was active, by segment id: they
    /// must be durable before `log` may go.
    dirty: HashMap<u64, Arc<File>>,
    /// Frames being written.
    scratch: Vec<u8>,
}

/// The commit log of an open database in `Sync` mode.
pub(crate) struct CommitLog {
    dir: PathBuf,
    /// The stripes' WAL directory: fsynced with the segments before a log
    /// goes, since a segment created meanwhile must not vanish either.
    wal_dir: Arc<File>,
    rotate_at: u64,
    active: Mutex<Active>,
}

/// A full commit log taken out of use: [`Retired::finish`] fsyncs the
/// segments written meanwhile and then deletes it.
#[must_use]
pub(crate) struct Retired {
    path: PathBuf,
    segments: Vec<Arc<File>>,
    wal_dir: Arc<File>,
}

impl Retired {
    pub fn finish(self) -> Result<()> {
        for f in &self.segments {
            f.sync_data().ctx(&self.path)?;
        }
        self.wal_dir.sync_all().ctx(&self.path)?;
        // No directory fsync: a log that reappears after a power cut only
        // holds bytes its (now durable) segments already have, which redo
        // writes back unchanged, or of segments a flush retired, which redo skips.
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).ctx(&self.path),
            _ => Ok(()),
        }
    }
}

/// Zeros written ahead of a commit log's entries at a time.
const PREFILL: u64 = 1 << 20;

/// Make sure `n` more bytes of `log` go over zeros already written and
/// fsynced: an append there changes neither the file's size nor its
/// extents, so a round's fdatasync writes the data and flushes the device
/// but commits no filesystem journal (`fallocate` would not do: its
/// unwritten extents are converted, and journaled, at the first write).
/// The zeros end the log for readers, as in a mapped segment.
fn prefill(log: &mut ActiveSegment, n: u64) -> Result<()> {
    let end = log.len + n;
    if end <= log.cap {
        return Ok(());
    }
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    let to = end.div_ceil(PREFILL) * PREFILL;
    let mut at = log.cap;
    while at < to {
        let k = (to - at).min(ZEROS.len() as u64) as usize;
        log.file.write_all_at(&ZEROS[..k], at).ctx(&log.path)?;
        at += k as u64;
    }
    log.file.sync_data().ctx(&log.path)?;
    log.cap = to;
    Ok(())
}

impl CommitLog {
    pub fn new(db_dir: &Path, rotate_at: u64, wal_dir: Arc<File>) -> CommitLog {
        CommitLog {
            dir: db_dir.join(DIR),
            wal_dir,
            rotate_at: rotate_at.max(segment::HEADER_LEN as u64 + 1),
            active: Mutex::new(Active {
                log: None,
                prev: 0,
                dirty: HashMap::new(),
                scratch: Vec::new(),
            }),
        }
    }

    /// Log that `bytes` were just written at `offset` of stripe `stripe`'s
    /// segment `seg` and register the log with the group commit. `new_id`
    /// names a new log file. Returns the group-commit sequence to wait for,
    /// and a log to retire (outside any lock) if this append filled it.
    pub fn append(
        &self,
        stripe: usize,
        seg: &ActiveSegment,
        offset: u64,
        bytes: &[u8],
        new_id: impl FnOnce() -> u64,
        commit: &GroupCommit,
    ) -> Result<(u64, Option<Retired>)> {
        let mut a = crate::mutex::lock(&self.active);
        if a.log.is_none() {
            let created = !self.dir.exists();
            if created {
                std::fs::create_dir_all(&self.dir).ctx(&self.dir)?;
                crate::fsio::sync_dir(crate::fsio::parent(&self.dir))?;
            }
            let id = new_id();
            let header = Header {
                stripe: ANY_STRIPE,
                id,
                prev: a.prev,
            };
            let log = ActiveSegment::create_at(self.dir.join(file_name(id)), header, false)?;
            // The next round fsyncs the directory entry with the records.
            let dir = Arc::new(File::open(&self.dir).ctx(&self.dir)?);
            commit.note_created(crate::wal::sync::COMMIT_DIR_KEY, &dir);
            a.log = Some(log);
        }
        let a = &mut *a;
        let log = a
            .log
            .as_mut()
            .ok_or_else(|| Error::Internal("no commit log".into()))?;
        a.scratch.clear();
        encode_entries(stripe, seg.id, offset, bytes, &mut a.scratch);
        let before = log.len;
        let appended = prefill(log, a.scratch.len() as u64).and_then(|()| log.append(&a.scratch));
        if a.scratch.capacity() > 1 << 20 {
            a.scratch = Vec::new();
        }
        if let Err(e) = appended {
            // Undo any partial record; the next append starts a new log.
            let undone = log.abandon(before);
            a.prev = log.id;
            a.log = None;
            return match undone {
                Ok(()) => Err(e),
                Err(u) => Err(Error::Poisoned(format!(
                    "commit log append failed ({e}) and could not be undone: {u}"
                ))),
            };
        }
        a.dirty.insert(seg.id, Arc::clone(&seg.file));
        let seq = commit.note_written(log.id, &log.file);
        if log.len < self.rotate_at {
            return Ok((seq, None));
        }
        let retired = Retired {
            path: log.path.clone(),
            segments: a.dirty.drain().map(|(_, f)| f).collect(),
            wal_dir: Arc::clone(&self.wal_dir),
        };
        a.prev = log.id;
        a.log = None;
        Ok((seq, Some(retired)))
    }

    /// Take the current log out of use (at close); `None` if there is none.
    pub fn retire(&self) -> Option<Retired> {
        let mut a = crate::mutex::lock(&self.active);
        let log = a.log.take()?;
        a.prev = log.id;
        Some(Retired {
            path: log.path,
            segments: a.dirty.drain().map(|(_, f)| f).collect(),
            wal_dir: Arc::clone(&self.wal_dir),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::record::{Op, Record};

    fn marker(lsn: u64, name: &str) -> Vec<u8> {
        let mut b = Vec::new();
        Record {
            lsn,
            ts: lsn,
            op: Op::Marker { name: name.into() },
        }
        .encode_framed(&mut b);
        b
    }

    /// A database directory with `wal/`, one new segment of stripe 3 and a
    /// commit log that rotates after `rotate_at` bytes.
    fn setup(rotate_at: u64) -> (tempfile::TempDir, ActiveSegment, CommitLog) {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("wal");
        std::fs::create_dir(&wal).unwrap();
        let seg = ActiveSegment::create(&wal, 3, 5, 0, false).unwrap();
        let log = CommitLog::new(dir.path(), rotate_at, Arc::new(File::open(&wal).unwrap()));
        (dir, seg, log)
    }

    /// Append `bytes` to `seg` and log it as the write path does (the
    /// header too, for a segment's first append).
    fn write(
        seg: &mut ActiveSegment,
        log: &CommitLog,
        gc: &GroupCommit,
        next: &mut u64,
        bytes: &[u8],
    ) -> Option<Retired> {
        let before = seg.len;
        seg.append(bytes).unwrap();
        let (at, logged) = if before == segment::HEADER_LEN as u64 {
            let mut all = std::fs::read(&seg.path).unwrap()[..segment::HEADER_LEN].to_vec();
            all.extend_from_slice(bytes);
            (0, all)
        } else {
            (before, bytes.to_vec())
        };
        let id = || {
            *next += 1;
            *next
        };
        let (seq, r) = log.append(3, seg, at, &logged, id, gc).unwrap();
        gc.wait_durable(seq).unwrap();
        r
    }

    #[test]
    fn names() {
        assert_eq!(file_name(42), "000000000042.log");
        assert_eq!(parse_name("000000000042.log"), Some(42));
        assert_eq!(parse_name("42.log"), None);
        assert_eq!(parse_name("000-000000000042.wal"), None);
    }

    #[test]
    fn appends_rotate_and_retire() {
        let (dir, mut seg, log) = setup(300);
        let gc = GroupCommit::default();
        let mut next = 10;
        let mut retired = Vec::new();
        for i in 0..20 {
            retired.extend(write(&mut seg, &log, &gc, &mut next, &marker(i + 1, "x")));
        }
        assert!(retired.len() >= 2, "a 300-byte log rotates");
        let files = list(dir.path()).unwrap();
        assert_eq!(files.len(), retired.len() + 1);
        // Each log names the one before it; entries are whole and contiguous.
        let (id, path) = &files[1];
        let buf = std::fs::read(path).unwrap();
        assert_eq!(
            scan_bytes(&buf, path).unwrap().header.unwrap().prev,
            files[0].0
        );
        let entries = read(path, *id).unwrap();
        assert!(!entries.is_empty());
        // Written ahead with zeros, which end the log for readers.
        assert_eq!(buf.len() as u64, PREFILL);
        assert!(buf.ends_with(&[0; 1000]));
        for w in entries.windows(2) {
            assert_eq!(w[0].offset + w[0].bytes.len() as u64, w[1].offset);
        }
        assert!(read(path, id + 1).is_err(), "a log under another name");
        for r in retired {
            r.finish().unwrap();
        }
        log.retire().unwrap().finish().unwrap();
        assert!(list(dir.path()).unwrap().is_empty());
        assert!(log.retire().is_none());
    }

    #[test]
    fn redo_restores_what_a_power_cut_took_from_segments() {
        let (dir, mut seg, log) = setup(4 << 20);
        let gc = GroupCommit::default();
        let mut next = 10;
        let mut big = marker(1, &"b".repeat(200_000));
        for i in 2..12 {
            big.extend(marker(i, "small"));
        }
        // Entries are split under the largest frame payload.
        let mut bytes = Vec::new();
        for _ in 0..6 {
            bytes.extend_from_slice(&big);
        }
        assert!(bytes.len() > MAX_PAYLOAD);
        assert!(write(&mut seg, &log, &gc, &mut next, &bytes).is_none());
        assert!(write(&mut seg, &log, &gc, &mut next, &marker(99, "last")).is_none());
        let want = std::fs::read(&seg.path).unwrap();
        let m = Manifest::new("x".into(), 0, crate::KeySchema::bytes());
        // A torn tail, a lost page in the middle, and a lost file.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&seg.path)
            .unwrap();
        f.write_all_at(&[0; 4096], 8192).unwrap();
        f.set_len(want.len() as u64 - 7).unwrap();
        assert!(segment::scan(&seg.path).is_err(), "the hole is damage");
        assert!(redo(dir.path(), &m).unwrap() > 2);
        assert_eq!(std::fs::read(&seg.path).unwrap(), want);
        assert!(list(dir.path()).unwrap().is_empty(), "logs go after redo");
        assert_eq!(redo(dir.path(), &m).unwrap(), 0);

        let (dir, mut seg, log) = setup(1 << 20);
        write(&mut seg, &log, &gc, &mut next, &marker(1, "a"));
        let want = std::fs::read(&seg.path).unwrap();
        std::fs::remove_file(&seg.path).unwrap();
        redo(dir.path(), &m).unwrap();
        assert_eq!(std::fs::read(&seg.path).unwrap(), want, "recreated");
    }

    #[test]
    fn redo_refuses_damage_and_skips_flushed_segments() {
        let (dir, mut seg, log) = setup(1 << 20);
        let gc = GroupCommit::default();
        let mut next = 10;
        for i in 1..5 {
            write(&mut seg, &log, &gc, &mut next, &marker(i, "a"));
        }
        let want = std::fs::read(&seg.path).unwrap();
        let (_, path) = list(dir.path()).unwrap().remove(0);
        let good_log = std::fs::read(&path).unwrap();
        let m = Manifest::new("x".into(), 0, crate::KeySchema::bytes());

        // A damaged entry in the middle of the log: open fails, and the
        // segment is left as it was.
        let mut bad = good_log.clone();
        bad[segment::HEADER_LEN + 40] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        std::fs::write(&seg.path, &want[..want.len() - 3]).unwrap();
        assert!(matches!(
            redo(dir.path(), &m),
            Err(Error::Corruption { .. })
        ));
        assert_eq!(std::fs::read(&seg.path).unwrap().len(), want.len() - 3);

        // A torn last entry (then the zeros written ahead) is the crash that
        // left the log: the rest is redone.
        let data_end = scan_bytes(&good_log, &path).unwrap().valid_len as usize;
        assert!(data_end < good_log.len(), "zeros follow the entries");
        let mut torn = good_log.clone();
        torn[data_end - 5..data_end].fill(0);
        std::fs::write(&path, &torn).unwrap();
        redo(dir.path(), &m).unwrap();
        let got = std::fs::read(&seg.path).unwrap();
        assert_eq!(
            got.len(),
            want.len() - 3,
            "the torn entry was not rewritten"
        );
        assert_eq!(segment::scan(&seg.path).unwrap().records.len(), 3);

        // A segment that a flush retired (below the stripe's log start) is
        // not recreated.
        std::fs::write(&path, &good_log).unwrap();
        std::fs::remove_file(&seg.path).unwrap();
        let mut flushed = m.clone();
        flushed.stripes.entry(3).or_default().log_start = 6;
        redo(dir.path(), &flushed).unwrap();
        assert!(!seg.path.exists());

        // A segment missing while the log only has its tail is damage.
        let (dir, mut seg, log) = setup(1 << 20);
        write(&mut seg, &log, &gc, &mut next, &marker(1, "a"));
        log.retire().unwrap().finish().unwrap();
        write(&mut seg, &log, &gc, &mut next, &marker(2, "b"));
        std::fs::remove_file(&seg.path).unwrap();
        let e = redo(dir.path(), &m).unwrap_err().to_string();
        assert!(e.contains("missing"), "{e}");
    }
}
