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
}

/// `None` when archiving is off; else the archived LSN.
pub fn read(db_dir: &Path) -> Result<Option<u64>> {
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
    Ok(Some(m.archived_lsn))
}

/// Record that every write up to `lsn` is archived (turns archiving on).
pub fn write(db_dir: &Path, lsn: u64) -> Result<()> {
    let d = db_dir.join(DIR);
    std::fs::create_dir_all(&d).ctx(&d)?;
    let body = serde_json::to_vec(&Mark { archived_lsn: lsn }).unwrap_or_default();
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
