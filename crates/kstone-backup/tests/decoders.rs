#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test
//! The repository's decoders (config, backup manifest, archived-WAL objects,
//! the wrapped key, age-sealed data objects)
//! and archive import get arbitrary and mutated bytes: errors, never panics,
//! and archive import never writes outside its target.

use std::path::Path;

use kstone_backup::manifest::{
    decode, encode, BackupManifest, RepoConfig, CONFIG_MAGIC, MANIFEST_MAGIC,
};
use std::sync::OnceLock;

use kstone_backup::crypto::{generate_identity, EncryptionConfig, Keys, WrappedKey, KEY_MAGIC};
use kstone_backup::wal_archive::{self, ArchiveRange};
use kstone_core::Key;
use kstone_core::{Op, Record};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(1000)
}

fn samples() -> Vec<Vec<u8>> {
    let cfg = RepoConfig {
        format_version: 1,
        repository_id: "r".into(),
        created_at_us: 5,
        compression_level: Some(3),
        encryption: Some(keys().1.clone()),
    };
    let m: BackupManifest = serde_json::from_value(serde_json::json!({
        "format_version": 1, "id": "x", "type": "full", "parent": null, "base_full": "x",
        "db_id": "d", "history": "h", "db_path": "p", "host": "h", "snapshot_lsn": 3,
        "snapshot_commit_us": 4, "started_at_us": 5, "completed_at_us": 6, "item_count": 7,
        "bytes_stored": 8, "bytes_total": 9,
        "files": [{"name": "sst/000-000000000001.sst", "size": 1, "sha256": "ab", "stored_in": "x",
                   "object": "data/x/sst/000-000000000001.sst", "stored_size": 1, "codec": "zstd"}],
        "db_manifest": {"db_id": "d", "history": "h", "created_us": 1, "next_file_id": 2, "stripes": {}},
        "kstone_version": "0"
    }))
    .unwrap();
    let recs: Vec<Record> = (1..30)
        .map(|l| Record {
            lsn: l,
            ts: l,
            op: Op::Put {
                key: Key::new(b"k", Some(&l.to_be_bytes())).unwrap(),
                value: vec![1, 0],
            },
        })
        .collect();
    let arc = wal_archive::encode(
        "d",
        "h",
        &ArchiveRange {
            first_lsn: 1,
            last_lsn: 30,
            first_ts: 1,
            last_ts: 29,
        },
        &recs,
    )
    .unwrap();
    let sealed = keys().0.seal(&arc).unwrap();
    vec![
        encode(CONFIG_MAGIC, &cfg),
        encode(MANIFEST_MAGIC, &m),
        arc,
        encode(KEY_MAGIC, &keys().2),
        sealed,
    ]
}

/// One encrypted repository's keys (able to open) for the sealed samples.
fn keys() -> &'static (Keys, EncryptionConfig, WrappedKey) {
    static K: OnceLock<(Keys, EncryptionConfig, WrappedKey)> = OnceLock::new();
    K.get_or_init(|| {
        let (_, public) = generate_identity();
        Keys::create(&[public]).unwrap()
    })
}

fn run_all(b: &[u8]) {
    let _ = decode::<RepoConfig>(CONFIG_MAGIC, b, "config");
    let _ = decode::<BackupManifest>(MANIFEST_MAGIC, b, "m");
    let _ = wal_archive::decode(b, "w");
    let _ = decode::<WrappedKey>(KEY_MAGIC, b, "keys/data-key");
    let _ = keys().0.open(b, "sealed");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        run_all(&bytes);
    }

    #[test]
    fn mutated_objects_never_panic(
        which in 0usize..3,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let mut b = samples().swap_remove(which);
        for (at, x) in flips {
            let n = b.len();
            b[at % n] ^= x | 1;
        }
        if let Some(c) = cut {
            let n = b.len();
            b.truncate(c % (n + 1));
        }
        // A flipped byte never decodes: every object carries a checksum.
        prop_assert!(decode::<RepoConfig>(CONFIG_MAGIC, &b, "c").is_err() || which != 0);
        run_all(&b);
    }
}

/// A valid archive (a database directory as tar.gz) to mutate.
fn archive_bytes(dir: &Path) -> Vec<u8> {
    let db = dir.join("src.keystone");
    let d = kstone_core::Database::create(&db, kstone_core::Options::default()).unwrap();
    for i in 0..50u32 {
        d.put(
            &i.to_be_bytes(),
            None,
            &kstone_core::item_from_plain_json(r#"{"a":1}"#).unwrap(),
        )
        .unwrap();
    }
    d.flush().unwrap();
    d.close().unwrap();
    let out = dir.join("a.tar.gz");
    let f = std::fs::File::create(&out).unwrap();
    let mut t = tar::Builder::new(flate2::write::GzEncoder::new(
        f,
        flate2::Compression::default(),
    ));
    t.append_dir_all(".", &db).unwrap();
    t.into_inner().unwrap().finish().unwrap();
    std::fs::read(&out).unwrap()
}

#[test]
fn mutated_archives_are_refused_or_restored_and_stay_inside_the_target() {
    let tmp = tempfile::tempdir().unwrap();
    let good = archive_bytes(tmp.path());
    let mut rng = 1u64;
    for i in 0..150 {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut b = good.clone();
        for k in 0..1 + (rng >> 60) {
            let at = ((rng >> 20) as usize + k as usize * 7919) % b.len();
            b[at] ^= (rng >> 8) as u8 | 1;
        }
        if i % 3 == 0 {
            let n = b.len();
            b.truncate((rng as usize >> 3) % n);
        }
        let case = tmp.path().join(format!("case{i}"));
        std::fs::create_dir(&case).unwrap();
        let arch = case.join("x.tar.gz");
        std::fs::write(&arch, &b).unwrap();
        let target = case.join("sub").join("t.keystone");
        let _ = kstone_backup::restore_archive(&arch, &target);
        // Nothing but the target (and possibly a hidden staging leftover on
        // error, which restore removes) appears.
        let entries: Vec<String> = std::fs::read_dir(&case)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        for e in &entries {
            assert!(
                e == "x.tar.gz" || e == "sub",
                "case {i}: {e} written outside the target"
            );
        }
        if let Ok(rd) = std::fs::read_dir(case.join("sub")) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                assert!(n == "t.keystone", "case {i}: leftover {n}");
            }
        }
    }
}
