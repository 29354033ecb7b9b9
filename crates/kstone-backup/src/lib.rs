//! KeystoneDB backups: a repository format reached through `object_store`,
//! consistent hot backups (full, incremental, differential) built on
//! kstone-core's snapshots, verification, safe restore, and portable archives.
//!
//! Layers, bottom up: [`storage`] moves raw bytes by key (a local directory
//! or S3); [`objects`] seals object bodies (zstd, age, SHA-256) by what
//! each object is ([`layout::kind`]); the repository modules above work
//! with objects only.
//!
//! Layout and commands: `docs/backup.md`.

pub mod archive_health;
mod binary;
pub mod chunk_gc;
pub mod chunk_map;
pub mod chunk_store;
pub mod chunking;
pub mod create;
pub mod crypto;
pub mod error;
pub mod export;
pub mod index;
pub mod layout;
pub mod lineage;
pub mod lock;
pub mod manifest;
pub mod objects;
pub mod ownership;
pub mod pack;
pub mod pitr;
pub mod prune;
pub mod repository;
pub mod restore;
mod staged;
pub mod storage;
pub mod swap;
pub mod verify;
pub mod wal_archive;

pub use create::{BackupOptions, DatabaseBackupExt};
pub use error::{Error, Result};
pub use export::{restore_archive, ArchiveReport};
pub use manifest::{BackupManifest, BackupType, FileEntry, RepoConfig};
pub use pitr::{PitrReport, Target, Window};
pub use prune::{Decision, Plan, Policy};
pub use repository::{InitOptions, OpenOptions, Repository};
pub use restore::{RestoreOptions, RestoreReport};
pub use verify::Problem;
pub use wal_archive::{ArchiveRange, Archiver, Round};
