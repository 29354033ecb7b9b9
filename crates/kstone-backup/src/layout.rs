//! The name of every object in a repository, in one place (the table in
//! `docs/formats.md`, "Backup repository"). Other modules build and parse
//! keys only through these functions.

/// The repository's config (framed, magic `KSTNBKCF`).
pub const CONFIG: &str = "config";
/// An encrypted repository's wrapped data key.
pub const DATA_KEY: &str = "keys/data-key";
/// The outcome of the last `verify`.
pub const LAST_VERIFY: &str = "status/last-verify";
/// Format 2: packs `verify` found damaged (and has not found sound since).
pub const DAMAGED_PACKS: &str = "status/damaged-packs";

/// Under this: one manifest per complete backup.
pub const MANIFESTS: &str = "backups";
/// Under this: the files each backup stored.
pub const DATA: &str = "data";
/// Under this (format 2): pack objects, each holding many chunks.
pub const PACKS: &str = "packs";
/// Under this (format 2): index objects, saying which pack holds each chunk.
pub const INDEXES: &str = "index";
/// Format 2: the secret chunk ids are keyed with (sealed: user data).
pub const CHUNK_KEY: &str = "keys/chunk-key";
/// Under this (format 2): the chunk key of a backup made without the
/// repository's identity (sealed).
pub const BACKUP_CHUNK_KEYS: &str = "keys/chunks";
/// Under this: a marker per running backup.
pub const IN_PROGRESS: &str = "inprogress";
/// Under this: one object per lock holder.
pub const LOCKS: &str = "locks";
/// Under this: archived WAL and lineage, by database and history.
pub const ARCHIVE: &str = "wal";
/// Under this: each database's archiver heartbeat.
pub const HEARTBEATS: &str = "status/archiver";

/// `backups/<id>.manifest`
pub fn manifest(id: &str) -> String {
    format!("{MANIFESTS}/{id}.manifest")
}

/// The backup id of a manifest's key.
pub fn manifest_id(key: &str) -> Option<&str> {
    key.strip_prefix(MANIFESTS)?
        .strip_prefix('/')?
        .strip_suffix(".manifest")
}

/// `backups/<id>.chunks` (format 2): the chunks of each file of backup `id`.
pub fn chunk_map(id: &str) -> String {
    format!("{MANIFESTS}/{id}.chunks")
}

/// The backup id of a chunk map's key.
pub fn chunk_map_id(key: &str) -> Option<&str> {
    key.strip_prefix(MANIFESTS)?
        .strip_prefix('/')?
        .strip_suffix(".chunks")
}

/// `packs/<name>`
pub fn pack(name: &str) -> String {
    format!("{PACKS}/{name}")
}

/// `index/<name>`
pub fn index(name: &str) -> String {
    format!("{INDEXES}/{name}")
}

/// Whether `key` is an index object (`index/<name>`).
pub fn is_index(key: &str) -> bool {
    key.strip_prefix(INDEXES)
        .and_then(|k| k.strip_prefix('/'))
        .is_some_and(|n| !n.is_empty() && !n.contains('/'))
}

/// `keys/chunks/<id>`: the chunk key of backup `id`, made without the
/// repository's identity.
pub fn backup_chunk_key(id: &str) -> String {
    format!("{BACKUP_CHUNK_KEYS}/{id}")
}

/// `data/<id>`: every object backup `id` stored.
pub fn data_of(id: &str) -> String {
    format!("{DATA}/{id}")
}

/// `data/<id>/<file>`: one file of backup `id`.
pub fn data_file(id: &str, file: &str) -> String {
    format!("{DATA}/{id}/{file}")
}

/// `inprogress/<id>`
pub fn in_progress(id: &str) -> String {
    format!("{IN_PROGRESS}/{id}")
}

/// The backup id of an in-progress marker's key.
pub fn in_progress_id(key: &str) -> Option<&str> {
    key.strip_prefix(IN_PROGRESS)?.strip_prefix('/')
}

/// `locks/<pid>-<random>`
pub fn lock(pid: u32, random: &str) -> String {
    format!("{LOCKS}/{pid}-{random}")
}

/// `wal/<db_id>`: everything archived of one database.
pub fn archive_of_db(db_id: &str) -> String {
    format!("{ARCHIVE}/{db_id}")
}

/// `wal/<db_id>/<history>`: one history's archive objects and lineage.
pub fn archive_of(db_id: &str, history: &str) -> String {
    format!("{ARCHIVE}/{db_id}/{history}")
}

/// `wal/<db_id>/<history>/lineage`
pub fn lineage(db_id: &str, history: &str) -> String {
    format!("{}/lineage", archive_of(db_id, history))
}

/// `status/archiver/<db_id>`
pub fn heartbeat(db_id: &str) -> String {
    format!("{HEARTBEATS}/{db_id}")
}

/// The database id of a heartbeat's key.
pub fn heartbeat_db(key: &str) -> Option<&str> {
    key.strip_prefix(HEARTBEATS)?.strip_prefix('/')
}

/// What an object holds, which decides how it is stored: the one rule
/// behind "an encrypted repository never receives a plaintext byte of user
/// data" (`docs/invariants.md`, "Confidentiality").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Repository metadata, never encrypted: the config, the wrapped data
    /// key, manifests, chunk maps and indexes (names, sizes and keyed chunk
    /// ids, no content), in-progress markers, locks, lineage, heartbeats and
    /// the last verify's outcome. They must be readable without an identity
    /// (listing, locking, `verify` of stored bytes, repairing a config).
    Metadata,
    /// User data, sealed (age-encrypted) in an encrypted repository: a
    /// backup's file bytes and archived WAL.
    Data,
}

impl Kind {
    /// Whether objects of this kind are encrypted in an encrypted repository.
    pub fn sealed(self) -> bool {
        self == Kind::Data
    }
}

/// The kind of the object at `key`. Metadata is the short list above, each
/// recognized by the key its own function here builds; every other key is
/// [`Kind::Data`], so that an object nobody classified is encrypted (and
/// fails loudly without an identity) rather than leaked in plaintext.
pub fn kind(key: &str) -> Kind {
    let meta = key == CONFIG
        || key == DATA_KEY
        || key == LAST_VERIFY
        || key == DAMAGED_PACKS
        || manifest_id(key).is_some()
        || chunk_map_id(key).is_some()
        || is_index(key)
        || in_progress_id(key).is_some()
        || lock_name(key).is_some()
        || heartbeat_db(key).is_some()
        || is_lineage(key);
    if meta {
        Kind::Metadata
    } else {
        Kind::Data
    }
}

/// The `<pid>-<random>` of a lock's key.
fn lock_name(key: &str) -> Option<&str> {
    key.strip_prefix(LOCKS)?
        .strip_prefix('/')
        .filter(|n| !n.is_empty() && !n.contains('/'))
}

/// Whether `key` is `wal/<db_id>/<history>/lineage` (without allocating:
/// every object read and write asks).
fn is_lineage(key: &str) -> bool {
    let mut p = key.split('/');
    matches!(
        (p.next(), p.next(), p.next(), p.next(), p.next()),
        (Some(ARCHIVE), Some(db), Some(h), Some("lineage"), None) if !db.is_empty() && !h.is_empty()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_back() {
        assert_eq!(
            manifest_id(&manifest("20261127T1Z-ab")),
            Some("20261127T1Z-ab")
        );
        assert_eq!(in_progress_id(&in_progress("x")), Some("x"));
        assert_eq!(heartbeat_db(&heartbeat("d")), Some("d"));
        assert_eq!(manifest_id("backups/x.json"), None);
        assert_eq!(lineage("d", "h"), "wal/d/h/lineage");
        assert!(data_file("i", "sst/a.sst").starts_with(&data_of("i")));
    }

    #[test]
    fn every_metadata_key_is_metadata_and_everything_else_data() {
        for k in [
            CONFIG.to_string(),
            DATA_KEY.to_string(),
            LAST_VERIFY.to_string(),
            DAMAGED_PACKS.to_string(),
            manifest("20261127T1Z-ab"),
            chunk_map("20261127T1Z-ab"),
            index("20261127T1Z-ab"),
            in_progress("x"),
            lock(42, "abcd"),
            heartbeat("d"),
            lineage("d", "h"),
        ] {
            assert_eq!(kind(&k), Kind::Metadata, "{k}");
            assert!(!kind(&k).sealed(), "{k}");
        }
        for k in [
            data_file("i", "sst/a.sst"),
            data_file("i", "wal/00000001.log"),
            pack("0123abcd"),
            CHUNK_KEY.to_string(),
            backup_chunk_key("20261127T1Z-ab"),
            "index/a/b".to_string(),
            format!("{}/0001-0002-0003-0004.walarc", archive_of("d", "h")),
            // Unclassified keys are sealed: fail closed.
            "backups/x.json".to_string(),
            "something/new".to_string(),
            format!("{}/lineage/x", archive_of("d", "h")),
            "locks/a/b".to_string(),
        ] {
            assert_eq!(kind(&k), Kind::Data, "{k}");
            assert!(kind(&k).sealed(), "{k}");
        }
    }
}
