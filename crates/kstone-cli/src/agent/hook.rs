//! `on_failure`: a command the agent runs when a job fails (the chapter
//! mails on failure; this is how, without Prometheus).
//!
//! The command runs through `sh -c` with `KSTONE_JOB`, `KSTONE_ERROR`,
//! `KSTONE_REPOSITORY`, `KSTONE_DATABASE` and `KSTONE_HOST` set, in the
//! background (a slow mailer never delays a job), in its own process group:
//! after [`TIMEOUT`], or when the agent stops, the whole group is killed.
//! While a job's hook runs, that job's next failure starts none (hooks
//! never pile up). Its outcome is logged.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

/// Running hooks: job → process group.
static RUNNING: Mutex<BTreeMap<String, u32>> = Mutex::new(BTreeMap::new());

fn running() -> std::sync::MutexGuard<'static, BTreeMap<String, u32>> {
    RUNNING.lock().unwrap_or_else(|p| p.into_inner())
}

fn kill_group(pgid: u32) {
    // SAFETY: sending a signal has no memory-safety effects.
    unsafe {
        libc::kill(-(pgid as i32), libc::SIGKILL);
    }
}

/// Kill every hook still running (the agent is stopping).
pub fn stop_all() {
    for (job, pgid) in std::mem::take(&mut *running()) {
        warn!(job, "on_failure command killed: the agent is stopping");
        kill_group(pgid);
    }
}

/// How long a hook may run.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Run `command` for a failure of `job`; returns at once.
pub fn on_failure(command: &str, job: &str, err: &str, repository: &str, database: &str) {
    let mut run = running();
    if run.contains_key(job) {
        warn!(
            job,
            "on_failure command of the previous failure still runs; not started again"
        );
        return;
    }
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
        .process_group(0)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            error!(job, "on_failure command could not start: {e}");
            return;
        }
    };
    let job = job.to_string();
    run.insert(job.clone(), child.id());
    drop(run);
    std::thread::spawn(move || {
        let start = Instant::now();
        let pgid = child.id();
        let done = |job: &str| {
            running().remove(job);
        };
        loop {
            let status = child.try_wait();
            if !matches!(status, Ok(None)) || start.elapsed() > TIMEOUT {
                done(&job);
            }
            match status {
                Ok(Some(s)) if s.success() => {
                    info!(job, "on_failure command ran");
                    return;
                }
                Ok(Some(s)) => {
                    error!(job, "on_failure command failed: {s}");
                    return;
                }
                Ok(None) if start.elapsed() > TIMEOUT => {
                    kill_group(pgid);
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
    fn hooks_do_not_pile_up_and_stop_kills_their_children() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("n");
        let cmd = format!("echo x >> '{}'; sleep 30 & sleep 30", out.display());
        on_failure(&cmd, "pile", "e", "r", "d");
        on_failure(&cmd, "pile", "e", "r", "d");
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "x\n",
            "one hook at a time"
        );
        let pgid = *running().get("pile").unwrap();
        stop_all();
        std::thread::sleep(Duration::from_millis(300));
        // No process is left in the hook's group (its background sleep too).
        let left = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|p| std::fs::read_to_string(p.path().join("stat")).ok())
            .filter(|st| {
                st.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(2).map(str::to_string))
                    .is_some_and(|g| g == pgid.to_string())
            })
            .filter(|st| !st.contains(") Z "))
            .count();
        assert_eq!(left, 0);
    }

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
