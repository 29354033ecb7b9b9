//! KeystoneDB backups: a repository format reached through `object_store`,
//! consistent hot backups (full, incremental, differential) built on
//! kstone-core's snapshots, verification, safe restore, and portable archives.
//!
//! Layout and commands: `docs/backup.md`.

pub mod archive;
pub mod archive_health;
pub mod create;
pub mod crypto;
pub mod error;
pub mod layout;
pub mod lineage;
pub mod lock;
pub mod manifest;
pub mod pitr;
pub mod prune;
pub mod repository;
pub mod restore;
pub mod storage;
pub mod swap;
pub mod verify;
pub mod wal_archive;

pub use archive::{restore_archive, ArchiveReport};
pub use create::{BackupOptions, DatabaseBackupExt};
pub use error::{Error, Result};
pub use manifest::{BackupManifest, BackupType, FileEntry, RepoConfig};
pub use pitr::{PitrReport, Target, Window};
pub use prune::{Decision, Plan, Policy};
pub use repository::{InitOptions, OpenOptions, Repository};
pub use restore::RestoreReport;
pub use verify::Problem;
pub use wal_archive::{ArchiveRange, Archiver, Round};
