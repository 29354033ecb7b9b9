#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test
//! Engine behaviour through the public API: persistence across flushes and
//! reopen, torn-tail recovery, and refusal of every kind of corruption.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kstone_core::{
    item_from_plain_json, Database, Error, Item, KeyAttr, KeySchema, Options, SortKeyRule, Value,
};

fn small_opts() -> Options {
    Options {
        memtable_stripe_bytes: 512,
        durability: kstone_core::Durability::Buffered,
        ..Options::default()
    }
}

fn item(i: u64) -> Item {
    item_from_plain_json(&format!(
        r#"{{"i": {i}, "pad": "{}"}}"#,
        "x".repeat((i % 50) as usize)
    ))
    .unwrap()
}

fn files(dir: &Path, sub: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join(sub))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

type ModelKey = (Vec<u8>, Option<Vec<u8>>);

#[test]
fn reopen_persists_across_many_flushes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db.keystone");
    let mut model: BTreeMap<ModelKey, Option<Item>> = BTreeMap::new();
    let mut db = Database::create(&dir, small_opts()).unwrap();
    for round in 0..4u64 {
        for i in 0..3000u64 {
            let pk = format!("p{}", i % 1000).into_bytes();
            let sk = (i % 3 != 0).then(|| format!("s{}", i % 7).into_bytes());
            if (i + round) % 11 == 0 {
                db.delete(&pk, sk.as_deref()).unwrap();
                model.insert((pk, sk), None);
            } else {
                let it = item(i * 10 + round);
                db.put(&pk, sk.as_deref(), &it).unwrap();
                model.insert((pk, sk), Some(it));
            }
        }
        db.close().unwrap();
        db = Database::open(&dir, small_opts()).unwrap();
        for ((pk, sk), want) in &model {
            assert_eq!(&db.get(pk, sk.as_deref()).unwrap(), want);
        }
    }
    // Flushes run in the background; wait for them before counting files.
    db.flush().unwrap();
    let stats = db.stats().unwrap();
    assert!(stats.sst_files > 50, "expected many flushes: {stats:?}");
    assert!(stats.last_lsn == 12_000);
    // Flushed WAL segments are deleted: only a few remain per stripe.
    assert!(stats.wal_segments <= 256, "{stats:?}");
}

#[test]
fn lsn_and_timestamp_survive_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let db = Database::create(&dir, Options::default()).unwrap();
    let a = db.put(b"a", None, &item(1)).unwrap();
    db.flush().unwrap();
    let b = db.put(b"b", None, &item(2)).unwrap();
    assert!(b > a);
    let ts1 = db.stats().unwrap().last_commit_us;
    db.close().unwrap();
    let db = Database::open(&dir, Options::default()).unwrap();
    let c = db.put(b"c", None, &item(3)).unwrap();
    assert_eq!(c, b + 1);
    assert!(db.stats().unwrap().last_commit_us >= ts1);
}

#[test]
fn keys_and_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Database::create(tmp.path().join("db"), Options::default()).unwrap();
    let it = item(1);
    db.put(b"p", None, &it).unwrap();
    assert_eq!(
        db.get(b"p", Some(b"")).unwrap(),
        None,
        "None and empty sort key differ"
    );
    // DynamoDB refuses empty key values; a delete of one is still accepted
    // (a format-1 database may hold such an item).
    assert!(matches!(
        db.put(b"p", Some(b""), &item(2)),
        Err(Error::InvalidInput(m)) if m.contains("sort key is empty")
    ));
    db.delete(b"p", Some(b"")).unwrap();
    assert_eq!(db.get(b"p", None).unwrap(), Some(it));
    assert!(db.put(b"", None, &item(1)).is_err());
    assert!(db.put(&[1; 2048], Some(&[2; 1024]), &item(1)).is_ok());
    assert!(db.put(&[1; 2049], None, &item(1)).is_err());
    assert!(db.put(b"p", Some(&[1; 1025]), &item(1)).is_err());
    // A typed database: the same limits on the value (a B key's type mark
    // does not count).
    let typed = Database::create_with_keys(
        tmp.path().join("typed"),
        Options::default(),
        KeySchema::typed(None, SortKeyRule::Optional),
    )
    .unwrap();
    let key = |pk: KeyAttr, sk: KeyAttr| typed.key(&pk, Some(&sk));
    assert!(key(KeyAttr::B(vec![1; 2048]), KeyAttr::B(vec![2; 1024])).is_ok());
    assert!(key(KeyAttr::B(vec![1; 2049]), KeyAttr::B(vec![2; 1])).is_err());
    assert!(key(KeyAttr::B(vec![1; 1]), KeyAttr::B(vec![2; 1025])).is_err());
    // Empty sort keys: a key to read or delete, never to put.
    for empty in [KeyAttr::S("".into()), KeyAttr::B(vec![])] {
        let k = key(KeyAttr::S("p".into()), empty).unwrap();
        assert!(typed.put(&k.pk, k.sk.as_deref(), &item(1)).is_err());
        assert_eq!(typed.get(&k.pk, k.sk.as_deref()).unwrap(), None);
    }
    assert!(typed.key(&KeyAttr::S("".into()), None).is_err());
    let long = typed.key(&KeyAttr::B(vec![1; 2049]), None).unwrap_err();
    assert!(
        long.to_string()
            .contains("partition key is 2049 bytes; the limit is 2048"),
        "{long}"
    );
    typed.close().unwrap();
}

/// DynamoDB's item-size rule at its boundary: 400 KB counted as DynamoDB
/// counts (names + values; numbers by significant digits; key parts by
/// their stored length).
#[test]
fn item_size_rule_at_the_boundary() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Database::create(tmp.path().join("db"), Options::default()).unwrap();
    // pk "p" (1) + name "b" (1) + the value.
    let with_b = |n: usize| {
        let mut i = Item::new();
        i.insert("b".into(), Value::B(vec![7; n]));
        i
    };
    db.put(b"p", None, &with_b(400 * 1024 - 2)).unwrap();
    assert!(matches!(
        db.put(b"p", None, &with_b(400 * 1024 - 1)),
        Err(Error::InvalidInput(m)) if m.contains("409601 bytes by DynamoDB's size rule")
    ));
    assert_eq!(db.get(b"p", None).unwrap(), Some(with_b(400 * 1024 - 2)));
    // 3,300 × 1E+125: 422 KB stored as text, about 10 KB by DynamoDB's rule.
    let big = kstone_core::Number::parse("1E+125").unwrap();
    let mut l = Item::new();
    l.insert("l".into(), Value::L(vec![Value::N(big.clone()); 3300]));
    db.put(b"q", None, &l).unwrap();
    assert_eq!(db.get(b"q", None).unwrap(), Some(l));
    // Within the rule but over the 1 MiB stored-form limit: refused, saying why.
    let mut huge = Item::new();
    huge.insert("l".into(), Value::L(vec![Value::N(big); 9000]));
    assert!(matches!(
        db.put(b"r", None, &huge),
        Err(Error::InvalidInput(m)) if m.contains("stored form")
    ));
    // Names count: an empty one is refused.
    let mut unnamed = Item::new();
    unnamed.insert(String::new(), Value::Null);
    assert!(db.put(b"s", None, &unnamed).is_err());
    db.close().unwrap();
}

#[test]
fn second_open_in_process_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let db = Database::create(&dir, Options::default()).unwrap();
    match Database::open(&dir, Options::default()) {
        Err(Error::Locked { pid, .. }) => assert_eq!(pid, std::process::id().to_string()),
        other => panic!("{:?}", other.err()),
    }
    db.close().unwrap();
    Database::open(&dir, Options::default()).unwrap();
}

#[test]
fn create_refuses_non_empty_and_open_refuses_non_database() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("f"), b"x").unwrap();
    assert!(matches!(
        Database::create(tmp.path(), Options::default()),
        Err(Error::AlreadyExists(_))
    ));
    assert!(matches!(
        Database::open(tmp.path(), Options::default()),
        Err(Error::NotADatabase(_))
    ));
    assert!(std::fs::read(tmp.path().join("f")).unwrap() == b"x");
}

/// A database with data only in the WAL of a single stripe.
fn wal_only_db(n: u64) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let db = Database::create(&dir, Options::default()).unwrap();
    for i in 0..n {
        db.put(
            b"one-partition",
            Some(format!("{i:05}").as_bytes()),
            &item(i),
        )
        .unwrap();
    }
    db.close().unwrap();
    let wal = files(&dir, "wal");
    assert_eq!(wal.len(), 1);
    let seg = wal[0].clone();
    (tmp, dir, seg)
}

#[test]
fn truncated_final_record_is_recovered_silently() {
    let (_t, dir, seg) = wal_only_db(100);
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 7).unwrap();
    drop(f);
    let db = Database::open(&dir, Options::default()).unwrap();
    assert!(db.get(b"one-partition", Some(b"00098")).unwrap().is_some());
    assert!(db.get(b"one-partition", Some(b"00099")).unwrap().is_none());
    // The torn tail was cut: new writes land after the last good record.
    db.put(b"one-partition", Some(b"after"), &item(1)).unwrap();
    db.close().unwrap();
    let db = Database::open(&dir, Options::default()).unwrap();
    assert!(db.get(b"one-partition", Some(b"after")).unwrap().is_some());
    assert!(db.get(b"one-partition", Some(b"00098")).unwrap().is_some());
}

#[test]
fn flipped_byte_in_middle_of_wal_fails_open_with_file_and_offset() {
    let (_t, dir, seg) = wal_only_db(100);
    let mut b = std::fs::read(&seg).unwrap();
    let at = b.len() / 2;
    b[at] ^= 0x08;
    std::fs::write(&seg, &b).unwrap();
    let err = Database::open(&dir, Options::default())
        .err()
        .expect("open must fail");
    match &err {
        Error::Corruption { path, offset, .. } => {
            assert_eq!(path, &seg);
            assert!(*offset as usize <= at && *offset > 0);
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(".wal") && msg.contains("offset"), "{msg}");
    // Nothing was changed by the failed open.
    assert_eq!(std::fs::read(&seg).unwrap(), b);
}

#[test]
fn flipped_byte_in_sst_is_reported_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let db = Database::create(&dir, Options::default()).unwrap();
    for i in 0..2000u64 {
        db.put(b"p", Some(format!("{i:05}").as_bytes()), &item(i))
            .unwrap();
    }
    db.flush().unwrap();
    db.close().unwrap();
    let sst = files(&dir, "sst");
    assert_eq!(sst.len(), 1);
    let orig = std::fs::read(&sst[0]).unwrap();
    // A flip in a data block: open succeeds, reading that block fails.
    let mut b = orig.clone();
    b[100] ^= 0x01;
    std::fs::write(&sst[0], &b).unwrap();
    let db = Database::open(&dir, Options::default()).unwrap();
    let mut failures = 0;
    for i in 0..2000u64 {
        match db.get(b"p", Some(format!("{i:05}").as_bytes())) {
            Ok(_) => {}
            Err(e @ Error::Corruption { .. }) => {
                assert!(e
                    .to_string()
                    .contains(&sst[0].file_name().unwrap().to_string_lossy().to_string()));
                failures += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(failures > 0);
    db.close().unwrap();
    // A flip in the footer: open fails, naming the file.
    let mut b = orig.clone();
    let n = b.len();
    b[n - 10] ^= 0x01;
    std::fs::write(&sst[0], &b).unwrap();
    let err = Database::open(&dir, Options::default())
        .err()
        .expect("must fail");
    assert!(
        matches!(&err, Error::Corruption { path, .. } if path == &sst[0]),
        "{err}"
    );
}

#[test]
fn corrupt_or_truncated_manifest_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    Database::create(&dir, Options::default())
        .unwrap()
        .close()
        .unwrap();
    let m = dir.join("MANIFEST");
    let orig = std::fs::read(&m).unwrap();
    for bad in [
        {
            let mut b = orig.clone();
            let n = b.len();
            b[n - 3] ^= 0x20;
            b
        },
        orig[..orig.len() - 5].to_vec(),
        Vec::new(),
    ] {
        std::fs::write(&m, &bad).unwrap();
        let err = Database::open(&dir, Options::default())
            .err()
            .expect("must fail");
        assert!(
            matches!(&err, Error::Corruption { path, .. } if path == &m),
            "{err}"
        );
    }
}

#[test]
fn missing_sst_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let db = Database::create(&dir, Options::default()).unwrap();
    db.put(b"a", None, &item(1)).unwrap();
    db.flush().unwrap();
    db.close().unwrap();
    std::fs::remove_file(&files(&dir, "sst")[0]).unwrap();
    let err = Database::open(&dir, Options::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("missing"), "{err}");
}

#[test]
fn buffered_mode_persists_on_close() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let opts = Options {
        durability: kstone_core::Durability::Buffered,
        ..Options::default()
    };
    let db = Database::create(&dir, opts.clone()).unwrap();
    for i in 0..500u64 {
        db.put(&i.to_be_bytes(), None, &item(i)).unwrap();
    }
    db.close().unwrap();
    let db = Database::open(&dir, opts).unwrap();
    for i in 0..500u64 {
        assert_eq!(db.get(&i.to_be_bytes(), None).unwrap(), Some(item(i)));
    }
}

#[test]
fn tiered_compaction_keeps_deletes_and_bounds_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let opts = Options {
        durability: kstone_core::Durability::Buffered,
        compaction_trigger: 3,
        ..Options::default()
    };
    let db = Database::create(&dir, opts.clone()).unwrap();
    // A large base table in one stripe (one partition).
    for i in 0..5000u64 {
        db.put(b"part", Some(format!("{i:05}").as_bytes()), &item(i))
            .unwrap();
    }
    db.flush().unwrap();
    let base_files: Vec<PathBuf> = files(&dir, "sst");
    assert_eq!(base_files.len(), 1);
    // Small tables of deletes and updates: merged among themselves, keeping
    // the tombstones, while the base stays untouched.
    for round in 0..12u64 {
        for i in 0..20u64 {
            let k = format!("{:05}", round * 20 + i);
            if i % 2 == 0 {
                db.delete(b"part", Some(k.as_bytes())).unwrap();
            } else {
                db.put(b"part", Some(k.as_bytes()), &item(10_000 + i))
                    .unwrap();
            }
        }
        db.flush().unwrap();
        let n = files(&dir, "sst").len();
        assert!(n <= 4, "read amplification unbounded: {n} SSTs");
    }
    assert!(
        base_files[0].exists(),
        "the base was rewritten for a little new data"
    );
    let check = |db: &Database| {
        for round in 0..12u64 {
            for i in 0..20u64 {
                let k = format!("{:05}", round * 20 + i);
                let got = db.get(b"part", Some(k.as_bytes())).unwrap();
                if i % 2 == 0 {
                    assert_eq!(got, None, "{k} came back after compaction");
                } else {
                    assert_eq!(got, Some(item(10_000 + i)));
                }
            }
        }
        assert_eq!(db.get(b"part", Some(b"04999")).unwrap(), Some(item(4999)));
    };
    check(&db);
    db.close().unwrap();
    let db = Database::open(&dir, opts).unwrap();
    check(&db);
    db.compact().unwrap();
    check(&db);
    assert_eq!(files(&dir, "sst").len(), 1);
}

/// Flushes and compactions run on background threads: concurrent writers
/// with tiny memtables never flush themselves, every write stays readable
/// while sealed memtables wait, and the background settles to bounded tables.
#[test]
fn background_flush_and_compaction_keep_everything_readable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let opts = Options {
        memtable_stripe_bytes: 2048,
        wal_stripe_bytes: 8 << 10,
        compaction_trigger: 4,
        durability: kstone_core::Durability::Buffered,
        ..Options::default()
    };
    let db = Database::create(&dir, opts.clone()).unwrap();
    let expect = |w: u64, k: u64| Some(item(19_600 + k + w));
    std::thread::scope(|s| {
        for w in 0..3u64 {
            let db = &db;
            s.spawn(move || {
                for n in 0..20_000u64 {
                    let k = n % 400;
                    db.put(format!("k{w}-{k}").as_bytes(), None, &item(n + w))
                        .unwrap();
                    // Read back at once: the newest version, wherever it is.
                    assert_eq!(
                        db.get(format!("k{w}-{k}").as_bytes(), None).unwrap(),
                        Some(item(n + w))
                    );
                }
            });
        }
    });
    for w in 0..3u64 {
        for k in 0..400u64 {
            let got = db.get(format!("k{w}-{k}").as_bytes(), None).unwrap();
            assert_eq!(got, expect(w, k), "live k{w}-{k}");
        }
    }
    // No explicit flush: the background drains the sealed memtables.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let settled = loop {
        let st = db.stats().unwrap();
        if st.sealed_memtables == 0 || std::time::Instant::now() > deadline {
            break st;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(settled.sealed_memtables, 0, "{settled:?}");
    assert!(settled.sst_files > 0, "{settled:?}");
    assert!(settled.written_since_open.flush > 0, "{settled:?}");
    assert!(settled.background_error.is_none(), "{settled:?}");
    // Compaction kept every stripe at most trigger + 1 tables.
    assert!(
        settled.sst_files <= settled.active_stripes * 5,
        "read amplification unbounded: {settled:?}"
    );
    drop(db);
    let db = Database::open(&dir, opts).unwrap();
    for w in 0..3u64 {
        for k in 0..400u64 {
            let got = db.get(format!("k{w}-{k}").as_bytes(), None).unwrap();
            assert_eq!(got, expect(w, k), "reopened k{w}-{k}");
        }
    }
}

/// A database left with a long unflushed WAL (no flush at close).
fn long_wal(dir: &std::path::Path, opts: &Options) -> kstone_core::Stats {
    let db = Database::create(dir, opts.clone()).unwrap();
    for i in 0..200_000u64 {
        db.put(
            format!("p{}", i % 5000).as_bytes(),
            Some(format!("{i}").as_bytes()),
            &item(i),
        )
        .unwrap();
    }
    let before = db.stats().unwrap();
    assert_eq!(
        before.sst_files, 0,
        "nothing should be flushed yet: {before:?}"
    );
    assert!(before.memtable_bytes > 16 << 20, "{before:?}");
    drop(db); // no flush on close: the WAL holds everything
    before
}

/// Every 7th item [`long_wal`] wrote reads back.
fn long_wal_items_are_there(db: &Database) {
    for i in (0..200_000u64).step_by(7) {
        assert_eq!(
            db.get(
                format!("p{}", i % 5000).as_bytes(),
                Some(format!("{i}").as_bytes())
            )
            .unwrap(),
            Some(item(i)),
            "item {i}"
        );
    }
}

fn long_wal_opts() -> Options {
    Options {
        durability: kstone_core::Durability::Buffered,
        flush_on_close: false,
        ..Options::default()
    }
}

/// `Buffered` replay keeps records in maps of the segments they were read
/// from: every kind of record reads back exactly, through a torn tail cut
/// off a mapped segment, appends to the reopened segments, the flush that
/// deletes the segments, and another reopen.
#[test]
fn replay_from_mapped_segments_reads_back_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let opts = long_wal_opts();
    let mut model: BTreeMap<ModelKey, Option<Item>> = BTreeMap::new();
    let big = |i: u64| {
        item_from_plain_json(&format!(
            r#"{{"i": {i}, "pad": "{}"}}"#,
            "y".repeat((i * 37 % 3000) as usize)
        ))
        .unwrap()
    };
    let write = |db: &Database, model: &mut BTreeMap<ModelKey, Option<Item>>, round: u64| {
        for i in 0..3000u64 {
            let pk = format!("user#{:010}", i % 700).into_bytes();
            let sk = (!i.is_multiple_of(3)).then(|| format!("{}", i % 11).into_bytes());
            if (i + round).is_multiple_of(9) {
                db.delete(&pk, sk.as_deref()).unwrap();
                model.insert((pk, sk), None);
            } else {
                let it = big(i + round);
                db.put(&pk, sk.as_deref(), &it).unwrap();
                model.insert((pk, sk), Some(it));
            }
        }
    };
    let check = |db: &Database, model: &BTreeMap<ModelKey, Option<Item>>, when: &str| {
        for ((pk, sk), want) in model {
            assert_eq!(
                &db.get(pk, sk.as_deref()).unwrap(),
                want,
                "{when}: {pk:?} {sk:?}"
            );
        }
    };
    let db = Database::create(&dir, opts.clone()).unwrap();
    write(&db, &mut model, 0);
    drop(db); // no flush: everything is replayed from the WAL
              // A torn record at the end of one stripe's last segment (a header cut
              // short by a kill, zeros after it): cut off at open, after the scan.
    let segs = files(&dir, "wal");
    let last = segs
        .iter()
        .rfind(|p| p.extension().is_some_and(|e| e == "wal"))
        .unwrap();
    let valid = kstone_core::wal::segment::scan(last).unwrap().valid_len;
    let f = std::fs::OpenOptions::new().write(true).open(last).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[0xab; 5], valid).unwrap();
    drop(f);
    let db = Database::open(&dir, opts.clone()).unwrap();
    assert!(db.stats().unwrap().memtable_entries > 0);
    assert_eq!(
        std::fs::metadata(last).unwrap().len(),
        valid,
        "torn tail cut"
    );
    check(&db, &model, "replayed");
    write(&db, &mut model, 1);
    check(&db, &model, "after appends to the reopened segments");
    db.flush().unwrap();
    assert_eq!(db.stats().unwrap().memtable_bytes, 0);
    check(&db, &model, "flushed");
    write(&db, &mut model, 2);
    drop(db);
    let db = Database::open(&dir, opts).unwrap();
    check(&db, &model, "replayed again");
}

/// A closed `Sync` database whose `n` writes (one partition) are left in
/// its WAL, and that one segment's path.
fn one_segment_db(n: u64) -> (tempfile::TempDir, PathBuf, PathBuf, Options) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let opts = Options {
        flush_on_close: false,
        ..Options::default()
    };
    let db = Database::create(&dir, opts.clone()).unwrap();
    for i in 0..n {
        db.put(b"one", Some(&i.to_be_bytes()), &item(i)).unwrap();
    }
    db.close().unwrap();
    let seg = files(&dir, "wal")
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "wal"))
        .unwrap();
    (tmp, dir, seg, opts)
}

/// A WAL that `open` refuses (its last record repeated: an LSN that does
/// not increase), a read-only open refuses too, naming the same file: the
/// CLI's read commands never show what the database itself will not.
#[test]
fn a_read_only_open_refuses_what_open_refuses() {
    let (_tmp, dir, seg, opts) = one_segment_db(50);
    let scan = kstone_core::wal::segment::scan(&seg).unwrap();
    let mut again = Vec::new();
    scan.records.last().unwrap().encode_framed(&mut again);
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &again, scan.valid_len).unwrap();
    drop(f);
    let name = seg.file_name().unwrap().to_string_lossy().into_owned();
    for e in [
        Database::open(&dir, opts.clone()).err().unwrap(),
        Database::open_read_only(&dir, opts.clone()).err().unwrap(),
    ] {
        let e = e.to_string();
        assert!(e.contains("does not increase") && e.contains(&name), "{e}");
    }
}

/// A FIFO, or a link to a device, under a segment's name is damage to
/// every reader: a read-only open and `check` of a database nobody has open
/// say so at once, as `open` does, instead of blocking on the FIFO (while
/// holding `LOCK`) or reading the device.
#[test]
fn a_segment_name_that_is_not_a_file_is_refused_by_every_reader() {
    use kstone_core::wal::segment::{file_name, parse_name};
    let (_tmp, dir, seg, opts) = one_segment_db(20);
    let (stripe, id) = parse_name(&seg.file_name().unwrap().to_string_lossy()).unwrap();
    let odd = dir.join("wal").join(file_name(stripe, id + 1));
    let c = std::ffi::CString::new(odd.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for round in ["fifo", "/dev/null"] {
        if round == "/dev/null" {
            std::fs::remove_file(&odd).unwrap();
            std::os::unix::fs::symlink("/dev/null", &odd).unwrap();
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let (d, o) = (dir.clone(), opts.clone());
        std::thread::spawn(move || {
            let ro = Database::open_read_only(&d, o.clone())
                .err()
                .map(|e| e.to_string());
            let check = kstone_core::check::check(&d).map(|r| r.problems);
            let open = Database::open(&d, o).err().map(|e| e.to_string());
            let _ = tx.send((ro, check, open));
        });
        let (ro, check, open) = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("{round}: a reader blocked"));
        for e in [ro.unwrap(), open.unwrap()] {
            assert!(e.contains("not a regular file"), "{round}: {e}");
        }
        let problems = check.unwrap();
        assert!(
            problems.iter().any(|p| p.contains("not a regular file")),
            "{round}: {problems:?}"
        );
    }
}

/// Zeros after the records of a segment that a later segment of its stripe
/// follows are damage (only a stripe's last segment is left untrimmed); the
/// error names both files.
#[test]
fn zeros_in_a_segment_that_is_not_the_last_name_the_next() {
    use kstone_core::wal::segment::{file_name, parse_name, Header};
    let (_tmp, dir, seg, opts) = one_segment_db(20);
    let (stripe, id) = parse_name(&seg.file_name().unwrap().to_string_lossy()).unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len + 4096).unwrap();
    let next = file_name(stripe, id + 1);
    let header = Header {
        stripe: stripe as u32,
        id: id + 1,
        prev: id,
    };
    std::fs::write(dir.join("wal").join(&next), header.encode()).unwrap();
    let e = Database::open(&dir, opts).err().unwrap().to_string();
    assert!(
        e.contains("zeros after the records") && e.contains(&next) && e.contains(&len.to_string()),
        "{e}"
    );
}

/// Reopening after an unflushed WAL larger than twice the memory budget
/// (written with a larger budget, say) replays it stripe by stripe into SSTs
/// (one manifest commit), so the replayed data does not sit in memory and
/// the replayed segments are gone; everything stays readable.
#[test]
fn recovery_writes_a_wal_larger_than_the_budget_to_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let before = long_wal(&dir, &long_wal_opts());
    let opts = Options {
        memtable_budget: 4 << 20,
        ..long_wal_opts()
    };
    let db = Database::open(&dir, opts).unwrap();
    let after = db.stats().unwrap();
    assert!(after.sst_files > 0, "{after:?}");
    assert!(
        after.memtable_bytes < before.memtable_bytes / 4,
        "replayed data stayed in memory: {after:?}"
    );
    assert!(after.wal_segments < before.wal_segments, "{after:?}");
    long_wal_items_are_there(&db);
    assert_eq!(after.last_lsn, 200_000);
}

/// A WAL that fits the memory a writer may hold is replayed into memtables
/// and open returns without writing SSTs; the background (or a flush)
/// writes them afterwards, and nothing is lost either way.
#[test]
fn recovery_replays_a_wal_within_the_budget_into_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let before = long_wal(&dir, &long_wal_opts());
    let opts = long_wal_opts();
    let db = Database::open(&dir, opts.clone()).unwrap();
    let after = db.stats().unwrap();
    assert_eq!(after.last_lsn, 200_000);
    assert!(
        after.memtable_bytes + after.sst_bytes > 0 && after.approximate_items >= 200_000,
        "{after:?}"
    );
    assert!(
        after.sst_files < 256,
        "open wrote a table per replayed stripe: {after:?} (before: {before:?})"
    );
    let check = long_wal_items_are_there;
    check(&db);
    db.flush().unwrap();
    assert_eq!(db.stats().unwrap().memtable_bytes, 0);
    check(&db);
    drop(db);
    // And again after a crash with everything flushed.
    let db = Database::open(&dir, opts).unwrap();
    check(&db);
    assert_eq!(db.stats().unwrap().last_lsn, 200_000);
}

/// A close with a sizeable memtable writes it to SSTs, so the next open has
/// no log to replay; a close with a few writes leaves them in the WAL.
#[test]
fn close_flushes_large_memtables_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let opts = Options {
        durability: kstone_core::Durability::Buffered,
        memtable_budget: 4 << 20,
        ..Options::default()
    };
    let db = Database::create(&dir, opts.clone()).unwrap();
    for i in 0..10u64 {
        db.put(format!("p{i}").as_bytes(), None, &item(i)).unwrap();
    }
    db.close().unwrap();
    let db = Database::open(&dir, opts.clone()).unwrap();
    let st = db.stats().unwrap();
    assert_eq!((st.sst_files, st.memtable_entries), (0, 10), "{st:?}");
    for i in 0..20_000u64 {
        db.put(
            format!("p{}", i % 997).as_bytes(),
            Some(&i.to_be_bytes()),
            &item(i),
        )
        .unwrap();
    }
    let before = db.stats().unwrap();
    assert!(before.memtable_bytes > (4 << 20) / 16, "{before:?}");
    db.close().unwrap();
    let db = Database::open(&dir, opts).unwrap();
    let after = db.stats().unwrap();
    assert_eq!(after.memtable_entries, 0, "{after:?}");
    assert!(after.sst_files > 0, "{after:?}");
    for i in (0..20_000u64).step_by(13) {
        assert_eq!(
            db.get(format!("p{}", i % 997).as_bytes(), Some(&i.to_be_bytes()))
                .unwrap(),
            Some(item(i)),
            "item {i}"
        );
    }
    for i in 0..10u64 {
        assert_eq!(
            db.get(format!("p{i}").as_bytes(), None).unwrap(),
            Some(item(i))
        );
    }
}

/// A copy of a `Sync` database taken while it was open (what a crash
/// leaves, its commit log included), and the path of that commit log.
fn crashed_sync_db(n: u64) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, crashed) = (tmp.path().join("db"), tmp.path().join("crashed"));
    let db = Database::create(&dir, Options::default()).unwrap();
    for i in 0..n {
        db.put(format!("k{i}").as_bytes(), None, &item(i)).unwrap();
    }
    common::copy_dir(&dir, &crashed);
    db.close().unwrap();
    let logs = files(&crashed, "commit");
    assert_eq!(logs.len(), 1);
    let log = logs[0].clone();
    (tmp, crashed, log)
}

#[test]
fn damaged_commit_log_fails_open_and_check_names_it() {
    let (_t, dir, log) = crashed_sync_db(50);
    let good = std::fs::read(&log).unwrap();
    // The entries end where the zeros written ahead of them begin.
    let data_end = kstone_core::wal::commit_log::scan_bytes(&good, &log)
        .unwrap()
        .valid_len as usize;
    assert!(data_end > 1000 && data_end < good.len());
    let mut bad = good.clone();
    let at = data_end / 2;
    bad[at] ^= 0x10;
    std::fs::write(&log, &bad).unwrap();
    let wal_before: Vec<Vec<u8>> = files(&dir, "wal")
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let report = kstone_core::check::check(&dir).unwrap();
    assert!(
        report.problems.iter().any(|p| p.contains(".log")),
        "{report:?}"
    );
    match Database::open(&dir, Options::default()) {
        Err(Error::Corruption { path, offset, .. }) => {
            assert_eq!(path, log);
            assert!(offset as usize <= at && offset > 0);
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    // The failed open changed nothing.
    assert_eq!(std::fs::read(&log).unwrap(), bad);
    let wal_after: Vec<Vec<u8>> = files(&dir, "wal")
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert_eq!(wal_before, wal_after);

    // A torn last entry is what a crash mid-append leaves: open goes on,
    // writes the rest back and removes the log.
    let mut torn = good.clone();
    torn[data_end - 5..data_end].fill(0);
    std::fs::write(&log, &torn).unwrap();
    let report = kstone_core::check::check(&dir).unwrap();
    assert!(report.problems.is_empty(), "{report:?}");
    assert!(
        report.notes.iter().any(|n| n.contains(".log")),
        "{report:?}"
    );
    let db = Database::open(&dir, Options::default()).unwrap();
    for i in 0..50 {
        assert_eq!(
            db.get(format!("k{i}").as_bytes(), None).unwrap(),
            Some(item(i))
        );
    }
    assert!(files(&dir, "commit").is_empty());
    db.close().unwrap();
}

#[test]
fn commit_log_rotates_and_close_removes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let opts = Options {
        commit_log_bytes: 4096,
        ..Options::default()
    };
    let db = Database::create(&dir, opts.clone()).unwrap();
    let mut ids = std::collections::BTreeSet::new();
    for i in 0..300 {
        db.put(format!("k{i}").as_bytes(), None, &item(i)).unwrap();
        let logs = files(&dir, "commit");
        assert!(logs.len() <= 1, "full logs are deleted: {logs:?}");
        ids.extend(logs);
    }
    assert!(ids.len() > 5, "a 4 KiB log rotates: {ids:?}");
    db.close().unwrap();
    assert!(files(&dir, "commit").is_empty(), "close retires the log");
    let db = Database::open(&dir, opts).unwrap();
    for i in 0..300 {
        assert_eq!(
            db.get(format!("k{i}").as_bytes(), None).unwrap(),
            Some(item(i))
        );
    }
    db.close().unwrap();
}

/// DynamoDB's bounds: TotalSegments 1 to 1,000,000, Limit at least 1.
#[test]
fn scan_and_query_bounds() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Database::create(tmp.path().join("db"), Options::default()).unwrap();
    db.put(b"p", Some(b"s"), &item(1)).unwrap();
    for total in [0, 1_000_001] {
        let s = kstone_core::Scan {
            total_segments: total,
            ..kstone_core::Scan::default()
        };
        assert!(
            matches!(db.scan(&s), Err(Error::InvalidInput(_))),
            "{total}"
        );
    }
    let last = kstone_core::Scan {
        total_segments: 1_000_000,
        segment: 999_999,
        ..kstone_core::Scan::default()
    };
    assert!(db.scan(&last).unwrap().items.is_empty());
    assert_eq!(
        db.scan(&kstone_core::Scan::default()).unwrap().items.len(),
        1
    );
    let zero = kstone_core::Scan {
        limit: Some(0),
        ..kstone_core::Scan::default()
    };
    assert!(db.scan(&zero).is_err());
    let mut q = kstone_core::Query::new(b"p");
    q.limit = Some(0);
    assert!(db.query(&q).is_err());
    db.close().unwrap();
}
