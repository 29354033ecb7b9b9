//! `on_failure`: a command the agent runs when a job fails (the chapter
//! mails on failure; this is how, without Prometheus).
//!
//! The command runs through `sh -c` with `KSTONE_JOB`, `KSTONE_ERROR`,
//! `KSTONE_REPOSITORY`, `KSTONE_DATABASE` and `KSTONE_HOST` set, in the
//! background (a slow mailer never delays a job), and is killed after
//! [`TIMEOUT`]. Its outcome is logged.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tracing::{error, info};

/// How long a hook may run.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Run `command` for a failure of `job`; returns at once.
pub fn on_failure(command: &str, job: &str, err: &str, repository: &str, database: &str) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("KSTONE_JOB", job)
        .env("KSTONE_ERROR", err)
        .env("KSTONE_REPOSITORY", repository)
        .env("KSTONE_DATABASE", database)
        .env("KSTONE_HOST", host.trim())
        .stdin(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            error!(job, "on_failure command could not start: {e}");
            return;
        }
    };
    let job = job.to_string();
    std::thread::spawn(move || {
        let start = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(s)) if s.success() => {
                    info!(job, "on_failure command ran");
                    return;
                }
                Ok(Some(s)) => {
                    error!(job, "on_failure command failed: {s}");
                    return;
                }
                Ok(None) if start.elapsed() > TIMEOUT => {
                    let _ = child.kill();
                    let _ = child.wait();
                    error!(job, "on_failure command killed after {TIMEOUT:?}");
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => {
                    error!(job, "on_failure command: {e}");
                    return;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_gets_the_failure_in_its_environment() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let cmd = format!(
            "printf '%s|%s|%s|%s' \"$KSTONE_JOB\" \"$KSTONE_ERROR\" \"$KSTONE_REPOSITORY\" \"$KSTONE_DATABASE\" > '{}'",
            out.display()
        );
        on_failure(&cmd, "full", "disk 'full'; \"x\"", "s3://b/p", "/var/db");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !out.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "full|disk 'full'; \"x\"|s3://b/p|/var/db"
        );
    }
}
