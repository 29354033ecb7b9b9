//! Cross-process pins: a process that wants a snapshot of a database another
//! process has open (e.g. `kstone backup create` beside a running
//! application) writes `pins/<name>.req`; the owner's pin server pins a
//! snapshot and answers with `pins/<name>.snap`. The pin is held until the
//! request file is removed or its process dies.
//!
//! Request: JSON `{"pid": N}`. Answer: the JSON of [`Snapshot`]. Both are
//! written atomically (temp + rename).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::registry::Pins;
use super::{Pin, Snapshot};
use crate::error::{Error, IoContext, Result};
use crate::fsio::write_atomic;
use crate::options::Options;
use crate::Database;

pub const DIR: &str = "pins";
/// How often the owner looks for requests.
pub const POLL: Duration = Duration::from_millis(50);

#[derive(Serialize, Deserialize)]
struct Request {
    pid: u32,
    /// The requester's start time (see [`super::hold`]; 0 from older versions).
    #[serde(default)]
    start: u64,
    /// Set for a restore-point request instead of a pin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    restore_point: Option<String>,
}

/// The owner's answer to a restore-point request (`NAME.done`).
#[derive(Serialize, Deserialize)]
struct Done {
    lsn: u64,
    ts: u64,
    #[serde(default)]
    error: Option<String>,
}

fn alive(r: &Request) -> bool {
    super::hold::process_start(r.pid).is_some_and(|s| r.start == 0 || s == r.start)
}

/// Live requests in a database's `pins/` directory (request name →
/// request). The files of requesters that are gone (killed, say) are
/// removed, with their answers, and so are answers whose request went.
fn requests(db_dir: &Path) -> HashMap<String, Request> {
    let dir = db_dir.join(DIR);
    let mut out = HashMap::new();
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return out;
    };
    let mut answers = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".snap") {
            answers.push(stem.to_string());
            continue;
        }
        let Some(stem) = name.strip_suffix(".req") else {
            continue;
        };
        let Ok(b) = std::fs::read(e.path()) else {
            continue;
        };
        match serde_json::from_slice::<Request>(&b) {
            Ok(r) if alive(&r) => {
                out.insert(stem.to_string(), r);
            }
            // A torn request is never written (temp + rename): junk or a
            // dead requester's file.
            _ => {
                for ext in ["req", "snap", "done"] {
                    let _ = std::fs::remove_file(dir.join(format!("{stem}.{ext}")));
                }
            }
        }
    }
    for stem in answers {
        if !out.contains_key(&stem) && !dir.join(format!("{stem}.req")).exists() {
            let _ = std::fs::remove_file(dir.join(format!("{stem}.snap")));
        }
    }
    out
}

/// Pin requests a previous owner answered whose requester still runs: it
/// may still be reading that snapshot's files, so they are held like an
/// on-disk hold (named as the request) until the request goes.
pub(crate) fn answered(db_dir: &Path, holds: &mut super::hold::LiveHolds) {
    let dir = db_dir.join(DIR);
    for (name, r) in requests(db_dir) {
        if r.restore_point.is_some() {
            continue;
        }
        let snap = dir.join(format!("{name}.snap"));
        match std::fs::read(&snap) {
            Ok(b) => match serde_json::from_slice::<Snapshot>(&b) {
                Ok(s) => {
                    holds.files.insert(
                        name,
                        s.files.into_iter().map(|f| PathBuf::from(f.name)).collect(),
                    );
                }
                Err(_) => holds.unreadable = true,
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {} // not answered yet
            Err(_) => holds.unreadable = true,
        }
    }
}

/// The owner's side of the protocol: answers other processes' requests
/// (snapshots, restore points) and releases the pins of requesters that
/// are gone. The database calls [`Server::round`] on its housekeeping tick.
pub(crate) struct Server {
    /// `<db>/` + [`DIR`].
    dir: PathBuf,
    held: HashMap<String, Pin>,
    answered: std::collections::HashSet<String>,
}

impl Server {
    pub(crate) fn new(db_dir: &Path) -> Server {
        Server {
            dir: db_dir.join(DIR),
            held: HashMap::new(),
            answered: Default::default(),
        }
    }

    /// Answer new requests with `pin` and `restore_point`; drop the pins of
    /// requests that went. `pins` tells which requests a previous owner
    /// answered (their files are held since open).
    pub(crate) fn round(
        &mut self,
        pins: &Pins,
        pin: impl Fn() -> Result<Pin>,
        restore_point: impl Fn(&str) -> Result<(u64, u64)>,
    ) {
        let dir = &self.dir;
        let all = requests(pins.dir());
        self.answered.retain(|n| all.contains_key(n));
        for (name, r) in &all {
            let Some(rp) = &r.restore_point else { continue };
            if !self.answered.insert(name.clone()) {
                continue;
            }
            let done = match restore_point(rp) {
                Ok((lsn, ts)) => Done {
                    lsn,
                    ts,
                    error: None,
                },
                Err(e) => Done {
                    lsn: 0,
                    ts: 0,
                    error: Some(e.to_string()),
                },
            };
            let body = serde_json::to_vec(&done).unwrap_or_default();
            let _ = write_atomic(&dir.join(format!("{name}.done")), &body);
        }
        let live: HashMap<String, u32> = all
            .into_iter()
            .filter(|(_, r)| r.restore_point.is_none())
            .map(|(n, r)| (n, r.pid))
            .collect();
        self.held.retain(|name, _| {
            let keep = live.contains_key(name);
            if !keep {
                let _ = std::fs::remove_file(dir.join(format!("{name}.snap")));
            }
            keep
        });
        for name in live.keys() {
            if self.held.contains_key(name) || pins.holds(name) {
                // Ours, or answered by a previous owner (held since open).
                continue;
            }
            if let Ok(pin) = pin() {
                let body = serde_json::to_vec(pin.snapshot()).unwrap_or_default();
                if write_atomic(&dir.join(format!("{name}.snap")), &body).is_ok() {
                    self.held.insert(name.clone(), pin);
                }
            }
        }
    }

    /// At close: requesters may still be reading, so the answers stay, and
    /// the files they name stay held through this close (its last
    /// compaction) and by the next owner, until each request goes.
    pub(crate) fn finish(self, pins: &Pins) {
        for (name, pin) in &self.held {
            let files = pin.snapshot().files.iter().map(|f| PathBuf::from(&f.name));
            pins.add_hold(name.clone(), files.collect());
        }
    }
}

/// A snapshot pinned by another process on our behalf.
pub struct RemotePin {
    req: PathBuf,
    db_dir: PathBuf,
    /// The pid holding `LOCK` when the answer came, or when it was asked
    /// for (if the owner closed the database meanwhile).
    owner: Option<u32>,
    snapshot: Snapshot,
}

impl RemotePin {
    /// Ask the process that has `db_dir` open for a snapshot.
    pub fn request(db_dir: &Path, timeout: Duration) -> Result<RemotePin> {
        RemotePin::try_request(db_dir, timeout)?.ok_or_else(|| {
            Error::InvalidInput(format!(
                "the process that had {} open closed it before answering; run the command again",
                db_dir.display()
            ))
        })
    }

    /// [`RemotePin::request`], or `None` if nobody has the database open
    /// any more (its owner closed it before answering: take `LOCK` instead).
    pub(crate) fn try_request(db_dir: &Path, timeout: Duration) -> Result<Option<RemotePin>> {
        let dir = db_dir.join(DIR);
        std::fs::create_dir_all(&dir).ctx(&dir)?;
        let name = format!("{}-{}", std::process::id(), crate::fsio::random_hex(8)?);
        let req = dir.join(format!("{name}.req"));
        let snap = dir.join(format!("{name}.snap"));
        let body = serde_json::to_vec(&Request {
            pid: std::process::id(),
            start: super::hold::process_start(std::process::id()).unwrap_or(0),
            restore_point: None,
        })
        .unwrap_or_default();
        let asked = crate::lock::holder(db_dir);
        write_atomic(&req, &body)?;
        let start = Instant::now();
        loop {
            match std::fs::read(&snap) {
                Ok(b) => {
                    let snapshot = serde_json::from_slice(&b).map_err(|e| Error::Corruption {
                        path: snap.clone(),
                        offset: 0,
                        detail: format!("undecodable snapshot answer: {e}"),
                    });
                    return match snapshot {
                        Ok(snapshot) => Ok(Some(RemotePin {
                            req,
                            db_dir: db_dir.to_path_buf(),
                            owner: crate::lock::holder(db_dir).or(asked),
                            snapshot,
                        })),
                        Err(e) => {
                            let _ = std::fs::remove_file(&req);
                            Err(e)
                        }
                    };
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    let _ = std::fs::remove_file(&req);
                    return Err(e).ctx(&snap);
                }
            }
            if start.elapsed() > Duration::from_millis(100) && crate::lock::holder(db_dir).is_none()
            {
                let _ = std::fs::remove_file(&req);
                return Ok(None);
            }
            if start.elapsed() > timeout {
                let _ = std::fs::remove_file(&req);
                return Err(Error::InvalidInput(format!(
                    "the process that has {} open did not answer a snapshot request within {:?}",
                    db_dir.display(),
                    timeout
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }
}

impl Drop for RemotePin {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.req);
        // The answer too, in case no owner is left to remove it.
        let _ = std::fs::remove_file(self.req.with_extension("snap"));
    }
}

/// Ask the process that has `db_dir` open to record a restore point.
pub fn request_restore_point(db_dir: &Path, name: &str, timeout: Duration) -> Result<(u64, u64)> {
    let dir = db_dir.join(DIR);
    std::fs::create_dir_all(&dir).ctx(&dir)?;
    let stem = format!("{}-{}", std::process::id(), crate::fsio::random_hex(8)?);
    let req = dir.join(format!("{stem}.req"));
    let done = dir.join(format!("{stem}.done"));
    let body = serde_json::to_vec(&Request {
        pid: std::process::id(),
        start: super::hold::process_start(std::process::id()).unwrap_or(0),
        restore_point: Some(name.to_string()),
    })
    .unwrap_or_default();
    write_atomic(&req, &body)?;
    let start = Instant::now();
    let result = loop {
        if let Ok(b) = std::fs::read(&done) {
            break match serde_json::from_slice::<Done>(&b) {
                Ok(Done { error: Some(e), .. }) => Err(Error::InvalidInput(e)),
                Ok(d) => Ok((d.lsn, d.ts)),
                Err(e) => Err(Error::Corruption {
                    path: done.clone(),
                    offset: 0,
                    detail: e.to_string(),
                }),
            };
        }
        if start.elapsed() > timeout {
            break Err(Error::InvalidInput(format!(
                "the process that has {} open did not answer within {timeout:?}",
                db_dir.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = std::fs::remove_file(&req);
    let _ = std::fs::remove_file(&done);
    result
}

/// How a reader got at a database that another process may have open.
pub(crate) enum Access {
    /// Nobody had it open: this process holds `LOCK`.
    Locked(crate::lock::DbLock),
    /// Its owner pinned a snapshot for us.
    Pinned(Box<RemotePin>),
}

/// How often an owner that closes the database before answering (e.g. a
/// reader that only recovered it) is asked again before giving up.
const OWNER_GONE_TRIES: u32 = 5;

/// Ask a live owner for a pin first (taking `LOCK` would retry 250 ms before
/// saying it is held); when nobody has the database open, take `LOCK`. The
/// one place readers decide between the two.
pub(crate) fn pin_or_lock(dir: &Path) -> Result<Access> {
    let mut gone = 0;
    loop {
        if crate::lock::holder(dir).is_none() || gone >= OWNER_GONE_TRIES {
            match crate::lock::DbLock::acquire(dir) {
                Ok(l) => return Ok(Access::Locked(l)),
                Err(Error::Locked { .. }) if gone < OWNER_GONE_TRIES => {}
                Err(e) => return Err(e),
            }
        }
        match RemotePin::try_request(dir, Duration::from_secs(10))? {
            Some(p) => return Ok(Access::Pinned(Box::new(p))),
            None => gone += 1,
        }
    }
}

/// A snapshot of a database directory, however it was obtained: held on
/// disk (nobody had the database open: `LOCK` was taken only while the
/// snapshot was read) or pinned by the process that has it open.
pub enum HeldSnapshot {
    Closed(super::hold::Hold),
    Remote(RemotePin),
}

impl HeldSnapshot {
    /// Pin a snapshot of the database at `dir`, whether or not another
    /// process has it open. The application is never locked out for longer
    /// than it takes to read the snapshot's metadata and WAL.
    pub fn acquire(dir: &Path, opts: Options) -> Result<HeldSnapshot> {
        if !dir.join(crate::manifest::FILE_NAME).exists() {
            return Err(Error::NotADatabase(dir.to_path_buf()));
        }
        let mut opened = false;
        loop {
            let lock = match pin_or_lock(dir)? {
                Access::Pinned(r) => return Ok(HeldSnapshot::Remote(*r)),
                Access::Locked(l) => l,
            };
            // A crashed `Sync` database's commit log, or damage that `open`
            // repairs, needs one real open first (it holds `LOCK` as long as
            // any open does).
            let needs_open = !crate::wal::commit_log::list(dir)?.is_empty();
            let read = if needs_open {
                None
            } else {
                match super::closed::read(dir, false) {
                    Ok(c) => Some(c),
                    Err(e) if opened => return Err(e),
                    Err(_) => None,
                }
            };
            let Some(closed) = read else {
                if opened {
                    return Err(Error::Corruption {
                        path: dir.join("wal"),
                        offset: 0,
                        detail: "a commit log is still there after a clean close".into(),
                    });
                }
                drop(lock);
                match Database::open(dir, opts.clone()) {
                    Ok(db) => db.close()?,
                    // The application got in first: it pins for us.
                    Err(Error::Locked { .. }) => {}
                    Err(e) => return Err(e),
                }
                opened = true;
                continue;
            };
            let mut snapshot = closed.snapshot;
            // As `open` does: LSNs never go below what an archive holds.
            snapshot.lsn = snapshot.lsn.max(crate::wal::archive_mark::highest(dir)?);
            return Ok(HeldSnapshot::Closed(super::hold::Hold::new(
                dir, snapshot, lock,
            )));
        }
    }

    pub fn snapshot(&self) -> &Snapshot {
        match self {
            HeldSnapshot::Closed(h) => h.snapshot(),
            HeldSnapshot::Remote(r) => r.snapshot(),
        }
    }

    /// The database directory the snapshot's file names are relative to.
    pub fn dir(&self) -> &Path {
        match self {
            HeldSnapshot::Closed(h) => h.dir(),
            HeldSnapshot::Remote(r) => &r.db_dir,
        }
    }

    /// The process that has the database open and pinned the snapshot, if any.
    pub fn owner(&self) -> Option<u32> {
        match self {
            HeldSnapshot::Closed(_) => None,
            HeldSnapshot::Remote(r) => r.owner,
        }
    }
}
