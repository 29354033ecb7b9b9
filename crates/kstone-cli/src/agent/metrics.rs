//! Prometheus metrics of the agent, served as text on a loopback address.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// Gauges and counters by (name, label value).
#[derive(Debug, Default)]
pub struct Metrics {
    values: BTreeMap<(String, String), f64>,
}

/// Help text and label name of each metric family.
const FAMILIES: &[(&str, &str, &str, &str)] = &[
    (
        "kstone_backup_last_success_timestamp_seconds",
        "gauge",
        "type",
        "Unix time of the last successful run of each backup type (a backup written, or nothing new to back up); 0 before the first.",
    ),
    (
        "kstone_backup_last_duration_seconds",
        "gauge",
        "type",
        "Duration of the last successful backup of each type.",
    ),
    (
        "kstone_backup_last_bytes_stored",
        "gauge",
        "type",
        "Bytes the last successful backup of each type stored.",
    ),
    (
        "kstone_repository_bytes_stored",
        "gauge",
        "",
        "Bytes stored by all backups in the repository.",
    ),
    (
        "kstone_verify_last_result",
        "gauge",
        "kind",
        "1 if the last verification passed, 0 if it found problems.",
    ),
    (
        "kstone_verify_last_timestamp_seconds",
        "gauge",
        "kind",
        "Unix time of the last verification.",
    ),
    (
        "kstone_archive_lag_seconds",
        "gauge",
        "",
        "How long the oldest committed write the archive lacks has waited, measured when each archiving round reads the WAL (growing while rounds fail); 0 when caught up, however long the database is idle.",
    ),
    (
        "kstone_archive_last_success_timestamp_seconds",
        "gauge",
        "",
        "Unix time of the last archiving round that worked (with or without new writes): the archiver's heartbeat.",
    ),
    (
        "kstone_archive_last_lsn",
        "gauge",
        "",
        "Every write up to this LSN is archived.",
    ),
    (
        "kstone_recoverable_window_start_seconds",
        "gauge",
        "",
        "Earliest point that can be restored (Unix time).",
    ),
    (
        "kstone_recoverable_window_end_seconds",
        "gauge",
        "",
        "Latest point that can be restored (Unix time).",
    ),
    (
        "kstone_job_failures_total",
        "counter",
        "job",
        "Failed runs of each job.",
    ),
    (
        "kstone_job_runs_total",
        "counter",
        "job",
        "Runs of each job.",
    ),
];

impl Metrics {
    pub fn set(&mut self, name: &str, label: &str, v: f64) {
        self.values.insert((name.into(), label.into()), v);
    }

    pub fn get(&self, name: &str, label: &str) -> Option<f64> {
        self.values.get(&(name.into(), label.into())).copied()
    }

    pub fn inc(&mut self, name: &str, label: &str) {
        *self.values.entry((name.into(), label.into())).or_default() += 1.0;
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, kind, label, help) in FAMILIES {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for ((n, l), v) in self.values.range((name.to_string(), String::new())..) {
                if n != name {
                    break;
                }
                if label.is_empty() {
                    out.push_str(&format!("{name} {v}\n"));
                } else {
                    out.push_str(&format!("{name}{{{label}=\"{l}\"}} {v}\n"));
                }
            }
        }
        out
    }
}

/// Serve `GET /metrics` (any path, in fact) until the process exits.
pub fn serve(listener: TcpListener, metrics: Arc<Mutex<Metrics>>) {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let body = metrics.lock().unwrap_or_else(|p| p.into_inner()).render();
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
}
