//! Typed errors of the storage engine.

use std::path::PathBuf;

/// Every failure the engine reports. The CLI turns these into one-line messages.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system I/O error, with the path it concerns.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A checksum or structural check failed: the named file is damaged at `offset`.
    #[error("corruption in {path} at byte offset {offset}: {detail}")]
    Corruption {
        path: PathBuf,
        offset: u64,
        detail: String,
    },
    /// Bytes that do not decode (no file context is known at the decoding site).
    #[error("malformed data: {0}")]
    Malformed(String),
    /// Another process holds the database's `LOCK`.
    #[error("database {path} is locked by process {pid}{program}: it has the database open, so writes go through it (or stop it first); read-only commands (stats, get, query, scan, export, check) and backups work beside it")]
    Locked {
        path: PathBuf,
        pid: String,
        /// The holder's program name, as " (name)", or empty.
        program: String,
    },
    /// A write through a database opened on a snapshot (read-only).
    #[error("database {path} is open read-only on a snapshot at LSN {lsn}: writes are refused")]
    ReadOnly { path: PathBuf, lsn: u64 },
    /// `open` of a directory that is not a KeystoneDB database.
    #[error("{0} is not a KeystoneDB database (no MANIFEST)")]
    NotADatabase(PathBuf),
    /// `create` of a directory that already holds a database or other files.
    #[error("{0} already exists and is not empty")]
    AlreadyExists(PathBuf),
    /// A key, number, item or argument the caller gave is invalid.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The file was written by a newer (or unknown) format version.
    #[error("{path}: unsupported format version {version}")]
    UnsupportedVersion { path: PathBuf, version: u32 },
    /// A previous fsync failed; the database refuses further writes to avoid
    /// acknowledging data whose durability is unknown.
    #[error("database is read-only after a failed write: {0}")]
    Poisoned(String),
    /// A closed database that a crash left with a commit log: its WAL is
    /// whole only after its next open (recovery) replays the log.
    #[error("{0}: a crash left a commit log; open the database once (any kstone command that opens it, e.g. `kstone stats`) so it recovers, then try again")]
    NeedsRecovery(PathBuf),
    /// A broken internal invariant (a bug, not bad input or a failed
    /// device): the operation is refused and nothing it did is committed.
    #[error("internal error (please report it): {0}")]
    Internal(String),
    /// Background flushes are failing and memtables are full: writes wait
    /// for space (the data already written is safe in the WAL).
    #[error("writes are held: background flush failed: {0}")]
    Background(String),
}

/// What kind of failure an error is, for callers that act on the kind
/// rather than the message (the CLI's exit codes: docs/operations.md).
/// Shared by `kstone_backup::Error::kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Any failure not named below.
    Failure,
    /// The thing asked for is not there: no database at a path, no
    /// repository at a location, no such backup.
    NotFound,
    /// Another process holds what the operation needs: the database's
    /// `LOCK`, the repository's lock, the archiving of a database.
    Locked,
    /// Encrypted data that cannot be decrypted with the identities given.
    CannotDecrypt,
    /// Stored data is damaged: a checksum or structural check failed.
    Corruption,
}

impl Error {
    /// This error's kind. Every variant is classified here on purpose:
    /// only a missing database, a held `LOCK` and damaged data are more
    /// than a plain failure (bad input, an I/O error, a refused write, a
    /// database that already exists or needs recovery are failures).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Corruption { .. } | Error::Malformed(_) => ErrorKind::Corruption,
            Error::Locked { .. } => ErrorKind::Locked,
            Error::NotADatabase(_) => ErrorKind::NotFound,
            Error::Io { .. }
            | Error::ReadOnly { .. }
            | Error::AlreadyExists(_)
            | Error::InvalidInput(_)
            | Error::UnsupportedVersion { .. }
            | Error::Poisoned(_)
            | Error::NeedsRecovery(_)
            | Error::Internal(_)
            | Error::Background(_) => ErrorKind::Failure,
        }
    }
}

/// Result alias for the engine.
pub type Result<T> = std::result::Result<T, Error>;

/// Attach a path to an I/O error: `file.sync_all().ctx(&path)?`.
pub(crate) trait IoContext<T> {
    fn ctx(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}
