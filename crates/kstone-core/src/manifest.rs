//! The `MANIFEST`: which SSTs are live in each stripe, how far each stripe is
//! flushed, and where its WAL starts. Replaced atomically on every change; the
//! rename is the commit point of a flush.
//!
//! File: `magic "KSTNMANI" | version u32 | body_len u32 | crc32c(body) u32 | body`,
//! body = JSON (small, and readable when debugging a damaged database).
//! Version 2 adds the key schema; a version-1 file reads as byte keys
//! ([`KeySchema::bytes`]) and is written back as version 2.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::fsio::write_atomic;
use crate::model::key_schema::KeySchema;

pub const FILE_NAME: &str = "MANIFEST";
pub const MAGIC: &[u8; 8] = b"KSTNMANI";
pub const VERSION: u32 = 2;
/// The oldest version this build reads.
pub const OLDEST_VERSION: u32 = 1;

/// One live SST.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SstMeta {
    pub id: u64,
    pub size: u64,
    pub entries: u64,
    pub min_lsn: u64,
    pub max_lsn: u64,
}

/// A stripe's durable state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StripeMeta {
    /// Every write of this stripe with LSN ≤ this is in `ssts`.
    pub flushed_lsn: u64,
    /// Largest commit timestamp among flushed writes.
    pub max_ts: u64,
    /// WAL segments of this stripe with id ≥ this may hold unflushed writes;
    /// older ones are obsolete.
    pub log_start: u64,
    /// Live SSTs, newest first.
    pub ssts: Vec<SstMeta>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Random id of this database, fixed at creation.
    pub db_id: String,
    /// Random id of this database's history: new at creation and at every
    /// restore, so WAL archives and backup chains of diverging histories
    /// never mix.
    #[serde(default)]
    pub history: String,
    pub created_us: u64,
    /// How keys are stored and what they must be; fixed at creation.
    #[serde(default = "KeySchema::bytes")]
    pub key_schema: KeySchema,
    /// File ids below this have been allocated.
    pub next_file_id: u64,
    /// Stripes that have ever been flushed (others are at their defaults).
    pub stripes: BTreeMap<u16, StripeMeta>,
    /// Where this database came from, if it was restored from a backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// The backup a restored database came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub repository: String,
    pub repository_id: String,
    pub backup_id: String,
    pub snapshot_lsn: u64,
    /// For a point-in-time restore: the LSN the WAL was replayed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered_to_lsn: Option<u64>,
    pub restored_at_us: u64,
    /// The history the backup belonged to: this database's history forked
    /// from it at `recovered_to_lsn` (or `snapshot_lsn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_history: Option<String>,
    /// Commit time of the fork point (µs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork_ts: Option<u64>,
}

/// A fresh random history id (16 hex digits).
pub fn new_history_id() -> String {
    // Without randomness, time still makes a history id unique enough.
    crate::fsio::random_hex(8).unwrap_or_else(|_| format!("{:016x}", crate::fsio::now_micros()))
}

impl Manifest {
    /// The file's name in the database directory.
    pub const FILE_NAME: &'static str = FILE_NAME;

    /// Whether `dir` holds a database's `MANIFEST` (without reading it).
    pub fn present(dir: &Path) -> bool {
        dir.join(FILE_NAME).is_file()
    }

    /// The manifest of a database restored from this one: the same files,
    /// a new history (so its backups and WAL archive never mix with those of
    /// the database it came from), and where it came from.
    pub fn restored(&self, origin: Origin) -> Manifest {
        Manifest {
            history: new_history_id(),
            origin: Some(origin),
            ..self.clone()
        }
    }

    pub fn new(db_id: String, created_us: u64, key_schema: KeySchema) -> Manifest {
        Manifest {
            db_id,
            history: new_history_id(),
            created_us,
            key_schema,
            next_file_id: 1,
            stripes: BTreeMap::new(),
            origin: None,
        }
    }

    pub fn stripe(&self, s: usize) -> StripeMeta {
        self.stripes.get(&(s as u16)).cloned().unwrap_or_default()
    }

    pub fn encode(&self) -> Vec<u8> {
        let body = serde_json::to_vec(self).unwrap_or_default();
        crate::framed::encode(MAGIC, VERSION, &body)
    }

    pub fn decode(b: &[u8], path: &Path) -> Result<Manifest> {
        let (version, body) = crate::framed::decode(b, MAGIC, path)?;
        if !(OLDEST_VERSION..=VERSION).contains(&version) {
            return Err(Error::UnsupportedVersion {
                path: path.to_path_buf(),
                version,
            });
        }
        let mut m: Manifest = serde_json::from_slice(body).map_err(|e| Error::Corruption {
            path: path.to_path_buf(),
            offset: crate::framed::HEADER_LEN as u64,
            detail: format!("undecodable manifest: {e}"),
        })?;
        if version == 1 {
            // Format 1 had byte keys only, whatever the body says.
            m.key_schema = KeySchema::bytes();
        }
        Ok(m)
    }

    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join(FILE_NAME);
        let b = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotADatabase(dir.to_path_buf()))
            }
            Err(e) => return Err(e).ctx(&path),
        };
        Manifest::decode(&b, &path)
    }

    /// Durably replace the manifest in `dir`.
    pub fn store(&self, dir: &Path) -> Result<()> {
        write_atomic(&dir.join(FILE_NAME), &self.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let mut m = Manifest::new(
            "abc".into(),
            5,
            KeySchema::typed(None, crate::model::key_schema::SortKeyRule::Optional),
        );
        m.stripes.insert(
            7,
            StripeMeta {
                flushed_lsn: 10,
                max_ts: 11,
                log_start: 12,
                ssts: vec![SstMeta {
                    id: 3,
                    size: 100,
                    entries: 4,
                    min_lsn: 1,
                    max_lsn: 10,
                }],
            },
        );
        let b = m.encode();
        let p = Path::new("MANIFEST");
        assert_eq!(Manifest::decode(&b, p).unwrap(), m);
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x20;
            assert!(Manifest::decode(&c, p).is_err(), "flip at {i}");
        }
        assert!(Manifest::decode(&b[..b.len() - 1], p).is_err());
        // A version-1 file: byte keys, whatever its body says.
        let v1 = crate::framed::encode(MAGIC, 1, &serde_json::to_vec(&m).unwrap());
        assert_eq!(
            Manifest::decode(&v1, p).unwrap().key_schema,
            KeySchema::bytes()
        );
        let v3 = crate::framed::encode(MAGIC, 3, &serde_json::to_vec(&m).unwrap());
        assert!(Manifest::decode(&v3, p).is_err());
    }
}
