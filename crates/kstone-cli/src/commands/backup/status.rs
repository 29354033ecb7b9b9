//! `kstone backup status`: backups, the recoverable window and archiving health.

use kstone_backup::manifest::{rfc3339, rfc3339_us};
use serde_json::json;

use crate::exit::Exit;
use crate::repo_options::RepoOptions;
use crate::time_args::parse_age;
use crate::CliResult;

/// Backups, the recoverable window (earliest and latest reachable point),
/// how far the WAL archive trails the database's last write (0 when
/// caught up, also while the database is idle) and the archiver's last
/// report. Exits 1, saying why, when something needs an operator: a
/// damaged backup, a hole in the archive, a failed verification, an
/// archiver that reports failure or stopped reporting, or a limit given
/// by --max-age / --max-archive-lag — for cron and monitoring.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Repository location: a directory, or s3://bucket/prefix.
    #[arg(long)]
    pub repo: String,
    /// e.g. 26h: the newest backup must be younger than this.
    #[arg(long, value_parser = parse_age)]
    pub max_age: Option<std::time::Duration>,
    /// e.g. 60s: the archive must trail the database's last write by no
    /// more than this at the archiver's last report, and an archiver must
    /// be reporting (a continuous one at least every few periods, a
    /// one-off `wal-archive --once` within this time).
    #[arg(long, value_parser = parse_age)]
    pub max_archive_lag: Option<std::time::Duration>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub access: RepoOptions,
}

/// Run `kstone backup status`.
pub fn run(a: &StatusArgs) -> CliResult<Exit> {
    let StatusArgs {
        repo,
        max_age,
        max_archive_lag,
        json: as_json,
        access,
    } = a;
    let (max_age, max_archive_lag, as_json) = (*max_age, *max_archive_lag, *as_json);
    let r = crate::access::open(repo, &access.open_options())?;
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
    if let Some(p) = r.chunk_key_problem()? {
        problems.push(p);
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
    // Every backup's logical size beside what the repository stores for
    // them (chunks stored once, in format 2).
    let logical: u64 = listed.iter().map(|m| m.bytes_total).sum();
    let stored = r.stored_bytes()?;
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
        v["bytes_logical"] = json!(logical);
        v["bytes_stored"] = json!(stored);
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
        println!(
            "stored           {stored} bytes of backup data for {logical} bytes in {} backups",
            listed.len()
        );
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
        return Ok(Exit::Failure);
    }
    Ok(Exit::Success)
}
