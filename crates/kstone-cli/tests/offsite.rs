#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test
//! Off-site copies: encrypted repositories (on a local directory and on the
//! S3 server), and S3 under faults — the server killed mid-backup, cut
//! connections, 503s — with clean failures, consistent repositories and
//! successful retries.

mod common;
use common::s3::{self, FaultProxy, Mode};
use common::{json, kstone, kstone_cmd, ok, p, Backend, Repo};

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use kstone_backup::storage::Storage;
use kstone_core::{item_from_plain_json, Database, Durability, Options};
use std::sync::Arc;

on_both_backends!(encrypted_repository_never_holds_plaintext_and_rekeys);

const MARKER: &str = "PLAINTEXT-MARKER";

fn opts() -> Options {
    Options {
        durability: Durability::Buffered,
        memtable_stripe_bytes: 4096,
        ..Options::default()
    }
}

/// Items whose keys and values carry `MARKER`, mostly flushed.
fn make_db(dir: &Path, from: u64, n: u64) {
    let db = if dir.exists() {
        Database::open(dir, opts()).unwrap()
    } else {
        Database::create(dir, opts()).unwrap()
    };
    for i in from..from + n {
        let item =
            item_from_plain_json(&format!(r#"{{"secret": "{MARKER}-value-{i:06}"}}"#)).unwrap();
        db.put(format!("{MARKER}-key-{i:06}").as_bytes(), None, &item)
            .unwrap();
    }
    db.close().unwrap();
}

fn export(db: &Path) -> String {
    ok(&["export", p(db)])
}

/// Every object of a repository: key → bytes.
fn snapshot(repo: &Repo) -> BTreeMap<String, Vec<u8>> {
    repo.keys("")
        .into_iter()
        .filter(|k| !k.starts_with("locks/"))
        .map(|k| {
            let b = repo.read(&k);
            (k, b)
        })
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn fails(o: &Output, what: &str) -> String {
    fails_with(o, 1, what)
}

/// `fails` with exit code `code` (docs/operations.md, "Exit codes").
fn fails_with(o: &Output, code: i32, what: &str) -> String {
    assert_eq!(o.status.code(), Some(code), "{what} did not fail");
    let all = String::from_utf8_lossy(&o.stderr).into_owned();
    // Progress lines (long work off a terminal) are log, not the error.
    let err: String = all
        .lines()
        .filter(|l| !common::is_progress_line(l))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(err.lines().count(), 1, "{what}: not one line: {all}");
    assert!(err.starts_with("error: "), "{what}: {all}");
    err
}

fn keygen(dir: &Path, name: &str) -> (String, String) {
    let file = dir.join(name);
    let public = ok(&["backup", "keygen", "-o", p(&file)]).trim().to_string();
    assert!(public.starts_with("age1"), "{public}");
    (file.to_str().unwrap().to_string(), public)
}

/// Restore backup `id` into `target` with an identity; must succeed.
fn restore_with(repo: &Repo, id: &str, target: &Path, identity: &str) {
    ok(&[
        "restore",
        "--repo",
        repo.loc(),
        id,
        "--target",
        p(target),
        "-y",
        "--identity",
        identity,
    ]);
}

fn encrypted_repository_never_holds_plaintext_and_rekeys(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db.keystone");
    make_db(&db, 0, 400);
    let (alice, alice_pub) = keygen(tmp.path(), "alice.key");
    let (bob, bob_pub) = keygen(tmp.path(), "bob.key");
    let mallory = keygen(tmp.path(), "mallory.key").0;

    // Control: the same data in a plain, uncompressed repository does show
    // the marker, so the check below can fail.
    let plain = Repo::new(backend, tmp.path(), "plain");
    ok(&["backup", "init", "--repo", plain.loc(), "--no-compression"]);
    ok(&["backup", "create", p(&db), "--repo", plain.loc()]);
    assert!(snapshot(&plain)
        .values()
        .any(|b| contains(b, MARKER.as_bytes())));

    // Uncompressed too, so that only encryption can hide the marker.
    let repo = Repo::new(backend, tmp.path(), "enc");
    let recipients = tmp.path().join("recipients.txt");
    std::fs::write(&recipients, format!("# ops\n{alice_pub}\n")).unwrap();
    let out = ok(&[
        "backup",
        "init",
        "--repo",
        repo.loc(),
        "--no-compression",
        "--recipients-file",
        p(&recipients),
    ]);
    assert!(out.contains("encrypted"), "{out}");
    // Backups need no identity.
    let full = json(&["backup", "create", p(&db), "--repo", repo.loc(), "--json"]);
    let full_export = export(&db);
    make_db(&db, 400, 100);
    ok(&["wal-archive", p(&db), "--repo", repo.loc(), "--once"]);
    let inc = json(&["backup", "create", p(&db), "--repo", repo.loc(), "--json"]);
    assert_eq!(inc["type"], "incremental");
    let inc_export = export(&db);
    make_db(&db, 500, 50);
    ok(&["wal-archive", p(&db), "--repo", repo.loc(), "--once"]);
    let last_lsn = json(&["stats", p(&db), "--json"])["last_lsn"]
        .as_u64()
        .unwrap();

    let objects = snapshot(&repo);
    assert!(objects.keys().any(|k| k.starts_with("wal/")));
    assert!(objects.keys().any(|k| k.starts_with("packs/")));
    for (k, b) in &objects {
        assert!(!contains(b, MARKER.as_bytes()), "plaintext in {k}");
        assert!(!contains(b, b"-value-000123"), "plaintext in {k}");
    }

    // Metadata stays readable without the identity.
    let list = json(&["backup", "list", "--repo", repo.loc(), "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    ok(&["backup", "info", "--repo", repo.loc()]);
    ok(&["backup", "status", "--repo", repo.loc()]);
    ok(&[
        "backup",
        "prune",
        "--repo",
        repo.loc(),
        "--keep-last",
        "5",
        "--dry-run",
    ]);
    // Stored bytes are checked against their own digests without it.
    ok(&["backup", "verify", "--repo", repo.loc(), "--all"]);

    // Reading data needs it; without, one clear line and nothing changed.
    let target = tmp.path().join("restored.keystone");
    let e = fails_with(
        &kstone(&[
            "restore",
            "--repo",
            repo.loc(),
            "--target",
            p(&target),
            "-y",
        ]),
        5,
        "restore without identity",
    );
    assert!(e.contains("--identity"), "{e}");
    assert!(!target.exists());
    let e = fails_with(
        &kstone(&["backup", "verify", "--repo", repo.loc(), "--deep"]),
        5,
        "verify --deep without identity",
    );
    assert!(e.contains("--identity"), "{e}");
    let e = fails_with(
        &kstone(&[
            "restore",
            "--repo",
            repo.loc(),
            "--target",
            p(&target),
            "-y",
            "--identity",
            &mallory,
        ]),
        5,
        "restore with a stranger's identity",
    );
    assert!(e.contains("no identity"), "{e}");
    assert!(!target.exists());
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("restore"))
        .collect();
    assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");

    // With it: deep verify, restore of each backup, PITR and export.
    let with = |args: &[&str], id: &str| {
        let mut v = args.to_vec();
        v.extend(["--identity", id]);
        ok(&v)
    };
    with(
        &["backup", "verify", "--repo", repo.loc(), "--all", "--deep"],
        &alice,
    );
    let full_id = full["id"].as_str().unwrap();
    restore_with(&repo, full_id, &target, &alice);
    assert_eq!(export(&target), full_export);
    let pitr = tmp.path().join("pitr.keystone");
    with(
        &[
            "restore",
            "--repo",
            repo.loc(),
            "--target",
            p(&pitr),
            "--to-lsn",
            &last_lsn.to_string(),
        ],
        &alice,
    );
    assert_eq!(export(&pitr), export(&db));
    let archive = tmp.path().join("b.tar.gz");
    fails_with(
        &kstone(&["backup", "export", "--repo", repo.loc(), "-o", p(&archive)]),
        5,
        "export without identity",
    );
    with(
        &["backup", "export", "--repo", repo.loc(), "-o", p(&archive)],
        &alice,
    );
    let from_archive = tmp.path().join("from-archive.keystone");
    ok(&[
        "restore",
        "--archive",
        p(&archive),
        "--target",
        p(&from_archive),
    ]);
    assert_eq!(export(&from_archive), inc_export);

    // Rekey: add bob, remove alice. Only the key object changes.
    fails(
        &kstone(&[
            "backup",
            "rekey",
            "--repo",
            repo.loc(),
            "--add-recipient",
            &bob_pub,
        ]),
        "rekey without identity",
    );
    let before = snapshot(&repo);
    with(
        &[
            "backup",
            "rekey",
            "--repo",
            repo.loc(),
            "--add-recipient",
            &bob_pub,
            "--remove-recipient",
            &alice_pub,
        ],
        &alice,
    );
    let after = snapshot(&repo);
    let changed: Vec<&String> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .map(|(k, _)| k)
        .collect();
    assert_eq!(changed, vec!["keys/data-key"], "rekey rewrote data");
    assert_eq!(before.len(), after.len());
    let t2 = tmp.path().join("bob.keystone");
    restore_with(&repo, full_id, &t2, &bob);
    assert_eq!(export(&t2), full_export);
    let t3 = tmp.path().join("alice-again.keystone");
    let mut args = vec!["restore", "--repo", repo.loc(), "--target", p(&t3), "-y"];
    args.extend(["--identity", alice.as_str()]);
    let e = fails_with(&kstone(&args), 5, "restore with a removed identity");
    assert!(e.contains("no identity"), "{e}");
    // The last recipient cannot be removed.
    let mut args = vec![
        "backup",
        "rekey",
        "--repo",
        repo.loc(),
        "--remove-recipient",
        bob_pub.as_str(),
    ];
    args.extend(["--identity", bob.as_str()]);
    fails(&kstone(&args), "removing the last recipient");

    // Damage to an encrypted object is found with and without the identity.
    let victim = repo
        .keys("packs")
        .into_iter()
        .max_by_key(|k| repo.read(k).len())
        .unwrap();
    let saved = repo.read(&victim);
    let mut bad = saved.clone();
    let n = bad.len() - 20;
    bad[n] ^= 0x40;
    repo.write(&victim, bad);
    let o = kstone(&["backup", "verify", "--repo", repo.loc(), full_id]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "damage not found without identity"
    );
    let mut args = vec!["backup", "verify", "--repo", repo.loc(), full_id];
    args.extend(["--identity", bob.as_str()]);
    let o = kstone(&args);
    assert_eq!(o.status.code(), Some(1), "damage not found with identity");
    repo.write(&victim, saved);

    // Fail closed: an encrypted repository whose key object is gone takes
    // no backup at all (never a plaintext one).
    let key = repo.read("keys/data-key");
    repo.remove("keys/data-key");
    let n_before = repo.keys("packs").len();
    let e = fails_with(
        &kstone(&["backup", "create", p(&db), "--repo", repo.loc()]),
        6,
        "backup into a repository without its key",
    );
    assert!(e.contains("key"), "{e}");
    assert_eq!(repo.keys("packs").len(), n_before);
    repo.write("keys/data-key", key);
    ok(&["backup", "verify", "--repo", repo.loc(), "--all"]);
}

/// What S3 says about an object, asked with another client (boto3, which
/// comes with moto): storage class and server-side encryption.
fn head_object(endpoint: &str, bucket: &str, key: &str) -> String {
    let py = s3::ensure_moto().with_file_name("python");
    let o = std::process::Command::new(py)
        .args([
            "-c",
            "import sys, boto3\n\
c = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1',\n\
    aws_access_key_id='kstone-test', aws_secret_access_key='kstone-test-secret')\n\
h = c.head_object(Bucket=sys.argv[2], Key=sys.argv[3])\n\
print(h.get('StorageClass'), h.get('ServerSideEncryption'))",
            endpoint,
            bucket,
            key,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn s3_options_and_plain_http_refusal() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db.keystone");
    make_db(&db, 0, 50);
    let repo = Repo::new(Backend::S3, tmp.path(), "opts");
    ok(&["backup", "init", "--repo", repo.loc()]);
    ok(&[
        "backup",
        "create",
        p(&db),
        "--repo",
        repo.loc(),
        "--s3-storage-class",
        "STANDARD_IA",
        "--s3-sse",
        "AES256",
    ]);
    let key = repo.keys("packs").into_iter().next().unwrap();
    let (bucket, prefix) = repo
        .loc()
        .trim_start_matches("s3://")
        .split_once('/')
        .unwrap();
    let h = head_object(&s3::server().endpoint, bucket, &format!("{prefix}/{key}"));
    assert_eq!(h.trim(), "STANDARD_IA AES256");

    let e = fails(
        &kstone(&[
            "backup",
            "create",
            p(&db),
            "--repo",
            repo.loc(),
            "--s3-sse",
            "rot13",
        ]),
        "bad --s3-sse",
    );
    assert!(e.contains("AES256"), "{e}");
    let e = fails(
        &kstone_cmd()
            .args(["backup", "list", "--repo", "s3://some-bucket/x"])
            .env("AWS_ENDPOINT_URL", "http://192.0.2.10:9000")
            .output()
            .unwrap(),
        "plain HTTP to a remote host",
    );
    assert!(e.contains("plain HTTP"), "{e}");
    let e = fails(
        &kstone(&[
            "backup",
            "list",
            "--repo",
            p(tmp.path()),
            "--s3-sse",
            "AES256",
        ]),
        "--s3-sse on a local repository",
    );
    assert!(e.contains("s3://"), "{e}");
}

/// A database big enough that a backup to moto takes a few seconds, with
/// SSTs over the multipart threshold.
fn make_big_db(dir: &Path) {
    make_big_db_seeded(dir, 0x1234_5678_9abc_def0);
}

/// [`make_big_db`] with values from `seed`: another seed, other chunks.
fn make_big_db_seeded(dir: &Path, seed: u64) {
    let db = Database::create(
        dir,
        Options {
            durability: Durability::Buffered,
            memtable_stripe_bytes: 64 << 20,
            memtable_budget: 512 << 20,
            ..Options::default()
        },
    )
    .unwrap();
    let mut x = seed;
    let mut noise = |n: usize| -> String {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'a' + (x % 26) as u8)
            })
            .collect()
    };
    // ~24 MiB in one partition: one stripe, SSTs of up to 16 MiB.
    for i in 0..6000u64 {
        let v = noise(4000);
        let item = item_from_plain_json(&format!(r#"{{"blob": "{v}"}}"#)).unwrap();
        db.put(b"big-partition", Some(format!("{i:06}").as_bytes()), &item)
            .unwrap();
    }
    // And many small files.
    for i in 0..3000u64 {
        let item = item_from_plain_json(&format!(r#"{{"v": {i}}}"#)).unwrap();
        db.put(format!("small-{i}").as_bytes(), None, &item)
            .unwrap();
    }
    db.flush().unwrap();
    db.close().unwrap();
}

/// `kstone` against a given endpoint, with short retries so that a dead
/// server is reported in seconds.
fn kstone_at(endpoint: &str, args: &[&str]) -> std::process::Command {
    let mut c = kstone_cmd();
    c.envs(s3::env_for(endpoint))
        .env("KSTONE_S3_MAX_RETRIES", "3")
        .env("KSTONE_S3_RETRY_TIMEOUT_SECS", "4")
        .args(args);
    c
}

fn run_until(mut c: std::process::Command, cond: impl Fn() -> bool) -> (Output, Duration) {
    let start = Instant::now();
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while !cond() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (out, start.elapsed())
}

#[test]
fn s3_connection_cut_mid_backup_then_retry() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db.keystone");
    make_big_db(&db);
    let proxy = FaultProxy::in_front_of_the_server();
    let ep = proxy.endpoint();
    let repo = Repo::new(Backend::S3, tmp.path(), "cut");
    // Uncompressed, so that the big SST stays above the multipart threshold.
    ok(&["backup", "init", "--repo", repo.loc(), "--no-compression"]);
    let first = kstone_at(
        &ep,
        &["backup", "create", p(&db), "--repo", repo.loc(), "--json"],
    )
    .output()
    .unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let big = repo
        .storage()
        .list("packs")
        .unwrap()
        .into_iter()
        .map(|(_, n)| n)
        .max()
        .unwrap();
    assert!(
        big > kstone_backup::storage::PART_SIZE as u64,
        "no multipart-sized object ({big} bytes)"
    );

    // The network dies part-way through a full backup of new data (data
    // the repository holds would not be uploaded again).
    let db = tmp.path().join("db2.keystone");
    make_big_db_seeded(&db, 0x0fed_cba9_8765_4321);
    let (out, took) = run_until(
        kstone_at(
            &ep,
            &[
                "backup",
                "create",
                p(&db),
                "--repo",
                repo.loc(),
                "--type",
                "full",
            ],
        ),
        || {
            if repo.keys("inprogress").is_empty() {
                false
            } else {
                proxy.set(Mode::Down);
                true
            }
        },
    );
    let e = fails(&out, "backup with the server gone");
    assert!(e.contains("storage error"), "{e}");
    assert!(took < Duration::from_secs(60), "took {took:?}");
    proxy.set(Mode::Pass);

    // Consistent: only the complete backup is listed, and it verifies.
    let list = json(&["backup", "list", "--repo", repo.loc(), "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    ok(&["backup", "verify", "--repo", repo.loc(), "--all"]);

    // 503s are retried with backoff: the same backup succeeds through them.
    proxy.fail_next(3);
    let again = kstone_at(
        &ep,
        &[
            "backup",
            "create",
            p(&db),
            "--repo",
            repo.loc(),
            "--type",
            "full",
        ],
    )
    .output()
    .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let ids: Vec<String> = json(&["backup", "list", "--repo", repo.loc(), "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    // The interrupted backup's objects are gone (removed on failure or by
    // the next run), and no partial object is visible.
    for d in repo.data_dirs() {
        assert!(
            ids.contains(&d),
            "objects of the interrupted backup remain: {d}"
        );
    }
    let t = tmp.path().join("t.keystone");
    ok(&["restore", "--repo", repo.loc(), "--target", p(&t), "-y"]);
    assert_eq!(export(&t), export(&db));
}

/// A list response cut off after its `200 OK` head (a dropped connection,
/// a server restarting) is retried like any other transient failure: the
/// backup and `backup list` succeed through it, and a cut that persists is
/// a storage error, not a short listing.
#[test]
fn s3_list_response_cut_off_mid_body_is_retried() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db.keystone");
    make_db(&db, 0, 2000);
    let proxy = FaultProxy::in_front_of_the_server();
    let ep = proxy.endpoint();
    let repo = Repo::new(Backend::S3, tmp.path(), "cutlist");
    ok(&["backup", "init", "--repo", repo.loc()]);
    proxy.cut_next_lists(2);
    let o = kstone_at(&ep, &["backup", "create", p(&db), "--repo", repo.loc()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(proxy.lists_to_cut(), 0, "the backup listed nothing");
    proxy.cut_next_lists(1);
    let o = kstone_at(&ep, &["backup", "list", "--repo", repo.loc(), "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(proxy.lists_to_cut(), 0);
    let listed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let t = tmp.path().join("t.keystone");
    ok(&["restore", "--repo", repo.loc(), "--target", p(&t), "-y"]);
    assert_eq!(export(&t), export(&db));

    // Restarts count against the retry limit: with none allowed, one cut
    // listing is the command's error.
    proxy.cut_next_lists(1);
    let o = kstone_at(&ep, &["backup", "list", "--repo", repo.loc()])
        .env("KSTONE_S3_MAX_RETRIES", "0")
        .output()
        .unwrap();
    let e = fails(&o, "backup list with no retries and a cut listing");
    assert!(e.contains("storage error"), "{e}");
    assert_eq!(proxy.lists_to_cut(), 0);

    // Every list cut: the command fails naming the store, in bounded time.
    proxy.cut_next_lists(1000);
    let start = Instant::now();
    let o = kstone_at(&ep, &["backup", "list", "--repo", repo.loc()])
        .output()
        .unwrap();
    let e = fails(&o, "backup list with every list response cut");
    assert!(e.contains("storage error") && e.contains(repo.loc()), "{e}");
    assert!(start.elapsed() < Duration::from_secs(60));
}

#[test]
fn s3_server_killed_mid_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db.keystone");
    make_big_db(&db);
    // A server of this test's own, so that killing it hurts nobody else.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pid = s3::spawn_moto(port);
    let ep = format!("http://127.0.0.1:{port}");
    s3::create_bucket(&ep, "killed");
    let loc = "s3://killed/repo";
    assert!(kstone_at(&ep, &["backup", "init", "--repo", loc])
        .status()
        .unwrap()
        .success());
    let mut c = kstone_at(&ep, &["backup", "create", p(&db), "--repo", loc]);
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Killed once the backup has begun (its in-progress marker is up).
    let marker = Storage::from_store(
        Arc::new(object_store::prefix::PrefixStore::new(
            s3::store(&ep, "killed"),
            "repo",
        )),
        loc,
    )
    .unwrap();
    let begun = Instant::now();
    while marker.list("inprogress").unwrap_or_default().is_empty() {
        assert!(
            begun.elapsed() < Duration::from_secs(60),
            "the backup never began"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    let start = Instant::now();
    let out = child.wait_with_output().unwrap();
    let e = fails(&out, "backup while the server is killed");
    assert!(e.contains("storage error") && e.contains(&ep), "{e}");
    assert!(start.elapsed() < Duration::from_secs(60));

    // A new server (moto keeps nothing): the same command succeeds.
    s3::spawn_moto(port);
    s3::create_bucket(&ep, "killed");
    let o = kstone_at(&ep, &["backup", "create", p(&db), "--repo", loc])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let t = tmp.path().join("t.keystone");
    let o = kstone_at(&ep, &["restore", "--repo", loc, "--target", p(&t), "-y"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(export(&t), export(&db));
}
