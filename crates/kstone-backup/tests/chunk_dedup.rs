//! What chunking saves an incremental backup after a full compaction: the
//! bytes of a database's files that a repository would have to store anew,
//! by whole files (format 1) and by chunks (`kstone_backup::chunking`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step fails the test

use std::collections::HashSet;
use std::path::Path;

use kstone_backup::chunking::{self, ChunkId, ChunkKey};
use kstone_core::{Database, Durability, Item, Options, Value};

/// Every file of a closed database: its name, chunk ids and chunk lengths.
fn chunks_of(dir: &Path, key: &ChunkKey) -> Vec<(String, Vec<(ChunkId, u64)>)> {
    let mut out = Vec::new();
    for sub in ["sst", "wal"] {
        let mut names: Vec<String> = std::fs::read_dir(dir.join(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for n in names {
            let name = format!("{sub}/{n}");
            out.push((name.clone(), chunk_file(dir, &name, key)));
        }
    }
    out.push(("MANIFEST".into(), chunk_file(dir, "MANIFEST", key)));
    out
}

/// A file's chunks, by [`chunking::spans`] over its bytes; the streamed
/// [`chunking::for_each_chunk`] (what a backup uses) must cut it the same.
fn chunk_file(dir: &Path, name: &str, key: &ChunkKey) -> Vec<(ChunkId, u64)> {
    let path = dir.join(name);
    let bytes = std::fs::read(&path).unwrap();
    let whole: Vec<(ChunkId, u64)> = chunking::spans(name, &path, &bytes)
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                key.id(&bytes[r.start as usize..r.end as usize]),
                r.end - r.start,
            )
        })
        .collect();
    let mut streamed = Vec::new();
    chunking::for_each_chunk(name, &path, bytes.len() as u64, |c| {
        streamed.push((key.id(c), c.len() as u64));
        Ok(())
    })
    .unwrap();
    assert_eq!(streamed, whole, "{name}");
    whole
}

fn item(i: u64, round: u64) -> Item {
    // 100 bytes that do not compress away: SHA-256 in counter mode.
    use sha2::{Digest, Sha256};
    let v: Vec<u8> = (0..4u8)
        .flat_map(|c| Sha256::digest([&i.to_le_bytes()[..], &round.to_le_bytes(), &[c]].concat()))
        .take(100)
        .collect();
    Item::from([("v".to_string(), Value::B(v))])
}

fn pk(i: u64) -> Vec<u8> {
    format!("user#{i:011}").into_bytes()
}

/// 100,000 items; change 1% of them (every 100th), compact every stripe:
/// by whole files every table is new, by chunks only the blocks holding a
/// changed item and each table's metadata are.
#[test]
fn a_compaction_after_a_small_change_reuses_most_chunks() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let opts = Options {
        durability: Durability::Buffered,
        ..Options::default()
    };
    let n = 100_000u64;
    let db = Database::create(&dir, opts.clone()).unwrap();
    for i in 0..n {
        db.put(&pk(i), None, &item(i, 0)).unwrap();
    }
    db.compact().unwrap();
    db.close().unwrap();
    let key = ChunkKey::new(&[42; 32]).unwrap();
    let before = chunks_of(&dir, &key);

    let db = Database::open(&dir, opts).unwrap();
    for i in (0..n).step_by(100) {
        db.put(&pk(i), None, &item(i, 1)).unwrap();
    }
    db.compact().unwrap();
    db.close().unwrap();
    let after = chunks_of(&dir, &key);

    let total: u64 = after.iter().flat_map(|(_, c)| c).map(|c| c.1).sum();
    // Whole files: a file is reused only if every byte is the same.
    let old_files: HashSet<Vec<ChunkId>> = before
        .iter()
        .map(|(_, c)| c.iter().map(|x| x.0).collect())
        .collect();
    let new_by_file: u64 = after
        .iter()
        .filter(|(_, c)| !old_files.contains(&c.iter().map(|x| x.0).collect::<Vec<_>>()))
        .flat_map(|(_, c)| c)
        .map(|c| c.1)
        .sum();
    // Chunks: a chunk is stored once, whatever file it is in.
    let old_chunks: HashSet<ChunkId> = before.iter().flat_map(|(_, c)| c).map(|c| c.0).collect();
    let mut seen = HashSet::new();
    let new_by_chunk: u64 = after
        .iter()
        .flat_map(|(_, c)| c)
        .filter(|c| !old_chunks.contains(&c.0) && seen.insert(c.0))
        .map(|c| c.1)
        .sum();
    let (by_file, by_chunk) = (
        new_by_file as f64 / total as f64,
        new_by_chunk as f64 / total as f64,
    );
    eprintln!(
        "1% of {n} items changed, then a full compaction: {total} bytes in files; \
         new by whole files {new_by_file} ({by_file:.3}), by chunks {new_by_chunk} ({by_chunk:.3})"
    );
    assert!(
        by_file > 0.9,
        "whole files: {by_file:.3} of the bytes are new"
    );
    // ~32 items share a 4 KiB block, so 1% scattered changes touch
    // 1 - 0.99^32 ≈ 27% of the blocks; each table's metadata is new too.
    assert!(by_chunk < 0.4, "chunks: {by_chunk:.3} of the bytes are new");
}
