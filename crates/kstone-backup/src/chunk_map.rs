//! Chunk maps (repository format 2): `backups/<id>.chunks`, the chunks
//! that make up each file of backup `id`, in order. Kept apart from the
//! manifest so that `list` reads kilobytes, not a list of every block.
//! Metadata, framed (`KSTNBKCM`, version 2, CRC32C); layout in
//! `docs/formats.md`, "Chunk map".

use crate::binary::{Reader, Writer};
use crate::chunking::ChunkId;
use crate::error::{Error, Result};

pub const CHUNK_MAP_MAGIC: &[u8; 8] = b"KSTNBKCM";
pub const CHUNK_MAP_VERSION: u32 = 2;

/// One file as chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChunks {
    /// Path inside the database directory.
    pub name: String,
    pub size: u64,
    /// Which of the map's [`ChunkMap::keys`] the ids are keyed with.
    pub key: u16,
    /// Each chunk's id and length, in file order.
    pub chunks: Vec<(ChunkId, u32)>,
}

/// A backup's files as chunks, and the chunk-key objects their ids are
/// keyed with: the repository's, or (for files stored by a backup made
/// without the identity, and files later backups reused from it) a key of
/// that backup's own.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChunkMap {
    pub keys: Vec<String>,
    pub files: Vec<FileChunks>,
}

impl ChunkMap {
    /// The position of key object `key` in [`ChunkMap::keys`], added if new.
    pub fn key_slot(&mut self, key: &str) -> u16 {
        match self.keys.iter().position(|k| k == key) {
            Some(i) => i as u16,
            None => {
                self.keys.push(key.to_string());
                (self.keys.len() - 1) as u16
            }
        }
    }

    /// The key object of file `f`.
    pub fn key_of(&self, f: &FileChunks) -> &str {
        self.keys.get(f.key as usize).map_or("", String::as_str)
    }
}

pub fn encode(map: &ChunkMap) -> Result<Vec<u8>> {
    let mut w = Writer::default();
    w.u16(map.keys.len() as u16);
    for k in &map.keys {
        w.str(k)?;
    }
    w.u32(map.files.len() as u32);
    for f in &map.files {
        w.str(&f.name)?;
        w.u64(f.size);
        w.u16(f.key);
        w.u32(f.chunks.len() as u32);
        for (id, len) in &f.chunks {
            w.bytes(&id.0);
            w.u32(*len);
        }
    }
    Ok(kstone_core::framed::encode(
        CHUNK_MAP_MAGIC,
        CHUNK_MAP_VERSION,
        &w.0,
    ))
}

/// Decode a chunk map; each file's chunks must add up to its size, and its
/// key must be one the map names.
pub fn decode(bytes: &[u8], object: &str) -> Result<ChunkMap> {
    let corrupt = |d: String| Error::Corrupt {
        object: object.to_string(),
        detail: d,
    };
    let (version, body) =
        kstone_core::framed::decode(bytes, CHUNK_MAP_MAGIC, std::path::Path::new(object))
            .map_err(|e| corrupt(e.to_string()))?;
    if version != CHUNK_MAP_VERSION {
        return Err(corrupt(format!("unsupported chunk map version {version}")));
    }
    let mut r = Reader::new(body, object);
    let keys = (0..r.u16()?).map(|_| r.str()).collect::<Result<Vec<_>>>()?;
    let n = r.count(2 + 8 + 2 + 4)?;
    let mut files = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.str()?;
        let size = r.u64()?;
        let key = r.u16()?;
        if key as usize >= keys.len() {
            return Err(corrupt(format!("{name}: no chunk key {key}")));
        }
        let m = r.count(36)?;
        let chunks = (0..m)
            .map(|_| Ok((r.id()?, r.u32()?)))
            .collect::<Result<Vec<_>>>()?;
        let sum: u64 = chunks.iter().map(|c| u64::from(c.1)).sum();
        if sum != size {
            return Err(corrupt(format!(
                "{name}: chunks add up to {sum} bytes, the file has {size}"
            )));
        }
        files.push(FileChunks {
            name,
            size,
            key,
            chunks,
        });
    }
    r.end()?;
    Ok(ChunkMap { keys, files })
}

/// Backup `m`'s chunk map, read and checked to describe exactly the
/// manifest's files; missing, damaged or disagreeing is
/// [`Error::Corrupt`] naming it.
pub fn read_for(
    objs: &crate::objects::Objects,
    m: &crate::manifest::BackupManifest,
) -> Result<ChunkMap> {
    let obj = crate::layout::chunk_map(&m.id);
    let corrupt = |detail: &str| Error::Corrupt {
        object: obj.clone(),
        detail: detail.into(),
    };
    let bytes = objs
        .get(&obj)?
        .ok_or_else(|| corrupt("the backup's chunk map is missing"))?;
    let map = decode(&bytes, &obj)?;
    let listed = map.files.iter().map(|f| (f.name.as_str(), f.size));
    let want = m.files.iter().map(|f| (f.name.as_str(), f.size));
    if !listed.eq(want) {
        return Err(corrupt("the chunk map does not list the manifest's files"));
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_maps_round_trip_and_must_add_up() {
        let mut map = ChunkMap::default();
        let k = map.key_slot("keys/chunk-key");
        assert_eq!(map.key_slot("keys/chunk-key"), k);
        map.files = vec![
            FileChunks {
                name: "sst/000-000000000001.sst".into(),
                size: 7,
                key: k,
                chunks: vec![(ChunkId([1; 32]), 3), (ChunkId([2; 32]), 4)],
            },
            FileChunks {
                name: "wal/empty.log".into(),
                size: 0,
                key: k,
                chunks: vec![],
            },
        ];
        let b = encode(&map).unwrap();
        assert_eq!(decode(&b, "m").unwrap(), map);
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 2;
            assert!(decode(&c, "m").is_err(), "flip at {i}");
        }
        let mut bad = map.clone();
        bad.files[0].size = 8;
        assert!(decode(&encode(&bad).unwrap(), "m").is_err());
        let mut bad = map.clone();
        bad.files[1].key = 1;
        assert!(decode(&encode(&bad).unwrap(), "m").is_err());
    }
}
