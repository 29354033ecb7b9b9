//! The database's write-ahead log as one component: it creates each stripe's
//! segments, appends a stripe's records (in `Sync` mode through the commit
//! log), and owns the group commit that makes them durable. A stripe keeps
//! its active segment under its own lock; everything else about the log is
//! here.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{Error, IoContext, Result};
use crate::fsio::now_micros;
use crate::mutex::lock;
use crate::options::{Durability, Options};
use crate::wal::commit_log::{CommitLog, Retired};
use crate::wal::segment::{self, ActiveSegment, Header, HEADER_LEN};
use crate::wal::spares::Spares;
use crate::wal::sync::{GroupCommit, WAL_DIR_KEY};

/// Assigns each write its global LSN and commit timestamp; the timestamp
/// never decreases as the LSN grows, even if the wall clock steps back.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    pub lsn: u64,
    pub ts: u64,
}

impl Clock {
    /// The next write's (LSN, timestamp).
    pub(crate) fn next(&mut self) -> (u64, u64) {
        self.lsn += 1;
        self.ts = self.ts.max(now_micros());
        (self.lsn, self.ts)
    }

    /// A replayed write keeps its original stamp; later ones follow it.
    pub(crate) fn follow(&mut self, lsn: u64, ts: u64) {
        self.lsn = self.lsn.max(lsn);
        self.ts = self.ts.max(ts);
    }
}

pub(crate) struct Wal {
    /// The last write's stamp; taken under a stripe lock, so records of one
    /// stripe are in LSN order in its segment.
    clock: Mutex<Clock>,
    /// `<db>/wal`.
    dir: PathBuf,
    /// The open directory, fsynced by the group commit after a segment is created.
    dir_file: Arc<File>,
    commit: GroupCommit,
    /// `Sync` mode's commit log (`None` in `Buffered` mode, and for readers).
    commit_log: Option<CommitLog>,
    durability: Durability,
    /// Files made ahead for new segments (the owner's only).
    spares: Option<Spares>,
}

impl Wal {
    /// The log of the database at `db_dir`, whose last write is `last`;
    /// `owner`: this process writes it.
    pub(crate) fn open(db_dir: &Path, opts: &Options, owner: bool, last: Clock) -> Result<Wal> {
        let dir = db_dir.join("wal");
        let dir_file = Arc::new(File::open(&dir).ctx(&dir)?);
        let spares = owner.then(|| Spares::open(&dir));
        let commit_log = (opts.durability == Durability::Sync && owner)
            .then(|| CommitLog::new(db_dir, opts.commit_log_bytes, Arc::clone(&dir_file)));
        Ok(Wal {
            clock: Mutex::new(last),
            dir,
            dir_file,
            commit: GroupCommit::default(),
            commit_log,
            durability: opts.durability,
            spares,
        })
    }

    /// The (LSN, commit timestamp) of the last write.
    pub(crate) fn last_stamp(&self) -> (u64, u64) {
        let c = lock(&self.clock);
        (c.lsn, c.ts)
    }

    /// Stamp writes with the clock held (the caller holds the stripe lock).
    pub(crate) fn stamp<R>(&self, f: impl FnOnce(&mut Clock) -> R) -> R {
        f(&mut lock(&self.clock))
    }

    /// Create stripe `stripe`'s next segment, `id`, after `prev`. Returns the
    /// segment and its header (which a commit-log append must carry too).
    pub(crate) fn new_segment(
        &self,
        stripe: usize,
        id: u64,
        prev: u64,
    ) -> Result<(ActiveSegment, [u8; HEADER_LEN])> {
        let head = Header {
            stripe: stripe as u32,
            id,
            prev,
        };
        let header = head.encode();
        let mapped = self.durability == Durability::Buffered;
        let path = self.dir.join(segment::file_name(stripe, id));
        let mut seg = match self.spares.as_ref().and_then(|s| s.take(&path)) {
            Some(f) => ActiveSegment::start(f, path, head, mapped)?,
            None => ActiveSegment::create_at(path, head, mapped)?,
        };
        // With a commit log, the segment's first append logs its header
        // too, and redo recreates a segment whose directory entry a power
        // cut lost: the round need not fsync `wal/` for it (a seal still
        // does, as `created` stays 0).
        if self.commit_log.is_none() {
            seg.created = self.commit.note_created(WAL_DIR_KEY, &self.dir_file);
        }
        Ok((seg, header))
    }

    /// Append a stripe's framed records to its segment. `header`: the
    /// segment is new, and the commit log must recreate it. `new_id` names a
    /// new commit log. Returns the group-commit sequence to wait for and a
    /// full commit log to retire once the write is applied. On failure the
    /// segment is cut back to where it was (the caller drops it, so later
    /// records never follow a partial one); if even that fails, the log is
    /// poisoned.
    pub(crate) fn append(
        &self,
        stripe: usize,
        seg: &mut ActiveSegment,
        header: Option<&[u8; HEADER_LEN]>,
        records: &[u8],
        new_id: impl FnOnce() -> u64,
    ) -> Result<(u64, Option<Retired>)> {
        let before = seg.len;
        let logged = seg.append(records).and_then(|()| match &self.commit_log {
            None => Ok((self.commit.note_written(seg.id, &seg.file), None)),
            Some(log) => match header {
                Some(h) => log.append(
                    stripe,
                    seg,
                    0,
                    &[&h[..], records].concat(),
                    new_id,
                    &self.commit,
                ),
                None => log.append(stripe, seg, before, records, new_id, &self.commit),
            },
        });
        logged.map_err(|e| match seg.abandon(before) {
            Ok(()) => e,
            Err(_) => {
                // A partial record stays in the segment: nothing may follow it.
                let why = format!("WAL append failed and could not be undone: {e}");
                self.commit.poison(why.clone());
                Error::Poisoned(why)
            }
        })
    }

    /// Make a segment and its directory entry durable before its stripe
    /// moves on to a new one: without an fsync the kernel may write the
    /// newer segment first, and a power cut would then leave a torn or
    /// missing segment in the middle of the chain, which recovery rightly
    /// refuses to skip. Zeros allocated ahead are cut off first, so only a
    /// stripe's last segment can end in zeros. The directory is fsynced
    /// only if no finished group-commit round has already made the
    /// segment's entry durable (a segment usually lives longer than a
    /// round, and a wave of seals would otherwise fsync it once each).
    pub(crate) fn seal_segment(&self, seg: &mut ActiveSegment) -> Result<()> {
        seg.trim()?;
        seg.file.sync_data().ctx(&seg.path)?;
        if self.commit.entry_durable(seg.created) {
            return Ok(());
        }
        self.dir_file.sync_all().ctx(&self.dir)
    }

    /// Keep spare files ready for new segments until the database closes
    /// (the owner's background thread).
    pub(crate) fn refill_spares(&self, closing: &crate::closing::Closing) {
        if let Some(s) = &self.spares {
            s.refill(closing);
        }
    }

    /// In `Sync` mode, wait until `seq` is durable.
    pub(crate) fn wait_durable(&self, seq: u64) -> Result<()> {
        if self.durability == Durability::Sync && seq > 0 {
            self.commit.wait_durable(seq)?;
        }
        Ok(())
    }

    /// Sequence number of the last record batch written (in any mode).
    pub(crate) fn written(&self) -> u64 {
        self.commit.written()
    }

    /// In any mode, wait until batch `seq` is durable (helping with the
    /// fsyncs meanwhile).
    pub(crate) fn wait_synced(&self, seq: u64) -> Result<()> {
        self.commit.wait_durable(seq)
    }

    /// Make every record written so far durable.
    pub(crate) fn sync_all_written(&self) -> Result<()> {
        self.commit.sync_all_written()
    }

    /// An error if a failed fsync stopped the log.
    pub(crate) fn check(&self) -> Result<()> {
        self.commit.check()
    }

    /// Stop acknowledging writes: their durability is unknown.
    pub(crate) fn poison(&self, why: String) {
        self.commit.poison(why)
    }

    /// Retire a full commit log. If that fails, whether its records are
    /// durable is unknown: the log stops acknowledging writes.
    pub(crate) fn retire(&self, r: Retired) -> Result<()> {
        r.finish().inspect_err(|e| {
            self.commit
                .poison(format!("retiring a full commit log failed: {e}"))
        })
    }

    /// At close: spares removed, every record durable, and the commit log retired (the
    /// stripes' segments are durable by themselves, so the next open has no
    /// commit log to read).
    pub(crate) fn close(&self) -> Result<()> {
        if let Some(s) = &self.spares {
            s.remove_all();
        }
        self.commit.sync_all_written()?;
        if let Some(r) = self.commit_log.as_ref().and_then(CommitLog::retire) {
            r.finish()?;
        }
        Ok(())
    }
}
