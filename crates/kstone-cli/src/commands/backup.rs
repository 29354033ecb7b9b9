//! `kstone backup …` and `kstone restore`.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use kstone_backup::manifest::{rfc3339, rfc3339_us};
use kstone_backup::{
    Archiver, BackupManifest, BackupOptions, BackupType, Policy, Repository, Target,
};
use serde_json::json;

use crate::args::{BackupCmd, BackupTypeArg, PruneArgs, RestoreArgs};
use crate::{CliError, CliResult};

fn summary(m: &BackupManifest) -> serde_json::Value {
    json!({
        "id": m.id, "type": m.kind, "parent": m.parent, "base_full": m.base_full,
        "db_id": m.db_id, "history": m.history, "snapshot_lsn": m.snapshot_lsn,
        "snapshot_time": rfc3339(m.snapshot_commit_us), "completed": rfc3339(m.completed_at_us),
        "duration_secs": (m.completed_at_us.saturating_sub(m.started_at_us)) as f64 / 1e6,
        "items": m.item_count, "files": m.files.len(),
        "bytes_stored": m.bytes_stored, "bytes_total": m.bytes_total,
    })
}

/// A spinner on stderr while `f` runs, when stderr is a terminal.
/// Run `f` with a spinner on a terminal, progress lines off one.
fn spin<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let p = crate::progress::Progress::spinner(what);
    let r = f();
    p.finish();
    r
}

pub fn run(cmd: BackupCmd) -> CliResult<ExitCode> {
    match cmd {
        BackupCmd::Init {
            repo,
            compression_level,
            no_compression,
            recipient,
            recipients_file,
            repair,
        } => {
            if repair {
                let opts = crate::access::options();
                let storage = kstone_backup::storage::Storage::open_with(&repo, false, &opts.s3)?;
                let c = Repository::repair_config(storage)?;
                println!(
                    "rewrote the config of repository {repo} (id {}, {})",
                    c.repository_id,
                    if c.encryption.is_some() {
                        "encrypted"
                    } else {
                        "not encrypted"
                    }
                );
                return Ok(ExitCode::SUCCESS);
            }
            let mut recipients = recipient;
            if let Some(f) = &recipients_file {
                let from_file = kstone_backup::crypto::read_recipients_file(f)?;
                if from_file.is_empty() {
                    return Err(CliError(format!("{} lists no recipient", f.display())));
                }
                recipients.extend(from_file);
            }
            let init = kstone_backup::InitOptions {
                compression_level: (!no_compression).then_some(compression_level),
                recipients,
            };
            // Before the location is created: a refused init leaves nothing.
            init.validate()?;
            let opts = crate::access::options();
            let storage = kstone_backup::storage::Storage::open_with(&repo, true, &opts.s3)?;
            let r = Repository::init_with(storage, &init)?;
            println!(
                "initialized repository {} (id {})",
                repo, r.config.repository_id
            );
            if r.encryption().is_some() {
                let n = r.recipients()?.len();
                println!(
                    "encrypted (age) to {n} recipient{}: backups need no secret; restore, verify --deep, export and PITR need --identity",
                    if n == 1 { "" } else { "s" }
                );
            }
        }
        BackupCmd::Rekey {
            repo,
            add_recipient,
            remove_recipient,
        } => {
            if add_recipient.is_empty() && remove_recipient.is_empty() {
                return Err(CliError(
                    "give --add-recipient and/or --remove-recipient".into(),
                ));
            }
            let r = crate::access::open(&repo)?;
            let now = r.rekey(&add_recipient, &remove_recipient)?;
            println!("the repository's data key is now wrapped to:");
            for k in now {
                println!("  {k}");
            }
        }
        BackupCmd::Keygen { output } => {
            let (text, public) = kstone_backup::crypto::generate_identity();
            write_new_secret(&output, text.as_bytes())?;
            eprintln!(
                "wrote identity to {} (keep it safe and off the backup host)",
                output.display()
            );
            println!("{public}");
        }
        BackupCmd::Create {
            db,
            repo,
            kind,
            json,
            allow_empty,
        } => {
            // A database that is not there fails before a new repository is
            // initialized for it (no empty repository left behind).
            kstone_core::manifest::Manifest::load(&db)?;
            // Directories this command creates for a new local repository.
            let made = (!repo.contains("://"))
                .then(|| first_missing(std::path::Path::new(&repo)))
                .flatten();
            let new_dir = made.is_some();
            let (r, created) = crate::access::open_or_init(&repo, &db)?;
            if created {
                eprintln!("initialized new repository at {repo}");
            }
            let opts = BackupOptions {
                kind: kind.map(|k| match k {
                    BackupTypeArg::Full => BackupType::Full,
                    BackupTypeArg::Incremental => BackupType::Incremental,
                    BackupTypeArg::Differential => BackupType::Differential,
                }),
                parallelism: 4,
                skip_unchanged: !allow_empty,
            };
            let pb = crate::progress::Progress::bytes("backing up");
            let progress = |done: u64, total: u64| pb.set(done, total);
            let m = r.backup_dir(&db, &opts, Some(&progress));
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
                    return Ok(ExitCode::SUCCESS);
                }
                // A repository made for this backup is not left behind empty.
                Err(e) if created => {
                    return Err(match r.discard_unused(new_dir) {
                        Ok(true) => {
                            let parents = made.as_deref().map_or(Ok(()), |top| {
                                remove_empty_parents(std::path::Path::new(&repo), top)
                            });
                            CliError(match parents {
                                Ok(()) => format!(
                                    "{e} (the repository initialized for this backup was removed again)"
                                ),
                                Err(x) => format!(
                                    "{e} (the repository initialized for this backup was removed again; \
                                     the directories made for it could not be: {x})"
                                ),
                            })
                        }
                        Ok(false) => e.into(),
                        Err(d) => CliError(format!(
                            "{e}; the repository initialized for it could not be removed: {d}"
                        )),
                    });
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
        }
        BackupCmd::List { repo, json } => {
            let (list, damaged) = crate::access::open(&repo)?.list_readable()?;
            for (id, e) in &damaged {
                eprintln!("warning: backup {id} is damaged and not listed: {e}");
            }
            if json {
                let v: Vec<_> = list.iter().map(summary).collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "{:<30} {:<12} {:<20} {:>10} {:>10} {:>14} {:>14}  parent",
                    "id", "type", "snapshot time", "lsn", "items", "stored bytes", "total bytes"
                );
                for m in &list {
                    println!(
                        "{:<30} {:<12} {:<20} {:>10} {:>10} {:>14} {:>14}  {}",
                        m.id,
                        m.kind.to_string(),
                        rfc3339(m.snapshot_commit_us),
                        m.snapshot_lsn,
                        m.item_count,
                        m.bytes_stored,
                        m.bytes_total,
                        m.parent.as_deref().unwrap_or("-")
                    );
                }
            }
        }
        BackupCmd::Info { repo, id, json } => {
            let m = crate::access::open(&repo)?.manifest(&id)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&m)?);
            } else {
                let s = summary(&m);
                for (k, v) in s.as_object().into_iter().flatten() {
                    println!(
                        "{k:<14} {}",
                        v.as_str().map(String::from).unwrap_or(v.to_string())
                    );
                }
            }
        }
        BackupCmd::Verify {
            repo,
            id,
            all,
            deep,
        } => {
            let r = crate::access::open(&repo)?;
            let ids = if all {
                let ids = r.backup_ids()?;
                if ids.is_empty() {
                    eprintln!("nothing to verify: {repo} has no backups, so nothing in it can be restored");
                    return Ok(ExitCode::from(1));
                }
                ids
            } else {
                vec![r.resolve(id.as_deref().unwrap_or("latest"))?]
            };
            let mut problems = Vec::new();
            for id in &ids {
                let p = spin(&format!("verifying {id}"), || r.verify(id, deep))?;
                if let Err(e) = r.record_verify(&p, deep) {
                    eprintln!("warning: could not record the verification result: {e}");
                }
                if p.is_empty() {
                    println!("ok        {id}");
                } else {
                    println!("FAILED    {id}");
                }
                problems.extend(p);
            }
            if all {
                let p = spin("verifying the WAL archive", || r.verify_archive(deep))?;
                if p.is_empty() {
                    println!("ok        WAL archive");
                } else {
                    println!("FAILED    WAL archive");
                    if let Err(e) = r.record_verify(&p, deep) {
                        eprintln!("warning: could not record the verification result: {e}");
                    }
                }
                problems.extend(p);
            }
            if !problems.is_empty() {
                for p in &problems {
                    eprintln!("problem: {p}");
                }
                eprintln!(
                    "{} problem(s) in {} backup(s) checked",
                    problems.len(),
                    ids.len()
                );
                return Ok(ExitCode::from(1));
            }
        }
        BackupCmd::Status {
            repo,
            max_age,
            max_archive_lag,
            json: as_json,
        } => {
            let r = crate::access::open(&repo)?;
            // Heartbeats before the window, so that what an archiver says it
            // stored is never newer than what the window sees.
            let beats = r.heartbeats()?;
            let w = r.window(None)?;
            let (listed, damaged) = r.list_readable()?;
            let now = kstone_core::fsio::now_micros();
            // The archiver's own measure (`archive_health`), as of its last
            // heartbeat: the repository alone cannot know the database's
            // newest write.
            let hb = beats
                .iter()
                .find(|(id, _)| *id == w.db_id)
                .and_then(|(_, h)| h.as_ref().ok());
            let lag = hb.and_then(|h| h.lag_us).map(|l| l as f64 / 1e6);
            let newest = listed.iter().max_by_key(|m| m.completed_at_us);
            let age = newest
                .as_ref()
                .map(|m| now.saturating_sub(m.completed_at_us) as f64 / 1e6);
            let verify = r.last_verify()?;
            let mut problems: Vec<String> = damaged
                .iter()
                .map(|(id, e)| format!("backup {id} is damaged: {e}"))
                .collect();
            problems.extend(r.archive_holes()?.iter().map(|p| p.to_string()));
            // Every database that archives here, not only the one shown.
            for (id, h) in &beats {
                let mine = *id == w.db_id;
                let found = match h {
                    Ok(h) => {
                        let reach = if h.history == w.history {
                            Some(w.latest_lsn)
                        } else {
                            r.reachable_lsn(&h.history)
                        };
                        h.problems(now, reach, max_archive_lag.filter(|_| mine))
                    }
                    Err(e) => vec![format!(
                        "its archiver heartbeat is unreadable ({e}); the next archiving round rewrites it"
                    )],
                };
                problems.extend(found.into_iter().map(|p| {
                    if mine {
                        p
                    } else {
                        format!("database {id}: {p}")
                    }
                }));
            }
            if max_archive_lag.is_some() && hb.is_none() {
                problems.push(
                    "no archiver has reported to this repository for this database (run `kstone wal-archive` or the agent's archive_interval)"
                        .into(),
                );
            }
            if let (Some(max), Some(age)) = (max_age, age) {
                if age > max.as_secs_f64() {
                    problems.push(format!(
                        "the newest backup is {age:.0} s old, older than --max-age {} s",
                        max.as_secs()
                    ));
                }
            }
            if let Some(v) = &verify {
                if !v.ok {
                    problems.push(format!(
                        "the last verification ({}) failed: {}",
                        rfc3339(v.at_us),
                        v.problems.join("; ")
                    ));
                }
            }
            if as_json {
                let mut v = serde_json::to_value(&w)?;
                // To the microsecond: a time shown must restore as shown.
                v["earliest_time"] = json!(rfc3339_us(w.earliest_ts));
                v["latest_time"] = json!(rfc3339_us(w.latest_ts));
                v["archive_lag_secs"] = json!(lag);
                v["archiver"] = json!(hb.map(|h| json!({
                    "state": h.state(now),
                    "heartbeat_time": rfc3339(h.at_us),
                    "heartbeat_age_secs": h.age_secs(now),
                    "every_secs": h.every_us as f64 / 1e6,
                    "database_lsn": h.db.lsn,
                    "archived_lsn": h.archived.map(|a| a.lsn),
                    "error": h.error,
                    "host": h.host,
                    "pid": h.pid,
                })));
                v["newest_backup_age_secs"] = json!(age);
                v["last_verify"] = serde_json::to_value(&verify)?;
                v["problems"] = json!(problems);
                v["backups_in_repository"] = json!(listed.len());
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("database         {} (history {})", w.db_id, w.history);
                // The window is one history's; `list` shows every backup.
                if listed.len() == w.backups {
                    println!("backups          {}", w.backups);
                } else {
                    println!(
                        "backups          {} of this history ({} in the repository: `backup list`)",
                        w.backups,
                        listed.len()
                    );
                }
                println!("archive objects  {}", w.archive_objects);
                // To the microsecond: a time shown must restore as shown.
                println!(
                    "earliest point   LSN {} at {}",
                    w.earliest_lsn,
                    rfc3339_us(w.earliest_ts)
                );
                println!(
                    "latest point     LSN {} at {}",
                    w.latest_lsn,
                    rfc3339_us(w.latest_ts)
                );
                if w.reachable.len() > 1 {
                    // Older backups whose archive does not continue them are
                    // restorable on their own, not the points between.
                    let parts: Vec<String> = w.reachable.iter().map(|r| r.to_string()).collect();
                    println!("reachable        {}", parts.join(", "));
                }
                match hb {
                    Some(h) => {
                        match h.lag_us {
                            Some(l) => println!(
                                "archive lag      {:.1} s: the oldest write the archive lacked had waited this long at the archiver's last report (0 = caught up)",
                                l as f64 / 1e6
                            ),
                            None => println!(
                                "archive lag      unknown: the archiver has not yet read the database's WAL"
                            ),
                        }
                        println!(
                            "archiver         {} on {} (pid {}): {}, last report {:.0} s ago{}",
                            h.state(now),
                            h.host,
                            h.pid,
                            match h.archived {
                                Some(a) => format!(
                                    "through LSN {} of the database's {}",
                                    a.lsn, h.db.lsn
                                ),
                                None => format!("nothing stored yet (database at LSN {})", h.db.lsn),
                            },
                            h.age_secs(now),
                            if h.stopped {
                                " (stopped cleanly)".to_string()
                            } else if h.every_us > 0 {
                                format!(", reports every {} s", h.every_us / 1_000_000)
                            } else {
                                " (a one-off run)".into()
                            }
                        );
                    }
                    None if beats.iter().any(|(id, h)| *id == w.db_id && h.is_err()) => println!(
                        "archive lag      unknown: the archiver's heartbeat is unreadable (see the problem below)"
                    ),
                    None => println!(
                        "archive lag      unknown: no archiver has reported here (`kstone wal-archive`, or the agent's archive_interval)"
                    ),
                }
                if let Some(age) = age {
                    println!("newest backup    {age:.0} s old");
                }
                match &verify {
                    Some(v) => println!(
                        "last verify      {} at {}",
                        if v.ok { "ok" } else { "FAILED" },
                        rfc3339(v.at_us)
                    ),
                    None => println!("last verify      never"),
                }
            }
            if !problems.is_empty() {
                for p in &problems {
                    eprintln!("problem: {p}");
                }
                return Ok(ExitCode::from(1));
            }
        }
        BackupCmd::Prune(a) => return prune(&a),
        BackupCmd::Export { repo, id, output } => {
            let rep = crate::access::open(&repo)?.export_archive(&id, &output)?;
            println!("{}", rep.archive.display());
            eprintln!(
                "wrote {} ({} bytes) and {}",
                rep.archive.display(),
                rep.bytes,
                rep.checksum_file.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn confirm(target: &std::path::Path) -> CliResult<bool> {
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

pub fn prune(a: &PruneArgs) -> CliResult<ExitCode> {
    let us = |d: Option<std::time::Duration>| d.map(|d| d.as_micros() as u64);
    let policy = Policy {
        keep_last: a.keep_last,
        keep_daily: a.keep_daily,
        keep_weekly: a.keep_weekly,
        keep_monthly: a.keep_monthly,
        keep_within_us: us(a.keep_within),
        keep_full_days: a.keep_full_days,
        keep_differential_days: a.keep_differential_days,
        keep_incremental_days: a.keep_incremental_days,
        pitr_window_us: us(a.pitr_window),
        allow_empty: a.allow_empty,
    };
    let r = crate::access::open(&a.repo)?;
    let plan = r.prune(&policy, a.dry_run, kstone_core::fsio::now_micros())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
        return Ok(ExitCode::SUCCESS);
    }
    if policy.is_empty() {
        eprintln!("no retention rule given: nothing is deleted (see kstone backup prune --help)");
    }
    for d in &plan.damaged {
        eprintln!("warning: damaged backup {d} (it and every older backup are kept)");
    }
    let verb = if a.dry_run { "would delete" } else { "deleted" };
    for d in &plan.decisions {
        println!(
            "{:<7} {:<30} {:<12} {:>12}  {}",
            if d.keep {
                "keep"
            } else if a.dry_run {
                "DELETE?"
            } else {
                "DELETED"
            },
            d.id,
            d.kind.to_string(),
            d.bytes,
            d.reasons.join(", ")
        );
    }
    let gone = plan.decisions.iter().filter(|d| !d.keep).count();
    println!(
        "{verb} {gone} of {} backups ({} bytes) and {} of {} archived WAL objects",
        plan.decisions.len(),
        plan.bytes_freed,
        plan.wal_delete.len(),
        plan.wal_delete.len() + plan.wal_keep
    );
    Ok(ExitCode::SUCCESS)
}

/// A restore target inside a local repository would mix a database into
/// the repository's objects.
fn refuse_target_in_repo(repo: &str, target: &std::path::Path) -> CliResult<()> {
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
            break Some(c.join(abs.strip_prefix(probe).unwrap_or(std::path::Path::new(""))));
        }
        match probe.parent() {
            Some(p) => probe = p,
            None => break None,
        }
    };
    if resolved.is_some_and(|t| t.starts_with(&repo_dir)) {
        return Err(CliError(format!(
            "{} is inside the repository {repo}; restore somewhere else",
            target.display()
        )));
    }
    Ok(())
}

pub fn restore(a: &RestoreArgs) -> CliResult<ExitCode> {
    if let Some(repo) = &a.repo {
        refuse_target_in_repo(repo, &a.target)?;
    }
    // Read before the restore replaces the target.
    let own =
        crate::ownership::Ownership::for_restore(a.owner.as_deref(), a.mode.as_deref(), &a.target)?;
    let code = restore_into(a)?;
    if code == ExitCode::SUCCESS && !own.is_empty() {
        own.apply(&a.target)?;
        println!("{}: {}", a.target.display(), own.describe());
    }
    Ok(code)
}

fn restore_into(a: &RestoreArgs) -> CliResult<ExitCode> {
    if !a.yes && !confirm(&a.target)? {
        eprintln!("restore cancelled; nothing changed");
        return Ok(ExitCode::from(1));
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
        let r = crate::access::open(repo)?;
        let rep = spin("restoring to a point in time", || {
            r.restore_to(&t, &a.target, a.history.as_deref())
        })?;
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
        return Ok(ExitCode::SUCCESS);
    }
    let report = match (&a.repo, &a.archive) {
        (Some(repo), None) => {
            let r = crate::access::open(repo)?;
            let id = r.resolve_in(a.id.as_deref().unwrap_or("latest"), a.history.as_deref())?;
            spin("restoring", || r.restore(&id, &a.target))?
        }
        (None, Some(archive)) if archive.as_os_str() == "-" => {
            // `gpg -d … | kstone restore --archive -`: spooled beside the
            // target into a file without a name (gone however this process
            // ends), read back through /proc; no .sha256 to check.
            use std::os::fd::AsRawFd;
            let dir = kstone_core::fsio::parent(&a.target);
            let mut spool = tempfile::tempfile_in(dir)
                .map_err(|e| CliError(format!("{}: {e}", dir.display())))?;
            let n = std::io::copy(&mut std::io::stdin().lock(), &mut spool)
                .map_err(|e| CliError(format!("reading the archive from standard input: {e}")))?;
            if n == 0 {
                return Err(CliError(
                    "no archive on standard input (nothing was read); nothing restored".into(),
                ));
            }
            let path = std::path::PathBuf::from(format!("/proc/self/fd/{}", spool.as_raw_fd()));
            spin("restoring", || {
                kstone_backup::restore_archive(&path, &a.target)
            })
            .map_err(|e| {
                CliError(
                    e.to_string()
                        .replace(&path.display().to_string(), "(standard input)")
                        .replace(
                            "there is no .sha256 file beside it to check it against",
                            "check it against its checksum before piping it in",
                        ),
                )
            })?
        }
        (None, Some(archive)) => spin("restoring", || {
            kstone_backup::restore_archive(archive, &a.target)
        })?,
        _ => return Err(CliError("give --repo or --archive".into())),
    };
    println!(
        "restored {} ({} items)",
        report.target.display(),
        report.items
    );
    if let Some(aside) = &report.moved_aside {
        println!("previous contents moved to {}", aside.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Create `path` with mode 0600; never replaces an existing file.
fn write_new_secret(path: &std::path::Path, bytes: &[u8]) -> CliResult<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| CliError(format!("cannot create {}: {e}", path.display())))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        kstone_core::fsio::sync_dir(dir)?;
    }
    Ok(())
}

pub fn wal_archive(
    db: &std::path::Path,
    repo: &str,
    interval: std::time::Duration,
    once: bool,
    heartbeat: Option<std::time::Duration>,
) -> CliResult<ExitCode> {
    // A database that is not there fails before a repository is made for it.
    kstone_core::manifest::Manifest::load(db)?;
    let (r, created) = crate::access::open_or_init(repo, db)?;
    if created {
        eprintln!("initialized new repository at {repo}");
    }
    // Archived WAL is replayed on top of a backup of the same history; say
    // so when there is none (e.g. right after a restore started a new one).
    let manifest = kstone_core::manifest::Manifest::load(db).ok();
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
        return Ok(ExitCode::SUCCESS);
    }
    let mut a = Archiver::new(&r, db).heartbeat_every(
        kstone_backup::wal_archive::heartbeat_period(heartbeat, interval),
    );
    eprintln!(
        "archiving {} into {repo} every {interval:?}; Ctrl-C to stop",
        db.display()
    );
    crate::stop::install();
    let mut failures = 0u32;
    let mut last_error = String::new();
    while !crate::stop::requested() {
        let start = std::time::Instant::now();
        match &a.round() {
            Ok(round) if round.records > 0 => {
                if failures > 0 {
                    eprintln!("archiving works again");
                }
                failures = 0;
                last_error.clear();
                eprintln!(
                    "archived {} records through LSN {} ({})",
                    round.records,
                    round.archived_lsn,
                    rfc3339_us(round.archived_ts)
                );
            }
            Ok(_) => {
                if failures > 0 {
                    eprintln!("archiving works again");
                }
                failures = 0;
                last_error.clear();
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
        }
        while start.elapsed() < interval && !crate::stop::requested() {
            std::thread::sleep(std::time::Duration::from_millis(50).min(interval));
        }
    }
    // Said to the repository, so that `status` tells a stop from a stall.
    if let Err(e) = a.stop() {
        eprintln!("warning: could not record the archiver's stop in {repo}: {e}");
    }
    eprintln!("stopped");
    Ok(ExitCode::SUCCESS)
}

pub fn wal_unregister(db: &std::path::Path, repo: &str) -> CliResult<ExitCode> {
    use kstone_core::wal::archive_mark;
    let regs = archive_mark::registrations(db)?;
    // The repository may be gone for good: then its recorded location names it.
    let id = match crate::access::open(repo) {
        Ok(r) => r.config.repository_id.clone(),
        Err(e) => regs
            .iter()
            .find(|(_, r)| r.location == repo)
            .map(|(id, _)| id.clone())
            .ok_or_else(|| {
                CliError(format!(
                    "{}; and no repository registered for {} is recorded at {repo}",
                    e.0,
                    db.display()
                ))
            })?,
    };
    if !archive_mark::unregister(db, &id)? {
        return Err(CliError(format!(
            "{} is not archived to {repo} (see `kstone stats {}`)",
            db.display(),
            db.display()
        )));
    }
    println!(
        "{} is no longer archived to {repo}: WAL is not kept for it any more",
        db.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn restore_point(db: &std::path::Path, name: &str) -> CliResult<ExitCode> {
    let (lsn, ts) = match kstone_core::Database::open(db, kstone_core::Options::default()) {
        Ok(d) => {
            let r = d.create_restore_point(name)?;
            d.close()?;
            r
        }
        Err(kstone_core::Error::Locked { .. }) => {
            kstone_core::snapshot::remote::request_restore_point(
                db,
                name,
                std::time::Duration::from_secs(10),
            )?
        }
        Err(e) => return Err(e.into()),
    };
    println!("restore point {name:?} at LSN {lsn} ({})", rfc3339_us(ts));
    Ok(ExitCode::SUCCESS)
}

/// The outermost not-yet-existing directory on the way to `path`: what
/// creating `path` makes.
fn first_missing(path: &std::path::Path) -> Option<std::path::PathBuf> {
    path.ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
        .last()
        .map(|a| a.to_path_buf())
}

/// Remove the empty directories between `path` (already gone) and `top`,
/// which this command created.
fn remove_empty_parents(path: &std::path::Path, top: &std::path::Path) -> std::io::Result<()> {
    for dir in path.ancestors().skip(1) {
        if !dir.starts_with(top) || dir.as_os_str().is_empty() {
            break;
        }
        std::fs::remove_dir(dir)?;
    }
    Ok(())
}
