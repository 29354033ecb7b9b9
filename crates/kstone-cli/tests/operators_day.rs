#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test
//! The operator's day (issue 22), driven through `kstone` as an operator
//! would: what the chapter's monitoring and cron jobs rely on.

mod common;

use std::path::PathBuf;

use common::{kstone, ok, p, Backend, Repo};

/// `restore --to-latest` of a local repository into a new `target`: what it
/// says.
fn restore_latest(repo: &std::path::Path, target: &std::path::Path) -> String {
    ok(&[
        "restore",
        "--repo",
        p(repo),
        "--target",
        p(target),
        "--to-latest",
    ])
}

/// A database with one item (`k`: `{}`) and a full backup of it in a local
/// repository, in a fresh temporary directory.
fn backed_up() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db.keystone");
    let repo = tmp.path().join("repo");
    ok(&["create", p(&db)]);
    ok(&["put", p(&db), "k", "{}"]);
    ok(&["backup", "create", p(&db), "--repo", p(&repo)]);
    (tmp, db, repo)
}

/// Verifying a repository that holds no backup is not a pass: nothing in
/// it can be restored.
fn verify_all_of_an_empty_repository_fails(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(backend, tmp.path(), "repo");
    ok(&["backup", "init", "--repo", repo.loc()]);
    let o = kstone(&["backup", "verify", "--repo", repo.loc(), "--all"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("nothing to verify") && err.contains("has no backups"),
        "{err}"
    );
    // With a backup it passes.
    let db = tmp.path().join("db.keystone");
    ok(&["create", p(&db)]);
    ok(&["put", p(&db), "k", "{}"]);
    ok(&["backup", "create", p(&db), "--repo", repo.loc()]);
    ok(&["backup", "verify", "--repo", repo.loc(), "--all"]);
}

on_both_backends!(verify_all_of_an_empty_repository_fails);

/// Messages that say what happened: an empty repository, a checksum file
/// in uppercase hex (as some tools write it).
#[test]
fn messages_say_what_happened() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    ok(&["backup", "init", "--repo", p(&repo)]);
    let target = tmp.path().join("t.keystone");
    let o = kstone(&["restore", "--repo", p(&repo), "--target", p(&target)]);
    assert_eq!(o.status.code(), Some(3), "no backup: not found");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("the repository has no backups yet"), "{err}");
    assert!(
        !err.contains("no backup any") && !err.contains("no backup latest"),
        "{err}"
    );

    let db = tmp.path().join("db.keystone");
    ok(&["create", p(&db)]);
    ok(&["put", p(&db), "k", "{}"]);
    ok(&["backup", "create", p(&db), "--repo", p(&repo)]);
    let archive = tmp.path().join("b.tar.gz");
    ok(&[
        "backup",
        "export",
        "--repo",
        p(&repo),
        "latest",
        "-o",
        p(&archive),
    ]);
    let sum = tmp.path().join("b.tar.gz.sha256");
    let upper = std::fs::read_to_string(&sum).unwrap();
    let (hex, rest) = upper.split_once(' ').unwrap();
    std::fs::write(&sum, format!("{} {rest}", hex.to_ascii_uppercase())).unwrap();
    ok(&["restore", "--archive", p(&archive), "--target", p(&target)]);
    assert_eq!(ok(&["get", p(&target), "k"]).trim(), "{}");
    // A damaged archive without a checksum file says it is damaged.
    let mut bytes = std::fs::read(&archive).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    let bad = tmp.path().join("bad.tar.gz");
    std::fs::write(&bad, &bytes).unwrap();
    // Restoring `bad` is refused (exit 1, nothing restored): its stderr.
    let refused = || {
        let t = tmp.path().join("refused.keystone");
        let o = kstone(&["restore", "--archive", p(&bad), "--target", p(&t)]);
        assert_eq!(o.status.code(), Some(1), "{o:?}");
        assert!(!t.exists());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let err = refused();
    assert!(
        err.contains("damaged or not a tar.gz") && err.contains("no .sha256 file beside it"),
        "{err}"
    );
    // Bytes glued after the gzip stream are damage too.
    let mut glued = std::fs::read(&archive).unwrap();
    glued.extend_from_slice(b"garbage after the stream");
    std::fs::write(&bad, &glued).unwrap();
    assert!(refused().contains("bytes follow the end of the gzip stream"));
    // A checksum file that is not one, and one of another archive, say so.
    let bad_sum = tmp.path().join("bad.tar.gz.sha256");
    std::fs::write(&bad_sum, "not-a-checksum  bad.tar.gz\n").unwrap();
    assert!(refused().contains("is not a SHA-256 checksum file"));
    std::fs::copy(&sum, &bad_sum).unwrap();
    let err = refused();
    assert!(err.contains("which is the checksum of b.tar.gz"), "{err}");
    // The archive's entries are dated at the backup, not in 2006.
    let listing = std::process::Command::new("tar")
        .args(["tvzf", p(&archive), "--full-time"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    let year = chrono::Utc::now().format("%Y").to_string();
    assert!(listing.lines().count() >= 4, "{listing}");
    assert!(listing.lines().all(|l| l.contains(&year)), "{listing}");
}

/// The agent's `on_failure` hook: a failed job runs the command with the
/// job, the error and the repository in its environment. (A database
/// missing at start is refused before anything runs.)
#[test]
fn the_agent_runs_on_failure_for_a_failed_job() {
    use std::time::{Duration, Instant};
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("gone.keystone");
    let repo = tmp.path().join("repo");
    let out = tmp.path().join("hook.out");
    let cfg = tmp.path().join("kstone.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"database = "{}"
repository = "{}"
on_failure = "printf '%s\n%s\n%s\n' \"$KSTONE_JOB\" \"$KSTONE_REPOSITORY\" \"$KSTONE_ERROR\" >> '{}'"

[schedule]
full = "* * * * * *"
"#,
            p(&db),
            p(&repo),
            p(&out)
        ),
    )
    .unwrap();
    // Missing at start: refused, no repository initialized.
    let o = kstone(&["agent", "--config", p(&cfg)]);
    assert_eq!(o.status.code(), Some(3), "no database: not found");
    assert!(String::from_utf8_lossy(&o.stderr).contains("gone.keystone"));
    assert!(!repo.exists());
    // Lost while the agent runs: the next full backup fails and the hook runs.
    ok(&["create", p(&db)]);
    let mut agent = common::kstone_cmd()
        .args(["agent", "--config", p(&cfg)])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    std::fs::remove_dir_all(&db).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline
        && std::fs::read_to_string(&out).map_or(true, |s| s.lines().count() < 3)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    assert!(agent.wait().unwrap().success());
    let got = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines[0], "full", "{got}");
    assert_eq!(lines[1], p(&repo), "{got}");
    assert!(lines[2].contains("gone.keystone"), "{got}");
}

/// First run: an agent started on a host whose repository has no backup of
/// the database takes a full backup at once (not at the first scheduled
/// time); the "last success" series of every scheduled type exist from the
/// start (0 until that type's first backup), so "backup too old" alerts can
/// fire; a restarted agent reports the repository's real times.
#[test]
fn first_run_takes_a_full_backup_and_exports_last_success() {
    use std::time::{Duration, Instant};
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db.keystone");
    let repo = tmp.path().join("repo");
    ok(&["create", p(&db)]);
    ok(&["put", p(&db), "k", "{}"]);
    let metric = |body: &str, t: &str| {
        common::series(
            body,
            &format!("kstone_backup_last_success_timestamp_seconds{{type=\"{t}\"}}"),
        )
    };
    // Runs an agent until `done(metrics)`; returns the last metrics.
    let agent = |done: &dyn Fn(&str) -> bool| -> String {
        let port = common::free_port();
        let cfg = tmp.path().join("kstone.toml");
        std::fs::write(
            &cfg,
            format!(
                "database = \"{}\"\nrepository = \"{}\"\nmetrics_listen = \"127.0.0.1:{port}\"\n\
                 [schedule]\nfull = \"0 2 * * *\"\nincremental = \"0 */4 * * *\"\n",
                p(&db),
                p(&repo)
            ),
        )
        .unwrap();
        let mut agent = common::kstone_cmd()
            .args(["agent", "--config", p(&cfg)])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut body = String::new();
        while Instant::now() < deadline && !done(&body) {
            std::thread::sleep(Duration::from_millis(200));
            if let Some(b) = common::scrape(port) {
                body = b;
            }
        }
        unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
        assert!(agent.wait().unwrap().success());
        body
    };
    let backups = || {
        ok(&["backup", "list", "--repo", p(&repo), "--json"])
            .matches("\"id\"")
            .count()
    };
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    // First run: a full backup at once, though the schedule says 02:00.
    let body = agent(&|b| metric(b, "full").is_some_and(|v| v > 0.0));
    assert!(now() - metric(&body, "full").unwrap() < 60.0, "{body}");
    assert_eq!(metric(&body, "incremental"), Some(0.0), "{body}");
    assert!(
        !body.contains("type=\"differential\""),
        "not scheduled: {body}"
    );
    assert_eq!(backups(), 1);
    let list = ok(&["backup", "list", "--repo", p(&repo)]);
    assert!(list.contains("full"), "{list}");
    // A restart: no second first-run backup; the real time, not 0.
    let body = agent(&|b| metric(b, "full").is_some());
    assert!(now() - metric(&body, "full").unwrap() < 120.0, "{body}");
    assert_eq!(backups(), 1);
}

/// "As late as possible" by time (`--to-time` of now) is refused saying how
/// to ask for it; `--to-latest` restores it.
#[test]
fn a_time_after_the_archive_points_to_to_latest() {
    let (tmp, db, repo) = backed_up();
    ok(&["wal-archive", p(&db), "--repo", p(&repo), "--once"]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 60;
    let t = tmp.path().join("t.keystone");
    let at = format!("@{now}");
    let o = kstone(&[
        "restore",
        "--repo",
        p(&repo),
        "--target",
        p(&t),
        "--to-time",
        &at,
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("after the newest archived write") && err.contains("--to-latest"),
        "{err}"
    );
    assert!(!t.exists(), "nothing restored");
    ok(&[
        "restore",
        "--repo",
        p(&repo),
        "--target",
        p(&t),
        "--to-latest",
    ]);
    assert_eq!(ok(&["get", p(&t), "k"]).trim(), "{}");
}

/// `gpg -d … | kstone restore --archive -`: an archive from standard input.
#[test]
fn restore_an_archive_from_standard_input() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db.keystone");
    let repo = tmp.path().join("repo");
    ok(&["create", p(&db)]);
    ok(&["put", p(&db), "k", r#"{"v":1}"#]);
    ok(&["backup", "create", p(&db), "--repo", p(&repo)]);
    let archive = tmp.path().join("b.tar.gz");
    ok(&[
        "backup",
        "export",
        "--repo",
        p(&repo),
        "latest",
        "-o",
        p(&archive),
    ]);
    let t = tmp.path().join("t.keystone");
    let mut child = common::kstone_cmd()
        .args(["restore", "--archive", "-", "--target", p(&t)])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(&archive).unwrap())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(ok(&["get", p(&t), "k"]).trim(), r#"{"v":1}"#);
    // Nothing on standard input: said so.
    let o = common::kstone_cmd()
        .args([
            "restore",
            "--archive",
            "-",
            "--target",
            p(&t.with_extension("empty")),
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("no archive on standard input"), "{err}");
    // A truncated stream is refused and leaves no target behind.
    let cut = tmp.path().join("cut.keystone");
    let mut child = common::kstone_cmd()
        .args(["restore", "--archive", "-", "--target", p(&cut)])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let bytes = std::fs::read(&archive).unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&bytes[..bytes.len() / 2])
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("(standard input, ") && !err.contains("/proc/self"),
        "{err}"
    );
    assert!(!cut.exists());
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A backup of a database that is not there fails before a new repository
/// is initialized: nothing is left behind at the repository location.
#[test]
fn a_failed_first_backup_leaves_no_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let o = kstone(&[
        "backup",
        "create",
        p(&tmp.path().join("missing.keystone")),
        "--repo",
        p(&repo),
    ]);
    assert_eq!(o.status.code(), Some(3), "no database: not found");
    assert!(!repo.exists(), "an empty repository was left behind");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("missing.keystone"), "{err}");
    // The same for archiving a database that is not there.
    let missing = tmp.path().join("missing.keystone");
    let o = kstone(&["wal-archive", p(&missing), "--repo", p(&repo), "--once"]);
    assert_eq!(o.status.code(), Some(3), "no database: not found");
    assert!(!repo.exists(), "an empty repository was left behind");
}

/// The chapter's `chown -R keystonedb:keystonedb` and `chmod 700`, done by
/// the restore: `--owner`/`--mode`, or by default those of the database it
/// replaces.
#[test]
fn restore_sets_owner_and_mode() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let (tmp, _db, repo) = backed_up();
    let t = tmp.path().join("t.keystone");
    ok(&[
        "restore",
        "--repo",
        p(&repo),
        "--target",
        p(&t),
        "--mode",
        "700",
    ]);
    let check = |dir: &std::path::Path, uid: u32, gid: u32, mode: u32| {
        let mut n = 0;
        let mut walk = vec![dir.to_path_buf()];
        while let Some(d) = walk.pop() {
            let m = std::fs::symlink_metadata(&d).unwrap();
            let want = if m.is_dir() { mode } else { mode & 0o666 };
            assert_eq!(m.permissions().mode() & 0o777, want, "{}", d.display());
            assert_eq!((m.uid(), m.gid()), (uid, gid), "{}", d.display());
            n += 1;
            if m.is_dir() {
                walk.extend(std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().path()));
            }
        }
        assert!(n > 3);
    };
    let me = (unsafe { libc::geteuid() }, unsafe { libc::getegid() });
    check(&t, me.0, me.1, 0o700);
    assert_eq!(ok(&["get", p(&t), "k"]).trim(), "{}");
    // Bad values are usage errors, refused before anything is restored.
    let u = tmp.path().join("u.keystone");
    let o = kstone(&[
        "restore",
        "--repo",
        p(&repo),
        "--target",
        p(&u),
        "--mode",
        "99",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let o = kstone(&[
        "restore",
        "--repo",
        p(&repo),
        "--target",
        p(&u),
        "--owner",
        "no-such-user-kstone",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no user"));
    assert!(!u.exists());
    if me.0 != 0 {
        eprintln!("not root: owner changes not tested");
        return;
    }
    ok(&[
        "restore",
        "--repo",
        p(&repo),
        "--target",
        p(&u),
        "--owner",
        "65534:65534",
        "--mode",
        "750",
    ]);
    check(&u, 65534, 65534, 0o750);
    // By default a restore over an existing database keeps its owner and mode.
    ok(&["restore", "--repo", p(&repo), "--target", p(&u), "-y"]);
    check(&u, 65534, 65534, 0o750);
    assert_eq!(ok(&["get", p(&u), "k"]).trim(), "{}");
    // As with chown, a user alone keeps the replaced database's group.
    ok(&[
        "restore",
        "--repo",
        p(&repo),
        "--target",
        p(&u),
        "-y",
        "--owner",
        "65533",
    ]);
    check(&u, 65533, 65534, 0o750);
    // A mode its owner cannot use is not inherited as is.
    std::fs::set_permissions(&u, std::fs::Permissions::from_mode(0o000)).unwrap();
    ok(&["restore", "--repo", p(&repo), "--target", p(&u), "-y"]);
    check(&u, 65533, 65534, 0o700);
}

/// A restore killed (SIGKILL) after building its hidden staging directory
/// leaves it behind; the next restore to the same target removes it.
#[test]
fn the_next_restore_cleans_a_killed_restores_staging() {
    use std::os::unix::process::ExitStatusExt;
    let (tmp, _db, repo) = backed_up();
    let t = tmp.path().join("t.keystone");
    let o = common::kstone_cmd()
        .args(["restore", "--repo", p(&repo), "--target", p(&t)])
        .env("KSTONE_TEST_KILL_AFTER_BUILD", "1")
        .output()
        .unwrap();
    assert_eq!(o.status.signal(), Some(libc::SIGKILL));
    let hidden = || -> Vec<String> {
        std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".t.keystone.restore-"))
            .collect()
    };
    // Its staging, and the intent naming it (written before the swap).
    let left = hidden();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left
        .iter()
        .any(|n| n.starts_with(".t.keystone.restore-intent-")));
    assert!(!t.exists());
    ok(&["restore", "--repo", p(&repo), "--target", p(&t)]);
    assert!(hidden().is_empty(), "{:?}", hidden());
    assert_eq!(ok(&["get", p(&t), "k"]).trim(), "{}");
    // The finished, never swapped-in build is not taken for a previous
    // database: nothing is moved aside.
    let asides = common::entries_starting_with(tmp.path(), "t.keystone.before-restore");
    assert!(asides.is_empty(), "{asides:?}");
}

/// Copies restores move aside are listed by `stats` and `restore-copies`,
/// and old ones can be dropped (never by a restore itself).
#[test]
fn copies_moved_aside_are_listed_and_dropped() {
    let (tmp, db, repo) = backed_up();
    assert!(!ok(&["stats", p(&db)]).contains("restore copies"));
    for _ in 0..2 {
        ok(&["restore", "--repo", p(&repo), "--target", p(&db), "-y"]);
    }
    let stats = ok(&["stats", p(&db)]);
    assert!(
        stats.contains("restore copies 2 copies moved aside by restores"),
        "{stats}"
    );
    let list = ok(&["restore-copies", p(&db)]);
    // From inside the database's directory, `.` names it.
    let here = common::kstone_cmd()
        .args(["restore-copies", "."])
        .current_dir(&db)
        .output()
        .unwrap();
    assert!(here.status.success(), "{here:?}");
    assert_eq!(
        String::from_utf8_lossy(&here.stdout).lines().count(),
        list.lines().count()
    );
    assert_eq!(
        list.lines()
            .filter(|l| l.contains(".before-restore-"))
            .count(),
        2,
        "{list}"
    );
    // Nothing is that old yet.
    let none = ok(&["restore-copies", p(&db), "--drop-older-than", "1d"]);
    assert!(!none.contains("deleted"), "{none}");
    let dry = ok(&[
        "restore-copies",
        p(&db),
        "--drop-older-than",
        "0s",
        "--dry-run",
    ]);
    assert_eq!(
        dry.lines()
            .filter(|l| l.starts_with("would delete"))
            .count(),
        2
    );
    assert_eq!(ok(&["restore-copies", p(&db)]).lines().count(), 2);
    // Only real databases named as a restore names them count; the age is
    // the time in the name; a copy a process uses is kept.
    let name = |suffix: &str| {
        tmp.path()
            .join(format!("db.keystone.before-restore-{suffix}"))
    };
    std::fs::create_dir(name("notes")).unwrap();
    std::fs::create_dir(name("2020-01-02T000000Z")).unwrap();
    std::fs::write(name("2020-01-02T000000Z").join("notes.txt"), "mine").unwrap();
    let old = name("2020-01-03T000000Z-1");
    common::copy_dir(&db, &old);
    let held = name("2020-01-04T000000Z");
    common::copy_dir(&db, &held);
    let mut holder = std::process::Command::new("sleep")
        .arg("60")
        .current_dir(&held)
        .spawn()
        .unwrap();
    let list = ok(&["restore-copies", p(&db)]);
    assert_eq!(list.lines().count(), 4, "{list}");
    assert!(list.contains("moved aside 2020-01-03T00:00:00Z"), "{list}");
    let o = kstone(&["restore-copies", p(&db), "--drop-older-than", "30"]);
    assert_eq!(o.status.code(), Some(2), "a bare number is refused");
    let dry = ok(&[
        "restore-copies",
        p(&db),
        "--drop-older-than",
        "30d",
        "--dry-run",
    ]);
    assert!(dry.contains(&format!("would delete {}", p(&old))), "{dry}");
    let keep = format!("would keep {}: in use by process {}", p(&held), holder.id());
    assert!(dry.contains(&keep), "{dry}");
    assert_eq!(
        dry.lines().count(),
        2,
        "the fresh copies are not 30 days old: {dry}"
    );
    let o = kstone(&["restore-copies", p(&db), "--drop-older-than", "30d"]);
    assert_eq!(o.status.code(), Some(1), "a kept copy is reported");
    assert!(!old.exists() && held.exists());
    holder.kill().unwrap();
    holder.wait().unwrap();
    let gone = ok(&["restore-copies", p(&db), "--drop-older-than", "0s"]);
    assert_eq!(
        gone.lines().filter(|l| l.starts_with("deleted")).count(),
        3,
        "{gone}"
    );
    assert!(name("notes").exists() && name("2020-01-02T000000Z").join("notes.txt").exists());
    assert!(ok(&["restore-copies", p(&db)]).contains("no copies"));
    assert!(!ok(&["stats", p(&db)]).contains("restore copies"));
    assert_eq!(
        ok(&["get", p(&db), "k"]).trim(),
        "{}",
        "the database itself is untouched"
    );
}

/// Off a terminal (cron, the agent), long work logs progress lines at a
/// steady interval; work shorter than the interval prints none.
#[test]
fn progress_lines_without_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db.keystone");
    let repo = tmp.path().join("repo");
    ok(&["create", p(&db)]);
    let lines = tmp.path().join("items.jsonl");
    let body: String = (0..20_000)
        .map(|i| {
            format!(
                "{{\"item\":{{\"v\":{{\"S\":\"{}\"}}}},\"pk\":{{\"S\":\"k{i}\"}}}}\n",
                "x".repeat(200)
            )
        })
        .collect();
    std::fs::write(&lines, body).unwrap();
    ok(&["import", p(&db), p(&lines)]);
    let run = |args: &[&str], every: &str| {
        let o = common::kstone_cmd()
            .args(args)
            .env("KSTONE_PROGRESS_INTERVAL", every)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let err = run(&["backup", "create", p(&db), "--repo", p(&repo)], "1ms");
    assert!(
        err.contains("backing up: ") && err.contains(" of ") && err.contains("eta"),
        "{err}"
    );
    assert!(err.contains("backing up: ended after"), "{err}");
    let t = tmp.path().join("t.keystone");
    let err = run(&["restore", "--repo", p(&repo), "--target", p(&t)], "1ms");
    assert!(
        err.contains("restoring: ") && err.contains("so far"),
        "{err}"
    );
    // The default interval (10 s): a short backup prints no progress.
    let err = run(&["backup", "create", p(&db), "--repo", p(&repo)], "10s");
    assert!(!err.contains("backing up:"), "{err}");
    // A setting that is not a duration is named, not silently ignored.
    let err = run(
        &[
            "backup",
            "create",
            p(&db),
            "--repo",
            p(&repo),
            "--type",
            "full",
        ],
        "fast",
    );
    assert!(
        err.contains("KSTONE_PROGRESS_INTERVAL=\"fast\" is not a duration"),
        "{err}"
    );
}

/// An incremental with nothing to hold is skipped, saying so (exit 0);
/// `--allow-empty` writes it anyway.
#[test]
fn an_unchanged_incremental_is_skipped() {
    let (_tmp, db, repo) = backed_up();
    let count = || {
        ok(&["backup", "list", "--repo", p(&repo), "--json"])
            .matches("\"id\"")
            .count()
    };
    assert_eq!(count(), 1);
    for kind in ["incremental", "differential"] {
        let o = kstone(&[
            "backup",
            "create",
            p(&db),
            "--repo",
            p(&repo),
            "--type",
            kind,
        ]);
        assert!(o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("nothing changed since backup") && err.contains("--allow-empty"),
            "{err}"
        );
        assert!(o.stdout.is_empty(), "no backup id printed");
    }
    // Scripts reading --json learn that it was skipped, and why.
    let v = common::json(&["backup", "create", p(&db), "--repo", p(&repo), "--json"]);
    assert_eq!(v["skipped"], true, "{v}");
    assert_eq!(v["type"], "incremental", "{v}");
    assert_eq!(count(), 1);
    ok(&[
        "backup",
        "create",
        p(&db),
        "--repo",
        p(&repo),
        "--type",
        "incremental",
        "--allow-empty",
    ]);
    assert_eq!(count(), 2);
    // A full backup is never skipped; a change makes the next incremental.
    ok(&[
        "backup",
        "create",
        p(&db),
        "--repo",
        p(&repo),
        "--type",
        "full",
    ]);
    ok(&["put", p(&db), "k2", "{}"]);
    ok(&["backup", "create", p(&db), "--repo", p(&repo)]);
    assert_eq!(count(), 4);
}

/// A restore target that is a symbolic link is refused (swapping would put
/// a directory where the link was, on the link's file system).
#[test]
fn a_symlink_target_is_refused() {
    let (tmp, db, repo) = backed_up();
    let link = tmp.path().join("link.keystone");
    std::os::unix::fs::symlink(&db, &link).unwrap();
    let o = kstone(&["restore", "--repo", p(&repo), "--target", p(&link), "-y"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is a symbolic link"));
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
}

/// The shipped alert rules (`packaging/prometheus/kstone-alerts.yml`) pass
/// `promtool check rules` and their unit tests: each alert fires on the
/// agent's metrics when it should, and not otherwise.
#[test]
fn alert_rules_pass_promtool() {
    let promtool = common::promtool();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/prometheus");
    for args in [
        ["check", "rules", "kstone-alerts.yml"],
        ["test", "rules", "kstone-alerts.test.yml"],
    ] {
        let o = std::process::Command::new(&promtool)
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// `status` says when its backup count is one history's, not the
/// repository's (after a restore started a new history).
#[test]
fn status_counts_backups_of_its_history_and_says_so() {
    let (tmp, db, repo) = backed_up();
    let status = ok(&["backup", "status", "--repo", p(&repo)]);
    assert!(status.contains("backups          1\n"), "{status}");
    ok(&["restore", "--repo", p(&repo), "--target", p(&db), "-y"]);
    ok(&["put", p(&db), "k2", "{}"]);
    ok(&["backup", "create", p(&db), "--repo", p(&repo)]);
    let status = ok(&["backup", "status", "--repo", p(&repo)]);
    assert!(
        status.contains("backups          1 of this history (2 in the repository"),
        "{status}"
    );
    // `restore --history H` restores H's newest backup, never another's.
    let list = common::json(&["backup", "list", "--repo", p(&repo), "--json"]);
    let old = list[0]["history"].as_str().unwrap().to_string();
    let t = tmp.path().join("old.keystone");
    ok(&[
        "restore",
        "--repo",
        p(&repo),
        "--history",
        &old,
        "--target",
        p(&t),
    ]);
    let newer = kstone(&["get", p(&t), "k2"]);
    assert!(newer.stdout.is_empty(), "{newer:?}");
    assert_eq!(ok(&["get", p(&t), "k"]).trim(), "{}");
    let t2 = tmp.path().join("none.keystone");
    let o = kstone(&[
        "restore",
        "--repo",
        p(&repo),
        "--history",
        "deadbeefdeadbeef",
        "--target",
        p(&t2),
    ]);
    assert_eq!(o.status.code(), Some(3), "no such history: {o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("no backup"));
    assert!(!t2.exists());
}

/// A key pair made by `ssh-keygen` in `dir`: (private key path, public key
/// line with its comment).
fn ssh_key(dir: &std::path::Path, kind: &str, passphrase: &str) -> (String, String) {
    let key = dir.join(format!("id_{kind}"));
    let mut args = vec!["-q", "-t", kind, "-N", passphrase, "-C", "ops@host", "-f"];
    args.push(p(&key));
    if kind == "rsa" {
        args.extend(["-b", "2048"]);
    }
    let o = std::process::Command::new("ssh-keygen")
        .args(&args)
        .output()
        .expect("ssh-keygen (openssh-client) is installed by .ci/run");
    assert!(o.status.success(), "{o:?}");
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (p(&key).to_string(), public.trim().to_string())
}

/// Operators' SSH keys encrypt a repository and unlock it: an ed25519 key
/// given on the command line (with its comment), an RSA key from a
/// recipients file, its passphrase-protected private half unlocked through
/// KSTONE_SSH_PASSPHRASE; rekey removes a key however it is quoted.
#[test]
fn ssh_keys_encrypt_and_unlock_a_repository() {
    let (tmp, db, _) = backed_up();
    ok(&["put", p(&db), "secret", r#"{"v":"MARKER-SSH-PLAINTEXT"}"#]);
    let (ed_key, ed_pub) = ssh_key(tmp.path(), "ed25519", "");
    let (rsa_key, rsa_pub) = ssh_key(tmp.path(), "rsa", "correct horse");
    assert!(ed_pub.starts_with("ssh-ed25519 ") && ed_pub.ends_with(" ops@host"));
    let recipients = tmp.path().join("authorized_keys");
    std::fs::write(&recipients, format!("# the ops team\n{rsa_pub}\n")).unwrap();
    let repo = tmp.path().join("enc");
    let out = ok(&[
        "backup",
        "init",
        "--repo",
        p(&repo),
        "--no-compression",
        "--recipient",
        &ed_pub,
        "--recipients-file",
        p(&recipients),
    ]);
    assert!(out.contains("encrypted"), "{out}");
    ok(&["backup", "create", p(&db), "--repo", p(&repo)]);
    for f in common::walk(&repo) {
        let b = std::fs::read(&f).unwrap();
        assert!(
            !b.windows(8).any(|w| w == b"MARKER-S"),
            "plaintext in {}",
            f.display()
        );
    }

    // The ed25519 private key restores.
    let restore = |target: &str, identity: &str, pass: Option<&str>| {
        let mut c = common::kstone_cmd();
        c.args(["restore", "--repo", p(&repo), "--target", target, "-y"])
            .args(["--identity", identity])
            .env_remove("KSTONE_SSH_PASSPHRASE");
        if let Some(pass) = pass {
            c.env("KSTONE_SSH_PASSPHRASE", pass);
        }
        c.output().unwrap()
    };
    let t1 = tmp.path().join("t1.keystone");
    let o = restore(p(&t1), &ed_key, None);
    assert!(o.status.success(), "{o:?}");
    let item = ok(&["get", p(&t1), "secret"]);
    assert!(item.contains("MARKER-SSH-PLAINTEXT"), "{item}");

    // The protected RSA key: refused without its passphrase, and with a
    // wrong one, in one line that says what to do; restores with it.
    let t2 = tmp.path().join("t2.keystone");
    let o = restore(p(&t2), &rsa_key, None);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("passphrase-protected") && err.contains("KSTONE_SSH_PASSPHRASE"));
    let o = restore(p(&t2), &rsa_key, Some("wrong"));
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not unlock it"));
    assert!(!t2.exists(), "a refused restore leaves no target");
    let o = restore(p(&t2), &rsa_key, Some("correct horse"));
    assert!(o.status.success(), "{o:?}");
    assert!(ok(&["get", p(&t2), "secret"]).contains("MARKER-SSH-PLAINTEXT"));

    // Rekey: removed by the key alone (no comment), it unlocks no more.
    let bare: String = ed_pub.split(' ').take(2).collect::<Vec<_>>().join(" ");
    let mut c = common::kstone_cmd();
    let o = c
        .args(["backup", "rekey", "--repo", p(&repo)])
        .args(["--remove-recipient", &bare, "--identity", &rsa_key])
        .env("KSTONE_SSH_PASSPHRASE", "correct horse")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let t3 = tmp.path().join("t3.keystone");
    let o = restore(p(&t3), &ed_key, None);
    assert_eq!(o.status.code(), Some(5), "cannot decrypt: {o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("no identity"));

    // Keys age cannot use are refused when given, in words, as usage
    // errors: an ECDSA key, and an all-zero age key (a point of small order,
    // which would let anyone read the repository).
    let (_, ecdsa_pub) = ssh_key(tmp.path(), "ecdsa", "");
    let bad = tmp.path().join("bad");
    let zero = "age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq5cu47z";
    for (key, says) in [(ecdsa_pub.as_str(), "not supported"), (zero, "small order")] {
        let o = kstone(&["backup", "init", "--repo", p(&bad), "--recipient", key]);
        assert_eq!(o.status.code(), Some(2), "{o:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(says), "{err}");
        assert!(!bad.exists(), "a refused init leaves nothing behind");
    }
    // A PKCS#8 private key is named as such, with the way out.
    let pkcs8 = tmp.path().join("pkcs8");
    let made = std::process::Command::new("ssh-keygen")
        .args([
            "-q", "-t", "rsa", "-b", "2048", "-m", "PKCS8", "-N", "", "-f",
        ])
        .arg(&pkcs8)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let o = restore(p(&tmp.path().join("t4.keystone")), p(&pkcs8), None);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("PKCS#8"));
}

/// A backup that fails part-way does not leave behind the repository it
/// initialized (the next run would find an empty repository and no backup);
/// a directory the operator made stays, and an existing repository is kept.
#[test]
fn a_backup_failing_part_way_leaves_no_new_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db.keystone");
    ok(&["create", p(&db)]);
    let lines: String = (0..3000)
        .map(|i| {
            format!(
                "{{\"item\":{{\"v\":{{\"S\":\"value-{i:040}\"}}}},\"pk\":{{\"S\":\"k{i}\"}}}}\n"
            )
        })
        .collect();
    let input = tmp.path().join("items.jsonl");
    std::fs::write(&input, lines).unwrap();
    ok(&["import", p(&db), p(&input)]);
    ok(&["compact", p(&db)]);
    let good = tmp.path().join("good");
    ok(&["backup", "create", p(&db), "--repo", p(&good)]);
    // Damage one SST: the backup refuses to store it.
    let sst = common::walk(&db)
        .into_iter()
        .find(|f| f.extension().is_some_and(|e| e == "sst"))
        .unwrap();
    let mut b = std::fs::read(&sst).unwrap();
    b[30] ^= 0xff;
    std::fs::write(&sst, b).unwrap();

    let fresh = tmp.path().join("fresh");
    let o = kstone(&["backup", "create", p(&db), "--repo", p(&fresh)]);
    assert_eq!(o.status.code(), Some(6), "corruption: {o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("checksum") && err.contains("removed again"),
        "{err}"
    );
    assert!(!fresh.exists());
    // Directories made on the way to a nested new repository go too.
    let nested = tmp.path().join("nest").join("a").join("b");
    let o = kstone(&["backup", "create", p(&db), "--repo", p(&nested)]);
    assert_eq!(o.status.code(), Some(6), "corruption: {o:?}");
    assert!(!tmp.path().join("nest").exists());

    let made = tmp.path().join("made-by-operator");
    std::fs::create_dir(&made).unwrap();
    let o = kstone(&["backup", "create", p(&db), "--repo", p(&made)]);
    assert_eq!(o.status.code(), Some(6), "corruption: {o:?}");
    assert!(made.is_dir());
    assert_eq!(std::fs::read_dir(&made).unwrap().count(), 0);

    let before = common::walk(&good).len();
    let o = kstone(&[
        "backup",
        "create",
        p(&db),
        "--repo",
        p(&good),
        "--type",
        "full",
    ]);
    assert_eq!(o.status.code(), Some(6), "corruption: {o:?}");
    assert!(!String::from_utf8_lossy(&o.stderr).contains("removed"));
    assert_eq!(common::walk(&good).len(), before);
    ok(&["backup", "verify", "--repo", p(&good), "--all"]);
}

/// One archive-lag definition: 0 while the database is idle and fully
/// archived, however long; growing while archiving fails; back to 0 once it
/// recovers, with every write archived. `backup status` reads the archiver's
/// heartbeat: it names a failing archiver and one that stopped reporting.
#[test]
fn archive_lag_tells_an_idle_database_from_a_stalled_archiver() {
    use std::time::Duration;
    let (tmp, db, repo) = backed_up();
    let port = common::free_port();
    let cfg = tmp.path().join("kstone.toml");
    std::fs::write(
        &cfg,
        format!(
            "database = \"{}\"\nrepository = \"{}\"\nmetrics_listen = \"127.0.0.1:{port}\"\n\
             archive_interval = \"100ms\"\narchive_heartbeat = \"1s\"\n",
            p(&db),
            p(&repo)
        ),
    )
    .unwrap();
    let mut agent = common::Reaped(
        common::kstone_cmd()
            .args(["agent", "--config", p(&cfg)])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let gauge = |name: &str| common::scrape(port).and_then(|b| common::series(&b, name));
    let wait_for = common::wait_for;
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let status = |extra: &[&str]| {
        let mut args = vec!["backup", "status", "--repo", p(&repo)];
        args.extend_from_slice(extra);
        kstone(&args)
    };
    let put = |k: &str| ok(&["put", p(&db), k, "{}"]);

    // Idle after a few writes: lag 0, heartbeat fresh, status content.
    for i in 0..5 {
        put(&format!("a{i}"));
    }
    wait_for("LSN 6 archived", &|| {
        gauge("kstone_archive_last_lsn") == Some(6.0)
    });
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(gauge("kstone_archive_lag_seconds"), Some(0.0));
    let beat = gauge("kstone_archive_last_success_timestamp_seconds").unwrap();
    assert!(now() - beat < 1.5, "heartbeat {beat}");
    let o = status(&["--max-archive-lag", "5s"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{o:?}");
    assert!(out.contains("archive lag      0.0 s"), "{out}");
    assert!(out.contains("through LSN 6 of the database's 6"), "{out}");
    // One write after the quiet time: the lag counts from that write, not
    // from the last archived one 2.5 s before.
    put("quiet");
    wait_for("LSN 7 archived", &|| {
        gauge("kstone_archive_last_lsn") == Some(7.0)
    });
    let lag = gauge("kstone_archive_lag_seconds").unwrap();
    assert!(lag < 2.0, "lag {lag} counted the idle time");

    // The repository's archive cannot be written: rounds fail, lag grows
    // with the writes the archive lacks, the heartbeat metric stands still.
    let wal = repo.join("wal");
    std::fs::rename(&wal, repo.join("wal.away")).unwrap();
    std::fs::write(&wal, b"").unwrap();
    for i in 0..4 {
        put(&format!("b{i}"));
        std::thread::sleep(Duration::from_millis(400));
    }
    wait_for("the lag to show", &|| {
        gauge("kstone_archive_lag_seconds").is_some_and(|l| l >= 2.5)
    });
    assert!(now() - gauge("kstone_archive_last_success_timestamp_seconds").unwrap() >= 1.0);
    assert_eq!(gauge("kstone_archive_last_lsn"), Some(7.0));

    // Healed: every write reaches the archive (none skipped by the failed
    // rounds), lag back to 0.
    std::fs::remove_file(&wal).unwrap();
    std::fs::rename(repo.join("wal.away"), &wal).unwrap();
    wait_for("catching up", &|| {
        gauge("kstone_archive_last_lsn") == Some(11.0)
            && gauge("kstone_archive_lag_seconds") == Some(0.0)
    });
    let t = tmp.path().join("latest.keystone");
    let o = restore_latest(&repo, &t);
    let scanned = ok(&["scan", p(&t)]);
    assert!(
        o.contains("to LSN 11 ") && o.contains("(11 items;"),
        "{o}\n{scanned}"
    );
    assert_eq!(scanned.lines().count(), 11, "{scanned}");
    for k in ["k", "a0", "a4", "b0", "b1", "b2", "b3"] {
        assert!(
            scanned.contains(&format!("\"{k}\"")),
            "{k} missing: {scanned}"
        );
    }

    // The database side fails (moved away): the archiver says so at once.
    let away = tmp.path().join("moved.keystone");
    std::fs::rename(&db, &away).unwrap();
    wait_for("status to name the failure", &|| {
        let o = status(&[]);
        o.status.code() == Some(1)
            && String::from_utf8_lossy(&o.stderr).contains("archiving is failing")
    });
    std::fs::rename(&away, &db).unwrap();
    wait_for("status to recover", &|| status(&[]).status.success());

    // The repository is gone (an unmounted disk): the lag still grows with
    // the write waiting, and nothing is written where it was.
    let gone = tmp.path().join("repo.away");
    std::fs::rename(&repo, &gone).unwrap();
    put("c");
    wait_for("the lag to grow while the repository is gone", &|| {
        gauge("kstone_archive_lag_seconds").is_some_and(|l| l >= 1.5)
    });
    assert!(!repo.exists());
    std::fs::rename(&gone, &repo).unwrap();
    wait_for("catching up again", &|| {
        gauge("kstone_archive_last_lsn") == Some(12.0)
            && gauge("kstone_archive_lag_seconds") == Some(0.0)
    });

    // The archiver dies: once it misses three heartbeats and 10 s, status
    // says it stopped reporting.
    unsafe { libc::kill(agent.0.id() as i32, libc::SIGKILL) };
    let _ = agent.0.wait();
    let o = status(&[]);
    assert!(o.status.success(), "{o:?}");
    std::thread::sleep(Duration::from_secs(14));
    let o = status(&[]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("has not reported") && err.contains("is it running"),
        "{err}"
    );
}

/// `wal-archive --once` says what went to *this* repository: what it
/// shipped, what the repository already holds, or that its archive has not
/// started — never another repository's or the database's own position.
#[test]
fn wal_archive_says_what_this_repository_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, r1, r2) = (
        tmp.path().join("db.keystone"),
        tmp.path().join("repo"),
        tmp.path().join("second"),
    );
    ok(&["create", p(&db)]);
    ok(&["backup", "create", p(&db), "--repo", p(&r1)]);
    let once = |r: &std::path::Path| ok(&["wal-archive", p(&db), "--repo", p(r), "--once"]);
    let first = once(&r1);
    assert!(
        first.contains("nothing to archive yet") && first.contains("after LSN 0"),
        "{first}"
    );
    ok(&["put", p(&db), "a", "{}"]);
    let shipped = once(&r1);
    assert!(
        shipped.contains("archived LSN 1..=1 (1 records) to"),
        "{shipped}"
    );
    let again = once(&r1);
    assert!(
        again.contains("nothing new to archive") && again.contains("through LSN 1"),
        "{again}"
    );
    // A second repository, backed up now: what it says is its own.
    ok(&["backup", "create", p(&db), "--repo", p(&r2)]);
    let second = once(&r2);
    assert!(second.contains(p(&r2)), "{second}");
    assert!(!second.contains(p(&r1)), "{second}");
    ok(&["put", p(&db), "b", "{}"]);
    assert!(once(&r2).contains("archived LSN 2..=2"));
    assert!(once(&r1).contains("archived LSN 2..=2"));
    let held = once(&r2);
    assert!(
        held.contains("nothing new to archive") && held.contains("through LSN 2"),
        "{held}"
    );
}

/// `status` watches every database's archiver in the repository, tells when
/// an archiver claims writes the repository no longer reaches, and reports
/// a damaged heartbeat as a problem instead of failing.
#[test]
fn status_checks_every_archiver_and_what_they_claim() {
    let (tmp, db, repo) = backed_up();
    ok(&["wal-archive", p(&db), "--repo", p(&repo), "--once"]);
    ok(&["put", p(&db), "a", "{}"]);
    ok(&["wal-archive", p(&db), "--repo", p(&repo), "--once"]);
    // The latest point, as shown, restores exactly.
    let v = common::json(&["backup", "status", "--repo", p(&repo), "--json"]);
    let (lsn, time) = (
        v["latest_lsn"].as_u64().unwrap(),
        v["latest_time"].as_str().unwrap(),
    );
    let t = tmp.path().join("at-time.keystone");
    let o = ok(&[
        "restore",
        "--repo",
        p(&repo),
        "--target",
        p(&t),
        "--to-time",
        time,
    ]);
    assert!(o.contains(&format!("to LSN {lsn} ")), "{time}: {o}");
    let status = |args: &[&str]| {
        let mut all = vec!["backup", "status", "--repo", p(&repo)];
        all.extend_from_slice(args);
        kstone(&all)
    };
    // The newest archive object deleted: the archiver says it stored more
    // than the repository reaches.
    let mut objs: Vec<PathBuf> = common::walk(&repo.join("wal"))
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "walarc"))
        .collect();
    objs.sort();
    let newest = objs.pop().unwrap();
    let kept = std::fs::read(&newest).unwrap();
    std::fs::remove_file(&newest).unwrap();
    let o = status(&[]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("archive objects are missing"));
    std::fs::write(&newest, kept).unwrap();
    assert!(status(&[]).status.success());

    // A second database in the same repository whose heartbeat is damaged:
    // its problem is named; the first database's status still prints.
    let db2 = tmp.path().join("db2.keystone");
    ok(&["create", p(&db2)]);
    ok(&["put", p(&db2), "x", "{}"]);
    ok(&["wal-archive", p(&db2), "--repo", p(&repo), "--once"]);
    ok(&[
        "backup",
        "create",
        p(&db),
        "--repo",
        p(&repo),
        "--type",
        "full",
    ]);
    let beats: Vec<PathBuf> = common::walk(&repo.join("status").join("archiver"));
    assert_eq!(beats.len(), 2, "{beats:?}");
    let db_id = |d: &std::path::Path| {
        let v = common::json(&["stats", p(d), "--json"]);
        v["db_id"].as_str().map(String::from).unwrap_or_default()
    };
    let other = repo.join("status").join("archiver").join(db_id(&db2));
    let mut b = std::fs::read(&other).unwrap();
    let n = b.len();
    b[n - 2] ^= 0xff;
    std::fs::write(&other, b).unwrap();
    let o = status(&[]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("latest point"), "{out}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "database {}: its archiver heartbeat is unreadable",
            db_id(&db2)
        )),
        "{err}"
    );
}

/// An archiver whose repository disappears (an unmounted disk, a moved
/// directory) writes nothing anywhere — it does not make a new location that
/// takes the writes while the database retires its WAL — and catches up
/// when the repository is back. Stopped with SIGTERM, it says so to the
/// repository: `status` tells a clean stop from a stall.
#[test]
fn an_archiver_writes_nothing_where_its_repository_was_and_stops_cleanly() {
    use std::time::Duration;
    let (tmp, db, repo) = backed_up();
    let log = tmp.path().join("archiver.log");
    let mut archiver = common::Reaped(
        common::kstone_cmd()
            .args(["wal-archive", p(&db), "--repo", p(&repo)])
            .args(["--interval", "100ms", "--heartbeat", "1s"])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let archived = || -> Option<u64> {
        let v = common::json(&["backup", "status", "--repo", p(&repo), "--json"]);
        v["archiver"]["archived_lsn"].as_u64()
    };
    let wait_for = common::wait_for;
    ok(&["put", p(&db), "a", "{}"]);
    wait_for("LSN 2 archived", &|| archived() == Some(2));

    let away = tmp.path().join("repo.away");
    std::fs::rename(&repo, &away).unwrap();
    ok(&["put", p(&db), "b", "{}"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!repo.exists(), "the archiver made a new location");
    std::fs::rename(&away, &repo).unwrap();
    wait_for("LSN 3 archived", &|| archived() == Some(3));
    // The mark is stored before the archiver says so in its log.
    wait_for("the archiver to say it works again", &|| {
        std::fs::read_to_string(&log).is_ok_and(|s| s.contains("archiving works again"))
    });
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(
        said.contains("is gone") && said.contains("archiving works again"),
        "{said}"
    );

    unsafe { libc::kill(archiver.0.id() as i32, libc::SIGTERM) };
    assert!(archiver.0.wait().unwrap().success());
    let o = kstone(&["backup", "status", "--repo", p(&repo)]);
    assert!(o.status.success(), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("(stopped cleanly)"));
    // Asked for a bounded lag, a stopped archiver is a problem: nobody is
    // archiving.
    let o = kstone(&[
        "backup",
        "status",
        "--repo",
        p(&repo),
        "--max-archive-lag",
        "60s",
    ]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing is archiving"));
    let t = tmp.path().join("t.keystone");
    let o = restore_latest(&repo, &t);
    assert!(o.contains("to LSN 3 "), "{o}");
    // Restarted on an empty directory where the repository was, nothing
    // makes a new (unencrypted) repository there: the database remembers it.
    std::fs::rename(&repo, tmp.path().join("repo.gone")).unwrap();
    std::fs::create_dir(&repo).unwrap();
    for args in [
        vec!["wal-archive", p(&db), "--repo", p(&repo), "--once"],
        vec!["backup", "create", p(&db), "--repo", p(&repo)],
    ] {
        let o = kstone(&args);
        assert_eq!(o.status.code(), Some(3), "repository gone: {o:?}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("not there any more"));
    }
    assert_eq!(std::fs::read_dir(&repo).unwrap().count(), 0);
}
