//! `kstone restore-copies`: list, or drop the old, copies restores moved aside.

use std::path::PathBuf;

use crate::exit::Exit;
use crate::time_args::parse_age;
use crate::CliResult;

/// List the copies restores moved aside from DB (DB.before-restore-TIME,
/// never deleted by a restore), or delete the old ones.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  kstone restore-copies /var/lib/keystonedb/app.keystone --drop-older-than 30d --dry-run"
)]
pub struct RestoreCopiesArgs {
    /// Database directory.
    pub db: PathBuf,
    /// Delete the copies moved aside longer ago than this (e.g. 30d);
    /// a copy a process has open is kept.
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub drop_older_than: Option<std::time::Duration>,
    /// Say what would be deleted, delete nothing.
    #[arg(long, requires = "drop_older_than")]
    pub dry_run: bool,
}

/// Run `kstone restore-copies`.
pub fn run(a: &RestoreCopiesArgs) -> CliResult<Exit> {
    let (db, drop_older_than, dry_run) = (a.db.as_path(), a.drop_older_than, a.dry_run);
    let copies = kstone_backup::swap::aside_copies(db)?;
    let now = kstone_core::fsio::now_micros();
    let Some(age) = drop_older_than else {
        if copies.is_empty() {
            println!("no copies moved aside from {}", db.display());
        }
        for c in &copies {
            println!(
                "{}  moved aside {}  {} bytes",
                c.path.display(),
                kstone_backup::manifest::rfc3339(c.moved_at_us),
                c.bytes
            );
        }
        return Ok(Exit::Success);
    };
    let cutoff = now.saturating_sub(age.as_micros() as u64);
    let (mut dropped, mut failed) = (0, 0);
    for c in copies.iter().filter(|c| c.moved_at_us < cutoff) {
        if dry_run {
            match kstone_backup::swap::aside_copy_in_use(c) {
                Some(why) => println!("would keep {}: {why}", c.path.display()),
                None => println!("would delete {} ({} bytes)", c.path.display(), c.bytes),
            }
            continue;
        }
        match kstone_backup::swap::drop_aside_copy(c) {
            Ok(()) => {
                println!("deleted {} ({} bytes)", c.path.display(), c.bytes);
                dropped += 1;
            }
            Err(e) => {
                eprintln!("kept {}: {e}", c.path.display());
                failed += 1;
            }
        }
    }
    if !dry_run {
        eprintln!("{dropped} deleted, {} kept", copies.len() - dropped);
    }
    Ok(if failed > 0 {
        Exit::Failure
    } else {
        Exit::Success
    })
}
