//! `kstone backup create`: back up a database.

use std::path::{Path, PathBuf};

use clap::ValueEnum;
use kstone_backup::{BackupOptions, BackupType};
use serde_json::json;

use crate::exit::Exit;
use crate::repo_options::WriteOptions;
use crate::{CliError, CliResult};

use super::summary;

/// Kind of backup.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupTypeArg {
    /// Every file of the snapshot.
    Full,
    /// Files the previous backup of this database did not have.
    Incremental,
    /// Files the last full backup did not have.
    Differential,
}

/// Back up a database — also while another process has it open (that
/// process pins a consistent snapshot). Initializes an empty (unencrypted)
/// repository; an encrypted one needs only its public key, never --identity.
#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// Database directory.
    pub db: PathBuf,
    /// Repository location: a directory, or s3://bucket/prefix.
    #[arg(long)]
    pub repo: String,
    /// Default: incremental if this database has a full backup, else full.
    #[arg(long = "type", value_enum)]
    pub kind: Option<BackupTypeArg>,
    /// Print the new backup's manifest summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Write an incremental or differential even when nothing changed
    /// since the backup it builds on (by default it is skipped, saying so,
    /// with exit 0).
    #[arg(long)]
    pub allow_empty: bool,
    /// Files read and stored at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub parallelism: u16,
    /// Size of the pack objects a format-2 repository groups chunks into,
    /// in MiB: fewer, larger objects cost fewer requests; each worker holds
    /// one pack in memory while filling it.
    #[arg(long, value_name = "MIB", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=512))]
    pub pack_size: u32,
    #[command(flatten)]
    pub s3: WriteOptions,
}

/// Run `kstone backup create`.
pub fn run(a: &CreateArgs) -> CliResult<Exit> {
    let CreateArgs {
        db,
        repo,
        kind,
        json,
        allow_empty,
        parallelism,
        pack_size,
        s3,
    } = a;
    let (kind, json, allow_empty) = (*kind, *json, *allow_empty);
    // A database that is not there fails before a new repository is
    // initialized for it (no empty repository left behind).
    kstone_core::Manifest::load(db)?;
    // Directories this command creates for a new local repository.
    let made = (!repo.contains("://"))
        .then(|| first_missing(std::path::Path::new(&repo)))
        .flatten();
    let new_dir = made.is_some();
    let (r, created) = crate::access::open_or_init(repo, db, &s3.open_options())?;
    if created {
        eprintln!("initialized new repository at {repo}");
    }
    let opts = BackupOptions {
        kind: kind.map(|k| match k {
            BackupTypeArg::Full => BackupType::Full,
            BackupTypeArg::Incremental => BackupType::Incremental,
            BackupTypeArg::Differential => BackupType::Differential,
        }),
        parallelism: usize::from(*parallelism),
        skip_unchanged: !allow_empty,
        pack_target: *pack_size as usize * (1 << 20),
    };
    let pb = crate::progress::Progress::bytes("backing up");
    let progress = |done: u64, total: u64| pb.set(done, total);
    let m = r.backup_dir(db, &opts, Some(&progress));
    pb.finish();
    let m = match m {
        Err(e @ kstone_backup::Error::Unchanged { .. }) => {
            eprintln!("{e}");
            if json {
                if let kstone_backup::Error::Unchanged { kind, since, lsn } = &e {
                    let v = json!({"skipped": true, "type": kind, "unchanged_since": since, "lsn": lsn});
                    println!("{}", serde_json::to_string_pretty(&v)?);
                }
            }
            return Ok(Exit::Success);
        }
        // A repository made for this backup is not left behind empty.
        Err(e) if created => {
            // The error keeps its kind; the message says what was cleaned up.
            let msg = match r.discard_unused(new_dir) {
                Ok(true) => {
                    let parents = made
                        .as_deref()
                        .map_or(Ok(()), |top| remove_empty_parents(Path::new(repo), top));
                    match parents {
                        Ok(()) => format!(
                            "{e} (the repository initialized for this backup was removed again)"
                        ),
                        Err(x) => format!(
                            "{e} (the repository initialized for this backup was removed again; \
                             the directories made for it could not be: {x})"
                        ),
                    }
                }
                Ok(false) => e.to_string(),
                Err(d) => {
                    format!("{e}; the repository initialized for it could not be removed: {d}")
                }
            };
            return Err(CliError::from(e).with_msg(msg));
        }
        m => m?,
    };
    if opts.kind.is_some_and(|k| k != m.kind) {
        eprintln!(
            "note: no full backup of this database's current history in the repository \
             (a first backup, or the first after a restore): took a full backup instead of {}",
            opts.kind.map(|k| k.to_string()).unwrap_or_default()
        );
    }
    if m.resumed_bytes > 0 {
        eprintln!(
            "resumed: reused {} bytes an interrupted backup had uploaded",
            m.resumed_bytes
        );
    }
    if m.format_version < kstone_backup::manifest::REPO_FORMAT_V2 {
        eprintln!(
            "note: this repository is of format 1 (each changed file stored whole); \
             `kstone backup init --repo NEW-LOCATION` makes a format-2 repository, which stores \
             each chunk once across backups, compactions and databases"
        );
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&summary(&m))?);
    } else {
        println!("{}", m.id);
        eprintln!(
            "{} backup of {} at lsn {}: {} items, stored {} of {} bytes",
            m.kind,
            db.display(),
            m.snapshot_lsn,
            m.item_count,
            m.bytes_stored,
            m.bytes_total
        );
    }
    Ok(Exit::Success)
}

/// The outermost not-yet-existing directory on the way to `path`: what
/// creating `path` makes.
fn first_missing(path: &Path) -> Option<PathBuf> {
    path.ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
        .last()
        .map(|a| a.to_path_buf())
}

/// Remove the empty directories between `path` (already gone) and `top`,
/// which this command created.
fn remove_empty_parents(path: &Path, top: &Path) -> std::io::Result<()> {
    for dir in path.ancestors().skip(1) {
        if !dir.starts_with(top) || dir.as_os_str().is_empty() {
            break;
        }
        std::fs::remove_dir(dir)?;
    }
    Ok(())
}
