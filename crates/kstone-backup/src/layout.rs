//! The name of every object in a repository, in one place (the table in
//! `docs/formats.md`, "Backup repository"). Other modules build and parse
//! keys only through these functions.

/// The repository's config (framed, magic `KSTNBKCF`).
pub const CONFIG: &str = "config";
/// An encrypted repository's wrapped data key.
pub const DATA_KEY: &str = "keys/data-key";
/// The outcome of the last `verify`.
pub const LAST_VERIFY: &str = "status/last-verify";

/// Under this: one manifest per complete backup.
pub const MANIFESTS: &str = "backups";
/// Under this: the files each backup stored.
pub const DATA: &str = "data";
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
}
