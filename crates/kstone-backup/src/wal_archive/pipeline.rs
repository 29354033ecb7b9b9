//! Continuous archiving as a pipeline: the WAL is read on the calling
//! thread while earlier reads are compressed on one thread and stored on
//! another, so a read never waits for the previous read's upload, and the
//! lag stays about one read period plus one object's trip instead of the
//! interval plus a whole round.
//!
//! What keeps the archive whole while reads run ahead of stores:
//! - objects are stored strictly in the order their records were read (one
//!   storer, FIFO channels), so the repository never holds an object whose
//!   predecessor is missing;
//! - once an object fails to encode or store, nothing read after it is
//!   stored (its *epoch* is abandoned); the reader rewinds its WAL position
//!   to the last stored LSN and reads those writes again;
//! - the database's progress mark (which lets it delete WAL) is written by
//!   the storer, after the object holding those records is stored;
//! - a database open in this process is pinned without waiting for its
//!   fsyncs (they take most of a pin at a high write rate); the storer waits
//!   for them before it stores an object, so no object holds a write that
//!   a power cut could still undo.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::time::{Duration, Instant};

use kstone_core::archiving::{self, Batch, Pinned, Pinning};
use kstone_core::fsio::now_micros;
use kstone_core::{Database, DurableMark, Record};

use super::{encode, plan_objects, ArchiveRange, Archiver, Round};
use crate::archive_health::{lag_us, Position};
use crate::error::{Error, Result};
use crate::repository::Repository;

/// Objects queued between stages: bounds memory, and a reader that gets
/// ahead of the uploads waits (its next read then takes in more at once).
const DEPTH: usize = 2;
/// While writes keep coming, a read starts this fraction of the interval
/// after the previous one began (or as soon as it is handed off, if later).
const BUSY_FRACTION: u32 = 10;
/// Writes read add up to an object of at least this much before it goes
/// up, unless the oldest has waited an interval: a trickle of writes makes
/// about one object per interval, not one per read.
const SHIP_BYTES: usize = 1 << 20;
/// How often the reader looks at `stop` while it waits.
const STOP_POLL: Duration = Duration::from_millis(50);

/// One object on its way to the repository.
struct Job {
    epoch: u64,
    key: String,
    range: ArchiveRange,
    records: Vec<Record>,
    ident: (String, String),
    /// The last object of a read: storing it completes the read, so the
    /// progress mark moves to its last LSN.
    closes_read: bool,
    /// The lag when its records were read ([`Round::lag_us`]).
    lag_us: u64,
    /// Must be durable in the database before the object is stored.
    durable: Option<DurableMark>,
}

/// A job's object, ready to store (or why it could not be made).
struct Encoded {
    job: Job,
    records: usize,
    body: Result<Vec<u8>>,
}

/// What the storer did with an object.
enum Done {
    Stored {
        epoch: u64,
        range: ArchiveRange,
        records: usize,
        lag_us: u64,
    },
    Failed {
        epoch: u64,
        error: Error,
    },
}

/// A stored-not-yet object the reader handed off: its last LSN and the
/// commit time of its first write (what the lag counts from).
struct InFlight {
    last_lsn: u64,
    first_ts: Option<u64>,
}

/// The pipeline's state on the reader's side (the [`Archiver`] keeps what
/// is stored; this keeps what is read ahead of it).
#[derive(Default)]
pub(super) struct Ahead {
    /// Every write with LSN ≤ this has been read (held or handed off).
    read_lsn: Option<u64>,
    /// Read, not yet handed off: too little for an object of its own.
    held: Option<Held>,
    in_flight: VecDeque<InFlight>,
    epoch: u64,
}

/// Writes read but held back to be shipped with the next reads'.
struct Held {
    /// They follow this LSN, and reach through the last read's snapshot.
    after: u64,
    snap: (u64, u64),
    records: Vec<Record>,
    bytes: usize,
    durable: Option<DurableMark>,
    ident: (String, String),
    since: Instant,
}

impl Ahead {
    /// Nothing read is waiting to be stored.
    fn drained(&self) -> bool {
        self.held.is_none() && self.in_flight.is_empty()
    }
}

/// About what a record takes in an object.
fn approx_bytes(r: &Record) -> usize {
    32 + match &r.op {
        kstone_core::Op::Put { key, value } => {
            key.pk.len() + key.sk.as_ref().map_or(0, Vec::len) + value.len()
        }
        kstone_core::Op::Delete { key } => key.pk.len() + key.sk.as_ref().map_or(0, Vec::len),
        kstone_core::Op::Marker { name } => name.len(),
    }
}

impl Archiver<'_> {
    /// Archive continuously until `stop()` says so: reads of the WAL start
    /// back to back while writes keep coming (at most one every tenth of
    /// `interval`), every `interval` while the database is idle (an idle
    /// database gets no new objects) and after a failure. What a read finds
    /// goes up at once if it makes an object of [`SHIP_BYTES`], else with
    /// later reads' once the oldest has waited `interval`. `on_round` hears
    /// of every stored object, every read that stored nothing and every
    /// failure (with the archiver, for its [`Archiver::lag_us`]). Before returning, a last
    /// read is archived and everything in flight is stored (or has failed).
    pub fn follow(
        &mut self,
        db: Option<&Database>,
        interval: Duration,
        stop: &dyn Fn() -> bool,
        on_round: &mut dyn FnMut(&Result<Round>, &Archiver),
    ) {
        let window = interval / BUSY_FRACTION;
        let repo = self.repo;
        let db_dir = self.db_dir.clone();
        std::thread::scope(|s| {
            let (job_tx, job_rx) = mpsc::sync_channel::<Job>(DEPTH);
            let (enc_tx, enc_rx) = mpsc::sync_channel::<Encoded>(DEPTH);
            let (done_tx, done_rx) = mpsc::channel::<Done>();
            s.spawn(move || encoder(job_rx, enc_tx));
            s.spawn(move || storer(repo, db, &db_dir, enc_rx, done_tx));
            let mut next_read = Instant::now();
            loop {
                let stopping = stop();
                let now = Instant::now();
                if !stopping && now < next_read {
                    match done_rx.recv_timeout((next_read - now).min(STOP_POLL)) {
                        Ok(d) => {
                            if self.settle(d, on_round) {
                                next_read = Instant::now() + interval;
                            }
                        }
                        // The storer is gone only if it panicked.
                        Err(RecvTimeoutError::Disconnected) => return,
                        Err(RecvTimeoutError::Timeout) => {}
                    }
                    continue;
                }
                let started = Instant::now();
                let found = match self.read_ahead(db, interval, stopping) {
                    Ok((found, jobs)) => {
                        let shipped = !jobs.is_empty();
                        for j in jobs {
                            if job_tx.send(j).is_err() {
                                return;
                            }
                        }
                        // Writes read and not stored yet are no success
                        // to report: their objects (or failures) will be.
                        if !shipped && self.ahead.drained() {
                            let r = self.idle_round();
                            let r = self.report(Ok(r));
                            on_round(&r, self);
                        }
                        found
                    }
                    Err(e) => {
                        let r = self.report(Err(e));
                        on_round(&r, self);
                        false
                    }
                };
                if stopping {
                    break;
                }
                next_read = started + if found { window } else { interval };
                for d in done_rx.try_iter() {
                    if self.settle(d, on_round) {
                        next_read = Instant::now() + interval;
                    }
                }
            }
            // What was read goes up before a clean stop returns.
            drop(job_tx);
            for d in done_rx {
                let _rewound = self.settle(d, on_round);
            }
        });
    }

    /// Pin the database and read every write after what was read so far;
    /// whether there was any, and the objects ready to go.
    fn read_ahead(
        &mut self,
        db: Option<&Database>,
        linger: Duration,
        stopping: bool,
    ) -> Result<(bool, Vec<Job>)> {
        if let Err(e) = self.repo.check_still_here() {
            let pinned = match db {
                Some(d) => self.tail.pin_open(d).ok(),
                None => match self.tail.pin() {
                    Ok(Pinning::Pinned(p)) => Some(*p),
                    _ => None,
                },
            };
            if let Some(p) = pinned {
                self.note_pending(&p);
            }
            return Err(e);
        }
        if db.is_none() {
            // Before `claim`, which writes into the database's directory.
            self.tail.check_database()?;
        }
        self.claim()?;
        let (pinned, durable) = match db {
            Some(d) => {
                let (p, mark) = self.tail.pin_open_unsynced(d)?;
                (p, Some(mark))
            }
            None => match self.tail.pin()? {
                Pinning::Pinned(p) => (*p, None),
                Pinning::Unchanged | Pinning::Raced => {
                    return Ok((false, self.ship(linger, stopping)))
                }
            },
        };
        let found = self.read_pinned(pinned, durable)?;
        Ok((found, self.ship(linger, stopping)))
    }

    /// Hand off what is held once it makes an object of its own, has waited
    /// `linger`, or the archiver is stopping.
    fn ship(&mut self, linger: Duration, stopping: bool) -> Vec<Job> {
        let ready = self
            .ahead
            .held
            .as_ref()
            .is_some_and(|h| stopping || h.bytes >= SHIP_BYTES || h.since.elapsed() >= linger);
        if !ready {
            return Vec::new();
        }
        let Some(h) = self.ahead.held.take() else {
            return Vec::new();
        };
        let planned = plan_objects(&h.ident.0, &h.ident.1, h.after, h.snap, &h.records);
        let last = planned.len().saturating_sub(1);
        let mut parts = Vec::with_capacity(planned.len());
        let mut rest = h.records;
        // From the back, so each object takes its records without a copy.
        for (i, p) in planned.into_iter().enumerate().rev() {
            let mine = rest.split_off(p.records.start);
            parts.push((i, p, mine));
        }
        parts.reverse();
        let lag = lag_us(self.pending_since, now_micros());
        parts
            .into_iter()
            .map(|(i, p, records)| {
                self.ahead.in_flight.push_back(InFlight {
                    last_lsn: p.range.last_lsn,
                    first_ts: records.first().map(|r| r.ts),
                });
                Job {
                    epoch: self.ahead.epoch,
                    key: p.key,
                    range: p.range,
                    records,
                    ident: h.ident.clone(),
                    closes_read: i == last,
                    lag_us: lag,
                    durable: h.durable,
                }
            })
            .collect()
    }

    /// Read every write after what was read so far into what is held;
    /// whether there was any.
    fn read_pinned(&mut self, pinned: Pinned, durable: Option<DurableMark>) -> Result<bool> {
        let snap = pinned.snapshot();
        let db = Position {
            lsn: snap.lsn,
            commit_us: snap.commit_ts,
        };
        self.seen = Some(db);
        let ident = (snap.db_id.clone(), snap.manifest.history.clone());
        self.ident = Some(ident.clone());
        let a = self.resume_point(snap, self.ahead.read_lsn.or(self.archived))?;
        if snap.lsn <= a {
            if self.ahead.drained() {
                // Caught up: nothing read is waiting to be stored, so no
                // storer is moving the mark at the same time.
                self.archived = Some(a);
                self.ahead.read_lsn = Some(a);
                if self.archived_at.is_none_or(|p| p.lsn < a) {
                    self.archived_at = Some(Position { lsn: a, ..db });
                }
                self.pending_since = None;
                self.lag = 0;
                if self.marked != Some(a) {
                    archiving::mark_archived(&self.db_dir, self.repo_id(), a)?;
                    self.marked = Some(a);
                }
            }
            self.tail.consumed(pinned, Batch::empty());
            return Ok(false);
        }
        let (snap_lsn, snap_ts) = (snap.lsn, snap.commit_ts);
        let mut batch = self.tail.records_after(&pinned, a)?;
        let records = std::mem::take(&mut batch.records);
        // The read position moves on now, ahead of the store: a store that
        // fails rewinds it (`settle`), so nothing read is ever skipped.
        self.tail.consumed(pinned, batch);
        self.archived_at.get_or_insert(Position {
            lsn: a,
            commit_us: records.first().map_or(snap_ts, |r| r.ts),
        });
        if self.pending_since.is_none() {
            self.pending_since = records.first().map(|r| r.ts);
        }
        self.lag = lag_us(self.pending_since, now_micros());
        self.ahead.read_lsn = Some(snap_lsn);
        let bytes: usize = records.iter().map(approx_bytes).sum();
        let h = self.ahead.held.get_or_insert_with(|| Held {
            after: a,
            snap: (snap_lsn, snap_ts),
            records: Vec::new(),
            bytes: 0,
            durable,
            ident,
            since: Instant::now(),
        });
        // A later snapshot's mark covers the earlier ones' writes too.
        h.snap = (snap_lsn, snap_ts);
        h.durable = durable;
        h.bytes += bytes;
        h.records.extend(records);
        Ok(true)
    }

    /// A read that found nothing new, with nothing read waiting.
    fn idle_round(&mut self) -> Round {
        if self.pending_since.is_none() {
            self.lag = 0;
        }
        Round {
            archived_lsn: self.archived.unwrap_or(0),
            archived_ts: self.archived_at.map_or(0, |p| p.commit_us),
            ..Round::default()
        }
    }

    /// Take in what the storer did. Results of an abandoned epoch are
    /// stale: everything after its failure was dropped unstored. True when
    /// a failure rewound the reader (it waits an interval before retrying).
    fn settle(&mut self, d: Done, on_round: &mut dyn FnMut(&Result<Round>, &Archiver)) -> bool {
        match d {
            Done::Stored {
                epoch,
                range,
                records,
                lag_us,
            } => {
                self.archived = Some(range.last_lsn);
                self.archived_at = Some(Position {
                    lsn: range.last_lsn,
                    commit_us: range.last_ts,
                });
                if epoch != self.ahead.epoch {
                    return false;
                }
                while self
                    .ahead
                    .in_flight
                    .front()
                    .is_some_and(|f| f.last_lsn <= range.last_lsn)
                {
                    self.ahead.in_flight.pop_front();
                }
                if self.ahead.read_lsn == Some(range.last_lsn) {
                    self.marked = Some(range.last_lsn);
                }
                // The oldest write still waiting is the next object's first.
                self.pending_since = self
                    .ahead
                    .in_flight
                    .iter()
                    .find_map(|f| f.first_ts)
                    .or_else(|| self.ahead.held.as_ref()?.records.first().map(|r| r.ts));
                let r = Ok(Round {
                    lag_us,
                    records,
                    archived_ts: range.last_ts,
                    archived_lsn: range.last_lsn,
                    range: Some(range),
                });
                let r = self.report(r);
                on_round(&r, self);
                false
            }
            Done::Failed { epoch, error } => {
                if epoch != self.ahead.epoch {
                    return false;
                }
                // Start again from what is stored, in a new epoch.
                self.ahead.epoch += 1;
                self.ahead.in_flight.clear();
                self.ahead.held = None;
                self.ahead.read_lsn = self.archived;
                self.marked = None;
                self.tail.rewind();
                let r = self.report(Err(error));
                on_round(&r, self);
                true
            }
        }
    }
}

/// Compress each job's records into its object.
fn encoder(jobs: Receiver<Job>, out: SyncSender<Encoded>) {
    for job in jobs {
        let body = encode(&job.ident.0, &job.ident.1, &job.range, &job.records);
        let records = job.records.len();
        // The records are in the body now; the queue holds no second copy.
        let job = Job {
            records: Vec::new(),
            ..job
        };
        if out.send(Encoded { job, records, body }).is_err() {
            return;
        }
    }
}

/// Store objects in order; after the last object of a read, move the
/// database's progress mark. After a failure, drop the rest of its epoch.
fn storer(
    repo: &Repository,
    db: Option<&Database>,
    db_dir: &Path,
    objects: Receiver<Encoded>,
    done: Sender<Done>,
) {
    let repo_id = &repo.config.repository_id;
    let mut failed: Option<u64> = None;
    for Encoded { job, records, body } in objects {
        if failed == Some(job.epoch) {
            continue;
        }
        let epoch = job.epoch;
        let durable = match (db, job.durable) {
            (Some(d), Some(mark)) => wait_durable(d, mark),
            _ => Ok(()),
        };
        let stored = durable
            .and(body)
            .and_then(|b| repo.storage.put(&job.key, b));
        if let Err(error) = stored {
            failed = Some(epoch);
            let _ = done.send(Done::Failed { epoch, error });
            continue;
        }
        let _ = done.send(Done::Stored {
            epoch,
            range: job.range.clone(),
            records,
            lag_us: job.lag_us,
        });
        if job.closes_read {
            // Only now may the database drop the segments. A mark that
            // cannot be written fails the epoch: the object is stored, so
            // the reader goes on after it and marks again next time.
            if let Err(e) = archiving::mark_archived(db_dir, repo_id, job.range.last_lsn) {
                failed = Some(epoch);
                let _ = done.send(Done::Failed {
                    epoch,
                    error: e.into(),
                });
            }
        }
    }
}

/// Threads that wait for a read's writes to be durable: each helps with the
/// database's fsync round (one segment at a time), so they run in parallel
/// instead of one after another on its sync thread. At a high write rate
/// every stripe's segment is dirty, and that round is most of the lag.
const FSYNC_HELPERS: usize = 4;

fn wait_durable(db: &Database, mark: DurableMark) -> Result<()> {
    std::thread::scope(|s| {
        let helpers: Vec<_> = (1..FSYNC_HELPERS)
            .map(|_| s.spawn(|| db.wait_durable(mark)))
            .collect();
        let mine = db.wait_durable(mark);
        // Any one of them sees a failed fsync (the database is poisoned).
        helpers
            .into_iter()
            .filter_map(|h| h.join().ok())
            .fold(mine, |acc, r| acc.and(r))
    })
    .map_err(Error::from)
}
