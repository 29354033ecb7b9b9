//! The agent's configuration file (`kstone.toml`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::{CliError, CliResult};

/// Schedules are cron expressions: standard 5-field (`0 2 * * *`) or 6
/// fields with seconds first (see `schedule.rs`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedules {
    pub full: Option<String>,
    pub incremental: Option<String>,
    pub differential: Option<String>,
    pub prune: Option<String>,
    pub verify: Option<String>,
    /// A verify with a test restore (`verify --deep`).
    pub deep_verify: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    pub keep_last: Option<usize>,
    pub keep_daily: Option<usize>,
    pub keep_weekly: Option<usize>,
    pub keep_monthly: Option<usize>,
    pub keep_within: Option<String>,
    pub keep_full_days: Option<u64>,
    pub keep_differential_days: Option<u64>,
    pub keep_incremental_days: Option<u64>,
    pub pitr_window: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The database directory (the application may have it open).
    pub database: PathBuf,
    /// The backup repository.
    pub repository: String,
    /// Continuous WAL archiving interval (e.g. "1s"), as `wal-archive
    /// --interval`: how often an idle database is looked at (a busy one is
    /// read back to back); absent = off.
    pub archive_interval: Option<String>,
    /// How often the archiver reports that it is alive to the repository
    /// (`backup status`); default a minute, or the interval if longer.
    pub archive_heartbeat: Option<String>,
    /// Where to serve Prometheus metrics (loopback only), e.g. "127.0.0.1:9187".
    pub metrics_listen: Option<String>,
    /// A shell command run when a job fails (archiving: when it starts
    /// failing), with `KSTONE_JOB`, `KSTONE_ERROR`, `KSTONE_REPOSITORY`,
    /// `KSTONE_DATABASE` and `KSTONE_HOST` set; e.g.
    /// `mail -s "kstone $KSTONE_JOB failed on $KSTONE_HOST" ops@example.com <<< "$KSTONE_ERROR"`.
    pub on_failure: Option<String>,
    #[serde(default)]
    pub schedule: Schedules,
    #[serde(default)]
    pub retention: Retention,
}

pub fn duration(s: &Option<String>, what: &str) -> CliResult<Option<Duration>> {
    s.as_deref()
        .map(|d| {
            crate::time_args::parse_duration(d)
                .map_err(|e| CliError::failure(format!("{what}: {e}")))
        })
        .transpose()
}

/// A retention age (`30d`): its unit is required, since `30` meant as days
/// would keep only 30 seconds.
pub fn age(s: &Option<String>, what: &str) -> CliResult<Option<Duration>> {
    s.as_deref()
        .map(|d| {
            crate::time_args::parse_age(d).map_err(|e| CliError::failure(format!("{what}: {e}")))
        })
        .transpose()
}

impl Config {
    pub fn load(path: &Path) -> CliResult<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::failure(format!("{}: {e}", path.display())))?;
        let c: Config = toml::from_str(&text)
            .map_err(|e| CliError::failure(format!("{}: {e}", path.display())))?;
        for (name, expr) in c.schedules() {
            super::schedule::parse(expr).map_err(|e| {
                CliError::failure(format!("{}: schedule.{name}: {e}", path.display()))
            })?;
        }
        if duration(&c.archive_interval, "archive_interval")?
            .is_some_and(|d| d < Duration::from_millis(10))
        {
            return Err(CliError::failure(format!(
                "{}: archive_interval must be at least 10ms (a busy loop otherwise)",
                path.display()
            )));
        }
        match (
            &c.archive_interval,
            duration(&c.archive_heartbeat, "archive_heartbeat")?,
        ) {
            (_, Some(d)) if d < Duration::from_secs(1) => {
                return Err(CliError::failure(format!(
                    "{}: archive_heartbeat must be at least 1s",
                    path.display()
                )))
            }
            (None, Some(_)) => {
                return Err(CliError::failure(format!(
                "{}: archive_heartbeat needs archive_interval (it is how often archiving reports)",
                path.display()
            )))
            }
            _ => {}
        }
        age(&c.retention.keep_within, "retention.keep_within")?;
        age(&c.retention.pitr_window, "retention.pitr_window")?;
        if let Some(addr) = &c.metrics_listen {
            let a: std::net::SocketAddr = addr
                .parse()
                .map_err(|e| CliError::failure(format!("metrics_listen {addr:?}: {e}")))?;
            if !a.ip().is_loopback() {
                return Err(CliError::failure(format!(
                    "metrics_listen {addr:?} must be a loopback address"
                )));
            }
        }
        Ok(c)
    }

    /// (job name, cron expression) of every configured job.
    pub fn schedules(&self) -> Vec<(&'static str, &str)> {
        let s = &self.schedule;
        [
            ("full", &s.full),
            ("incremental", &s.incremental),
            ("differential", &s.differential),
            ("prune", &s.prune),
            ("verify", &s.verify),
            ("deep_verify", &s.deep_verify),
        ]
        .into_iter()
        .filter_map(|(n, e)| e.as_deref().map(|e| (n, e)))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_configuration_loads() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/systemd/kstone.toml");
        let c = Config::load(&path).unwrap();
        assert_eq!(c.schedules().len(), 6);
    }

    #[test]
    fn a_bad_schedule_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.toml");
        std::fs::write(
            &path,
            "database = \"/d\"\nrepository = \"/r\"\n[schedule]\nfull = \"0 2 * *\"\n",
        )
        .unwrap();
        let e = Config::load(&path).err().unwrap().msg;
        assert!(
            e.contains(
                "schedule.full: \"0 2 * *\" has 4 fields: a schedule has 5 fields (minute hour"
            ),
            "{e}"
        );
    }
}
