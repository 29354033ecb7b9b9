//! Whether WAL archiving is on for a database, and how far it has got:
//! `archive/ARCHIVED` holds the LSN up to which every write is safely in an
//! archive. While the file exists, WAL segments holding later writes are
//! kept on disk even after a flush has made them obsolete.
//!
//! File: the shared framing (`framed.rs`) with magic `KSTNARCM`, body JSON
//! `{"archived_lsn": N}`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

pub const DIR: &str = "archive";
pub const FILE: &str = "archive/ARCHIVED";
const MAGIC: &[u8; 8] = b"KSTNARCM";
const VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Mark {
    archived_lsn: u64,
    /// False between turning archiving on and the archiver's first snapshot:
    /// everything is kept, but `archived_lsn` is not yet a starting point.
    #[serde(default = "yes")]
    started: bool,
    /// Set while not started: every write after this LSN is still on disk
    /// (the largest flushed LSN when archiving was turned on).
    #[serde(default)]
    safe_start: u64,
}

fn yes() -> bool {
    true
}

/// `None` when archiving is off; else the archived LSN.
pub fn read(db_dir: &Path) -> Result<Option<u64>> {
    Ok(read_mark(db_dir)?.map(|m| m.archived_lsn))
}

/// The archived LSN once an archiver has started (its first snapshot).
pub fn started_at(db_dir: &Path) -> Result<Option<u64>> {
    Ok(read_mark(db_dir)?
        .filter(|m| m.started)
        .map(|m| m.archived_lsn))
}

/// Turn archiving on without a starting point yet: every WAL segment is
/// kept from now on. Returns the LSN after which every write is known to
/// be on disk, which the first archive object may start from.
pub fn enable(db_dir: &Path) -> Result<u64> {
    store(
        db_dir,
        Mark {
            archived_lsn: 0,
            started: false,
            safe_start: 0,
        },
    )?;
    // Segments retired before the mark existed only held writes at or below
    // their stripe's flushed LSN, which the manifest (written before any
    // retire) bounds.
    let m = crate::manifest::Manifest::load(db_dir)?;
    let safe = m.stripes.values().map(|s| s.flushed_lsn).max().unwrap_or(0);
    store(
        db_dir,
        Mark {
            archived_lsn: 0,
            started: false,
            safe_start: safe,
        },
    )?;
    Ok(safe)
}

/// While not started: the LSN the first archive object may start after.
pub fn safe_start(db_dir: &Path) -> Result<Option<u64>> {
    Ok(read_mark(db_dir)?
        .filter(|m| !m.started)
        .map(|m| m.safe_start))
}

fn read_mark(db_dir: &Path) -> Result<Option<Mark>> {
    let p = db_dir.join(FILE);
    let b = match std::fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).ctx(&p),
    };
    let (version, body) = crate::framed::decode(&b, MAGIC, &p)?;
    if version != VERSION {
        return Err(Error::UnsupportedVersion { path: p, version });
    }
    let m: Mark = serde_json::from_slice(body).map_err(|e| Error::Corruption {
        path: p.clone(),
        offset: crate::framed::HEADER_LEN as u64,
        detail: e.to_string(),
    })?;
    Ok(Some(m))
}

/// Record that every write up to `lsn` is archived (turns archiving on).
pub fn write(db_dir: &Path, lsn: u64) -> Result<()> {
    store(
        db_dir,
        Mark {
            archived_lsn: lsn,
            started: true,
            safe_start: 0,
        },
    )
}

fn store(db_dir: &Path, m: Mark) -> Result<()> {
    let d = db_dir.join(DIR);
    std::fs::create_dir_all(&d).ctx(&d)?;
    let body = serde_json::to_vec(&m).unwrap_or_default();
    crate::fsio::write_atomic(
        &db_dir.join(FILE),
        &crate::framed::encode(MAGIC, VERSION, &body),
    )
}

/// Turn archiving off: obsolete segments are deleted again at the next flush.
pub fn disable(db_dir: &Path) -> Result<()> {
    let p = db_dir.join(FILE);
    match std::fs::remove_file(&p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).ctx(&p),
        _ => Ok(()),
    }
}
