//! A backup repository: its config, its keys and the manifests of its backups.

use std::path::PathBuf;

use crate::crypto::{self, EncryptionConfig, Identities, Keys, WrappedKey, KEY_MAGIC, KEY_OBJECT};
use crate::error::{Error, Result};
use crate::manifest::{
    self, BackupManifest, RepoConfig, CONFIG_MAGIC, CONFIG_OBJECT, FORMAT_VERSION, MANIFEST_MAGIC,
};
use crate::storage::{S3Settings, Storage};

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

/// How to reach and unlock a repository.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// An age identity file; needed to read an encrypted repository's data.
    pub identity: Option<PathBuf>,
    pub s3: S3Settings,
}

impl OpenOptions {
    /// From `KSTONE_IDENTITY_FILE` and the `KSTONE_S3_*` variables.
    pub fn from_env() -> OpenOptions {
        OpenOptions {
            identity: std::env::var_os("KSTONE_IDENTITY_FILE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            s3: S3Settings::from_env(),
        }
    }
}

/// What a new repository looks like.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    /// zstd level for data objects; `None` = no compression.
    pub compression_level: Option<i32>,
    /// age recipients (`age1…`): non-empty makes an encrypted repository.
    pub recipients: Vec<String>,
}

impl Repository {
    /// Create a repository at an empty location.
    pub fn init(location: &str, compression_level: Option<i32>) -> Result<Repository> {
        Repository::init_on(Storage::open(location, true)?, compression_level)
    }

    /// Create a repository on a given storage.
    pub fn init_on(storage: Storage, compression_level: Option<i32>) -> Result<Repository> {
        Repository::init_with(
            storage,
            &InitOptions {
                compression_level,
                recipients: Vec::new(),
            },
        )
    }

    /// Create a repository, encrypted if `opts` names recipients.
    pub fn init_with(mut storage: Storage, opts: &InitOptions) -> Result<Repository> {
        if storage.get(CONFIG_OBJECT)?.is_some() {
            return Err(Error::AlreadyARepository(storage.location.clone()));
        }
        if let Some(l) = opts.compression_level {
            if !(1..=19).contains(&l) {
                return Err(Error::Invalid(format!("zstd level {l} is not in 1..=19")));
            }
        }
        let mut encryption = None;
        if !opts.recipients.is_empty() {
            let (keys, cfg, wrapped) = Keys::create(&opts.recipients)?;
            // The key goes first: a config that announces encryption
            // without a key would leave a repository nobody can use.
            storage.put(KEY_OBJECT, manifest::encode(KEY_MAGIC, &wrapped))?;
            storage.set_keys(keys);
            encryption = Some(cfg);
        }
        let config = RepoConfig {
            format_version: FORMAT_VERSION,
            repository_id: kstone_core::fsio::random_hex(16)?,
            created_at_us: kstone_core::fsio::now_micros(),
            compression_level: opts.compression_level,
            encryption,
        };
        storage.put(CONFIG_OBJECT, manifest::encode(CONFIG_MAGIC, &config))?;
        // Object stores without conditional PUT cannot make "create only if
        // absent" atomic; reading back at least catches a racing init.
        let back: RepoConfig = manifest::decode(
            CONFIG_MAGIC,
            &storage.get(CONFIG_OBJECT)?.unwrap_or_default(),
            CONFIG_OBJECT,
        )?;
        if back.repository_id != config.repository_id {
            return Err(Error::AlreadyARepository(storage.location.clone()));
        }
        Ok(Repository { storage, config })
    }

    /// Open an existing repository (identity and S3 settings from the
    /// environment: [`OpenOptions::from_env`]).
    pub fn open(location: &str) -> Result<Repository> {
        Repository::open_with(location, &OpenOptions::from_env())
    }

    /// Open an existing repository.
    pub fn open_with(location: &str, opts: &OpenOptions) -> Result<Repository> {
        let storage = Storage::open_with(location, false, &opts.s3)?;
        let identities = opts
            .identity
            .as_deref()
            .map(Identities::from_file)
            .transpose()?;
        Repository::open_on_with(storage, identities.as_ref())
    }

    /// Open an existing repository on a given storage.
    pub fn open_on(storage: Storage) -> Result<Repository> {
        Repository::open_on_with(storage, None)
    }

    /// Open an existing repository on a given storage, unlocking its data
    /// with `identities` if it is encrypted.
    pub fn open_on_with(
        mut storage: Storage,
        identities: Option<&Identities>,
    ) -> Result<Repository> {
        let bytes = storage
            .get(CONFIG_OBJECT)?
            .ok_or_else(|| Error::NotARepository(storage.location.clone()))?;
        let config: RepoConfig = manifest::decode(CONFIG_MAGIC, &bytes, CONFIG_OBJECT)?;
        if let Some(enc) = &config.encryption {
            let wrapped = read_wrapped(&storage)?;
            storage.set_keys(Keys::load(enc, &wrapped, identities)?);
        }
        Ok(Repository { storage, config })
    }

    /// Open, or initialize an empty location (`true` if it was created).
    pub fn open_or_init(
        location: &str,
        compression_level: Option<i32>,
    ) -> Result<(Repository, bool)> {
        Repository::open_or_init_with(location, &OpenOptions::from_env(), compression_level)
    }

    /// [`Repository::open_or_init`] with explicit options. A repository
    /// created here is never encrypted: encryption is chosen at `init`.
    pub fn open_or_init_with(
        location: &str,
        opts: &OpenOptions,
        compression_level: Option<i32>,
    ) -> Result<(Repository, bool)> {
        match Repository::open_with(location, opts) {
            Ok(r) => Ok((r, false)),
            Err(Error::NotARepository(_)) => {
                let storage = Storage::open_with(location, true, &opts.s3)?;
                Ok((Repository::init_on(storage, compression_level)?, true))
            }
            Err(e) => Err(e),
        }
    }

    pub fn location(&self) -> &str {
        &self.storage.location
    }

    /// Whether data objects are encrypted.
    pub fn encryption(&self) -> Option<&EncryptionConfig> {
        self.config.encryption.as_ref()
    }

    /// The recipients the data key is wrapped to (empty if not encrypted).
    pub fn recipients(&self) -> Result<Vec<String>> {
        if self.config.encryption.is_none() {
            return Ok(Vec::new());
        }
        Ok(read_wrapped(&self.storage)?.recipients)
    }

    /// Re-wrap the data key to the current recipients plus `add` minus
    /// `remove`; needs an identity that unlocks the repository. Writes one
    /// small object, whatever the repository's size. Returns the new list.
    ///
    /// Removing a recipient stops that identity from unlocking the
    /// repository from now on; it does not re-encrypt data (someone who kept
    /// the unwrapped data key could still read objects they copied).
    pub fn rekey(&self, add: &[String], remove: &[String]) -> Result<Vec<String>> {
        let keys = self.storage.keys().ok_or_else(|| {
            Error::Invalid(format!(
                "{} is not encrypted (create an encrypted repository with `backup init --recipient`)",
                self.location()
            ))
        })?;
        if !keys.can_open() {
            return Err(Error::Invalid(
                "rekey needs --identity FILE (or KSTONE_IDENTITY_FILE) of a current recipient"
                    .into(),
            ));
        }
        let current = self.recipients()?;
        for r in remove {
            if !current.contains(r) {
                return Err(Error::Invalid(format!(
                    "{r} is not a recipient of this repository"
                )));
            }
        }
        let mut next: Vec<String> = current
            .iter()
            .filter(|r| !remove.contains(r))
            .cloned()
            .collect();
        for a in add {
            crypto::parse_recipient(a)?;
            if !next.contains(a) {
                next.push(a.clone());
            }
        }
        let _lock = self.lock(true, "rekey")?;
        let wrapped = keys.rewrap(&next)?;
        self.storage
            .put(KEY_OBJECT, manifest::encode(KEY_MAGIC, &wrapped))?;
        Ok(next)
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

/// The wrapped data key; its absence in an encrypted repository is an error
/// (fail closed), never a reason to carry on without encryption.
fn read_wrapped(storage: &Storage) -> Result<WrappedKey> {
    let bytes = storage.get(KEY_OBJECT)?.ok_or_else(|| Error::Corrupt {
        object: KEY_OBJECT.into(),
        detail: "the repository is encrypted but its key object is missing".into(),
    })?;
    manifest::decode(KEY_MAGIC, &bytes, KEY_OBJECT)
}
