//! Repository metadata objects: the repository `config` and one manifest per
//! backup (`backups/<id>.manifest`). Both use kstone-core's checksummed
//! framing with a JSON body; layouts in `docs/backup.md`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::objects::Codec;

pub const CONFIG_OBJECT: &str = crate::layout::CONFIG;
pub const CONFIG_MAGIC: &[u8; 8] = b"KSTNBKCF";
pub const MANIFEST_MAGIC: &[u8; 8] = b"KSTNBKMF";
/// Version of the framing of JSON metadata objects, and the repository
/// format that stores whole files (format 1).
pub const FORMAT_VERSION: u32 = 1;
/// The repository format that stores chunks in packs (`docs/formats.md`).
pub const REPO_FORMAT_V2: u32 = 2;
/// The newest repository format this build reads and writes.
pub const NEWEST_FORMAT: u32 = REPO_FORMAT_V2;

/// The repository's config object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoConfig {
    pub format_version: u32,
    pub repository_id: String,
    pub created_at_us: u64,
    /// zstd level for data objects; `None` = no compression.
    pub compression_level: Option<i32>,
    /// Present in an encrypted repository (see `crypto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<crate::crypto::EncryptionConfig>,
}

/// Kind of backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupType {
    /// Stores every file of its snapshot.
    Full,
    /// Stores only files its parent (the previous backup) did not have.
    Incremental,
    /// Stores only files the last full backup did not have.
    Differential,
}

impl std::fmt::Display for BackupType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackupType::Full => "full",
            BackupType::Incremental => "incremental",
            BackupType::Differential => "differential",
        })
    }
}

/// One file of a backed-up snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path inside the database directory, e.g. `sst/003-000000000042.sst`.
    pub name: String,
    pub size: u64,
    pub sha256: String,
    /// The backup that physically holds the bytes.
    pub stored_in: String,
    /// Object key of the bytes.
    pub object: String,
    pub stored_size: u64,
    pub codec: Codec,
    /// SHA-256 of the stored bytes (after compression and encryption), so
    /// that an encrypted backup can be checked without the identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_sha256: Option<String>,
}

/// Everything needed to restore one backup: one read, no chain to apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupManifest {
    pub format_version: u32,
    pub id: String,
    #[serde(rename = "type")]
    pub kind: BackupType,
    /// The previous backup of this database (for incremental backups).
    pub parent: Option<String>,
    /// The full backup this one builds on (itself for a full backup).
    pub base_full: String,
    pub db_id: String,
    /// The database history the snapshot belongs to (see kstone-core's MANIFEST).
    #[serde(default)]
    pub history: String,
    pub db_path: String,
    pub host: String,
    pub snapshot_lsn: u64,
    pub snapshot_commit_us: u64,
    pub started_at_us: u64,
    pub completed_at_us: u64,
    pub item_count: u64,
    /// Bytes this backup uploaded (after compression).
    pub bytes_stored: u64,
    /// Logical size of the whole snapshot.
    pub bytes_total: u64,
    /// Format 2: stored bytes of packs an interrupted backup had uploaded
    /// that this one reused instead of uploading again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resumed_bytes: u64,
    pub files: Vec<FileEntry>,
    /// The database MANIFEST describing exactly these files.
    pub db_manifest: kstone_core::Manifest,
    pub kstone_version: String,
    /// A copy of the repository's config (id, compression, encryption), so
    /// that losing the one `config` object neither hides that the repository
    /// is encrypted nor loses its id: `backup init --repair` rewrites it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<RepoConfig>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Frame a metadata object.
pub fn encode<T: Serialize>(magic: &[u8; 8], v: &T) -> Vec<u8> {
    let body = serde_json::to_vec(v).unwrap_or_default();
    kstone_core::framed::encode(magic, FORMAT_VERSION, &body)
}

/// Check and decode a metadata object.
pub fn decode<T: for<'de> Deserialize<'de>>(
    magic: &[u8; 8],
    bytes: &[u8],
    object: &str,
) -> Result<T> {
    let corrupt = |d: String| Error::Corrupt {
        object: object.to_string(),
        detail: d,
    };
    let (version, body) = kstone_core::framed::decode(bytes, magic, std::path::Path::new(object))
        .map_err(|e| corrupt(e.to_string()))?;
    if version != FORMAT_VERSION {
        return Err(corrupt(format!("unsupported format version {version}")));
    }
    serde_json::from_slice(body).map_err(|e| corrupt(format!("undecodable: {e}")))
}

pub fn manifest_object(id: &str) -> String {
    crate::layout::manifest(id)
}

/// Backup ids sort by start time (µs): `20261127T194512.123456Z-1a2b`.
pub fn new_backup_id(now_us: u64) -> String {
    let secs = (now_us / 1_000_000) as i64;
    let (y, mo, d, h, mi, s) = civil(secs);
    let mut r = [0u8; 2];
    let _ = getrandom::fill(&mut r);
    format!(
        "{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}.{:06}Z-{:02x}{:02x}",
        now_us % 1_000_000,
        r[0],
        r[1]
    )
}

/// UTC calendar fields of a Unix time (Howard Hinnant's days-from-civil
/// inverse; a date crate for one conversion is not worth its weight).
pub fn civil(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = if m <= 2 { y + 1 } else { y };
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

/// RFC 3339 UTC text of a µs timestamp, to the microsecond.
pub fn rfc3339_us(us: u64) -> String {
    let base = rfc3339(us);
    format!("{}.{:06}Z", base.trim_end_matches('Z'), us % 1_000_000)
}

/// RFC 3339 UTC text of a µs timestamp.
pub fn rfc3339(us: u64) -> String {
    let (y, mo, d, h, mi, s) = civil((us / 1_000_000) as i64);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(civil(1_795_806_546), (2026, 11, 27, 19, 9, 6));
        assert_eq!(rfc3339(1_795_806_546_000_000), "2026-11-27T19:09:06Z");
        assert!(new_backup_id(1_795_806_546_000_123).starts_with("20261127T190906.000123Z-"));
        assert!(new_backup_id(1_795_806_546_000_123) < new_backup_id(1_795_806_546_000_124));
    }

    #[test]
    fn framing_detects_damage() {
        let cfg = RepoConfig {
            format_version: 1,
            repository_id: "r".into(),
            created_at_us: 1,
            compression_level: Some(3),
            encryption: None,
        };
        let b = encode(CONFIG_MAGIC, &cfg);
        assert_eq!(
            decode::<RepoConfig>(CONFIG_MAGIC, &b, "config").unwrap(),
            cfg
        );
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 4;
            assert!(decode::<RepoConfig>(CONFIG_MAGIC, &c, "config").is_err());
        }
        assert!(decode::<RepoConfig>(MANIFEST_MAGIC, &b, "config").is_err());
    }
}
