//! Typed errors of the backup library.

/// Everything a backup, verify or restore can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] kstone_core::Error),
    #[error("storage error at {location}: {}", brief(source))]
    Store {
        location: String,
        #[source]
        source: object_store::Error,
    },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is not a KeystoneDB backup repository (no config); create one with `kstone backup init --repo {0}`")]
    NotARepository(String),
    /// The repository a long-running command was using is no longer there.
    #[error("the repository at {location} is gone: {why}; nothing was written (writes wait in the database's WAL)")]
    RepositoryGone { location: String, why: String },
    /// A location that holds objects but no `config`: never re-initialized
    /// implicitly (it may be an encrypted repository whose config expired).
    #[error("{location} holds {objects} object(s) but no repository config{}: nothing was written. \
             Restore its `config` object from a copy, or rebuild it from the backup manifests with \
             `kstone backup init --repo {location} --repair`; to start a new repository use an empty location",
             if *encrypted { " (its key object says it is encrypted)" } else { "" })]
    ConfigMissing {
        location: String,
        objects: usize,
        encrypted: bool,
    },
    #[error("{0} is already a backup repository")]
    AlreadyARepository(String),
    #[error("no backup {0} in the repository")]
    NoSuchBackup(String),
    /// A restore point name no archive of the history holds (a typo, or a
    /// name never set): not a point that damage made unreachable.
    #[error("{0}")]
    NoSuchRestorePoint(String),
    /// A file named on the command line (an export archive) is not there.
    #[error("{0}: no such file")]
    NoSuchFile(std::path::PathBuf),
    /// Nothing changed since the backup an incremental or differential
    /// would build on (see `BackupOptions::skip_unchanged`).
    #[error("nothing changed since backup {since} (LSN {lsn}): no {kind} backup written (--allow-empty writes one anyway)")]
    Unchanged {
        kind: String,
        since: String,
        lsn: u64,
    },
    /// The repository holds no backup at all.
    #[error(
        "the repository has no backups yet (take one with `kstone backup create DB --repo REPO`)"
    )]
    NoBackups,
    /// Another process holds the repository's lock, or has the database
    /// open that the command would replace.
    #[error("{0}")]
    Busy(String),
    #[error("corrupt repository object {object}: {detail}")]
    Corrupt { object: String, detail: String },
    /// A point-in-time restore asked for a point the repository cannot
    /// restore exactly; the text names the latest reachable point.
    #[error("{0}")]
    Unreachable(String),
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// An operation that would destroy more than a careful operator means
    /// to (e.g. a prune that keeps no backup), refused before it starts.
    #[error("refusing: {0}")]
    Guard(String),
    #[error("refusing to restore: {0}")]
    Refused(String),
    /// Another process archives this database to this repository.
    #[error("another archiver (the agent, or another `kstone wal-archive`) is archiving {db} to {repo}; only one may run per database and repository")]
    ArchiverBusy { db: String, repo: String },
    /// The database no longer holds WAL this repository's archive lacks.
    #[error("the WAL archive of {db} in {repo} would have a gap: the writes of LSNs {from}..={to} are no longer in the database's WAL (flushed and retired before this repository archived them, or its newest archive objects were deleted), so no point after LSN {} could be restored from this repository's backups. Nothing was written. Take a backup (`kstone backup create {db} --repo {repo}`); archiving then continues from it", from - 1)]
    ArchiveGap {
        db: String,
        repo: String,
        from: u64,
        to: u64,
    },
    /// An encrypted repository's data cannot be decrypted (no identity
    /// given, or none of them is a recipient).
    #[error("{0}")]
    CannotDecrypt(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// This error's kind; an engine error keeps its own. Every variant is
    /// classified here on purpose: a missing repository, backup, restore
    /// point name or archive file is `NotFound`; a held repository lock or a running archiver `Locked`;
    /// a damaged object `Corruption`; the rest (an unreachable point in
    /// time, a refused or invalid request, storage and I/O errors, a
    /// location that holds objects but no config) are failures.
    pub fn kind(&self) -> kstone_core::error::ErrorKind {
        use kstone_core::error::ErrorKind;
        match self {
            Error::Core(e) => e.kind(),
            Error::NotARepository(_)
            | Error::RepositoryGone { .. }
            | Error::NoSuchBackup(_)
            | Error::NoSuchRestorePoint(_)
            | Error::NoSuchFile(_)
            | Error::NoBackups => ErrorKind::NotFound,
            Error::Busy(_) | Error::ArchiverBusy { .. } => ErrorKind::Locked,
            Error::CannotDecrypt(_) => ErrorKind::CannotDecrypt,
            Error::Corrupt { .. } => ErrorKind::Corruption,
            Error::Store { .. }
            | Error::Io { .. }
            | Error::ConfigMissing { .. }
            | Error::AlreadyARepository(_)
            | Error::Unchanged { .. }
            | Error::Unreachable(_)
            | Error::Invalid(_)
            | Error::Guard(_)
            | Error::Refused(_)
            | Error::ArchiveGap { .. } => ErrorKind::Failure,
        }
    }
}

/// One line from a storage error: S3 errors carry the server's XML body,
/// of which only `<Code>` and `<Message>` help a reader.
fn brief(e: &object_store::Error) -> String {
    let s = e.to_string();
    let tag = |t: &str| {
        let open = format!("<{t}>");
        let start = s.find(&open)? + open.len();
        let end = s[start..].find(&format!("</{t}>"))? + start;
        Some(s[start..end].to_string())
    };
    let head = s
        .split("<?xml")
        .next()
        .unwrap_or(&s)
        .trim_end_matches([' ', ':']);
    let mut out = head.split_whitespace().collect::<Vec<_>>().join(" ");
    // `object_store` wraps some errors in one of the same kind
    // ("Generic S3 error: Generic S3 error: ..."): say it once.
    while let Some(first) = out.split_inclusive(": ").next().map(str::to_string) {
        match out.strip_prefix(&first) {
            Some(rest) if first.len() < out.len() && rest.starts_with(&first) => {
                out = rest.to_string()
            }
            _ => break,
        }
    }
    if let Some(code) = tag("Code") {
        out.push_str(&format!(" ({code}"));
        if let Some(m) = tag("Message") {
            out.push_str(&format!(": {m}"));
        }
        out.push(')');
    }
    out
}

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

#[cfg(test)]
mod tests {
    use super::brief;

    fn generic(source: Box<dyn std::error::Error + Send + Sync>) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source,
        }
    }

    #[test]
    fn brief_says_a_repeated_prefix_once_and_keeps_the_s3_code() {
        let twice = generic(Box::new(generic("connection reset".into())));
        assert_eq!(
            twice.to_string(),
            "Generic S3 error: Generic S3 error: connection reset"
        );
        assert_eq!(brief(&twice), "Generic S3 error: connection reset");
        let once = generic("a: b: c".into());
        assert_eq!(brief(&once), "Generic S3 error: a: b: c");
        let xml = generic(
            "Client error: <?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>The bucket does not exist</Message></Error>"
                .into(),
        );
        assert_eq!(
            brief(&xml),
            "Generic S3 error: Client error (NoSuchBucket: The bucket does not exist)"
        );
    }
}
