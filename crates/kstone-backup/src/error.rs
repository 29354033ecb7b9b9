//! Typed errors of the backup library.

/// Everything a backup, verify or restore can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] kstone_core::Error),
    #[error("storage error at {location}: {source}")]
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
    #[error("{0} is already a backup repository")]
    AlreadyARepository(String),
    #[error("no backup {0} in the repository")]
    NoSuchBackup(String),
    #[error("corrupt repository object {object}: {detail}")]
    Corrupt { object: String, detail: String },
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("refusing to restore: {0}")]
    Refused(String),
}

pub type Result<T> = std::result::Result<T, Error>;

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
