#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test
//! Every decoder of untrusted bytes gets arbitrary bytes and mutations of
//! valid encodings: it may return an error, never panic, never allocate from
//! an unchecked length field, never loop forever. Cases per decoder: 2000
//! (arbitrary) + 2000 (mutated); `PROPTEST_CASES` overrides.

use std::path::Path;
use std::sync::Arc;

use kstone_core::entry::Entry;
use kstone_core::manifest::Manifest;
use kstone_core::model::value::decode_item;
use kstone_core::model::varint::Reader;
use kstone_core::sst::block::{self, Compression};
use kstone_core::sst::builder::TableBuilder;
use kstone_core::sst::footer::{Footer, Props};
use kstone_core::sst::reader::TableReader;
use kstone_core::wal::record::{read_frame, Frame, Op, Record};
use kstone_core::wal::segment::{scan_bytes, Header};
use kstone_core::{item_from_plain_json, item_from_typed_json, parse_export_line, Key};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(2000)
}

/// A valid WAL segment, commit log, SST, manifest and item to mutate
/// (built once: the commit log comes from a real database).
fn samples() -> Vec<(&'static str, Vec<u8>)> {
    static SAMPLES: std::sync::OnceLock<Vec<(&'static str, Vec<u8>)>> = std::sync::OnceLock::new();
    SAMPLES.get_or_init(build_samples).clone()
}

fn build_samples() -> Vec<(&'static str, Vec<u8>)> {
    let mut seg = Header {
        stripe: 1,
        id: 5,
        prev: 0,
    }
    .encode()
    .to_vec();
    for i in 0..20u64 {
        let op = match i % 3 {
            0 => Op::Put {
                key: Key::new(b"pk", Some(&i.to_be_bytes())).unwrap(),
                value: vec![1, 0],
            },
            1 => Op::Delete {
                key: Key::new(b"pk", None).unwrap(),
            },
            _ => Op::Marker { name: "rp".into() },
        };
        Record {
            lsn: i + 1,
            ts: i * 7,
            op,
        }
        .encode_framed(&mut seg);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sst");
    let mut b = TableBuilder::create(&path, 1, Compression::Zstd(1)).unwrap();
    for i in 0..300u32 {
        b.add(&Entry {
            key: Key::new(b"pk", Some(&i.to_be_bytes())).unwrap(),
            lsn: u64::from(i) + 1,
            value: (i % 5 != 0).then(|| Arc::from(vec![7u8; 30].as_slice())),
        })
        .unwrap();
    }
    b.finish().unwrap();
    let sst = std::fs::read(&path).unwrap();
    let mut m = Manifest::new("id".into(), 1, kstone_core::KeySchema::bytes());
    m.stripes.insert(3, Default::default());
    let item = {
        let it = item_from_typed_json(
            r#"{"a":{"L":[{"N":"1.5"},{"SS":["x"]},{"M":{"b":{"B":"AAE="}}}]}}"#,
        )
        .unwrap();
        let mut v = Vec::new();
        kstone_core::model::value::encode_item(&it, &mut v);
        v
    };
    // A commit log, as a `Sync` database leaves it while open.
    let db_dir = dir.path().join("db");
    let db = kstone_core::Database::create(&db_dir, Default::default()).unwrap();
    for i in 0..10u32 {
        db.put(
            &i.to_be_bytes(),
            None,
            &item_from_plain_json(r#"{"a":1}"#).unwrap(),
        )
        .unwrap();
    }
    let logs = kstone_core::wal::commit_log::list(&db_dir).unwrap();
    let mut commit = std::fs::read(&logs[0].1).unwrap();
    // Its entries and a little of the zeros written ahead of them.
    let end = kstone_core::wal::commit_log::scan_bytes(&commit, &logs[0].1)
        .unwrap()
        .valid_len;
    commit.truncate(end as usize + 64);
    drop(db);
    vec![
        ("wal", seg),
        ("commit log", commit),
        ("sst", sst),
        ("manifest", m.encode()),
        ("item", item),
    ]
}

fn run_all(bytes: &[u8]) {
    let p = Path::new("fuzz");
    let _ = scan_bytes(bytes, p);
    let _ = kstone_core::wal::commit_log::scan_bytes(bytes, p);
    let _ = Header::decode(bytes, p);
    if let Frame::Ok(payload, _) = read_frame(bytes) {
        let _ = Record::decode_payload(payload);
    }
    let _ = Record::decode_payload(bytes);
    let _ = block::open(bytes);
    let _ = Footer::decode(bytes, p, 0);
    let _ = Props::decode(bytes);
    let _ = Manifest::decode(bytes, p);
    let _ = decode_item(bytes);
    let _ = Key::decode(&mut Reader::new(bytes));
    let _ = kstone_core::framed::decode(bytes, b"KSTNMANI", p);
    let text = String::from_utf8_lossy(bytes);
    let _ = item_from_typed_json(&text);
    let _ = item_from_plain_json(&text);
    let _ = parse_export_line(&kstone_core::KeySchema::bytes(), &text);
    let _ = kstone_core::Number::parse(&text);
}

/// SSTs are decoded from files: write the bytes and open and read them all.
fn run_sst_file(bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.sst");
    std::fs::write(&p, bytes).unwrap();
    if let Ok(t) = TableReader::open(&p) {
        let t = Arc::new(t);
        let _ = t.verify();
        let _ = t.get(&Key::new(b"pk", Some(&7u32.to_be_bytes())).unwrap());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        run_all(&bytes);
    }

    #[test]
    fn mutated_encodings_never_panic(
        which in 0usize..5,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in proptest::option::of(any::<usize>()),
        insert in proptest::option::of((any::<usize>(), proptest::collection::vec(any::<u8>(), 1..64))),
    ) {
        let (name, mut b) = samples().swap_remove(which);
        for (at, x) in flips {
            let n = b.len();
            b[at % n] ^= x | 1;
        }
        if let Some((at, bytes)) = insert {
            let at = at % (b.len() + 1);
            b.splice(at..at, bytes);
        }
        if let Some(c) = cut {
            let n = b.len();
            b.truncate(c % (n + 1));
        }
        run_all(&b);
        if name == "sst" {
            run_sst_file(&b);
        }
    }
}

#[test]
fn huge_length_fields_are_refused_without_allocating() {
    // A varint claiming 2^62 elements / bytes.
    let mut b = vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f];
    b.extend_from_slice(&[1, 2, 3]);
    assert!(decode_item(&b).is_err());
    assert!(Key::decode(&mut Reader::new(&b)).is_err());
    // A block trailer claiming 4 GiB of zstd output.
    let mut blk = vec![0u8; 16];
    blk.extend_from_slice(&u32::MAX.to_le_bytes());
    blk.push(1);
    let crc = crc32c::crc32c(&blk);
    blk.extend_from_slice(&crc.to_le_bytes());
    assert!(block::open(&blk).is_err());
}
