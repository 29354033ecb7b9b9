//! Continuous WAL archiving: objects that each hold every committed write of
//! an LSN range, across all stripes, compressed and checksummed.
//!
//! Object key: `wal/<db_id>/<history>/<first_lsn:020>-<last_lsn:020>-<first_ts:016>-<last_ts:016>.walarc`,
//! covering LSNs `first_lsn..=last_lsn` (the name alone tells the range and
//! time span, so planning a restore needs only a listing). Body: the shared
//! framing with magic `KSTNWARC` around
//! `header_len u32 | header JSON | zstd(WAL record frames in LSN order)`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kstone_core::archiving::{self, Batch, Pinned, Pinning, Tail};
use kstone_core::Record;
use kstone_core::Snapshot;
use serde::{Deserialize, Serialize};

use crate::archive_health::{lag_us, Heartbeat, Position};
use crate::error::{Error, Result};
use crate::repository::Repository;
use kstone_core::fsio::now_micros;

mod pipeline;

const MAGIC: &[u8; 8] = b"KSTNWARC";
const VERSION: u32 = 1;
/// Encoded records per object stay below this (a record's frame is bounded by
/// its key, ≤ 2 KiB + 1 KiB, and its value).
const SPLIT_AT: usize = 64 << 20;
/// Decoding refuses to inflate more than this, whatever a header claims.
const MAX_OBJECT_RECORD_BYTES: u64 = 256 << 20;

/// What an archive object holds, from its name (and header).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveRange {
    pub first_lsn: u64,
    pub last_lsn: u64,
    /// Commit times of the first and last records (µs); for an object
    /// without records, both are the time of the snapshot that closed it.
    pub first_ts: u64,
    pub last_ts: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    db_id: String,
    history: String,
    #[serde(flatten)]
    range: ArchiveRange,
    records: u64,
}

/// How often an archiver reports that it is alive, unless told otherwise.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(60);
/// The heartbeat period of an archiver running every `interval`: as asked
/// (a minute by default), but never shorter than a round's period — an
/// archiver cannot report more often than it runs.
pub fn heartbeat_period(asked: Option<Duration>, interval: Duration) -> Duration {
    asked.unwrap_or(DEFAULT_HEARTBEAT).max(interval)
}

/// How often, at most, a busy archiver reports its progress.
pub const ACTIVE_HEARTBEAT: Duration = Duration::from_secs(10);

fn object_key(db_id: &str, history: &str, r: &ArchiveRange) -> String {
    format!(
        "{}/{:020}-{:020}-{:016}-{:016}.walarc",
        crate::layout::archive_of(db_id, history),
        r.first_lsn,
        r.last_lsn,
        r.first_ts,
        r.last_ts
    )
}

fn parse_key(key: &str) -> Option<ArchiveRange> {
    let name = key.rsplit('/').next()?.strip_suffix(".walarc")?;
    let f: Vec<&str> = name.split('-').collect();
    if f.len() != 4 {
        return None;
    }
    Some(ArchiveRange {
        first_lsn: f[0].parse().ok()?,
        last_lsn: f[1].parse().ok()?,
        first_ts: f[2].parse().ok()?,
        last_ts: f[3].parse().ok()?,
    })
}

/// Encode an archive object.
pub fn encode(
    db_id: &str,
    history: &str,
    range: &ArchiveRange,
    records: &[Record],
) -> Result<Vec<u8>> {
    let header = serde_json::to_vec(&Header {
        db_id: db_id.into(),
        history: history.into(),
        range: range.clone(),
        records: records.len() as u64,
    })
    .unwrap_or_default();
    let mut frames = Vec::new();
    archiving::encode_records(records, &mut frames);
    let packed = zstd::bulk::compress(&frames, 3).map_err(|e| Error::Invalid(e.to_string()))?;
    let mut body = Vec::with_capacity(4 + header.len() + packed.len());
    body.extend_from_slice(&(header.len() as u32).to_le_bytes());
    body.extend_from_slice(&header);
    body.extend_from_slice(&(frames.len() as u64).to_le_bytes());
    body.extend_from_slice(&packed);
    Ok(kstone_core::framed::encode(MAGIC, VERSION, &body))
}

/// Decode and check an archive object: every record inside its range, in
/// strictly increasing LSN order.
pub fn decode(bytes: &[u8], key: &str) -> Result<(ArchiveRange, Vec<Record>)> {
    let corrupt = |d: String| Error::Corrupt {
        object: key.to_string(),
        detail: d,
    };
    let (version, body) = kstone_core::framed::decode(bytes, MAGIC, Path::new(key))
        .map_err(|e| corrupt(e.to_string()))?;
    if version != VERSION {
        return Err(corrupt(format!("unsupported version {version}")));
    }
    let mut r = kstone_core::model::varint::Reader::new(body);
    let hlen = r.u32_le().map_err(|e| corrupt(e.to_string()))? as usize;
    let header: Header = serde_json::from_slice(r.bytes(hlen).map_err(|e| corrupt(e.to_string()))?)
        .map_err(|e| corrupt(format!("bad header: {e}")))?;
    // The object must be the one its name says: another history's object,
    // or one copied over another range, would replay the wrong writes.
    if let Some(named) = parse_key(key) {
        let parts: Vec<&str> = key.split('/').collect();
        let n = parts.len();
        let (db, history) = (parts[n.saturating_sub(3)], parts[n.saturating_sub(2)]);
        if named != header.range || db != header.db_id || history != header.history {
            return Err(corrupt(format!(
                "holds LSNs {}..={} of database {} history {}, not what its name says",
                header.range.first_lsn, header.range.last_lsn, header.db_id, header.history
            )));
        }
    }
    let raw_len = r.u64_le().map_err(|e| corrupt(e.to_string()))?;
    if raw_len > MAX_OBJECT_RECORD_BYTES {
        return Err(corrupt("record block too large".into()));
    }
    let packed = r.bytes(r.remaining()).map_err(|e| corrupt(e.to_string()))?;
    let frames = zstd::bulk::decompress(packed, raw_len as usize)
        .map_err(|e| corrupt(format!("zstd: {e}")))?;
    let records = archiving::decode_records(&frames)
        .map_err(|(at, what)| corrupt(format!("{what} at {at}")))?;
    let mut prev = header.range.first_lsn.saturating_sub(1);
    for rec in &records {
        if rec.lsn <= prev || rec.lsn > header.range.last_lsn {
            return Err(corrupt(format!(
                "record LSN {} out of order or range",
                rec.lsn
            )));
        }
        prev = rec.lsn;
    }
    if records.len() as u64 != header.records {
        return Err(corrupt("record count mismatch".into()));
    }
    Ok((header.range, records))
}

/// One archive object to store: its key, its range and which of a read's
/// records it holds.
#[derive(Debug, Clone)]
pub(crate) struct Planned {
    pub key: String,
    pub range: ArchiveRange,
    pub records: std::ops::Range<usize>,
}

/// The objects that store `records` (every write after LSN `after` up to
/// the snapshot `(lsn, commit_ts)`, in LSN order): contiguous ranges, each
/// below [`SPLIT_AT`] so a long backlog goes up as several objects; the
/// last one claims through the snapshot's LSN.
pub(crate) fn plan_objects(
    db_id: &str,
    history: &str,
    after: u64,
    (snap_lsn, snap_ts): (u64, u64),
    records: &[Record],
) -> Vec<Planned> {
    let mut chunks: Vec<std::ops::Range<usize>> = Vec::new();
    let mut start = 0;
    let mut bytes = 0usize;
    for (i, r) in records.iter().enumerate() {
        let n = 64
            + match &r.op {
                kstone_core::Op::Put { value, .. } => value.len() + 2100,
                _ => 2100,
            };
        if bytes + n > SPLIT_AT && i > start {
            chunks.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += n;
    }
    chunks.push(start..records.len());
    let last_chunk = chunks.len() - 1;
    let mut from = after + 1;
    let mut out = Vec::with_capacity(chunks.len());
    for (i, c) in chunks.into_iter().enumerate() {
        let chunk = &records[c.clone()];
        let last = if i == last_chunk {
            snap_lsn
        } else {
            chunk.last().map_or(from, |r| r.lsn)
        };
        let range = ArchiveRange {
            first_lsn: from,
            last_lsn: last,
            first_ts: chunk.first().map_or(snap_ts, |r| r.ts),
            last_ts: chunk.last().map_or(snap_ts, |r| r.ts),
        };
        from = last + 1;
        out.push(Planned {
            key: object_key(db_id, history, &range),
            range,
            records: c,
        });
    }
    out
}

impl Repository {
    /// Archive objects of one database history, by first LSN.
    pub fn archive_ranges(
        &self,
        db_id: &str,
        history: &str,
    ) -> Result<Vec<(String, ArchiveRange)>> {
        let mut v: Vec<(String, ArchiveRange)> = self
            .storage
            .list(&crate::layout::archive_of(db_id, history))?
            .into_iter()
            .filter_map(|(k, _)| parse_key(&k).map(|r| (k, r)))
            .collect();
        v.sort_by_key(|(_, r)| r.first_lsn);
        Ok(v)
    }

    /// Download and decode one archive object.
    pub fn archive_records(&self, key: &str) -> Result<Vec<Record>> {
        let b = self.storage.get(key)?.ok_or_else(|| Error::Corrupt {
            object: key.into(),
            detail: "archive object is missing".into(),
        })?;
        Ok(decode(&b, key)?.1)
    }
}

/// Follows a database and ships its WAL into a repository.
pub struct Archiver<'a> {
    repo: &'a Repository,
    db_dir: PathBuf,
    /// Every write with LSN ≤ this is archived.
    archived: Option<u64>,
    /// The database's WAL, read on from what was archived.
    tail: Tail,
    /// Held from the first round on: one archiver per database and repository.
    lock: Option<archiving::ArchiverLock>,
    /// The database's last commit as last seen, and the newest archived
    /// write: what the lag is measured from.
    seen: Option<Position>,
    archived_at: Option<Position>,
    ident: Option<(String, String)>,
    /// Lag measured at the last snapshot, before its writes were shipped.
    lag: u64,
    heartbeat_every: Duration,
    last_heartbeat: Option<Instant>,
    reported_lag: Option<u64>,
    /// Commit time of the oldest write read from the WAL but not yet stored.
    pending_since: Option<u64>,
    failing: bool,
    /// What continuous archiving has read ahead of what is stored.
    ahead: pipeline::Ahead,
    /// The progress mark this archiver last wrote (not written again unchanged).
    marked: Option<u64>,
}

/// What one archiving round did (in continuous archiving, [`Archiver::follow`],
/// one stored object).
#[derive(Debug, Clone, Default)]
pub struct Round {
    /// The archive lag when the round's records were read (or, continuous,
    /// handed off), before they were shipped (`archive_health::lag_us`): one
    /// round at a time, about the interval plus the round's time; 0 when
    /// nothing was new.
    pub lag_us: u64,
    pub records: usize,
    /// The LSNs and commit times the round stored (from the first object's
    /// first record to the last one's last).
    pub range: Option<ArchiveRange>,
    /// Commit time of the newest archived write.
    pub archived_ts: u64,
    pub archived_lsn: u64,
}

impl<'a> Archiver<'a> {
    pub fn new(repo: &'a Repository, db_dir: &Path) -> Archiver<'a> {
        Archiver {
            repo,
            db_dir: db_dir.to_path_buf(),
            archived: None,
            tail: Tail::new(db_dir),
            lock: None,
            seen: None,
            archived_at: None,
            ident: None,
            lag: 0,
            heartbeat_every: DEFAULT_HEARTBEAT,
            last_heartbeat: None,
            reported_lag: None,
            pending_since: None,
            failing: false,
            ahead: pipeline::Ahead::default(),
            marked: None,
        }
    }

    /// Promise a heartbeat at least this often (`Duration::ZERO`: only this
    /// one round's, for a one-off run). Default: a minute.
    pub fn heartbeat_every(mut self, every: Duration) -> Self {
        self.heartbeat_every = every;
        self
    }

    /// The archive lag now (µs): while writes read from the WAL are not yet
    /// stored (rounds failing), how long the oldest has waited; otherwise
    /// the lag the last round measured ([`Round::lag_us`]).
    pub fn lag_us(&self) -> u64 {
        match self.pending_since {
            Some(p) => lag_us(Some(p), now_micros()),
            None => self.lag,
        }
    }

    /// After a round: write the heartbeat when it is due — the first round,
    /// a change between failing and working, a period gone by, or a round
    /// that shipped writes (then at most every [`ACTIVE_HEARTBEAT`], so that
    /// `status` is never far behind a busy archive). A heartbeat that cannot
    /// be written fails a round that otherwise worked.
    fn report(&mut self, r: Result<Round>) -> Result<Round> {
        // Nothing goes to a location that is no longer the repository.
        if matches!(r, Err(Error::RepositoryGone { .. })) {
            self.failing = true;
            return r;
        }
        let failing = r.is_err();
        let shipped = r.as_ref().is_ok_and(|r| r.records > 0);
        // Caught up after a report that showed lag: say so at once.
        let caught_up = self.lag_us() == 0 && self.reported_lag.is_some_and(|l| l > 0);
        let due = match self.last_heartbeat {
            None => true,
            Some(t) => {
                failing != self.failing
                    || caught_up
                    || t.elapsed() >= self.heartbeat_every
                    || (shipped && t.elapsed() >= self.heartbeat_every.min(ACTIVE_HEARTBEAT))
            }
        };
        self.failing = failing;
        if !due {
            return r;
        }
        let error = r.as_ref().err().map(|e| e.to_string());
        match (self.write_heartbeat(error, false), r) {
            (Ok(_), r) => r,
            (Err(e), Ok(_)) => Err(e),
            (Err(_), r) => r,
        }
    }

    /// While nothing can be stored (the repository is gone), still learn
    /// the oldest write waiting, so that the lag keeps growing.
    fn note_pending(&mut self, pinned: &Pinned) {
        let Some(a) = self.archived else {
            return;
        };
        if let Ok(b) = self.tail.records_after(pinned, a) {
            if let Some(first) = b.records.first() {
                self.pending_since = Some(self.pending_since.map_or(first.ts, |p| p.min(first.ts)));
            }
        }
    }

    /// Tell the repository this archiver stopped cleanly (not stalled).
    pub fn stop(&mut self) -> Result<()> {
        self.write_heartbeat(None, true).map(|_| ())
    }

    /// Write a heartbeat if the database is known; returns whether it did.
    fn write_heartbeat(&mut self, error: Option<String>, stopped: bool) -> Result<bool> {
        let (Some((db_id, history)), Some(db)) = (self.ident.clone(), self.seen) else {
            return Ok(false);
        };
        let lag = Some(self.lag_us());
        let hb = Heartbeat {
            at_us: kstone_core::fsio::now_micros(),
            every_us: self.heartbeat_every.as_micros() as u64,
            db_id,
            history,
            db,
            archived: self.archived_at,
            lag_us: lag,
            stopped,
            error,
            host: crate::create::hostname(),
            pid: std::process::id(),
        };
        self.repo.write_heartbeat(&hb)?;
        self.last_heartbeat = Some(Instant::now());
        self.reported_lag = lag;
        Ok(true)
    }

    fn repo_id(&self) -> &str {
        &self.repo.config.repository_id
    }

    /// Take this (database, repository) pair's archiver lock and register
    /// the repository, so the database keeps every WAL segment it has not
    /// archived (whatever other repositories have).
    fn claim(&mut self) -> Result<()> {
        if self.lock.is_none() {
            let lock = archiving::ArchiverLock::try_acquire(&self.db_dir, self.repo_id())?
                .ok_or_else(|| Error::ArchiverBusy {
                    db: self.db_dir.display().to_string(),
                    repo: self.repo.location().to_string(),
                })?;
            self.lock = Some(lock);
        }
        if self.archived.is_none()
            && archiving::registration(&self.db_dir, self.repo_id())?.is_none()
        {
            // Before the first snapshot, so that no segment with writes this
            // repository lacks can be deleted in between.
            archiving::enable(&self.db_dir, self.repo_id(), self.repo.location())?;
        }
        Ok(())
    }

    /// Archive everything written since the last round.
    pub fn round(&mut self) -> Result<Round> {
        let r = self.round_dir();
        self.report(r)
    }

    fn round_dir(&mut self) -> Result<Round> {
        if let Err(e) = self.repo.check_still_here() {
            if let Ok(Pinning::Pinned(p)) = self.tail.pin() {
                self.note_pending(&p);
            }
            return Err(e);
        }
        // Before `claim`, which writes into the database's directory.
        self.tail.check_database()?;
        self.claim()?;
        match self.tail.pin()? {
            Pinning::Pinned(p) => self.round_with(*p),
            unchanged_or_raced => {
                if matches!(unchanged_or_raced, Pinning::Unchanged) {
                    self.lag = 0;
                    self.pending_since = None;
                }
                Ok(Round {
                    archived_lsn: self.archived.unwrap_or(0),
                    ..Round::default()
                })
            }
        }
    }

    /// One round for a database open in this process.
    pub fn round_db(&mut self, db: &kstone_core::Database) -> Result<Round> {
        let r = (|| {
            if let Err(e) = self.repo.check_still_here() {
                if let Ok(p) = self.tail.pin_open(db) {
                    self.note_pending(&p);
                }
                return Err(e);
            }
            self.claim()?;
            let pinned = self.tail.pin_open(db)?;
            self.round_with(pinned)
        })();
        self.report(r)
    }

    fn round_with(&mut self, pinned: Pinned) -> Result<Round> {
        let snap = pinned.snapshot();
        let db = Position {
            lsn: snap.lsn,
            commit_us: snap.commit_ts,
        };
        self.seen = Some(db);
        self.ident = Some((snap.db_id.clone(), snap.manifest.history.clone()));
        let a = self.resume_point(snap, self.archived)?;
        if snap.lsn <= a {
            self.archived = Some(a);
            if self.archived_at.is_none_or(|p| p.lsn < a) {
                self.archived_at = Some(Position { lsn: a, ..db });
            }
            self.lag = 0;
            self.pending_since = None;
            archiving::mark_archived(&self.db_dir, self.repo_id(), a)?;
            self.tail.consumed(pinned, Batch::empty());
            return Ok(Round {
                archived_lsn: a,
                ..Round::default()
            });
        }
        // Kept by the tail only once the round's objects are stored: a
        // failed upload is retried with the same writes, or the next object
        // would claim LSNs whose writes it never held.
        let batch = self.tail.records_after(&pinned, a)?;
        let records = &batch.records;
        // Not known on a first round: the first pending write's commit time
        // is a close upper bound of the newest archived one's.
        self.archived_at.get_or_insert(Position {
            lsn: a,
            commit_us: records.first().map_or(db.commit_us, |r| r.ts),
        });
        self.pending_since = records.first().map(|r| r.ts);
        self.lag = lag_us(self.pending_since, now_micros());
        let objects = plan_objects(
            &snap.db_id,
            &snap.manifest.history,
            a,
            (snap.lsn, snap.commit_ts),
            &batch.records,
        );
        // What the round's objects cover together: the first one's start,
        // the last one's end.
        let mut covered: Option<ArchiveRange> = None;
        for o in objects {
            let chunk = &batch.records[o.records.clone()];
            let body = encode(&snap.db_id, &snap.manifest.history, &o.range, chunk)?;
            self.repo.storage.put(&o.key, body)?;
            covered = Some(match covered {
                None => o.range,
                Some(c) => ArchiveRange {
                    last_lsn: o.range.last_lsn,
                    last_ts: o.range.last_ts,
                    ..c
                },
            });
        }
        let range = covered.ok_or_else(|| Error::Invalid("internal: no archive object".into()))?;
        // Only now may the database drop the segments.
        archiving::mark_archived(&self.db_dir, self.repo_id(), snap.lsn)?;
        self.marked = Some(snap.lsn);
        let (lsn, count) = (snap.lsn, records.len());
        self.tail.consumed(pinned, batch);
        self.archived = Some(lsn);
        self.archived_at = Some(Position {
            lsn,
            commit_us: range.last_ts,
        });
        self.pending_since = None;
        Ok(Round {
            lag_us: self.lag,
            records: count,
            archived_ts: range.last_ts,
            archived_lsn: lsn,
            range: Some(range),
        })
    }

    /// Where this repository's archive of the snapshot's history continues:
    /// after its last object, provided every later write is still on disk.
    /// A hole that can no longer be filled (WAL retired before this
    /// repository archived it) is an error now, not at restore time; once a
    /// backup taken after the hole exists, archiving continues from there.
    /// Where archiving goes on from: `known` (what this archiver has
    /// archived), or on its first round the repository's position for the
    /// database. A restored database's archive continues the history it came
    /// from: the first round says where it forked, so PITR can follow it.
    fn resume_point(&self, snap: &Snapshot, known: Option<u64>) -> Result<u64> {
        if let Some(a) = known {
            return Ok(a);
        }
        let a = self.start_point(snap)?;
        if let Some(o) = &snap.manifest.origin {
            self.repo
                .record_lineage(&snap.db_id, &snap.manifest.history, o)?;
        }
        Ok(a)
    }

    fn start_point(&self, snap: &Snapshot) -> Result<u64> {
        let history = &snap.manifest.history;
        let reg = archiving::registration(&self.db_dir, self.repo_id())?;
        // Every write after this LSN is on disk (kept for this repository).
        let on_disk = match &reg {
            Some(r) if r.started => r.archived_lsn,
            Some(r) => r.safe_start,
            None => snap.lsn,
        };
        // Points of this history the archive must continue: its backups
        // here, and the fork a restore from here started it at.
        let mut bases: Vec<u64> = self
            .repo
            .list()?
            .iter()
            .filter(|b| b.db_id == snap.db_id && &b.history == history)
            .map(|b| b.snapshot_lsn)
            .collect();
        if let Some(o) = &snap.manifest.origin {
            if o.repository_id == self.repo.config.repository_id {
                bases.push(o.recovered_to_lsn.unwrap_or(o.snapshot_lsn));
            }
        }
        let covered = bases.iter().any(|&b| b >= on_disk);
        let last = self
            .repo
            .archive_ranges(&snap.db_id, history)?
            .last()
            .map(|(_, r)| r.last_lsn);
        // Continue after the newest object; a new archive starts where the
        // WAL is on disk, which must not be after every point to continue.
        let end = match last {
            Some(l) if l >= on_disk => return Ok(l),
            Some(l) => Some(l),
            None => bases.iter().copied().max(),
        };
        match end {
            None => Ok(on_disk),
            Some(_) if covered => Ok(on_disk),
            Some(e) => Err(Error::ArchiveGap {
                db: self.db_dir.display().to_string(),
                repo: self.repo.location().to_string(),
                from: e + 1,
                to: on_disk,
            }),
        }
    }
}

/// WAL archiving from inside the application's process: a background thread
/// ships the WAL of `db` until dropped — continuously while it is written
/// (reads, compression and uploads overlap: [`Archiver::follow`]), checking
/// every `interval` while it is idle. Dropping it archives what is left.
///
/// ```no_run
/// # use std::sync::Arc;
/// let db = Arc::new(kstone_core::Database::open("app.keystone", Default::default()).unwrap());
/// let _archiving = kstone_backup::wal_archive::BackgroundArchiver::start(
///     Arc::clone(&db), "/var/backups/kstone", std::time::Duration::from_secs(1)).unwrap();
/// ```
pub struct BackgroundArchiver {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    last_error: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    archived: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl BackgroundArchiver {
    pub fn start(
        db: std::sync::Arc<kstone_core::Database>,
        location: &str,
        interval: Duration,
    ) -> Result<BackgroundArchiver> {
        let (repo, _) = Repository::open_or_init(location, Some(3))?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let last_error = std::sync::Arc::new(std::sync::Mutex::new(None));
        let archived = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (s, e, at) = (
            std::sync::Arc::clone(&stop),
            std::sync::Arc::clone(&last_error),
            std::sync::Arc::clone(&archived),
        );
        let thread = std::thread::spawn(move || {
            let mut a = Archiver::new(&repo, db.path());
            let stopped = || s.load(std::sync::atomic::Ordering::SeqCst);
            // Returns once stopped, with everything read stored.
            a.follow(Some(&db), interval, &stopped, &mut |r, _| {
                if let Ok(round) = r {
                    at.fetch_max(round.archived_ts, std::sync::atomic::Ordering::SeqCst);
                }
                *e.lock().unwrap_or_else(|p| p.into_inner()) =
                    r.as_ref().err().map(|e| e.to_string());
            });
        });
        Ok(BackgroundArchiver {
            stop,
            thread: Some(thread),
            last_error,
            archived,
        })
    }

    /// Commit time (µs) of the newest archived write.
    pub fn archived_ts(&self) -> u64 {
        self.archived.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The error of the last round, if it failed.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for BackgroundArchiver {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kstone_core::{Key, Op};

    #[test]
    fn an_archiver_never_promises_reports_faster_than_it_runs() {
        let s = Duration::from_secs;
        assert_eq!(heartbeat_period(None, s(1)), DEFAULT_HEARTBEAT);
        assert_eq!(heartbeat_period(Some(s(1)), s(20)), s(20));
        assert_eq!(heartbeat_period(Some(s(5)), s(1)), s(5));
    }

    #[test]
    fn object_round_trip_and_damage() {
        let recs: Vec<Record> = (5..9)
            .map(|l| Record {
                lsn: l,
                ts: l * 10,
                op: Op::Put {
                    key: Key::new(b"k", None).unwrap(),
                    value: vec![1, 2],
                },
            })
            .collect();
        let r = ArchiveRange {
            first_lsn: 5,
            last_lsn: 9,
            first_ts: 50,
            last_ts: 80,
        };
        let b = encode("d", "h", &r, &recs).unwrap();
        let (r2, back) = decode(&b, "x").unwrap();
        assert_eq!((r2, back), (r.clone(), recs));
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 1;
            assert!(decode(&c, "x").is_err(), "flip at {i}");
        }
        assert_eq!(parse_key(&object_key("d", "h", &r)), Some(r.clone()));
        // Stored under its own name it decodes; under another history's or
        // another range's name it is refused.
        assert!(decode(&b, &object_key("d", "h", &r)).is_ok());
        assert!(decode(&b, &object_key("d", "other", &r)).is_err());
        assert!(decode(&b, &object_key("e", "h", &r)).is_err());
        let wider = ArchiveRange {
            last_lsn: 10,
            ..r.clone()
        };
        assert!(decode(&b, &object_key("d", "h", &wider)).is_err());
    }
}
