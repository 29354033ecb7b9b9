#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test
//! Crash tests with real processes: a child writes in `sync` mode and reports
//! each acknowledged write; the parent SIGKILLs it at random moments (many
//! during flushes), reopens, and checks that every acknowledged write is there
//! and nothing un-acknowledged is half-applied. Also: power cuts emulated on
//! the segments a killed `sync` writer left (the commit log must restore
//! them), SIGKILL during compaction, `LOCK` across processes.
//!
//! The child is this same test binary re-run with `KSTONE_CHILD` set.

mod common;
use common::copy_dir;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kstone_core::{item_from_plain_json, Database, Error, Item, Options};

const KILLS: u64 = 60;
const WRITERS: u64 = 3;

/// `buffered`: acknowledged once the record is in the OS (appended through
/// a memory map of the segment), not yet fsynced — it must survive SIGKILL
/// all the same.
fn child_opts(buffered: bool) -> Options {
    Options {
        // Tiny memtables: flushes happen every few dozen writes, so many kills
        // land inside one.
        memtable_stripe_bytes: 2048,
        wal_stripe_bytes: 8 << 10,
        durability: if buffered {
            kstone_core::Durability::Buffered
        } else {
            kstone_core::Durability::Sync
        },
        ..Options::default()
    }
}

/// Odd kills run the writer in `Buffered` mode, even ones in `Sync` mode (so
/// each mode also reopens what the other left, zeros allocated ahead included).
fn buffered_round(kill: u64) -> bool {
    kill % 2 == 1
}

fn value_item(v: u64) -> Item {
    item_from_plain_json(&format!(
        r#"{{"v": {v}, "pad": "{}"}}"#,
        "z".repeat((v % 97) as usize)
    ))
    .unwrap()
}

fn spawn_child(role: &str, dir: &Path, seed: u64, buffered: bool) -> Child {
    let env: &[&str] = if buffered { &["KSTONE_BUFFERED"] } else { &[] };
    spawn_child_with(role, dir, seed, env)
}

/// A child with the flags `env` set.
fn spawn_child_with(role: &str, dir: &Path, seed: u64, env: &[&str]) -> Child {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([role, "--exact", "--nocapture", "--test-threads=1"])
        .env("KSTONE_CHILD", dir)
        .env("KSTONE_SEED", seed.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for k in env {
        c.env(k, "1");
    }
    c.spawn().unwrap()
}

/// Child: write forever; print `B key val` before and `A key val` after each
/// acknowledged write (`val` 0 = delete).
#[test]
fn child_writer() {
    let Some(dir) = std::env::var_os("KSTONE_CHILD") else {
        return;
    };
    let seed: u64 = std::env::var("KSTONE_SEED").unwrap().parse().unwrap();
    let buffered = std::env::var_os("KSTONE_BUFFERED").is_some();
    let opts = if std::env::var_os("KSTONE_NO_SEAL").is_some() {
        unsealed_opts()
    } else {
        child_opts(buffered)
    };
    let db = Database::open(&dir, opts).unwrap();
    let out = std::sync::Mutex::new(std::io::stdout());
    println!("READY");
    if std::env::var_os("KSTONE_BATCH").is_some() {
        batch_writer(&db, &out, seed);
    }
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let (db, out) = (&db, &out);
            s.spawn(move || {
                let mut x = seed * 1000 + w;
                for n in 1.. {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    // Writer w owns keys k{w}-*; overwrites and deletes hit old keys.
                    let key = format!("k{w}-{}", (x >> 33) % 400);
                    let val = if (x >> 20).is_multiple_of(10) {
                        0
                    } else {
                        seed * 1_000_000 + n
                    };
                    writeln!(out.lock().unwrap(), "B {key} {val}").unwrap();
                    if val == 0 {
                        db.delete(key.as_bytes(), None).unwrap();
                    } else {
                        db.put(key.as_bytes(), None, &value_item(val)).unwrap();
                    }
                    writeln!(out.lock().unwrap(), "A {key} {val}").unwrap();
                }
            });
        }
    });
}

/// Batches of 2000 puts over 8,000 keys: several records of a stripe in one
/// append of 512 bytes to 1 KiB (copied into the segment's mapping in
/// `Buffered` mode), the shape a kill used to tear into zeros followed by
/// whole records. A batch holds ~150 KB, so its stripes are logged on two
/// threads (`db/write_path.rs`, `PARALLEL_MIN_BYTES`).
fn batch_writer(db: &Database, out: &std::sync::Mutex<std::io::Stdout>, seed: u64) -> ! {
    let mut x = seed;
    for n in 1.. {
        let mut batch = kstone_core::WriteBatch::with_capacity(2000);
        let mut keys = Vec::with_capacity(2000);
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let start = (x >> 33) % 8000;
        for i in 0..2000u64 {
            // Distinct keys (7 is prime to 8000): one version of a key in flight.
            let key = format!("b-{}", (start + i * 7) % 8000);
            let val = seed * 1_000_000_000 + n * 1000 + i;
            batch.put(key.as_bytes(), None, &value_item(val)).unwrap();
            keys.push((key, val));
        }
        let mut o = out.lock().unwrap();
        for (k, v) in &keys {
            writeln!(o, "B {k} {v}").unwrap();
        }
        db.write(batch).unwrap();
        for (k, v) in &keys {
            writeln!(o, "A {k} {v}").unwrap();
        }
    }
    unreachable!()
}

/// Child: hold the database open until killed.
#[test]
fn child_holder() {
    let Some(dir) = std::env::var_os("KSTONE_CHILD") else {
        return;
    };
    let _db = Database::open(&dir, Options::default()).unwrap();
    println!("READY");
    std::thread::sleep(Duration::from_secs(60));
}

fn wait_ready(child: &mut Child) -> BufReader<std::process::ChildStdout> {
    let mut r = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            r.read_line(&mut line).unwrap() > 0,
            "child exited before READY"
        );
        if line.trim_end().ends_with("READY") {
            return r;
        }
    }
}

/// Let a child writer run for `ms` milliseconds, SIGKILL it, and return what it printed.
fn run_until_killed(child: Child, ms: u64) -> Vec<String> {
    run_until_acked(child, 0, ms)
}

/// Let a child writer acknowledge at least `min_acks` writes (however
/// loaded the machine is), then run `ms` milliseconds more; SIGKILL it and
/// return what it printed.
fn run_until_acked(mut child: Child, min_acks: usize, ms: u64) -> Vec<String> {
    let reader = wait_ready(&mut child);
    let (enough_tx, enough) = std::sync::mpsc::channel();
    let lines = std::thread::spawn(move || {
        let mut v = Vec::new();
        let mut acks = 0;
        let mut enough_tx = Some(enough_tx);
        let signal = |tx: &mut Option<std::sync::mpsc::Sender<()>>| {
            if let Some(t) = tx.take() {
                let _ = t.send(());
            }
        };
        if min_acks == 0 {
            signal(&mut enough_tx);
        }
        for l in reader.split(b'\n') {
            match l {
                Ok(l) => {
                    if l.starts_with(b"A ") {
                        acks += 1;
                        if acks >= min_acks {
                            signal(&mut enough_tx);
                        }
                    }
                    v.push(String::from_utf8_lossy(&l).into_owned())
                }
                Err(_) => break,
            }
        }
        v
    });
    enough
        .recv_timeout(Duration::from_secs(120))
        .expect("the child writer stalled");
    std::thread::sleep(Duration::from_millis(ms));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    lines.join().unwrap()
}

/// Fold a child's `B`/`A` lines into `acked` (key -> last acknowledged
/// value, 0 = deleted); returns the writes in flight when it was killed.
fn account(
    lines: &[String],
    acked: &mut HashMap<String, u64>,
    total: &mut u64,
) -> HashMap<String, u64> {
    let mut in_flight: HashMap<String, u64> = HashMap::new();
    for l in lines {
        let p: Vec<&str> = l.split(' ').collect();
        if p.len() != 3 {
            continue; // a line cut by the kill
        }
        let Ok(val) = p[2].parse::<u64>() else {
            continue;
        };
        match p[0] {
            "B" => {
                in_flight.insert(p[1].to_string(), val);
            }
            "A" => {
                in_flight.remove(p[1]);
                acked.insert(p[1].to_string(), val);
                *total += 1;
            }
            _ => {}
        }
    }
    in_flight
}

/// Every acknowledged write is in `db` (or the one in flight for its key
/// replaced it), whole; what is seen becomes the baseline for the next round.
fn verify(
    db: &Database,
    acked: &mut HashMap<String, u64>,
    in_flight: &HashMap<String, u64>,
    kill: u64,
) {
    let mut keys: Vec<String> = acked.keys().chain(in_flight.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    for key in &keys {
        let got = db.get(key.as_bytes(), None).unwrap();
        let got_v = got.as_ref().map(|i| match &i["v"] {
            kstone_core::Value::N(n) => n.as_str().parse::<u64>().unwrap(),
            other => panic!("{other:?}"),
        });
        if let (Some(item), Some(v)) = (&got, got_v) {
            assert_eq!(item, &value_item(v), "half-applied item for {key}");
        }
        // A key never acknowledged before (`acked` has no entry, not even
        // a delete) may still be absent if its first write was in flight.
        let never = (!acked.contains_key(key)).then_some(&0);
        let ok_values: Vec<Option<u64>> = [acked.get(key), in_flight.get(key), never]
            .into_iter()
            .flatten()
            .map(|&v| (v != 0).then_some(v))
            .collect();
        assert!(
            ok_values.contains(&got_v),
            "kill {kill}: {key} is {got_v:?}, expected one of {ok_values:?}"
        );
        match got_v {
            Some(v) => acked.insert(key.clone(), v),
            None => acked.insert(key.clone(), 0),
        };
    }
}

#[test]
fn sigkill_loses_no_acknowledged_write() {
    if std::env::var_os("KSTONE_CHILD").is_some() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("crash.keystone");
    Database::create(&dir, child_opts(false))
        .unwrap()
        .close()
        .unwrap();
    // key -> (last acknowledged value, value in flight when killed)
    let mut acked: HashMap<String, u64> = HashMap::new();
    let mut rng = 0x1234_5678u64;
    let mut total_acks = 0;
    for kill in 0..KILLS {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1);
        let ms = 30 + (rng >> 33) % 250;
        let child = spawn_child("child_writer", &dir, kill + 1, buffered_round(kill));
        let lines = run_until_killed(child, ms);
        let in_flight = account(&lines, &mut acked, &mut total_acks);
        // What a kill leaves (torn records, half-done flushes) is not damage
        // to `kstone check` either.
        let report = kstone_core::check::check(&dir).unwrap();
        assert!(report.problems.is_empty(), "kill {kill}: {report:?}");
        let db = Database::open(&dir, child_opts(buffered_round(kill)))
            .unwrap_or_else(|e| panic!("reopen after kill {kill} failed: {e}"));
        verify(&db, &mut acked, &in_flight, kill);
        db.close().unwrap();
    }
    assert!(total_acks > 1000, "only {total_acks} acknowledged writes");
    let db = Database::open(&dir, child_opts(false)).unwrap();
    let s = db.stats().unwrap();
    assert!(
        s.sst_files > 20,
        "kills should have interrupted flushes: {s:?}"
    );
    eprintln!(
        "{KILLS} kills, {total_acks} acknowledged writes, {} SSTs",
        s.sst_files
    );
}

/// `Buffered` batches of many small records per stripe, SIGKILLed at
/// random moments: whatever a kill leaves of the append in flight must read
/// as a torn tail (once it read as damage: zeros, then whole records).
#[test]
fn sigkill_during_buffered_batches_loses_no_acknowledged_write() {
    if std::env::var_os("KSTONE_CHILD").is_some() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("batch.keystone");
    let opts = Options::default();
    Database::create(&dir, opts.clone())
        .unwrap()
        .close()
        .unwrap();
    let mut acked: HashMap<String, u64> = HashMap::new();
    let (mut rng, mut total_acks) = (0x9e37_79b9u64, 0);
    for kill in 0..40 {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1);
        let ms = 20 + (rng >> 33) % 400;
        let child = spawn_child_with(
            "child_writer",
            &dir,
            kill + 1,
            &["KSTONE_BUFFERED", "KSTONE_BATCH"],
        );
        let lines = run_until_acked(child, 2000, ms);
        // A batch's `B` lines are all printed before it is written: at most
        // one batch is in flight.
        let in_flight = account(&lines, &mut acked, &mut total_acks);
        assert!(in_flight.len() <= 2000, "{} in flight", in_flight.len());
        let db = Database::open(&dir, opts.clone())
            .unwrap_or_else(|e| panic!("reopen after kill {kill} failed: {e}"));
        verify(&db, &mut acked, &in_flight, kill);
        db.close().unwrap();
    }
    assert!(
        total_acks >= 24_000,
        "only {total_acks} acknowledged writes"
    );
}

/// `Sync` mode with memtables that never fill: no segment is sealed (and
/// fsynced) while a child runs, so what it appends to the stripes' segments
/// is durable only through the commit log.
fn unsealed_opts() -> Options {
    Options {
        memtable_stripe_bytes: 64 << 20,
        wal_stripe_bytes: 1 << 30,
        durability: kstone_core::Durability::Sync,
        ..Options::default()
    }
}

fn wal_lens(dir: &Path) -> HashMap<PathBuf, u64> {
    std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.path(), e.metadata().unwrap().len())
        })
        .collect()
}

/// SIGKILL a `Sync` writer, then do to the stripes' segments what a power
/// cut may do to data written since their last fsync: cut each one short
/// at a random point and zero a sector in the middle of what is left (one
/// the device had not written), and remove some of the segments created
/// since (their directory entries are not fsynced). Every acknowledged
/// write must still be there — the commit log has it — and `check` must
/// agree.
#[test]
fn power_cut_loses_no_acknowledged_write() {
    if std::env::var_os("KSTONE_CHILD").is_some() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("power.keystone");
    Database::create(&dir, unsealed_opts())
        .unwrap()
        .close()
        .unwrap();
    let mut acked: HashMap<String, u64> = HashMap::new();
    let (mut total, mut rng, mut cut, mut holes, mut lost_entries) = (0, 0x5eed_u64, 0u64, 0, 0u64);
    let next = |rng: &mut u64| {
        *rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *rng >> 33
    };
    for round in 0..6u64 {
        // Closed cleanly last round: everything in the WAL now is durable.
        let durable = wal_lens(&dir);
        let child = spawn_child_with("child_writer", &dir, round + 1, &["KSTONE_NO_SEAL"]);
        // Enough writes that segments grow past a sector whatever the load.
        let lines = run_until_acked(child, 3000, next(&mut rng) % 300);
        let in_flight = account(&lines, &mut acked, &mut total);
        for (path, len) in wal_lens(&dir) {
            let from = durable.get(&path).copied().unwrap_or(0);
            if len <= from {
                continue;
            }
            // A segment created since: its directory entry was never
            // fsynced (the commit log holds its header), so it may be gone,
            // or still under the spare's name it was renamed from, with
            // its bytes.
            if !durable.contains_key(&path) && next(&mut rng) % 4 == 0 {
                if next(&mut rng) % 2 == 0 {
                    std::fs::remove_file(&path).unwrap();
                } else {
                    let spare = format!("spare-{:012}.tmp", 900_000_000_000u64 + lost_entries);
                    std::fs::rename(&path, dir.join("wal").join(spare)).unwrap();
                }
                (cut, lost_entries) = (cut + len, lost_entries + 1);
                continue;
            }
            let mut bytes = std::fs::read(&path).unwrap();
            let keep = from + next(&mut rng) % (len - from + 1);
            bytes.truncate(keep as usize);
            // A sector the device had not written, with data after it.
            let sector = from.div_ceil(512) * 512;
            if keep > sector + 512 && next(&mut rng) % 2 == 0 {
                bytes[sector as usize..sector as usize + 512].fill(0);
                holes += 1;
            }
            std::fs::write(&path, &bytes).unwrap();
            cut += len - keep;
        }
        if round == 0 {
            // Without the commit log, the cut would lose acknowledged writes.
            let copy = tmp.path().join("no-commit-log");
            copy_dir(&dir, &copy);
            std::fs::remove_dir_all(copy.join("commit")).unwrap();
            let lost = match Database::open(&copy, unsealed_opts()) {
                Err(_) => true,
                Ok(db) => acked.iter().any(|(k, &v)| {
                    let got = db.get(k.as_bytes(), None).unwrap();
                    got != (v != 0).then(|| value_item(v))
                }),
            };
            assert!(
                lost,
                "the cut removed no acknowledged write: the test proves nothing"
            );
        }
        let report = kstone_core::check::check(&dir).unwrap();
        assert!(report.problems.is_empty(), "round {round}: {report:?}");
        let db = Database::open(&dir, unsealed_opts())
            .unwrap_or_else(|e| panic!("reopen after round {round} failed: {e}"));
        verify(&db, &mut acked, &in_flight, round);
        db.close().unwrap();
        assert!(
            !dir.join("commit").read_dir().unwrap().any(|_| true),
            "logs left after open"
        );
        let report = kstone_core::check::check(&dir).unwrap();
        assert!(
            report.problems.is_empty() && report.notes.is_empty(),
            "{report:?}"
        );
    }
    assert!(total > 500, "only {total} acknowledged writes");
    assert!(
        cut > 0 && holes > 0 && lost_entries > 0,
        "cut {cut} bytes, {holes} holes, {lost_entries} segments lost"
    );
    eprintln!(
        "6 power cuts: {total} acknowledged writes, {cut} bytes cut, {holes} sectors zeroed, {lost_entries} new segments lost"
    );
}

#[test]
fn lock_is_held_across_processes() {
    if std::env::var_os("KSTONE_CHILD").is_some() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("locked.keystone");
    Database::create(&dir, Options::default())
        .unwrap()
        .close()
        .unwrap();
    let mut child = spawn_child("child_holder", &dir, 0, false);
    let _r = wait_ready(&mut child);
    let start = Instant::now();
    match Database::open(&dir, Options::default()) {
        Err(e @ Error::Locked { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("locked by process {}", child.id())),
                "{msg}"
            );
        }
        other => panic!("expected Locked, got {:?}", other.map(|_| ())),
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "lock attempt must not block"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // The kernel released the dead process's lock.
    Database::open(&dir, Options::default())
        .unwrap()
        .close()
        .unwrap();
}

/// Options for the compaction crash test: small memtables make many tables
/// per stripe, and no automatic compaction merges them before the child does.
fn layered_opts() -> Options {
    Options {
        memtable_stripe_bytes: 4096,
        compaction_trigger: 1000,
        durability: kstone_core::Durability::Buffered,
        ..Options::default()
    }
}

/// Child: print COMPACTING, run a full compaction, print DONE and the seconds it took.
#[test]
fn child_compactor() {
    let Some(dir) = std::env::var_os("KSTONE_CHILD") else {
        return;
    };
    let db = Database::open(&dir, layered_opts()).unwrap();
    println!("READY");
    println!("COMPACTING");
    let t = Instant::now();
    db.compact().unwrap();
    println!("DONE {}", t.elapsed().as_secs_f64());
    std::thread::sleep(Duration::from_secs(60));
}

/// Write a round of overwrites and deletes (each flushed into new tables)
/// and record it in the model.
fn layer(dir: &Path, round: u64, model: &mut std::collections::BTreeMap<String, Option<u64>>) {
    let db = Database::open(dir, layered_opts()).unwrap();
    for i in 0..2000u64 {
        let key = format!("c{}", (i * 7 + round * 13) % 3000);
        if (i + round).is_multiple_of(5) {
            db.delete(key.as_bytes(), None).unwrap();
            model.insert(key, None);
        } else {
            let v = round * 1_000_000 + i + 1;
            db.put(key.as_bytes(), None, &value_item(v)).unwrap();
            model.insert(key, Some(v));
        }
        if i == 999 {
            db.flush().unwrap();
        }
    }
    db.close().unwrap();
}

/// SIGKILL a process in the middle of a full compaction, again and again:
/// every reopen must see exactly the model (the manifest switch is the
/// commit point of each merge), the tables must verify, and no file may be
/// left that the manifest does not reference.
#[test]
fn sigkill_during_compaction_loses_nothing() {
    if std::env::var_os("KSTONE_CHILD").is_some() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("compact.keystone");
    Database::create(&dir, layered_opts())
        .unwrap()
        .close()
        .unwrap();
    let mut model = std::collections::BTreeMap::new();
    let mut rng = 0x9e37_79b9u64;
    // How long an uninterrupted compaction takes here: kills are spread over it.
    let mut window = 0.0f64;
    let (mut mid, mut kills) = (0, 0);
    for round in 0..9u64 {
        for r in 0..2 {
            layer(&dir, round * 2 + r, &mut model);
        }
        let mut child = spawn_child("child_compactor", &dir, round, false);
        let mut reader = wait_ready(&mut child);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "COMPACTING");
        if round == 0 {
            line.clear();
            reader.read_line(&mut line).unwrap();
            window = line.trim().trim_start_matches("DONE ").parse().unwrap();
        } else {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1);
            let frac = ((rng >> 33) % 1000) as f64 / 1000.0;
            std::thread::sleep(Duration::from_secs_f64(window * frac));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        line.clear();
        let finished = reader.read_line(&mut line).unwrap_or(0) > 0 || round == 0;
        if round > 0 {
            kills += 1;
            mid += usize::from(!finished);
        }
        let db = Database::open(&dir, layered_opts())
            .unwrap_or_else(|e| panic!("reopen after kill {round} failed: {e}"));
        for (key, want) in &model {
            let got = db.get(key.as_bytes(), None).unwrap();
            assert_eq!(
                got,
                want.map(value_item),
                "round {round}: {key} differs after a kill during compaction"
            );
        }
        db.verify_tables().unwrap();
        // Settle the background flushes of replayed memtables before counting.
        db.flush().unwrap();
        let live = db.pin().unwrap().snapshot().files.len();
        drop(db);
        let on_disk = ["sst", "wal"]
            .iter()
            .map(|d| std::fs::read_dir(dir.join(d)).unwrap().count())
            .sum::<usize>();
        assert_eq!(on_disk, live, "round {round}: files left behind");
    }
    eprintln!("{kills} kills, {mid} inside a compaction (window {window:.2} s)");
    assert!(
        mid * 2 >= kills,
        "only {mid} of {kills} kills hit a compaction"
    );
}
