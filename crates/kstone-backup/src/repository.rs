//! A backup repository: its config, its keys and the manifests of its backups.

use std::path::{Path, PathBuf};

use crate::crypto::{self, EncryptionConfig, Identities, Keys, WrappedKey, KEY_MAGIC, KEY_OBJECT};
use crate::error::{Error, IoContext, Result};
use crate::layout;
use crate::manifest::{
    self, BackupManifest, RepoConfig, CONFIG_MAGIC, CONFIG_OBJECT, MANIFEST_MAGIC, NEWEST_FORMAT,
    REPO_FORMAT_V2,
};
use crate::objects::Objects;
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
    /// Its objects, sealed by kind in an encrypted repository.
    pub(crate) storage: Objects,
    pub config: RepoConfig,
}

/// A backup whose manifest cannot be read: its id and why.
pub type Damaged = (String, Error);

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
    /// Recipients (`age1…`, `ssh-ed25519 …`, `ssh-rsa …`): non-empty makes
    /// an encrypted repository.
    pub recipients: Vec<String>,
    /// Repository format: 0 for the newest ([`NEWEST_FORMAT`]); 1 makes a
    /// repository that kstone versions before format 2 can read.
    pub format: u32,
}

/// `data` of `data/ID/file`; an object at the top level names itself.
fn top_level(key: &str) -> &str {
    key.split('/').next().unwrap_or(key)
}

impl InitOptions {
    /// Refuse bad options before anything is created at the location.
    pub fn validate(&self) -> Result<()> {
        if let Some(l) = self.compression_level {
            if !(1..=19).contains(&l) {
                return Err(Error::Invalid(format!("zstd level {l} is not in 1..=19")));
            }
        }
        for r in &self.recipients {
            crypto::parse_recipient(r)?;
        }
        if self.format > NEWEST_FORMAT {
            return Err(Error::Invalid(format!(
                "repository format {} is not one this kstone writes (1 or {NEWEST_FORMAT})",
                self.format
            )));
        }
        Ok(())
    }
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
                format: 0,
            },
        )
    }

    /// Create a repository, encrypted if `opts` names recipients.
    pub fn init_with(storage: Storage, opts: &InitOptions) -> Result<Repository> {
        if storage.get(CONFIG_OBJECT)?.is_some() {
            return Err(Error::AlreadyARepository(storage.location.clone()));
        }
        // A location that holds objects is never made a new repository: it
        // may be a repository whose config was lost, and a fresh config
        // there (unencrypted, say) would mix into its backups.
        let held = storage.list("")?;
        if !held.is_empty() {
            return Err(config_missing(&storage, held.len()));
        }
        opts.validate()?;
        let mut encryption = None;
        let storage = if opts.recipients.is_empty() {
            Objects::plain(storage)
        } else {
            let (keys, cfg, wrapped) = Keys::create(&opts.recipients)?;
            // The key goes first: a config that announces encryption
            // without a key would leave a repository nobody can use.
            storage.put(KEY_OBJECT, manifest::encode(KEY_MAGIC, &wrapped))?;
            encryption = Some(cfg);
            Objects::sealed(storage, keys)
        };
        let format_version = if opts.format == 0 {
            NEWEST_FORMAT
        } else {
            opts.format
        };
        let repository_id = kstone_core::fsio::random_hex(16)?;
        if format_version >= REPO_FORMAT_V2 {
            // Before the config: a repository whose config exists has its key.
            crate::chunk_store::create_chunk_key(&storage, layout::CHUNK_KEY, &repository_id)?;
        }
        let config = RepoConfig {
            format_version,
            repository_id,
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
            return Err(Error::AlreadyARepository(storage.location().to_string()));
        }
        Ok(Repository { storage, config })
    }

    /// Open an existing repository (identity and S3 settings from the
    /// environment: [`OpenOptions::from_env`]).
    pub fn open(location: &str) -> Result<Repository> {
        Repository::open_with(location, &OpenOptions::from_env())
    }

    /// Open an existing repository.
    /// The identity file is read only if the repository is encrypted: a
    /// `KSTONE_IDENTITY_FILE` set for other repositories does not get in
    /// the way of a plain one.
    pub fn open_with(location: &str, opts: &OpenOptions) -> Result<Repository> {
        let storage = Storage::open_with(location, false, &opts.s3)?;
        Repository::open_unlocking(storage, Unlock::File(opts.identity.as_deref()))
    }

    /// Open an existing repository on a given storage.
    pub fn open_on(storage: Storage) -> Result<Repository> {
        Repository::open_on_with(storage, None)
    }

    /// Open an existing repository on a given storage, unlocking its data
    /// with `identities` if it is encrypted.
    pub fn open_on_with(storage: Storage, identities: Option<&Identities>) -> Result<Repository> {
        Repository::open_unlocking(storage, Unlock::Given(identities))
    }

    /// Open a repository on `storage`; the identities are read only if the
    /// repository is encrypted.
    fn open_unlocking(storage: Storage, unlock: Unlock<'_>) -> Result<Repository> {
        let Some(bytes) = storage.get(CONFIG_OBJECT)? else {
            let held = storage.list("")?;
            return Err(if held.is_empty() {
                Error::NotARepository(storage.location.clone())
            } else {
                config_missing(&storage, held.len())
            });
        };
        let config: RepoConfig = manifest::decode(CONFIG_MAGIC, &bytes, CONFIG_OBJECT)?;
        if config.format_version > NEWEST_FORMAT {
            return Err(Error::Invalid(format!(
                "{} is a repository of format {}, newer than this kstone reads (up to {NEWEST_FORMAT}): upgrade kstone",
                storage.location, config.format_version
            )));
        }
        check_config_belongs(&storage, &config)?;
        let storage = match &config.encryption {
            Some(enc) => {
                let wrapped = read_wrapped(&storage)?;
                let loaded;
                let identities = match unlock {
                    Unlock::Given(ids) => ids,
                    Unlock::File(path) => {
                        loaded = path.map(Identities::from_file).transpose()?;
                        loaded.as_ref()
                    }
                };
                Objects::sealed(storage, Keys::load(enc, &wrapped, identities)?)
            }
            None => Objects::plain(storage),
        };
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
    /// Only an empty location is initialized: one that holds any object
    /// but no config is an error ([`Error::ConfigMissing`]).
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

    /// The repository is still there and still this one: its `config` exists
    /// with this id. A long-running writer (an archiver) checks before each
    /// round, so that an unmounted disk or a deleted prefix is an error, not
    /// a new unconfigured location that silently takes the writes.
    pub fn check_still_here(&self) -> Result<()> {
        let gone = |why: &str| {
            Err(Error::RepositoryGone {
                location: self.location().to_string(),
                why: why.to_string(),
            })
        };
        let Some(bytes) = self.storage.get(CONFIG_OBJECT)? else {
            return gone(
                "its config is missing (an unmounted disk, a moved directory, a deleted prefix?)",
            );
        };
        match manifest::decode::<RepoConfig>(CONFIG_MAGIC, &bytes, CONFIG_OBJECT) {
            Ok(c) if c.repository_id == self.config.repository_id => Ok(()),
            Ok(_) => gone("another repository is there now"),
            Err(e) => Err(e),
        }
    }

    /// Undo [`Repository::open_or_init_with`] for a command that then failed:
    /// if the repository still holds nothing anyone needs (no backup, no
    /// archive: only its config, key and locks, and the pieces of an upload
    /// that never completed), delete it, so that the next run starts clean
    /// instead of finding an empty repository. `remove_root` also removes a
    /// local directory the init created. Returns whether it was removed.
    pub fn discard_unused(&self, remove_root: bool) -> Result<bool> {
        let lock = self.lock(true, "discard an unused new repository")?;
        let held = self.storage.list("")?;
        if held.iter().any(|(k, _)| {
            layout::manifest_id(k).is_some() || k.starts_with(&format!("{}/", layout::ARCHIVE))
        }) {
            return Ok(false);
        }
        // The config first, under the lock: from then on this is no
        // repository, and nothing can start using it.
        self.storage.delete(CONFIG_OBJECT)?;
        drop(lock);
        // Each top-level prefix, so that a local directory's staging files
        // of an upload that never finished go too.
        let mut tops: Vec<&str> = held.iter().map(|(k, _)| top_level(k)).collect();
        tops.extend([layout::DATA, layout::IN_PROGRESS]);
        tops.sort_unstable();
        tops.dedup();
        for t in tops {
            self.storage.delete_prefix(t)?;
        }
        if let (true, Some(root)) = (remove_root, self.storage.local_root()) {
            match std::fs::remove_dir(root) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).ctx(root);
                }
                _ => {}
            }
        }
        Ok(true)
    }

    /// Rewrite a lost `config` object from the copy that every backup
    /// manifest carries (the newest readable one). Refuses when the config
    /// exists or no manifest holds a copy; an encrypted repository's key
    /// object must still be there (a config announcing encryption without a
    /// key would leave a repository nobody can use).
    pub fn repair_config(storage: Storage) -> Result<RepoConfig> {
        if storage.get(CONFIG_OBJECT)?.is_some() {
            return Err(Error::AlreadyARepository(storage.location.clone()));
        }
        let mut ids: Vec<String> = manifest_ids(&storage)?;
        ids.reverse();
        let mut config = None;
        for id in &ids {
            let obj = manifest::manifest_object(id);
            let Some(bytes) = storage.get(&obj)? else {
                continue;
            };
            if let Ok(m) = manifest::decode::<BackupManifest>(MANIFEST_MAGIC, &bytes, &obj) {
                if let Some(c) = m.repository {
                    config = Some(c);
                    break;
                }
            }
        }
        let config = config.ok_or_else(|| {
            Error::Invalid(format!(
                "no backup manifest in {} carries a copy of the repository config \
                 (manifests written by older kstone versions do not); restore `config` from a copy of the repository",
                storage.location
            ))
        })?;
        if config.encryption.is_some() {
            read_wrapped(&storage)?;
        }
        storage.put(CONFIG_OBJECT, manifest::encode(CONFIG_MAGIC, &config))?;
        Ok(config)
    }

    /// Format 2: what is wrong with the repository's chunk key object, if
    /// anything that can be seen without reading it (it is sealed in an
    /// encrypted repository): missing is fatal to every backup and restore.
    pub fn chunk_key_problem(&self) -> Result<Option<String>> {
        if self.config.format_version < REPO_FORMAT_V2 {
            return Ok(None);
        }
        Ok(match self.storage.head(layout::CHUNK_KEY)? {
            None => Some(format!(
                "{} is missing: no format-2 backup of this repository can be restored or taken; restore it from a copy of the repository",
                layout::CHUNK_KEY
            )),
            Some(_) => None,
        })
    }

    /// Bytes the repository stores for backups' data: packs (format 2)
    /// and whole-file objects (format 1), as stored.
    pub fn stored_bytes(&self) -> Result<u64> {
        let mut n = 0;
        for prefix in [layout::PACKS, layout::DATA] {
            n += self
                .storage
                .list(prefix)?
                .iter()
                .map(|(_, s)| s)
                .sum::<u64>();
        }
        Ok(n)
    }

    pub fn location(&self) -> &str {
        self.storage.location()
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
        Ok(read_wrapped(self.storage.raw())?.recipients)
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
        let canon = |v: &[String]| -> Result<Vec<String>> {
            v.iter().map(|r| crypto::canonical_recipient(r)).collect()
        };
        let (add, remove) = (&canon(add)?, &canon(remove)?);
        // Read under the lock: two rekeys at once must not lose a change.
        let _lock = self.lock(true, "rekey")?;
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
            if !next.contains(a) {
                next.push(a.clone());
            }
        }
        let wrapped = keys.rewrap(&next)?;
        self.storage
            .put(KEY_OBJECT, manifest::encode(KEY_MAGIC, &wrapped))?;
        Ok(next)
    }

    /// Ids of complete backups, oldest first. A backup is complete once its
    /// manifest exists: an interrupted one never appears here.
    pub fn backup_ids(&self) -> Result<Vec<String>> {
        manifest_ids(self.storage.raw())
    }

    /// Every complete backup's readable manifest, oldest first. A damaged
    /// manifest is left out (it blocks nothing that does not depend on it);
    /// [`Repository::list_readable`] also names the damaged ones.
    pub fn list(&self) -> Result<Vec<BackupManifest>> {
        Ok(self.list_readable()?.0)
    }

    /// Readable manifests (oldest first) and the backups whose manifest is
    /// damaged or vanished since the listing, with why.
    pub fn list_readable(&self) -> Result<(Vec<BackupManifest>, Vec<Damaged>)> {
        let mut v = Vec::new();
        let mut damaged = Vec::new();
        for id in self.backup_ids()? {
            match self.manifest(&id) {
                Ok(m) => v.push(m),
                Err(e @ Error::Corrupt { .. }) => damaged.push((id, e)),
                // Deleted by a prune between the listing and the read.
                Err(Error::NoSuchBackup(_)) => {}
                Err(e) => return Err(e),
            }
        }
        v.sort_by(|a, b| (a.started_at_us, &a.id).cmp(&(b.started_at_us, &b.id)));
        Ok((v, damaged))
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
    /// [`Repository::resolve`] within one history: its newest backup for
    /// `latest`, a named one only if it belongs to it — never another
    /// history's. `None`: any history.
    pub fn resolve_in(&self, id: &str, history: Option<&str>) -> Result<String> {
        let Some(h) = history else {
            return self.resolve(id);
        };
        let of_h: Vec<BackupManifest> = self
            .list()?
            .into_iter()
            .filter(|m| m.history == h)
            .collect();
        let pick = if id == "latest" {
            of_h.iter().max_by_key(|m| m.completed_at_us)
        } else {
            of_h.iter().find(|m| m.id == id)
        };
        pick.map(|m| m.id.clone()).ok_or_else(|| {
            let which = if id == "latest" {
                String::new()
            } else {
                format!("{id} ")
            };
            Error::NoSuchBackup(format!(
                "{which}of history {h} (`backup list --json` shows each backup's history)"
            ))
        })
    }

    pub fn resolve(&self, id: &str) -> Result<String> {
        if id == "latest" {
            return self.backup_ids()?.pop().ok_or(Error::NoBackups);
        }
        if id.is_empty() || id.contains('/') || id.contains("..") {
            return Err(Error::Invalid(format!("{id:?} is not a backup id")));
        }
        // Neither a manifest nor data: a mistyped id, not a damaged backup
        // (whose verification would be recorded as a failure).
        if self.storage.head(&crate::layout::manifest(id))?.is_none()
            && self.storage.list(&crate::layout::data_of(id))?.is_empty()
        {
            return Err(Error::NoSuchBackup(id.to_string()));
        }
        Ok(id.to_string())
    }
}

/// What unlocks an encrypted repository's data: identities already read, or
/// an identity file read only if the repository turns out to be encrypted.
enum Unlock<'a> {
    Given(Option<&'a Identities>),
    File(Option<&'a Path>),
}

/// A `config` copied from another repository (an operator restoring a lost
/// one from the wrong place) must not make this one accept plaintext or mix
/// its archive positions: it has to agree with the key object and with
/// the copy the newest manifest carries.
fn check_config_belongs(storage: &Storage, config: &RepoConfig) -> Result<()> {
    let wrong = |why: String| Error::Corrupt {
        object: CONFIG_OBJECT.into(),
        detail: format!(
            "{why}: this config is not this repository's (copied from another one, or altered). \
             Nothing was written. Remove it and run `kstone backup init --repo {} --repair`",
            storage.location
        ),
    };
    if config.encryption.is_none() && storage.head(KEY_OBJECT)?.is_some() {
        return Err(wrong(format!(
            "it says the repository is not encrypted, but {KEY_OBJECT} exists"
        )));
    }
    if let Some(id) = manifest_ids(storage)?.pop() {
        let obj = manifest::manifest_object(&id);
        if let Some(bytes) = storage.get(&obj)? {
            if let Ok(m) = manifest::decode::<BackupManifest>(MANIFEST_MAGIC, &bytes, &obj) {
                if let Some(c) = m.repository {
                    if c.repository_id != config.repository_id || c.encryption != config.encryption
                    {
                        return Err(wrong(if c.repository_id != config.repository_id {
                            format!(
                                "backup {id} was made in repository {}{}",
                                c.repository_id,
                                if c.encryption.is_some() {
                                    " (encrypted)"
                                } else {
                                    ""
                                }
                            )
                        } else {
                            format!(
                                "its encryption settings differ from those backup {id} was made with"
                            )
                        }));
                    }
                }
            }
        }
    }
    Ok(())
}

fn manifest_ids(storage: &Storage) -> Result<Vec<String>> {
    Ok(storage
        .list(layout::MANIFESTS)?
        .into_iter()
        .filter_map(|(k, _)| layout::manifest_id(&k).map(String::from))
        .collect())
}

/// What to say of a location that holds objects but no config.
fn config_missing(storage: &Storage, objects: usize) -> Error {
    let encrypted = storage.head(KEY_OBJECT).ok().flatten().is_some();
    Error::ConfigMissing {
        location: storage.location.clone(),
        objects,
        encrypted,
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
