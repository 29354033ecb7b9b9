#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test
//! An object store that fails, delays and cuts off requests (wrapping a local
//! directory): every backup operation fails with a clear error, leaves the
//! repository consistent and its partial objects removed, and succeeds once
//! the store behaves again.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use kstone_backup::storage::Storage;
use kstone_backup::{BackupOptions, BackupType, DatabaseBackupExt, Repository};
use kstone_core::{item_from_plain_json, Database, Options};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

#[derive(Debug)]
struct Faulty {
    inner: LocalFileSystem,
    /// Writes allowed before they start failing (negative: unlimited).
    writes_left: AtomicI64,
    /// Reads cut off after this many bytes (negative: never).
    cut_reads_after: AtomicI64,
    delay: Duration,
}

impl fmt::Display for Faulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

fn injected(op: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "Faulty",
        source: format!("injected failure of {op}").into(),
    }
}

impl Faulty {
    fn take_write(&self) -> Result<()> {
        if self.writes_left.load(Ordering::SeqCst) < 0 {
            return Ok(());
        }
        if self.writes_left.fetch_sub(1, Ordering::SeqCst) <= 0 {
            return Err(injected("a write"));
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for Faulty {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        tokio::time::sleep(self.delay).await;
        self.take_write()?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.take_write()?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        tokio::time::sleep(self.delay).await;
        let r = self.inner.get_opts(location, options).await?;
        let cut = self.cut_reads_after.load(Ordering::SeqCst);
        if cut >= 0 {
            let bytes = r.bytes().await?;
            let keep = bytes.slice(..(cut as usize).min(bytes.len()));
            let s = futures::stream::iter(vec![Ok(keep), Err(injected("a read (connection cut)"))]);
            return Ok(GetResult {
                payload: GetResultPayload::Stream(s.boxed()),
                meta: ObjectMeta {
                    location: location.clone(),
                    last_modified: chrono_now(),
                    size: bytes.len() as u64,
                    e_tag: None,
                    version: None,
                },
                range: 0..bytes.len() as u64,
                attributes: Default::default(),
                extensions: Default::default(),
            });
        }
        Ok(r)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.take_write()?;
        self.inner.copy_opts(from, to, options).await
    }
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

fn setup() -> (tempfile::TempDir, Database, Arc<Faulty>, Repository) {
    setup_format(0)
}

/// [`setup`] with a repository of `format` (0: the newest).
fn setup_format(format: u32) -> (tempfile::TempDir, Database, Arc<Faulty>, Repository) {
    let tmp = tempfile::tempdir().unwrap();
    let db = Database::create(tmp.path().join("db"), Options::default()).unwrap();
    for i in 0..3000u32 {
        db.put(
            &i.to_be_bytes(),
            None,
            &item_from_plain_json(r#"{"a":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}"#).unwrap(),
        )
        .unwrap();
    }
    db.flush().unwrap();
    std::fs::create_dir(tmp.path().join("repo")).unwrap();
    let faulty = Arc::new(Faulty {
        inner: LocalFileSystem::new_with_prefix(tmp.path().join("repo"))
            .unwrap()
            .with_automatic_cleanup(true),
        writes_left: AtomicI64::new(-1),
        cut_reads_after: AtomicI64::new(-1),
        // Every request is slowed down, as over a network.
        delay: Duration::from_millis(2),
    });
    let store: Arc<dyn ObjectStore> = faulty.clone();
    let repo = Repository::init_with(
        Storage::from_store(store, "faulty").unwrap(),
        &kstone_backup::InitOptions {
            compression_level: Some(3),
            format,
            ..Default::default()
        },
    )
    .unwrap();
    (tmp, db, faulty, repo)
}

#[test]
fn failing_writes_leave_a_consistent_repository_and_retry_succeeds() {
    for format in [1, 2] {
        failing_writes_leave_a_consistent_repository(format);
    }
}

fn failing_writes_leave_a_consistent_repository(format: u32) {
    let (tmp, db, faulty, repo) = setup_format(format);
    let full = db
        .backup(
            &repo,
            &BackupOptions {
                kind: Some(BackupType::Full),
                parallelism: 2,
                ..Default::default()
            },
        )
        .unwrap();
    for i in 0..500u32 {
        db.put(
            &(i * 7).to_be_bytes(),
            None,
            &item_from_plain_json(r#"{"a":"changed"}"#).unwrap(),
        )
        .unwrap();
    }
    db.flush().unwrap();
    // Format 2 writes few objects (marker, packs, index, chunk map,
    // manifest), and a retry reuses the packs a failed run left.
    let budgets: &[i64] = if format == 2 {
        &[0, 1, 2, 3]
    } else {
        &[0, 1, 3, 10]
    };
    for &budget in budgets {
        faulty.writes_left.store(budget, Ordering::SeqCst);
        let err = db
            .backup(
                &repo,
                &BackupOptions {
                    kind: Some(BackupType::Incremental),
                    parallelism: 2,
                    ..Default::default()
                },
            )
            .expect_err("the store fails");
        assert!(err.to_string().contains("injected failure"), "{err}");
        faulty.writes_left.store(-1, Ordering::SeqCst);
        // Only the complete backup is listed, it verifies, and the failed
        // run's objects are gone (format 2: only its packs stay, named by
        // no index, for the next run to reuse or a prune to delete).
        assert_eq!(repo.backup_ids().unwrap(), vec![full.id.clone()]);
        assert!(repo.verify(&full.id, false).unwrap().is_empty());
        let names = |d: &str| -> Vec<String> {
            std::fs::read_dir(tmp.path().join("repo").join(d))
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        if format == 2 {
            assert!(names("index").contains(&full.id), "budget {budget}");
            let mut maps = names("backups");
            maps.sort();
            assert_eq!(
                maps,
                vec![
                    format!("{}.chunks", full.id),
                    format!("{}.manifest", full.id)
                ],
                "budget {budget}"
            );
            continue;
        }
        let dirs: Vec<String> = std::fs::read_dir(tmp.path().join("repo/data"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            dirs,
            vec![full.id.clone()],
            "budget {budget}: partial objects left"
        );
    }
    let inc = db
        .backup(
            &repo,
            &BackupOptions {
                kind: Some(BackupType::Incremental),
                parallelism: 2,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(repo.verify(&inc.id, true).unwrap().is_empty());
}

#[test]
fn cut_off_reads_fail_restores_cleanly() {
    let (tmp, db, faulty, repo) = setup();
    let b = db.backup(&repo, &BackupOptions::default()).unwrap();
    let target = tmp.path().join("restored");
    faulty.cut_reads_after.store(100, Ordering::SeqCst);
    let err = repo.restore(&b.id, &target).expect_err("reads are cut off");
    assert!(
        err.to_string().contains("connection cut") || err.to_string().contains("corrupt"),
        "{err}"
    );
    assert!(!target.exists(), "a failed restore left a target");
    let leftovers = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("restore-"))
        .count();
    assert_eq!(leftovers, 0);
    faulty.cut_reads_after.store(-1, Ordering::SeqCst);
    let r = repo.restore(&b.id, &target).unwrap();
    assert_eq!(r.items, 3000);
}

/// The archive's objects as (first LSN, last LSN), in order, with every
/// record's LSN read back from them.
fn archive_of(repo: &Repository, db: &Database) -> (Vec<(u64, u64)>, Vec<u64>) {
    let m = kstone_core::Manifest::load(db.path()).unwrap();
    let objects = repo.archive_ranges(&m.db_id, &m.history).unwrap();
    let lsns = objects
        .iter()
        .flat_map(|(k, _)| repo.archive_records(k).unwrap())
        .map(|r| r.lsn)
        .collect();
    let ranges = objects
        .iter()
        .map(|(_, r)| (r.first_lsn, r.last_lsn))
        .collect();
    (ranges, lsns)
}

/// The last LSN the archive holds.
fn archived_through(repo: &Repository, db: &Database) -> Option<u64> {
    let m = kstone_core::Manifest::load(db.path()).unwrap();
    let objects = repo.archive_ranges(&m.db_id, &m.history).unwrap();
    objects.last().map(|(_, r)| r.last_lsn)
}

fn mark_of(repo: &Repository, db: &Database) -> u64 {
    kstone_core::archiving::registration(db.path(), &repo.config.repository_id)
        .unwrap()
        .map_or(0, |r| r.archived_lsn)
}

/// Continuous (pipelined) archiving while stores keep failing: reads run
/// ahead of a failed store, yet nothing read after it is stored, the
/// database's progress mark never passes the last stored object, and once
/// the store works again every write is archived exactly once, with no gap.
#[test]
fn a_pipelined_archiver_keeps_its_archive_whole_when_stores_fail() {
    use kstone_backup::Archiver;
    use std::sync::atomic::AtomicBool;
    let (_tmp, db, faulty, repo) = setup();
    db.backup(&repo, &BackupOptions::default()).unwrap();
    // One plain round registers the repository before the writes start.
    Archiver::new(&repo, db.path()).round_db(&db).unwrap();
    let floor = mark_of(&repo, &db);
    let stop = AtomicBool::new(false);
    let (mut stored, mut failed) = (0, 0);
    std::thread::scope(|s| {
        s.spawn(|| {
            let item = item_from_plain_json(r#"{"a":"some value of a few bytes"}"#).unwrap();
            for i in 0..30_000u32 {
                db.put(&(i % 4000).to_be_bytes(), None, &item).unwrap();
                match i % 6000 {
                    // A few stores go through, then every one fails ...
                    1000 => faulty.writes_left.store(2, Ordering::SeqCst),
                    // ... until the store works again.
                    3000 => faulty.writes_left.store(-1, Ordering::SeqCst),
                    _ => {}
                }
                if i % 500 == 0 {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            faulty.writes_left.store(-1, Ordering::SeqCst);
            stop.store(true, Ordering::SeqCst);
        });
        s.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                // The mark first: objects only ever get added.
                let mark = mark_of(&repo, &db);
                let held = archived_through(&repo, &db).unwrap_or(floor);
                assert!(
                    mark <= held.max(floor),
                    "the mark (LSN {mark}) passed the archive (LSN {held})"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let mut a = Archiver::new(&repo, db.path());
        a.follow(
            Some(&db),
            Duration::from_millis(50),
            &|| stop.load(Ordering::SeqCst),
            &mut |r, _| match r {
                Ok(r) if r.records > 0 => stored += 1,
                Ok(_) => {}
                Err(_) => failed += 1,
            },
        );
    });
    assert!(failed > 0 && stored > 2, "stored {stored}, failed {failed}");
    let last = db.stats().unwrap().last_lsn;
    let (ranges, lsns) = archive_of(&repo, &db);
    assert_eq!(ranges.first().map(|r| r.0), Some(floor + 1));
    for w in ranges.windows(2) {
        assert_eq!(w[1].0, w[0].1 + 1, "a gap or an overlap: {w:?}");
    }
    assert_eq!(ranges.last().map(|r| r.1), Some(last));
    assert_eq!(lsns, (floor + 1..=last).collect::<Vec<_>>());
    assert_eq!(mark_of(&repo, &db), last);
}

/// An idle database gets no new objects however often the archiver looks,
/// and one write gets one object, soon.
#[test]
fn a_pipelined_archiver_makes_no_objects_for_an_idle_database() {
    use kstone_backup::Archiver;
    use std::sync::atomic::AtomicBool;
    let (_tmp, db, _faulty, repo) = setup();
    db.backup(&repo, &BackupOptions::default()).unwrap();
    let stop = AtomicBool::new(false);
    let count = || archive_of(&repo, &db).0.len();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut a = Archiver::new(&repo, db.path());
            a.follow(
                Some(&db),
                Duration::from_millis(20),
                &|| stop.load(Ordering::SeqCst),
                &mut |_, _| {},
            );
        });
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(count(), 0, "objects for a database nobody wrote to");
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(count(), 0);
        db.put(b"one", None, &item_from_plain_json("{}").unwrap())
            .unwrap();
        let t = std::time::Instant::now();
        while count() == 0 && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(count(), 1, "one write, one object");
        stop.store(true, Ordering::SeqCst);
    });
    assert_eq!(mark_of(&repo, &db), db.stats().unwrap().last_lsn);
}

/// A round with a backlog larger than one object stores several, and
/// reports what they cover together (the first one's first LSN to the last
/// one's last), with every record counted once.
#[test]
fn a_round_of_several_objects_reports_their_whole_range() {
    use kstone_backup::Archiver;
    let (_tmp, db, _faulty, repo) = setup();
    db.backup(&repo, &BackupOptions::default()).unwrap();
    let mut a = Archiver::new(&repo, db.path());
    a.round_db(&db).unwrap();
    let before = archive_of(&repo, &db).0.len();
    let first_new = db.stats().unwrap().last_lsn + 1;
    // ~2.2 KiB per record by the planner's estimate: over 64 MiB.
    let item = item_from_plain_json(r#"{"a":"b"}"#).unwrap();
    for i in 0..31_000u32 {
        db.put(b"backlog", Some(&i.to_be_bytes()), &item).unwrap();
    }
    let round = a.round_db(&db).unwrap();
    let (ranges, _) = archive_of(&repo, &db);
    let new = &ranges[before..];
    assert!(new.len() >= 2, "one object: {new:?}");
    let range = round.range.expect("a round that stored objects");
    assert_eq!(
        (range.first_lsn, range.last_lsn),
        (new[0].0, new[new.len() - 1].1)
    );
    assert_eq!(range.first_lsn, first_new);
    assert_eq!(round.records, 31_000);
}
