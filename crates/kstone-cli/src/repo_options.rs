//! How a repository is reached and unlocked: `--identity` and the `--s3-*`
//! options, on the commands that use a repository.

use std::path::PathBuf;

use kstone_backup::storage::S3Settings;
use kstone_backup::OpenOptions;

/// How new objects are stored on S3: every command that writes to a
/// repository (backups and archives, and also the lock and status objects
/// that verify, prune, status and restore write).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct S3Options {
    /// S3 storage class of new objects, e.g. STANDARD_IA (s3:// repositories).
    #[arg(long, env = "KSTONE_S3_STORAGE_CLASS", value_name = "CLASS")]
    pub s3_storage_class: Option<String>,
    /// S3 server-side encryption of new objects: AES256 or aws:kms.
    #[arg(long, env = "KSTONE_S3_SSE", value_name = "MODE")]
    pub s3_sse: Option<String>,
    /// KMS key id for --s3-sse aws:kms (default: the bucket's key).
    #[arg(long, env = "KSTONE_S3_SSE_KMS_KEY_ID", value_name = "ID")]
    pub s3_sse_kms_key_id: Option<String>,
}

impl S3Options {
    /// The backup library's S3 settings.
    pub fn settings(&self) -> S3Settings {
        S3Settings {
            storage_class: self.s3_storage_class.clone(),
            sse: self.s3_sse.clone(),
            sse_kms_key_id: self.s3_sse_kms_key_id.clone(),
        }
    }

    /// Options for a command that only writes (backups, archiving, init):
    /// an encrypted repository takes those with its public key alone.
    pub fn open_options(&self) -> OpenOptions {
        OpenOptions {
            identity: None,
            s3: self.settings(),
        }
    }
}

/// Options of a command that only writes to a repository (backup create,
/// backup init, wal-archive): it never decrypts, since an encrypted
/// repository takes new data with its public key alone. `--identity` is
/// accepted, for scripts that pass it to every command, but not shown in
/// the help and not read.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct WriteOptions {
    /// Not used by this command (it never decrypts); accepted and ignored.
    #[arg(long, hide = true, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    #[command(flatten)]
    pub s3: S3Options,
}

impl WriteOptions {
    /// The backup library's S3 settings.
    pub fn settings(&self) -> S3Settings {
        self.s3.settings()
    }

    /// What the backup library opens the repository with (no identity).
    pub fn open_options(&self) -> OpenOptions {
        self.s3.open_options()
    }
}

/// Options of every command that may read a repository's data.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RepoOptions {
    /// Identity file that unlocks an encrypted repository: an age identity
    /// file or an OpenSSH private key (ed25519/RSA; a protected one is
    /// unlocked with KSTONE_SSH_PASSPHRASE). Needed to restore, verify
    /// --deep, export and PITR; not to back up.
    #[arg(long, env = "KSTONE_IDENTITY_FILE", value_name = "FILE")]
    pub identity: Option<PathBuf>,
    #[command(flatten)]
    pub s3: S3Options,
}

impl RepoOptions {
    /// What the backup library opens a repository with.
    pub fn open_options(&self) -> OpenOptions {
        OpenOptions {
            identity: self.identity.clone(),
            s3: self.s3.settings(),
        }
    }
}
