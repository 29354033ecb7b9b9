//! `kstone agent`: runs backups, WAL archiving, prune and verification on
//! cron schedules from one config file, logs every run, survives failing
//! runs, serves Prometheus metrics, and stops cleanly on SIGTERM.

pub mod config;
pub mod hook;
pub mod metrics;
pub mod schedule;

use std::path::Path;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use kstone_backup::{Archiver, BackupOptions, BackupType, Policy, Repository};
use tracing::{error, info, warn};

use self::config::{age, duration, Config};
use self::metrics::Metrics;
use crate::exit::Exit;
use crate::{CliError, CliResult};

fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

fn policy(c: &Config) -> CliResult<Policy> {
    let r = &c.retention;
    let us = |d: Option<Duration>| d.map(|d| d.as_micros() as u64);
    Ok(Policy {
        keep_last: r.keep_last,
        keep_daily: r.keep_daily,
        keep_weekly: r.keep_weekly,
        keep_monthly: r.keep_monthly,
        keep_within_us: us(age(&r.keep_within, "keep_within")?),
        keep_full_days: r.keep_full_days,
        keep_differential_days: r.keep_differential_days,
        keep_incremental_days: r.keep_incremental_days,
        pitr_window_us: us(age(&r.pitr_window, "pitr_window")?),
        allow_empty: false,
    })
}

/// Does the repository hold a backup of the database's current history?
fn has_backup(repo: &Repository, db: &Path) -> bool {
    let Ok(m) = kstone_core::Manifest::load(db) else {
        return false;
    };
    repo.list()
        .unwrap_or_default()
        .iter()
        .any(|b| b.db_id == m.db_id && b.history == m.history)
}

/// Repository-wide gauges; `kinds` are the backup types the agent schedules.
/// The recoverable window's gauges, from the repository.
fn refresh_window_metrics(repo: &Repository, m: &Mutex<Metrics>) {
    if let Ok(w) = repo.window(None) {
        let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
        m.set(
            "kstone_recoverable_window_start_seconds",
            "",
            secs(w.earliest_ts),
        );
        m.set(
            "kstone_recoverable_window_end_seconds",
            "",
            secs(w.latest_ts),
        );
    }
}

fn refresh_repository_metrics(repo: &Repository, m: &Mutex<Metrics>, kinds: &[BackupType]) {
    refresh_window_metrics(repo, m);
    let list = repo.list().unwrap_or_default();
    let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
    m.set(
        "kstone_repository_bytes_stored",
        "",
        list.iter().map(|b| b.bytes_stored).sum::<u64>() as f64,
    );
    // Last success per type from the repository itself, 0 before the first:
    // a "backup too old" alert fires on a host that never backed up, and a
    // restarted agent reports the real age.
    for &kind in kinds {
        let last = list
            .iter()
            .filter(|b| b.kind == kind)
            .map(|b| b.completed_at_us)
            .max()
            .unwrap_or(0);
        let label = kind.to_string();
        let name = "kstone_backup_last_success_timestamp_seconds";
        let known = m.get(name, &label).unwrap_or(0.0);
        m.set(name, &label, known.max(secs(last)));
    }
}

/// How often, at most, archiving refreshes the window gauges (each refresh
/// reads the repository's manifests).
const WINDOW_REFRESH: Duration = Duration::from_secs(30);

fn run_job(name: &str, c: &Config, repo: &Repository, m: &Mutex<Metrics>) -> CliResult<()> {
    let start = Instant::now();
    match name {
        "full" | "incremental" | "differential" => {
            let kind = match name {
                "full" => BackupType::Full,
                "incremental" => BackupType::Incremental,
                _ => BackupType::Differential,
            };
            let b = repo.backup_dir(
                &c.database,
                &BackupOptions {
                    kind: Some(kind),
                    parallelism: 4,
                    skip_unchanged: true,
                    pack_target: 0,
                },
                None,
            );
            let b = match b {
                Err(e @ kstone_backup::Error::Unchanged { .. }) => {
                    // Up to date is a success: an idle database must not
                    // look like a failing backup.
                    info!(job = name, "{e}");
                    m.lock().unwrap_or_else(|p| p.into_inner()).set(
                        "kstone_backup_last_success_timestamp_seconds",
                        name,
                        secs(kstone_core::fsio::now_micros()),
                    );
                    return Ok(());
                }
                b => b?,
            };
            if b.kind != kind {
                info!(job = name, id = %b.id, "no full backup of this database's current history yet: took a full backup");
            }
            info!(job = name, id = %b.id, lsn = b.snapshot_lsn, items = b.item_count, bytes_stored = b.bytes_stored, "backup complete");
            let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
            m.set(
                "kstone_backup_last_success_timestamp_seconds",
                name,
                secs(b.completed_at_us),
            );
            m.set(
                "kstone_backup_last_duration_seconds",
                name,
                start.elapsed().as_secs_f64(),
            );
            m.set(
                "kstone_backup_last_bytes_stored",
                name,
                b.bytes_stored as f64,
            );
        }
        "prune" => {
            let p = policy(c)?;
            let plan = repo.prune(&p, false, kstone_core::fsio::now_micros())?;
            for d in plan.decisions.iter().filter(|d| !d.keep) {
                info!(job = name, id = %d.id, "deleted backup: {}", d.reasons.join(", "));
            }
            info!(
                job = name,
                deleted = plan.decisions.iter().filter(|d| !d.keep).count(),
                kept = plan.decisions.iter().filter(|d| d.keep).count(),
                wal_deleted = plan.wal_delete.len(),
                "prune complete"
            );
        }
        "verify" | "deep_verify" => {
            let deep = name == "deep_verify";
            // What `backup verify --all` checks: every backup and the WAL
            // archive; a repository with no backup has nothing restorable.
            let mut problems = Vec::new();
            let ids = repo.backup_ids()?;
            if ids.is_empty() {
                problems.push(kstone_backup::verify::Problem {
                    backup: "(none)".into(),
                    what: "the repository has no backups: nothing in it can be restored".into(),
                });
            }
            for id in ids {
                problems.extend(repo.verify(&id, deep)?);
            }
            problems.extend(repo.verify_archive(deep)?);
            repo.record_verify(&problems, deep)?;
            let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
            m.set(
                "kstone_verify_last_result",
                name,
                if problems.is_empty() { 1.0 } else { 0.0 },
            );
            m.set(
                "kstone_verify_last_timestamp_seconds",
                name,
                Utc::now().timestamp() as f64,
            );
            drop(m);
            if problems.is_empty() {
                info!(job = name, "verification passed");
            } else {
                for p in &problems {
                    error!(job = name, "verification problem: {p}");
                }
                return Err(CliError::failure(format!(
                    "{} verification problem(s)",
                    problems.len()
                )));
            }
        }
        other => return Err(CliError::failure(format!("unknown job {other}"))),
    }
    Ok(())
}

pub fn run(config_path: &Path, opts: &kstone_backup::OpenOptions) -> CliResult<Exit> {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    let cfg = Config::load(config_path)?;
    crate::stop::install();
    // A database that is not there is a configuration error, found before a
    // repository is initialized for it.
    kstone_core::Manifest::load(&cfg.database).map_err(|e| {
        let msg = format!("{e} (the agent's `database`)");
        CliError::from(e).with_msg(msg)
    })?;
    let (repo, created) = crate::access::open_or_init(&cfg.repository, &cfg.database, opts)?;
    if created {
        info!(repository = %cfg.repository, "initialized new repository");
    }
    let repo = Arc::new(repo);
    let metrics = Arc::new(Mutex::new(Metrics::default()));
    let kinds: Vec<BackupType> = cfg
        .schedules()
        .into_iter()
        .filter_map(|(n, _)| match n {
            "full" => Some(BackupType::Full),
            "incremental" => Some(BackupType::Incremental),
            "differential" => Some(BackupType::Differential),
            _ => None,
        })
        .collect();
    if let Some(addr) = &cfg.metrics_listen {
        let l = std::net::TcpListener::bind(addr)
            .map_err(|e| CliError::failure(format!("metrics_listen {addr}: {e}")))?;
        info!(%addr, "serving metrics");
        metrics::serve(l, Arc::clone(&metrics));
    }
    refresh_repository_metrics(&repo, &metrics, &kinds);

    let heartbeat = duration(&cfg.archive_heartbeat, "archive_heartbeat")?;
    let archiver = duration(&cfg.archive_interval, "archive_interval")?.map(|interval| {
        let (repo, m, db) = (
            Arc::clone(&repo),
            Arc::clone(&metrics),
            cfg.database.clone(),
        );
        let (hook_cmd, repo_loc) = (cfg.on_failure.clone(), cfg.repository.clone());
        info!(?interval, "continuous WAL archiving on");
        std::thread::spawn(move || {
            let mut a = Archiver::new(&repo, &db).heartbeat_every(
                kstone_backup::wal_archive::heartbeat_period(heartbeat, interval),
            );
            let mut window_refreshed = Instant::now();
            // The hook runs when archiving starts failing, not every round.
            let mut failing = false;
            m.lock().unwrap_or_else(|p| p.into_inner()).set(
                "kstone_archive_last_success_timestamp_seconds",
                "",
                0.0,
            );
            // Reads, compression and stores overlap (`Archiver::follow`);
            // each stored object, empty read and failure comes back here.
            let stop = crate::stop::requested;
            a.follow(None, interval, &stop, &mut |r, a| {
                let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
                g.inc("kstone_job_runs_total", "archive");
                // The shared definition (`archive_health`): it keeps
                // growing while rounds fail.
                g.set("kstone_archive_lag_seconds", "", secs(a.lag_us()));
                match r {
                    Ok(round) => {
                        if failing {
                            info!(job = "archive", "archiving works again");
                        }
                        failing = false;
                        g.set("kstone_archive_last_lsn", "", round.archived_lsn as f64);
                        if round.records > 0 && window_refreshed.elapsed() >= WINDOW_REFRESH {
                            drop(g);
                            refresh_window_metrics(&repo, &m);
                            window_refreshed = Instant::now();
                            g = m.lock().unwrap_or_else(|p| p.into_inner());
                        }
                        g.set(
                            "kstone_archive_last_success_timestamp_seconds",
                            "",
                            secs(kstone_core::fsio::now_micros()),
                        );
                    }
                    Err(e) => {
                        g.inc("kstone_job_failures_total", "archive");
                        warn!(job = "archive", "archiving round failed, will retry: {e}");
                        if let (Some(cmd), false) = (&hook_cmd, failing) {
                            let db = db.display().to_string();
                            hook::on_failure(cmd, "archive", &e.to_string(), &repo_loc, &db);
                        }
                        failing = true;
                    }
                }
            });
            if let Err(e) = a.stop() {
                warn!(job = "archive", "could not record the archiver's stop: {e}");
            }
            refresh_window_metrics(&repo, &m);
        })
    });

    let mut jobs: Vec<(&str, schedule::Schedule, Option<chrono::DateTime<Utc>>)> = cfg
        .schedules()
        .into_iter()
        .map(|(n, e)| {
            let s = schedule::parse(e).map_err(CliError::failure)?;
            let next = s.next_after(&Utc::now());
            Ok((n, s, next))
        })
        .collect::<CliResult<_>>()?;
    let db_path = cfg.database.display().to_string();
    info!(database = %db_path, jobs = jobs.len(), "agent started");
    // One run of a job: counted, logged, the hook on failure, metrics after.
    let run_and_report = |name: &str| {
        metrics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .inc("kstone_job_runs_total", name);
        if let Err(e) = run_job(name, &cfg, &repo, &metrics) {
            metrics
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .inc("kstone_job_failures_total", name);
            error!(job = name, "run failed (next run as scheduled): {}", e.msg);
            if let Some(cmd) = &cfg.on_failure {
                hook::on_failure(cmd, name, &e.msg, &cfg.repository, &db_path);
            }
        }
        refresh_repository_metrics(&repo, &metrics, &kinds);
    };
    // First run: a freshly installed host would have no backup until the
    // first scheduled one (a nightly full); take it now.
    if !kinds.is_empty() && !has_backup(&repo, &cfg.database) {
        info!(
            job = "full",
            "first run: the repository has no backup of this database's current history; taking a full backup now"
        );
        run_and_report("full");
    }
    while !crate::stop::requested() {
        let now = Utc::now();
        for (name, schedule, next) in jobs.iter_mut() {
            if next.is_some_and(|n| n <= now) {
                run_and_report(name);
                *next = schedule.next_after(&Utc::now());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    info!("stopping");
    if let Some(t) = archiver {
        let _ = t.join();
    }
    hook::stop_all();
    info!("stopped");
    Ok(Exit::Success)
}
