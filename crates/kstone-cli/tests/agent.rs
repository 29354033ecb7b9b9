#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test
//! `kstone agent` with second-level schedules beside an application process
//! that writes: scheduled backups, WAL archiving, scraped metrics, a failing
//! run survived, and a clean exit on SIGTERM.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kstone_core::{item_from_plain_json, Database, Options};

fn scrape(addr: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn metric(body: &str, line_start: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Child: the application, writing until `stop` appears.
#[test]
fn child_app() {
    let Some(dir) = std::env::var_os("KSTONE_AGENT_CHILD") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let db = Database::open(&dir, Options::default()).unwrap();
    let stop = dir.parent().unwrap().join("stop");
    let mut i = 0u64;
    while !stop.exists() {
        db.put(
            format!("k{}", i % 400).as_bytes(),
            None,
            &item_from_plain_json(&format!(r#"{{"v":{i}}}"#)).unwrap(),
        )
        .unwrap();
        i += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    db.close().unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn agent_runs_schedules_serves_metrics_and_stops_on_sigterm() {
    if std::env::var_os("KSTONE_AGENT_CHILD").is_some() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("app.keystone");
    let repo = tmp.path().join("repo");
    Database::create(&db, Options::default())
        .unwrap()
        .close()
        .unwrap();
    let mut app = Command::new(std::env::current_exe().unwrap())
        .args(["child_app", "--exact", "--nocapture", "--test-threads=1"])
        .env("KSTONE_AGENT_CHILD", &db)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let cfg = tmp.path().join("kstone.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"database = "{}"
repository = "{}"
archive_interval = "300ms"
metrics_listen = "{addr}"

[schedule]
full = "*/3 * * * * *"
incremental = "* * * * * *"
prune = "*/2 * * * * *"
verify = "*/2 * * * * *"
deep_verify = "*/4 * * * * *"

[retention]
keep_last = 3
pitr_window = "1h"
"#,
            p(&db),
            p(&repo)
        ),
    )
    .unwrap();
    // A config error is one clear line and exit 1.
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "database = 1\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_kstone"))
        .args(["agent", "--config", p(&bad)])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));

    let mut agent = Command::new(env!("CARGO_BIN_EXE_kstone"))
        .args(["agent", "--config", p(&cfg)])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut body = String::new();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
            let _ = s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n");
            body.clear();
            let _ = s.read_to_string(&mut body);
        }
        let ok = ["full", "incremental"].iter().all(|t| {
            metric(
                &body,
                &format!("kstone_backup_last_success_timestamp_seconds{{type=\"{t}\"}}"),
            )
            .is_some()
        }) && metric(&body, "kstone_verify_last_result{kind=\"verify\"}") == Some(1.0)
            && metric(&body, "kstone_archive_last_lsn").is_some_and(|l| l > 0.0)
            && metric(&body, "kstone_job_runs_total{job=\"prune\"}").is_some();
        if ok {
            break;
        }
    }
    assert!(
        body.contains("kstone_backup_last_success_timestamp_seconds{type=\"full\"}"),
        "{body}"
    );
    assert!(
        body.contains("kstone_backup_last_success_timestamp_seconds{type=\"incremental\"}"),
        "{body}"
    );
    assert_eq!(
        metric(&body, "kstone_verify_last_result{kind=\"verify\"}"),
        Some(1.0),
        "{body}"
    );
    assert!(metric(&body, "kstone_archive_last_lsn").unwrap() > 0.0);
    assert!(
        metric(&body, "kstone_recoverable_window_end_seconds").is_some(),
        "{body}"
    );
    assert!(body.contains("# TYPE kstone_job_failures_total counter"));

    // A failing run is survived: the repository cannot store data (packs,
    // in a format-2 repository) for a while.
    let data = repo.join("packs");
    let moved = repo.join("packs.moved");
    std::fs::rename(&data, &moved).unwrap();
    std::fs::write(&data, b"not a directory").unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    std::fs::remove_file(&data).unwrap();
    std::fs::rename(&moved, &data).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let body = scrape(&addr);
    assert!(
        agent.try_wait().unwrap().is_none(),
        "the agent died after a failing run"
    );
    assert!(
        metric(&body, "kstone_job_failures_total{job=\"incremental\"}").unwrap_or(0.0) >= 1.0,
        "{body}"
    );

    // SIGTERM: a clean exit.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let start = Instant::now();
    let status = loop {
        if let Some(s) = agent.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "agent did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let mut log = String::new();
    agent
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(
        log.contains("backup complete") && log.contains("stopped"),
        "{log}"
    );
    assert!(log.contains("run failed"), "{log}");

    std::fs::write(tmp.path().join("stop"), b"").unwrap();
    app.wait().unwrap();
    // The repository holds the scheduled backups (pruned to the last 3 + dependencies) and WAL.
    let list = Command::new(env!("CARGO_BIN_EXE_kstone"))
        .args(["backup", "list", "--repo", p(&repo), "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert!(!v.as_array().unwrap().is_empty());
    assert!(repo.join("wal").exists());
}
