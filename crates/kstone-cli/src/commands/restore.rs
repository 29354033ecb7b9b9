//! `kstone restore`: a backup, a point in time or an exported archive into a directory.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use kstone_backup::manifest::rfc3339_us;
use kstone_backup::Target;

use crate::exit::Exit;
use crate::repo_options::RepoOptions;
use crate::time_args::parse_time;
use crate::{CliError, CliResult};

/// Restore a backup (or an exported archive) into a directory. The target
/// is built beside the destination, verified, then swapped in; an existing
/// database there is moved to DIR.before-restore-TIME, never deleted.
///
/// A restore from a format-2 repository that is killed or fails continues
/// where it stopped when run again to the same target: what the earlier run
/// wrote is checked chunk by chunk against the backup and only the rest is
/// read (`kstone check TARGET` of an existing database removes what it
/// left instead).
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["repo", "archive"])))]
pub struct RestoreArgs {
    /// Repository to restore from.
    #[arg(long)]
    pub repo: Option<String>,
    /// Backup id or `latest` (with --repo).
    #[arg(requires = "repo", conflicts_with_all = ["to_time", "to_lsn", "to_name", "to_latest"])]
    pub id: Option<String>,
    /// Point-in-time restore: every write committed at or before this time
    /// (RFC 3339, e.g. 2026-11-27T19:41:26Z or 2026-11-27T19:41:26.5+01:00, or @UNIX_SECONDS).
    #[arg(long, requires = "repo", group = "pitr", value_parser = parse_time)]
    pub to_time: Option<u64>,
    /// Point-in-time restore: every write with LSN ≤ N. A restore exits 0
    /// only with exactly the point asked for; a point the repository cannot
    /// reach exactly (a gap, a pruned archive) exits 1 naming the latest
    /// reachable one (`backup status` lists them).
    #[arg(long, requires = "repo", group = "pitr")]
    pub to_lsn: Option<u64>,
    /// Point-in-time restore: up to the named restore point.
    #[arg(long, requires = "repo", group = "pitr")]
    pub to_name: Option<String>,
    /// Point-in-time restore: the latest point the repository can restore
    /// exactly (the newest backup plus every archived write that continues
    /// it without a gap).
    #[arg(long, requires = "repo", group = "pitr")]
    pub to_latest: bool,
    /// Database history to restore from (default: that of the newest backup).
    #[arg(long, requires = "repo")]
    pub history: Option<String>,
    /// Restore from an archive made by `backup export` instead (`-`: read
    /// it from standard input, e.g. `gpg -d app.tar.gz.gpg | kstone restore --archive - …`).
    /// An archive holds one backup: no point in time, history or id applies
    /// (clap's `requires = "repo"` alone let them through, ignored).
    #[arg(
        long,
        conflicts_with_all = ["repo", "id", "to_time", "to_lsn", "to_name", "to_latest", "history"]
    )]
    pub archive: Option<PathBuf>,
    /// Directory to restore into.
    #[arg(long)]
    pub target: PathBuf,
    /// Do not ask for confirmation when the target exists.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Reuse what the database at --target already holds (format-2
    /// repositories): its unchanged SSTs are hard-linked and chunks its
    /// files hold are copied locally; only the rest is read from the
    /// repository. The result is checked and swapped in as in a full
    /// restore, and the old database is still moved aside, not changed.
    #[arg(long, conflicts_with_all = ["archive", "to_time", "to_lsn", "to_name", "to_latest"])]
    pub delta: bool,
    /// Packs read from a format-2 repository at once (restores of a backup
    /// id; each pack is held whole in memory while its chunks are written).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub parallelism: u16,
    /// Owner of the restored database: USER, USER:GROUP or :GROUP (names or
    /// ids). Default: the owner of the database it replaces, if any.
    #[arg(long, value_name = "USER[:GROUP]", value_parser = crate::ownership::owner_arg)]
    pub owner: Option<String>,
    /// Mode of the restored database's directories (octal, e.g. 700); files
    /// get it without execute bits. Default: the mode of the database it
    /// replaces, if any.
    #[arg(long, value_name = "OCTAL", value_parser = crate::ownership::mode_arg)]
    pub mode: Option<String>,
    #[command(flatten)]
    pub access: RepoOptions,
}

fn confirm(target: &Path) -> CliResult<bool> {
    if !target.exists() || !std::io::stdin().is_terminal() {
        return Ok(true);
    }
    eprint!(
        "{} exists; it will be moved to {}.before-restore-<time>. Continue? [y/N] ",
        target.display(),
        target.display()
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// A restore target inside a local repository would mix a database into
/// the repository's objects.
fn refuse_target_in_repo(repo: &str, target: &Path) -> CliResult<()> {
    if repo.contains("://") {
        return Ok(());
    }
    let Ok(repo_dir) = std::fs::canonicalize(repo) else {
        return Ok(());
    };
    let abs = std::path::absolute(target)?;
    // The nearest existing ancestor, resolved (symlinks included).
    let mut probe = abs.as_path();
    let resolved = loop {
        if let Ok(c) = std::fs::canonicalize(probe) {
            break Some(c.join(abs.strip_prefix(probe).unwrap_or(Path::new(""))));
        }
        match probe.parent() {
            Some(p) => probe = p,
            None => break None,
        }
    };
    if resolved.is_some_and(|t| t.starts_with(&repo_dir)) {
        return Err(CliError::failure(format!(
            "{} is inside the repository {repo}; restore somewhere else",
            target.display()
        )));
    }
    Ok(())
}

/// Run `kstone restore`.
pub fn run(a: &RestoreArgs) -> CliResult<Exit> {
    if let Some(repo) = &a.repo {
        refuse_target_in_repo(repo, &a.target)?;
    }
    // Read before the restore replaces the target.
    let own = crate::ownership::for_restore(a.owner.as_deref(), a.mode.as_deref(), &a.target)?;
    // The recovery contract: a restore that cannot produce exactly what was
    // asked exits 1, also when damage is why (the message says what is
    // damaged); the corruption code is for commands that read data in place.
    let code = restore_into(a, own).map_err(|e| match e.exit {
        Exit::Corruption => CliError::new(Exit::Failure, e.msg),
        _ => e,
    })?;
    if code == Exit::Success && !own.is_empty() {
        println!("{}: {}", a.target.display(), own.describe());
    }
    Ok(code)
}

/// Restore as `a` asks, the result owned as `own` says: a backup restore
/// applies it in staging before the swap; point-in-time and archive
/// restores (which never link another database's files) right after.
fn restore_into(a: &RestoreArgs, own: crate::ownership::Ownership) -> CliResult<Exit> {
    if !a.yes && !confirm(&a.target)? {
        eprintln!("restore cancelled; nothing changed");
        return Ok(Exit::Failure);
    }
    let target = if let Some(t) = a.to_time {
        Some(Target::Time(t))
    } else if let Some(n) = a.to_lsn {
        Some(Target::Lsn(n))
    } else if a.to_latest {
        Some(Target::Latest)
    } else {
        a.to_name.clone().map(Target::Name)
    };
    if let (Some(t), Some(repo)) = (target, &a.repo) {
        let r = crate::access::open(repo, &a.access.open_options())?;
        let rep = crate::progress::spin("restoring to a point in time", || {
            r.restore_to(&t, &a.target, a.history.as_deref())
        })
        .map_err(CliError::from)?;
        println!(
            "restored {} to LSN {} at {} ({} items; backup {} + {} replayed writes)",
            a.target.display(),
            rep.reached_lsn,
            rfc3339_us(rep.reached_ts),
            rep.items,
            rep.base_backup,
            rep.replayed
        );
        if let Some(aside) = &rep.moved_aside {
            println!("previous contents moved to {}", aside.display());
        }
        if rep.resumed > 0 {
            println!(
                "resumed: reused {} bytes an interrupted restore had written",
                rep.resumed
            );
        }
        own.apply(&a.target)?;
        return Ok(Exit::Success);
    }
    let report = match (&a.repo, &a.archive) {
        (Some(repo), None) => {
            let r = crate::access::open(repo, &a.access.open_options())?;
            let id = r.resolve_in(a.id.as_deref().unwrap_or("latest"), a.history.as_deref())?;
            let opts = kstone_backup::RestoreOptions {
                delta: a.delta,
                parallelism: usize::from(a.parallelism),
                ownership: own,
            };
            crate::progress::spin("restoring", || r.restore_with_options(&id, &a.target, opts))?
        }
        (None, Some(archive)) if archive.as_os_str() == "-" => {
            // `gpg -d … | kstone restore --archive -`: spooled beside the
            // target into a file without a name (gone however this process
            // ends), read back through /proc; no .sha256 to check.
            use std::os::fd::AsRawFd;
            let dir = kstone_core::fsio::parent(&a.target);
            let mut spool = tempfile::tempfile_in(dir)
                .map_err(|e| CliError::failure(format!("{}: {e}", dir.display())))?;
            let n = std::io::copy(&mut std::io::stdin().lock(), &mut spool).map_err(|e| {
                CliError::failure(format!("reading the archive from standard input: {e}"))
            })?;
            if n == 0 {
                return Err(CliError::failure(
                    "no archive on standard input (nothing was read); nothing restored",
                ));
            }
            let path = PathBuf::from(format!("/proc/self/fd/{}", spool.as_raw_fd()));
            crate::progress::spin("restoring", || {
                kstone_backup::restore_archive(&path, &a.target)
            })
            .map_err(|e| {
                let msg = e
                    .to_string()
                    .replace(
                        &path.display().to_string(),
                        &format!("(standard input, {n} bytes)"),
                    )
                    .replace(
                        "there is no .sha256 file beside it to check it against",
                        "check it against its checksum before piping it in",
                    );
                CliError::from(e).with_msg(msg)
            })?
        }
        (None, Some(archive)) => crate::progress::spin("restoring", || {
            kstone_backup::restore_archive(archive, &a.target)
        })?,
        _ => return Err(CliError::failure("give --repo or --archive")),
    };
    if a.archive.is_some() {
        own.apply(&report.target)?;
    }
    println!(
        "restored {} ({} items)",
        report.target.display(),
        report.items
    );
    if let Some(aside) = &report.moved_aside {
        println!("previous contents moved to {}", aside.display());
    }
    if report.transfer.resumed > 0 {
        println!(
            "resumed: reused {} bytes an interrupted restore had written",
            report.transfer.resumed
        );
    }
    if a.delta {
        let t = report.transfer;
        println!(
            "delta: {} bytes read from the repository, {} copied and {} linked from the database it replaces",
            t.fetched, t.copied, t.linked
        );
    }
    Ok(Exit::Success)
}
