//! Following a database's WAL from outside its write path: the committed
//! records after a given LSN, from a database open in this process, open in
//! another process (which pins a snapshot for the reader), or closed.
//!
//! WAL archiving is built on it. It owns the rules of which segment bytes a
//! reader may trust: an owner's snapshot up to its pinned lengths (plus the
//! sealed segments kept for archivers, whole), a closed database up to its
//! last whole record, and every read continuing where the last *consumed*
//! read ended — a read whose records the caller failed to store is read
//! again, never skipped.
//!
//! ```no_run
//! use kstone_core::wal::tail::Tail;
//! let mut tail = Tail::new("app.keystone");
//! if let kstone_core::wal::tail::Pinning::Pinned(pinned) = tail.pin().unwrap() {
//!     let pinned = *pinned;
//!     let batch = tail.records_after(&pinned, 0).unwrap();
//!     // … store batch.records somewhere safe, then:
//!     tail.consumed(pinned, batch);
//! }
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, IoContext, Result};
use crate::snapshot::remote::RemotePin;
use crate::snapshot::{Pin, Snapshot};
use crate::wal::record::{read_frame, Frame, Record};
use crate::wal::{commit_log, segment};
use crate::Database;

/// How long to wait for the owner of an open database to pin a snapshot.
const OWNER_PIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Names, lengths and modification times of the WAL files: a mapped
/// segment (`Buffered` mode) takes new records without growing.
type WalSignature = Vec<(String, u64, Option<std::time::SystemTime>)>;

/// A reader of one database's WAL.
#[derive(Debug)]
pub struct Tail {
    dir: PathBuf,
    /// Bytes of each segment already consumed.
    offsets: HashMap<String, u64>,
    /// The WAL files as they were at the last consumed read of the closed
    /// database: unchanged means nothing new.
    idle: Option<WalSignature>,
}

enum Guard {
    Local(Pin),
    Remote(RemotePin),
    Closed {
        snapshot: Box<Snapshot>,
        signature: WalSignature,
    },
}

/// What [`Tail::pin`] found.
pub enum Pinning {
    Pinned(Box<Pinned>),
    /// The closed database's WAL has not changed since the last consumed read.
    Unchanged,
    /// A writer opened the database while it was being read: try again.
    Raced,
}

/// A snapshot held for one read: the database keeps its files meanwhile.
pub struct Pinned {
    guard: Guard,
    /// Bytes of each segment the snapshot covers.
    lens: HashMap<String, u64>,
}

impl Pinned {
    pub fn snapshot(&self) -> &Snapshot {
        match &self.guard {
            Guard::Local(p) => p.snapshot(),
            Guard::Remote(p) => p.snapshot(),
            Guard::Closed { snapshot, .. } => snapshot,
        }
    }
}

/// The records one read found after the caller's LSN, up to the snapshot.
#[derive(Debug, Default)]
pub struct Batch {
    /// In LSN order.
    pub records: Vec<Record>,
    read_to: Vec<(String, u64)>,
    seen: Vec<String>,
}

impl Batch {
    /// A read that found nothing to read (the caller's LSN is at or past the
    /// snapshot's).
    pub fn empty() -> Batch {
        Batch::default()
    }
}

impl Tail {
    pub fn new(dir: impl AsRef<Path>) -> Tail {
        Tail {
            dir: dir.as_ref().to_path_buf(),
            offsets: HashMap::new(),
            idle: None,
        }
    }

    /// The directory holds a database (checked before anything is created
    /// in it on the database's behalf).
    pub fn check_database(&self) -> Result<()> {
        if self.dir.join(crate::manifest::FILE_NAME).exists() {
            Ok(())
        } else {
            Err(Error::NotADatabase(self.dir.clone()))
        }
    }

    /// Pin a snapshot of the database at this directory, open or closed
    /// (never taking its `LOCK`: the application must always be able to open
    /// it).
    pub fn pin(&mut self) -> Result<Pinning> {
        self.check_database()?;
        let signature = wal_signature(&self.dir);
        if crate::lock::holder(&self.dir).is_some() {
            self.idle = None;
            // An owner that closes the database before answering (a short
            // command, a backup of the closed database) is no failure: the
            // next read finds it closed.
            let Some(remote) = RemotePin::try_request(&self.dir, OWNER_PIN_TIMEOUT)? else {
                return Ok(Pinning::Raced);
            };
            let lens = self.owner_lens(remote.snapshot())?;
            return Ok(Pinning::Pinned(Box::new(Pinned {
                guard: Guard::Remote(remote),
                lens,
            })));
        }
        if self.idle.as_ref() == Some(&signature) {
            return Ok(Pinning::Unchanged);
        }
        let closed = match crate::snapshot::closed::read(&self.dir, true) {
            Ok(c) => c,
            Err(e) => return Err(self.needs_recovery_or(e)),
        };
        if crate::lock::holder(&self.dir).is_some() {
            return Ok(Pinning::Raced);
        }
        Ok(Pinning::Pinned(Box::new(Pinned {
            guard: Guard::Closed {
                snapshot: Box::new(closed.snapshot),
                signature,
            },
            lens: closed.wal_lens,
        })))
    }

    /// Pin a snapshot of a database open in this process.
    pub fn pin_open(&self, db: &Database) -> Result<Pinned> {
        let pin = db.pin()?;
        let lens = self.owner_lens(pin.snapshot())?;
        Ok(Pinned {
            guard: Guard::Local(pin),
            lens,
        })
    }

    /// [`Tail::pin_open`] without waiting for the snapshot's writes to be
    /// durable: what it reads may be stored only after
    /// [`Database::wait_durable`] of the mark returns.
    pub fn pin_open_unsynced(&self, db: &Database) -> Result<(Pinned, crate::DurableMark)> {
        let (pin, mark) = db.pin_unsynced()?;
        let lens = self.owner_lens(pin.snapshot())?;
        Ok((
            Pinned {
                guard: Guard::Local(pin),
                lens,
            },
            mark,
        ))
    }

    /// After a power cut, a crashed `Sync` database's segments may be torn
    /// or have holes that only its next open fills from the commit log.
    fn needs_recovery_or(&self, e: Error) -> Error {
        match commit_log::list(&self.dir) {
            Ok(logs) if !logs.is_empty() => Error::NeedsRecovery(self.dir.clone()),
            _ => e,
        }
    }

    /// Segments to read for an owner's snapshot: pinned ones up to their
    /// pinned length, sealed ones (kept only for archivers) whole; segments
    /// created after the snapshot wait for the next read.
    fn owner_lens(&self, snap: &Snapshot) -> Result<HashMap<String, u64>> {
        let mut lens: HashMap<String, u64> = snap
            .files
            .iter()
            .filter(|f| f.name.starts_with("wal/"))
            .map(|f| (f.name.clone(), f.len))
            .collect();
        let wal_dir = self.dir.join("wal");
        for e in std::fs::read_dir(&wal_dir).ctx(&wal_dir)? {
            let e = e.ctx(&wal_dir)?;
            let name = e.file_name().to_string_lossy().into_owned();
            let Some((_, id)) = segment::parse_name(&name) else {
                continue;
            };
            let rel = format!("wal/{name}");
            if !lens.contains_key(&rel) && id < snap.manifest.next_file_id {
                lens.insert(rel, e.metadata().ctx(&e.path())?.len());
            }
        }
        Ok(lens)
    }

    /// The records with LSN in `after+1 ..= snapshot LSN`, read from where
    /// the last consumed read ended.
    pub fn records_after(&self, pinned: &Pinned, after: u64) -> Result<Batch> {
        let r = self.read(pinned, after);
        match (&pinned.guard, r) {
            (Guard::Closed { .. }, Err(e)) => Err(self.needs_recovery_or(e)),
            (_, r) => r,
        }
    }

    fn read(&self, pinned: &Pinned, after: u64) -> Result<Batch> {
        let last = pinned.snapshot().lsn;
        let mut batch = Batch::default();
        for (rel, &len) in &pinned.lens {
            let from = self.offsets.get(rel).copied().unwrap_or(0);
            batch.seen.push(rel.clone());
            if len <= from {
                continue;
            }
            let path = self.dir.join(rel);
            // Only the bytes not consumed yet: a segment grows by every
            // round's writes, and reading it from the start each time made
            // a round's cost grow with the segment instead of with the news.
            let (bytes, base, start) = if from == 0 {
                let mut bytes = read_range(&path, 0, len)?;
                // The header checked, and only whole records.
                let scan = segment::scan_bytes(&bytes, &path)?;
                if scan.header.is_none() {
                    continue;
                }
                bytes.truncate(scan.valid_len as usize);
                (bytes, 0, segment::HEADER_LEN as u64)
            } else {
                (read_range(&path, from, len)?, from, 0)
            };
            // Consumed only up to the last record the snapshot covers: a
            // record past it (an owner writing on after it pinned, or into a
            // segment preallocated by mapping) is read by a later round.
            let mut upto = from.max(start.min(len));
            for (r, end) in frames_from(&bytes, &path, start, base)? {
                if r.lsn > last {
                    break;
                }
                upto = end;
                if r.lsn > after {
                    batch.records.push(r);
                }
            }
            batch.read_to.push((rel.clone(), upto));
        }
        batch.records.sort_by_key(|r| r.lsn);
        Ok(batch)
    }

    /// The caller has stored what `batch` read (or had nothing to store):
    /// later reads continue after it, and a closed database whose WAL has
    /// not changed since is not read again.
    pub fn consumed(&mut self, pinned: Pinned, batch: Batch) {
        self.offsets.extend(batch.read_to);
        // Forget segments that are gone; keep those not read this time.
        let dir = &self.dir;
        self.offsets
            .retain(|k, _| batch.seen.contains(k) || dir.join(k).exists());
        if let Guard::Closed { signature, .. } = pinned.guard {
            if crate::lock::holder(&self.dir).is_none() && wal_signature(&self.dir) == signature {
                self.idle = Some(signature);
            }
        }
    }

    /// Forget what was consumed: the next read starts again from the start
    /// of every segment (and keeps only records after the LSN it is given).
    /// For a caller that consumed reads ahead of storing them and then
    /// failed to store one.
    pub fn rewind(&mut self) {
        self.offsets.clear();
        self.idle = None;
    }
}

fn wal_signature(db_dir: &Path) -> WalSignature {
    let mut v: WalSignature = std::fs::read_dir(db_dir.join("wal"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let m = e.metadata().ok()?;
                    Some((
                        e.file_name().to_string_lossy().into_owned(),
                        m.len(),
                        m.modified().ok(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Bytes `from..len` of the file at `path`.
fn read_range(path: &Path, from: u64, len: u64) -> Result<Vec<u8>> {
    use std::io::{Read, Seek};
    let mut f = std::fs::File::open(path).ctx(path)?;
    f.seek(std::io::SeekFrom::Start(from)).ctx(path)?;
    let mut buf = Vec::with_capacity(len.saturating_sub(from) as usize);
    f.take(len.saturating_sub(from))
        .read_to_end(&mut buf)
        .ctx(path)?;
    Ok(buf)
}

/// The whole frames of `b` (the segment's bytes from offset `base`) from
/// byte `start` (a record boundary) on, each with the segment offset just
/// past it; zeros after the last record (allocated ahead by a mapped
/// segment) end the log.
fn frames_from(b: &[u8], path: &Path, start: u64, base: u64) -> Result<Vec<(Record, u64)>> {
    let mut out = Vec::new();
    let mut at = start as usize;
    while at < b.len() && !b[at..].iter().all(|&x| x == 0) {
        match read_frame(&b[at..]) {
            Frame::Ok(p, n) => {
                at += n;
                out.push((Record::decode_payload(p)?, base + at as u64));
            }
            _ => {
                return Err(Error::Corruption {
                    path: path.to_path_buf(),
                    offset: base + at as u64,
                    detail: "damaged WAL record while reading the log's tail".into(),
                })
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{item_from_plain_json, Options};

    fn put(db: &Database, k: &str) {
        db.put(k.as_bytes(), None, &item_from_plain_json("{}").unwrap())
            .unwrap();
    }

    #[test]
    fn reads_continue_after_what_was_consumed_and_repeat_what_was_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let db = Database::create(&path, Options::default()).unwrap();
        let mut tail = Tail::new(&path);
        for k in ["a", "b", "c"] {
            put(&db, k);
        }
        let p = tail.pin_open(&db).unwrap();
        let b = tail.records_after(&p, 1).unwrap();
        assert_eq!(b.records.iter().map(|r| r.lsn).collect::<Vec<_>>(), [2, 3]);
        // Not consumed (the caller could not store it): read again in full.
        drop((p, b));
        put(&db, "d");
        let p = tail.pin_open(&db).unwrap();
        let b = tail.records_after(&p, 1).unwrap();
        assert_eq!(
            b.records.iter().map(|r| r.lsn).collect::<Vec<_>>(),
            [2, 3, 4]
        );
        tail.consumed(p, b);
        put(&db, "e");
        let p = tail.pin_open(&db).unwrap();
        let b = tail.records_after(&p, 4).unwrap();
        assert_eq!(b.records.iter().map(|r| r.lsn).collect::<Vec<_>>(), [5]);
        tail.consumed(p, b);
        db.close().unwrap();

        // Closed: read by its files; unchanged since a consumed read = idle.
        let mut closed = Tail::new(&path);
        let Pinning::Pinned(p) = closed.pin().unwrap() else {
            panic!("a closed database with writes is read")
        };
        assert_eq!(p.snapshot().lsn, 5);
        let b = closed.records_after(&p, 3).unwrap();
        assert_eq!(b.records.iter().map(|r| r.lsn).collect::<Vec<_>>(), [4, 5]);
        closed.consumed(*p, b);
        assert!(matches!(closed.pin().unwrap(), Pinning::Unchanged));
        assert!(matches!(
            Tail::new(dir.path().join("nothing")).pin(),
            Err(Error::NotADatabase(_))
        ));
    }

    /// A reader that consumed reads ahead of storing them and then failed
    /// to store one rewinds: the next read finds every record after the
    /// LSN it gives again. A snapshot pinned without waiting for fsyncs
    /// reads the same records; they are durable once its mark is waited for.
    #[test]
    fn a_rewound_tail_reads_again_what_it_consumed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let opts = Options {
            durability: crate::Durability::Buffered,
            ..Options::default()
        };
        let db = Database::create(&path, opts).unwrap();
        let mut tail = Tail::new(&path);
        for k in ["a", "b", "c"] {
            put(&db, k);
        }
        let (p, mark) = tail.pin_open_unsynced(&db).unwrap();
        assert_eq!(p.snapshot().lsn, 3);
        let b = tail.records_after(&p, 0).unwrap();
        assert_eq!(b.records.len(), 3);
        tail.consumed(p, b);
        db.wait_durable(mark).unwrap();
        put(&db, "d");
        let p = tail.pin_open(&db).unwrap();
        assert_eq!(tail.records_after(&p, 0).unwrap().records.len(), 1);
        tail.rewind();
        let b = tail.records_after(&p, 1).unwrap();
        assert_eq!(
            b.records.iter().map(|r| r.lsn).collect::<Vec<_>>(),
            [2, 3, 4]
        );
    }

    /// Bytes past the snapshot's LSN in a segment read whole (a sealed one,
    /// or one a mapping allocated ahead) are not consumed: the record the
    /// owner wrote after pinning is read by the next round, not skipped.
    #[test]
    fn records_past_the_snapshot_are_read_later_not_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let db = Database::create(&path, Options::default()).unwrap();
        let mut tail = Tail::new(&path);
        put(&db, "a");
        put(&db, "a");
        let pin = db.pin().unwrap();
        put(&db, "a"); // LSN 3, same stripe and segment, after the pin
                       // Read the segments whole, as for a sealed one.
        let lens = pin
            .snapshot()
            .files
            .iter()
            .filter(|f| f.name.starts_with("wal/"))
            .map(|f| {
                let len = std::fs::metadata(path.join(&f.name)).unwrap().len();
                (f.name.clone(), len)
            })
            .collect();
        let p = Pinned {
            guard: Guard::Local(pin),
            lens,
        };
        let b = tail.records_after(&p, 0).unwrap();
        assert_eq!(b.records.iter().map(|r| r.lsn).collect::<Vec<_>>(), [1, 2]);
        tail.consumed(p, b);
        let p = tail.pin_open(&db).unwrap();
        let b = tail.records_after(&p, 2).unwrap();
        assert_eq!(b.records.iter().map(|r| r.lsn).collect::<Vec<_>>(), [3]);
    }
}
