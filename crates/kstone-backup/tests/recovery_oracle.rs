#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test
//! The model-based recovery oracle: seeded random sequences of writes and
//! deletes, flushes, compactions, reopens, backups of all three types,
//! restores in place and elsewhere, archive rounds to one or two repositories
//! in random order, prunes with random policies, and deleted or damaged
//! repository objects. After every step, for each repository, the points
//! `window()` reports reachable (the numbers `backup status` and the agent
//! print) are checked against a model: a reachable point restores to exactly
//! the model's state; any other point fails with `Error::Unreachable`. A
//! repository with a damaged (not deleted) object may fail a restore, but
//! never with a wrong result.
//!
//! `KSTONE_ORACLE_CASES` (default 300 on local repositories, split over two
//! threads), `KSTONE_ORACLE_S3_CASES` (default 24 on the S3 server) and
//! `KSTONE_ORACLE_STEPS` (default 12)
//! size the run; `KSTONE_ORACLE_SEED` replays one case. For an hour:
//! `KSTONE_ORACLE_CASES=20000 cargo test --release -p kstone-backup --test recovery_oracle`.

#[allow(dead_code)]
#[path = "../../kstone-cli/tests/common/s3.rs"]
mod s3;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kstone_backup::storage::Storage;
use kstone_backup::wal_archive::Archiver;
use kstone_backup::{
    BackupOptions, BackupType, DatabaseBackupExt, Error, Policy, Repository, Target,
};
use kstone_core::{Database, Durability, Item, Options, Value};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64: a reproducible stream from one seed.
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn opts() -> Options {
    Options {
        durability: Durability::Buffered,
        memtable_stripe_bytes: 2048,
        compaction_trigger: 3,
        ..Options::default()
    }
}

fn item(v: u64) -> Item {
    let mut i = Item::new();
    i.insert(
        "v".into(),
        Value::N(kstone_core::Number::parse(&v.to_string()).unwrap()),
    );
    i
}

/// One history of the database: its state where it began and every write
/// since, by LSN.
#[derive(Clone)]
struct History {
    id: String,
    /// LSN and state at the fork (a restore), or 0 and empty.
    start: u64,
    base: BTreeMap<String, u64>,
    log: Vec<(u64, String, Option<u64>)>,
}

impl History {
    fn at(&self, lsn: u64) -> BTreeMap<String, u64> {
        let mut m = self.base.clone();
        for (l, k, v) in &self.log {
            if *l > lsn {
                break;
            }
            match v {
                Some(v) => m.insert(k.clone(), *v),
                None => m.remove(k),
            };
        }
        m
    }
    fn last(&self) -> u64 {
        self.log.last().map_or(self.start, |w| w.0)
    }
}

fn contents(dir: &Path) -> BTreeMap<String, u64> {
    let db = Database::open(dir, Options::default()).unwrap();
    let mut m = BTreeMap::new();
    db.for_each_item(|k, item| {
        let v = match item.get("v") {
            Some(Value::N(n)) => n.as_str().parse().unwrap(),
            other => panic!("unexpected item {other:?}"),
        };
        m.insert(String::from_utf8(k.pk.to_vec()).unwrap(), v);
        Ok::<(), kstone_core::Error>(())
    })
    .unwrap();
    db.close().unwrap();
    m
}

struct RepoState {
    loc: String,
    /// An object was damaged in place: restores through it may fail (never
    /// give a wrong result).
    damaged: bool,
}

struct Case {
    rng: Rng,
    work: PathBuf,
    db_path: PathBuf,
    db: Option<Database>,
    histories: Vec<History>,
    repos: Vec<RepoState>,
    restores: usize,
    checked: usize,
    refused: usize,
    log: Vec<String>,
}

impl Case {
    fn db(&mut self) -> &Database {
        if self.db.is_none() {
            self.db = Some(Database::open(&self.db_path, opts()).unwrap());
        }
        self.db.as_ref().unwrap()
    }

    fn close(&mut self) {
        if let Some(d) = self.db.take() {
            d.close().unwrap();
        }
    }

    fn current(&mut self) -> &mut History {
        self.histories.last_mut().unwrap()
    }

    fn step(&mut self) {
        let r = self.rng.below(100);
        match r {
            0..=29 => {
                let n = 1 + self.rng.below(30);
                for _ in 0..n {
                    let k = format!("k{}", self.rng.below(40));
                    let lsn;
                    let v;
                    if self.rng.below(5) == 0 {
                        lsn = self.db().delete(k.as_bytes(), None).unwrap();
                        v = None;
                    } else {
                        let x = self.rng.next() % 1_000_000;
                        lsn = self.db().put(k.as_bytes(), None, &item(x)).unwrap();
                        v = Some(x);
                    }
                    self.current().log.push((lsn, k, v));
                }
                self.log.push(format!("write {n}"));
            }
            30..=34 => {
                self.db().flush().unwrap();
                self.log.push("flush".into());
            }
            35..=37 => {
                self.db().compact().unwrap();
                self.log.push("compact".into());
            }
            38..=40 => {
                self.close();
                self.log.push("reopen".into());
            }
            41..=58 => {
                let i = self.rng.below(self.repos.len() as u64) as usize;
                let kind = match self.rng.below(3) {
                    0 => BackupType::Full,
                    1 => BackupType::Incremental,
                    _ => BackupType::Differential,
                };
                let repo = Repository::open(&self.repos[i].loc).unwrap();
                let o = BackupOptions {
                    kind: Some(kind),
                    parallelism: 2,
                    ..Default::default()
                };
                // Through the open database or from its closed directory.
                let r = if self.rng.below(2) == 0 {
                    self.db().backup(&repo, &o)
                } else {
                    self.close();
                    repo.backup_dir(&self.db_path, &o, None)
                };
                match r {
                    Ok(m) => self
                        .log
                        .push(format!("backup {kind} to {i} at {}", m.snapshot_lsn)),
                    // An incremental/differential with no full yet.
                    Err(e) if kind != BackupType::Full => {
                        self.log.push(format!("backup {kind} to {i}: {e}"))
                    }
                    Err(e) => panic!("full backup failed: {e}"),
                }
            }
            59..=80 => {
                let i = self.rng.below(self.repos.len() as u64) as usize;
                let repo = Repository::open(&self.repos[i].loc).unwrap();
                let r = match self.rng.below(6) {
                    0 | 1 => {
                        let db = self
                            .db
                            .take()
                            .unwrap_or_else(|| Database::open(&self.db_path, opts()).unwrap());
                        let r = Archiver::new(&repo, &self.db_path).round_db(&db);
                        self.db = Some(db);
                        r
                    }
                    2 => {
                        // Two archivers at once: one runs, the other is refused.
                        self.close();
                        let (path, loc) = (self.db_path.clone(), self.repos[i].loc.clone());
                        let other = std::thread::spawn(move || {
                            let repo = Repository::open(&loc).unwrap();
                            Archiver::new(&repo, &path).round().map(|_| ())
                        });
                        let r = Archiver::new(&repo, &self.db_path).round();
                        match other.join().unwrap() {
                            Ok(()) | Err(Error::ArchiverBusy { .. } | Error::ArchiveGap { .. }) => {
                            }
                            Err(e) => panic!("concurrent archiver: {e}"),
                        }
                        match r {
                            Err(Error::ArchiverBusy { .. }) => {
                                self.log.push(format!("archive to {i}: busy"));
                                return;
                            }
                            r => r,
                        }
                    }
                    3 => {
                        // An archiver process SIGKILLed at a random moment.
                        self.close();
                        let mut child =
                            std::process::Command::new(std::env::current_exe().unwrap())
                                .args([
                                    "--exact",
                                    "archiver_child",
                                    "--nocapture",
                                    "--test-threads=1",
                                ])
                                .env(
                                    "KSTONE_ORACLE_CHILD",
                                    format!("{}|{}", self.db_path.display(), self.repos[i].loc),
                                )
                                .stdout(std::process::Stdio::null())
                                .stderr(std::process::Stdio::null())
                                .spawn()
                                .unwrap();
                        std::thread::sleep(std::time::Duration::from_millis(self.rng.below(120)));
                        let _ = child.kill();
                        child.wait().unwrap();
                        self.log.push(format!("archiver to {i} killed"));
                        return;
                    }
                    _ => {
                        self.close();
                        Archiver::new(&repo, &self.db_path).round()
                    }
                };
                match r {
                    Ok(round) => self
                        .log
                        .push(format!("archive to {i} through {}", round.archived_lsn)),
                    // A hole that can no longer be filled is reported, not papered over.
                    Err(e @ Error::ArchiveGap { .. }) => {
                        self.log.push(format!("archive to {i}: {e}"))
                    }
                    Err(e) => panic!("archive round failed: {e}"),
                }
            }
            81..=86 => {
                let i = self.rng.below(self.repos.len() as u64) as usize;
                let repo = Repository::open(&self.repos[i].loc).unwrap();
                let p = Policy {
                    keep_last: (self.rng.below(2) == 0).then(|| self.rng.below(3) as usize),
                    keep_within_us: (self.rng.below(3) == 0).then(|| self.rng.below(2_000_000)),
                    pitr_window_us: (self.rng.below(2) == 0).then(|| self.rng.below(3_000_000)),
                    allow_empty: self.rng.below(4) == 0,
                    ..Policy::default()
                };
                match repo.prune(&p, false, kstone_core::fsio::now_micros()) {
                    Ok(plan) => self.log.push(format!(
                        "prune {i} {p:?}: {} deleted",
                        plan.decisions.iter().filter(|d| !d.keep).count()
                    )),
                    Err(e @ Error::Guard(_)) => self.log.push(format!("prune {i}: {e}")),
                    Err(e) => panic!("prune failed: {e}"),
                }
            }
            87..=91 => {
                // Restore in place: a new history begins.
                let i = self.rng.below(self.repos.len() as u64) as usize;
                let repo = Repository::open(&self.repos[i].loc).unwrap();
                let Some(m) = repo
                    .list()
                    .unwrap()
                    .into_iter()
                    .rfind(|m| self.histories.iter().any(|h| h.id == m.history))
                else {
                    return;
                };
                let h = self
                    .histories
                    .iter()
                    .find(|h| h.id == m.history)
                    .unwrap()
                    .clone();
                self.close();
                match repo.restore(&m.id, &self.db_path) {
                    Ok(_) => {}
                    Err(e) if self.repos[i].damaged => {
                        self.log
                            .push(format!("restore in place from {i} failed: {e}"));
                        return;
                    }
                    Err(e) => panic!("restore of {} failed: {e}", m.id),
                }
                let state = h.at(m.snapshot_lsn);
                assert_eq!(
                    contents(&self.db_path),
                    state,
                    "in-place restore of {}",
                    m.id
                );
                let id = kstone_core::Manifest::load(&self.db_path).unwrap().history;
                // The new history shares its parent's writes up to the fork
                // (reachable through its lineage).
                self.histories.push(History {
                    id,
                    start: h.start,
                    base: h.base.clone(),
                    log: h
                        .log
                        .iter()
                        .filter(|w| w.0 <= m.snapshot_lsn)
                        .cloned()
                        .collect(),
                });
                self.log.push(format!("restore {} in place", m.id));
            }
            92..=96 => {
                // An archive object disappears (a lifecycle rule, a hand).
                let i = self.rng.below(self.repos.len() as u64) as usize;
                let s = Storage::open(&self.repos[i].loc, false).unwrap();
                let objs: Vec<String> =
                    s.list("wal").unwrap().into_iter().map(|(k, _)| k).collect();
                if !objs.is_empty() {
                    let k = &objs[self.rng.below(objs.len() as u64) as usize];
                    s.delete(k).unwrap();
                    self.log.push(format!("delete {k} from {i}"));
                }
            }
            _ => {
                // A byte of an object is flipped in place.
                let i = self.rng.below(self.repos.len() as u64) as usize;
                let s = Storage::open(&self.repos[i].loc, false).unwrap();
                let objs: Vec<String> = s
                    .list("")
                    .unwrap()
                    .into_iter()
                    .map(|(k, _)| k)
                    .filter(|k| k.starts_with("wal/") || k.starts_with("data/"))
                    .collect();
                if !objs.is_empty() {
                    let k = &objs[self.rng.below(objs.len() as u64) as usize];
                    let mut b = s.get(k).unwrap().unwrap();
                    let at = self.rng.below(b.len() as u64) as usize;
                    b[at] ^= 1 << self.rng.below(8);
                    s.put(k, b).unwrap();
                    self.repos[i].damaged = true;
                    self.log.push(format!("flip a bit of {k} in {i}"));
                }
            }
        }
    }

    /// The contract, for every repository and every history it holds.
    fn check(&mut self) {
        for (i, rs) in self.repos.iter().enumerate() {
            let repo = Repository::open(&rs.loc).unwrap();
            for h in &self.histories {
                let w = match repo.window(Some(&h.id)) {
                    Ok(w) => w,
                    Err(Error::NoSuchBackup(_)) => continue,
                    Err(e) => panic!("window of {i}: {e}"),
                };
                let reachable =
                    |l: u64| w.reachable.iter().any(|r| r.from_lsn <= l && l <= r.to_lsn);
                // Points to try: a random claimed one, a random one anywhere
                // in the history (and, every few steps, the latest and one
                // past the end).
                let r = &w.reachable[self.rng.below(w.reachable.len() as u64) as usize];
                let mut points = vec![
                    r.from_lsn + self.rng.below(r.to_lsn - r.from_lsn + 1),
                    h.start + self.rng.below(h.last() - h.start + 2),
                ];
                if self.rng.below(3) == 0 {
                    points.extend([w.latest_lsn, h.last() + 1]);
                }
                for lsn in points {
                    let target = self.work.join(format!("check-{}", self.restores));
                    self.restores += 1;
                    let got = repo.restore_to(&Target::Lsn(lsn), &target, Some(&h.id));
                    match got {
                        Ok(rep) => {
                            assert!(
                                reachable(lsn),
                                "LSN {lsn} restored but not reported reachable ({:?})\n{}",
                                w.reachable,
                                self.log.join("\n")
                            );
                            assert_eq!(rep.reached_lsn, lsn);
                            assert_eq!(
                                contents(&target),
                                h.at(lsn),
                                "repo {i} history {} LSN {lsn}\n{}",
                                h.id,
                                self.log.join("\n")
                            );
                            self.checked += 1;
                        }
                        Err(Error::Unreachable(msg)) => {
                            assert!(
                                !reachable(lsn) || rs.damaged,
                                "LSN {lsn} reported reachable ({:?}) but: {msg}\n{}",
                                w.reachable,
                                self.log.join("\n")
                            );
                            assert!(msg.contains("latest reachable point"), "{msg}");
                            self.refused += 1;
                        }
                        Err(e) => assert!(
                            rs.damaged,
                            "repo {i} LSN {lsn}: {e}\n{}",
                            self.log.join("\n")
                        ),
                    }
                    assert!(!target.exists() || std::fs::remove_dir_all(&target).is_ok());
                }
            }
        }
    }
}

fn run_case(seed: u64, steps: usize, on_s3: bool) -> (usize, usize) {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed);
    let nrepos = 1 + rng.below(2) as usize;
    let repos = (0..nrepos)
        .map(|i| {
            let loc = if on_s3 {
                s3::new_location(&format!("oracle-{seed}-{i}")).1
            } else {
                tmp.path()
                    .join(format!("repo{i}"))
                    .to_str()
                    .unwrap()
                    .to_string()
            };
            Repository::init(&loc, Some(1)).unwrap();
            RepoState {
                loc,
                damaged: false,
            }
        })
        .collect();
    let db_path = tmp.path().join("db.keystone");
    let db = Database::create(&db_path, opts()).unwrap();
    let history = db.stats().unwrap().history;
    let mut c = Case {
        rng,
        work: tmp.path().to_path_buf(),
        db_path,
        db: Some(db),
        histories: vec![History {
            id: history,
            start: 0,
            base: BTreeMap::new(),
            log: Vec::new(),
        }],
        repos,
        restores: 0,
        checked: 0,
        refused: 0,
        log: vec![format!("seed {seed}")],
    };
    for _ in 0..steps {
        c.step();
        c.check();
    }
    c.close();
    (c.checked, c.refused)
}

/// Cases `first, first + step, …` below `cases` (env `cases_var`).
fn run_cases(first: u64, step: usize, cases_var: &str, default_cases: u64, on_s3: bool) {
    let num = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let steps = num("KSTONE_ORACLE_STEPS", 12) as usize;
    let seeds: Vec<u64> = match std::env::var("KSTONE_ORACLE_SEED") {
        Ok(s) if first == 0 => vec![s.parse().unwrap()],
        Ok(_) => return,
        Err(_) => (first..num(cases_var, default_cases))
            .step_by(step)
            .collect(),
    };
    let (mut exact, mut refused) = (0, 0);
    for &seed in &seeds {
        let (e, r) = run_case(seed, steps, on_s3);
        exact += e;
        refused += r;
    }
    println!(
        "{} cases × {steps} steps{}: {exact} exact restores, {refused} unreachable points refused",
        seeds.len(),
        if on_s3 { " on S3" } else { "" }
    );
    assert!(
        exact > seeds.len(),
        "the oracle restored too little to mean anything"
    );
}

/// The archiver process the oracle SIGKILLs (runs only as its child).
#[test]
fn archiver_child() {
    let Ok(spec) = std::env::var("KSTONE_ORACLE_CHILD") else {
        return;
    };
    let (db, loc) = spec.split_once('|').unwrap();
    let repo = Repository::open(loc).unwrap();
    for _ in 0..1000 {
        let _ = Archiver::new(&repo, Path::new(db)).round();
    }
}

#[test]
fn every_reported_point_restores_exactly_even_seeds() {
    run_cases(0, 2, "KSTONE_ORACLE_CASES", 300, false);
}

#[test]
fn every_reported_point_restores_exactly_odd_seeds() {
    run_cases(1, 2, "KSTONE_ORACLE_CASES", 300, false);
}

/// The same oracle with every repository on the S3-compatible server
/// (moto on loopback: `KSTONE_TEST_S3_ENDPOINT`, or one started here).
#[test]
fn every_reported_point_restores_exactly_on_s3() {
    let server = s3::server();
    // The code under test reads the standard AWS variables (std's
    // environment access is locked; the local cases read none of these).
    for (k, v) in s3::env_for(&server.endpoint) {
        std::env::set_var(k, v);
    }
    run_cases(0, 1, "KSTONE_ORACLE_S3_CASES", 24, true);
}
