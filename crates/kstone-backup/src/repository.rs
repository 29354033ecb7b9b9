//! A backup repository: its config and the manifests of its backups.

use crate::error::{Error, Result};
use crate::manifest::{
    self, BackupManifest, RepoConfig, CONFIG_MAGIC, CONFIG_OBJECT, FORMAT_VERSION, MANIFEST_MAGIC,
};
use crate::storage::Storage;

/// An open repository.
///
/// ```no_run
/// use kstone_backup::Repository;
/// let (repo, created) = Repository::open_or_init("/var/backups/kstone", Some(3)).unwrap();
/// for b in repo.list().unwrap() {
///     println!("{} {} lsn {}", b.id, b.kind, b.snapshot_lsn);
/// }
/// ```
pub struct Repository {
    pub(crate) storage: Storage,
    pub config: RepoConfig,
}

impl Repository {
    /// Create a repository at an empty location.
    pub fn init(location: &str, compression_level: Option<i32>) -> Result<Repository> {
        Repository::init_on(Storage::open(location, true)?, compression_level)
    }

    /// Create a repository on a given storage.
    pub fn init_on(storage: Storage, compression_level: Option<i32>) -> Result<Repository> {
        if storage.get(CONFIG_OBJECT)?.is_some() {
            return Err(Error::AlreadyARepository(storage.location.clone()));
        }
        if let Some(l) = compression_level {
            if !(1..=19).contains(&l) {
                return Err(Error::Invalid(format!("zstd level {l} is not in 1..=19")));
            }
        }
        let config = RepoConfig {
            format_version: FORMAT_VERSION,
            repository_id: kstone_core::fsio::random_hex(16)?,
            created_at_us: kstone_core::fsio::now_micros(),
            compression_level,
        };
        storage.put(CONFIG_OBJECT, manifest::encode(CONFIG_MAGIC, &config))?;
        Ok(Repository { storage, config })
    }

    /// Open an existing repository.
    pub fn open(location: &str) -> Result<Repository> {
        Repository::open_on(Storage::open(location, false)?)
    }

    /// Open an existing repository on a given storage.
    pub fn open_on(storage: Storage) -> Result<Repository> {
        let bytes = storage
            .get(CONFIG_OBJECT)?
            .ok_or_else(|| Error::NotARepository(storage.location.clone()))?;
        let config = manifest::decode(CONFIG_MAGIC, &bytes, CONFIG_OBJECT)?;
        Ok(Repository { storage, config })
    }

    /// Open, or initialize an empty location (`true` if it was created).
    pub fn open_or_init(
        location: &str,
        compression_level: Option<i32>,
    ) -> Result<(Repository, bool)> {
        match Repository::open(location) {
            Ok(r) => Ok((r, false)),
            Err(Error::NotARepository(_)) => {
                Ok((Repository::init(location, compression_level)?, true))
            }
            Err(e) => Err(e),
        }
    }

    pub fn location(&self) -> &str {
        &self.storage.location
    }

    /// Ids of complete backups, oldest first. A backup is complete once its
    /// manifest exists: an interrupted one never appears here.
    pub fn backup_ids(&self) -> Result<Vec<String>> {
        Ok(self
            .storage
            .list("backups")?
            .into_iter()
            .filter_map(|(k, _)| {
                k.strip_prefix("backups/")
                    .and_then(|n| n.strip_suffix(".manifest"))
                    .map(String::from)
            })
            .collect())
    }

    /// Every complete backup's manifest, oldest first.
    pub fn list(&self) -> Result<Vec<BackupManifest>> {
        let mut v = self
            .backup_ids()?
            .iter()
            .map(|id| self.manifest(id))
            .collect::<Result<Vec<_>>>()?;
        v.sort_by(|a, b| (a.started_at_us, &a.id).cmp(&(b.started_at_us, &b.id)));
        Ok(v)
    }

    /// One backup's manifest; `latest` names the newest backup.
    pub fn manifest(&self, id: &str) -> Result<BackupManifest> {
        let id = self.resolve(id)?;
        let obj = manifest::manifest_object(&id);
        let bytes = self
            .storage
            .get(&obj)?
            .ok_or_else(|| Error::NoSuchBackup(id.clone()))?;
        manifest::decode(MANIFEST_MAGIC, &bytes, &obj)
    }

    /// Turn `latest` into an id.
    pub fn resolve(&self, id: &str) -> Result<String> {
        if id == "latest" {
            return self.backup_ids()?.pop().ok_or_else(|| {
                Error::NoSuchBackup("latest (the repository has no backups)".into())
            });
        }
        if id.is_empty() || id.contains('/') || id.contains("..") {
            return Err(Error::Invalid(format!("{id:?} is not a backup id")));
        }
        Ok(id.to_string())
    }
}
