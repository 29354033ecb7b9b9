//! `kstone wal-archive`: ship a database's WAL into a repository.

use std::path::{Path, PathBuf};

use kstone_backup::manifest::rfc3339_us;
use kstone_backup::{Archiver, OpenOptions};

use crate::exit::Exit;
use crate::repo_options::WriteOptions;
use crate::time_args::{parse_heartbeat, parse_interval};
use crate::{CliError, CliResult};

/// Ship a database's WAL into a repository continuously (or once), so it
/// can be restored to any point in time. Works beside the application
/// that has the database open.
#[derive(clap::Args, Debug)]
pub struct WalArchiveArgs {
    /// Database directory.
    pub db: PathBuf,
    /// Repository location: a directory, or s3://bucket/prefix.
    #[arg(long)]
    pub repo: String,
    /// How long an idle database waits to be looked at again, e.g. 1s,
    /// 500ms, 2m (at least 10ms); also the longest a few writes are held
    /// to make one object. While writes keep coming, reads of the WAL run
    /// back to back, at most one per tenth of the interval, and overlap
    /// with the compression and upload of earlier reads; what a read finds
    /// goes up at once if it makes 1 MiB, else with later reads' once its
    /// oldest write has waited an interval. At a high write rate the archive
    /// trails the database by a fraction of a second; an idle database gets
    /// no new objects.
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
    pub interval: std::time::Duration,
    /// Run one round and exit. (A location with nothing in it is made a
    /// new, unencrypted repository: run `backup init --recipient` first
    /// for an encrypted one.)
    #[arg(long)]
    pub once: bool,
    /// Report to the repository at least this often that archiving is
    /// alive (`backup status` calls an archiver silent for three of
    /// these periods and 10 s stalled). Default: a minute; never shorter
    /// than --interval.
    #[arg(long, value_parser = parse_heartbeat, conflicts_with = "once")]
    pub heartbeat: Option<std::time::Duration>,
    /// Stop archiving the database to this repository: the database no
    /// longer keeps WAL for it (its archive ends here; archiving to it
    /// again needs a new backup first). `kstone stats` lists every
    /// repository a database is archived to.
    #[arg(long, conflicts_with = "once")]
    pub unregister: bool,
    #[command(flatten)]
    pub s3: WriteOptions,
}

/// Run `kstone wal-archive`.
pub fn run(a: &WalArchiveArgs) -> CliResult<Exit> {
    let opts = a.s3.open_options();
    if a.unregister {
        unregister(&a.db, &a.repo, &opts)
    } else {
        archive(&a.db, &a.repo, a.interval, a.once, a.heartbeat, &opts)
    }
}

/// Archive continuously, or one round with `once`.
fn archive(
    db: &Path,
    repo: &str,
    interval: std::time::Duration,
    once: bool,
    heartbeat: Option<std::time::Duration>,
    opts: &OpenOptions,
) -> CliResult<Exit> {
    // A database that is not there fails before a repository is made for it.
    kstone_core::Manifest::load(db)?;
    let (r, created) = crate::access::open_or_init(repo, db, opts)?;
    if created {
        eprintln!("initialized new repository at {repo}");
    }
    // Archived WAL is replayed on top of a backup of the same history; say
    // so when there is none (e.g. right after a restore started a new one).
    let manifest = kstone_core::Manifest::load(db).ok();
    if let Some(m) = &manifest {
        let has_base = r
            .list()?
            .iter()
            .any(|b| b.db_id == m.db_id && b.history == m.history);
        // A database restored from this repository continues through its
        // lineage: the backup it came from is its base.
        let restored_from_here = m
            .origin
            .as_ref()
            .is_some_and(|o| o.repository_id == r.config.repository_id);
        if !has_base && !restored_from_here {
            eprintln!(
                "warning: the repository has no backup of this database's current history ({}); \
                 archived WAL can only be replayed on top of one — run `kstone backup create`",
                m.history
            );
        }
    }
    if once {
        let mut a = Archiver::new(&r, db).heartbeat_every(std::time::Duration::ZERO);
        let round = a.round()?;
        match &round.range {
            Some(range) => println!(
                "archived LSN {}..={} ({} records) to {repo}",
                range.first_lsn, range.last_lsn, round.records
            ),
            None => {
                // Nothing shipped: say what this repository holds, not the
                // database's own position.
                let held = match &manifest {
                    Some(m) => r
                        .archive_ranges(&m.db_id, &m.history)?
                        .last()
                        .map(|(_, x)| x.last_lsn),
                    None => None,
                };
                match held {
                    Some(l) => println!(
                        "nothing new to archive: {repo} holds this database's writes through LSN {l}"
                    ),
                    None => println!(
                        "nothing to archive yet: {repo} will hold this database's writes after LSN {}",
                        round.archived_lsn
                    ),
                }
            }
        }
        return Ok(Exit::Success);
    }
    let mut a = Archiver::new(&r, db).heartbeat_every(
        kstone_backup::wal_archive::heartbeat_period(heartbeat, interval),
    );
    eprintln!(
        "archiving {} into {repo} (continuously while written; every {interval:?} when idle); Ctrl-C to stop",
        db.display()
    );
    crate::stop::install();
    let mut failures = 0u32;
    let mut last_error = String::new();
    let stop = crate::stop::requested;
    a.follow(None, interval, &stop, &mut |r, _| match r {
        Ok(round) => {
            if failures > 0 {
                eprintln!("archiving works again");
            }
            failures = 0;
            last_error.clear();
            if round.records > 0 {
                eprintln!(
                    "archived {} records through LSN {} ({})",
                    round.records,
                    round.archived_lsn,
                    rfc3339_us(round.archived_ts)
                );
            }
        }
        Err(e) => {
            failures += 1;
            // The same error every round says nothing new: once, then
            // once a minute or so.
            let msg = e.to_string();
            if msg != last_error || failures.is_multiple_of(60) {
                eprintln!("archiving round failed (will retry): {msg}");
                last_error = msg;
            }
        }
    });
    // Said to the repository, so that `status` tells a stop from a stall.
    if let Err(e) = a.stop() {
        eprintln!("warning: could not record the archiver's stop in {repo}: {e}");
    }
    eprintln!("stopped");
    Ok(Exit::Success)
}

/// `--unregister`: the database stops keeping WAL for the repository.
fn unregister(db: &Path, repo: &str, opts: &OpenOptions) -> CliResult<Exit> {
    use kstone_core::archiving;
    let regs = archiving::registrations(db)?;
    // The repository may be gone for good: then its recorded location names it.
    let id = match crate::access::open(repo, opts) {
        Ok(r) => r.config.repository_id.clone(),
        Err(e) => regs
            .iter()
            .find(|(_, r)| r.location == repo)
            .map(|(id, _)| id.clone())
            .ok_or_else(|| {
                // Keeps the open's kind: no repository there is "not found".
                let msg = format!(
                    "{}; and no repository registered for {} is recorded at {repo}",
                    e.msg,
                    db.display()
                );
                e.with_msg(msg)
            })?,
    };
    if !archiving::unregister(db, &id)? {
        return Err(CliError::failure(format!(
            "{} is not archived to {repo} (see `kstone stats {}`)",
            db.display(),
            db.display()
        )));
    }
    println!(
        "{} is no longer archived to {repo}: WAL is not kept for it any more",
        db.display()
    );
    Ok(Exit::Success)
}
