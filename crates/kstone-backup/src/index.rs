//! Index objects (repository format 2): which pack holds each chunk.
//!
//! Each backup writes one `index/<backup id>` naming the packs it wrote
//! (and the packs of an interrupted run it adopted), before its chunk map
//! and manifest; a prune writes one consolidated index before deleting the
//! ones it replaces. The union of all index objects is the repository's
//! chunk index. Indexes are metadata (keyed chunk ids, offsets and sizes,
//! no content): listing, verifying stored bytes and pruning need no
//! identity. Layout in `docs/formats.md`, "Index".

use std::collections::{HashMap, HashSet};

use kstone_core::fsio::hex;

use crate::binary::{Reader, Writer};
use crate::chunking::ChunkId;
use crate::error::{Error, Result};
use crate::layout;
use crate::objects::Objects;
use crate::pack::{Entry, ENTRY_LEN};

pub const INDEX_MAGIC: &[u8; 8] = b"KSTNBKIX";
pub const INDEX_VERSION: u32 = 2;

/// One pack and the chunks it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackInfo {
    /// Object key (`packs/<name>`).
    pub key: String,
    /// Bytes of the object as stored (sealed, in an encrypted repository).
    pub stored_size: u64,
    /// SHA-256 of the stored object: checkable without the identity.
    pub stored_sha256: [u8; 32],
    pub entries: Vec<Entry>,
}

impl PackInfo {
    pub fn stored_sha256_hex(&self) -> String {
        hex(&self.stored_sha256)
    }
}

/// The body of an index object.
pub fn encode(packs: &[PackInfo]) -> Result<Vec<u8>> {
    let mut w = Writer::default();
    w.u32(packs.len() as u32);
    for p in packs {
        w.str(&p.key)?;
        w.u64(p.stored_size);
        w.bytes(&p.stored_sha256);
        w.u32(p.entries.len() as u32);
        for e in &p.entries {
            e.write(&mut w);
        }
    }
    Ok(kstone_core::framed::encode(
        INDEX_MAGIC,
        INDEX_VERSION,
        &w.0,
    ))
}

/// Decode and check an index object.
pub fn decode(bytes: &[u8], object: &str) -> Result<Vec<PackInfo>> {
    let corrupt = |d: String| Error::Corrupt {
        object: object.to_string(),
        detail: d,
    };
    let (version, body) =
        kstone_core::framed::decode(bytes, INDEX_MAGIC, std::path::Path::new(object))
            .map_err(|e| corrupt(e.to_string()))?;
    if version != INDEX_VERSION {
        return Err(corrupt(format!("unsupported index version {version}")));
    }
    let mut r = Reader::new(body, object);
    let n = r.count(2 + 8 + 32 + 4)?;
    let mut packs = Vec::with_capacity(n);
    for _ in 0..n {
        let key = r.str()?;
        if !key.starts_with(&format!("{}/", layout::PACKS)) || key.contains("..") {
            return Err(corrupt(format!("{key:?} is not a pack")));
        }
        let (stored_size, stored_sha256) = (r.u64()?, r.sha()?);
        let m = r.count(ENTRY_LEN)?;
        let entries = (0..m)
            .map(|_| Entry::read(&mut r, object))
            .collect::<Result<Vec<_>>>()?;
        packs.push(PackInfo {
            key,
            stored_size,
            stored_sha256,
            entries,
        });
    }
    r.end()?;
    Ok(packs)
}

/// The union of a repository's index objects.
#[derive(Default)]
pub struct ChunkIndex {
    packs: Vec<PackInfo>,
    /// Chunk id → (pack, entry) positions.
    by_id: HashMap<ChunkId, (u32, u32)>,
    /// The index objects read, by key.
    objects: Vec<String>,
}

/// An index object that could not be read, and why.
pub type DamagedIndex = (String, Error);

impl ChunkIndex {
    /// Read every index object. A damaged one is returned beside the rest
    /// (a backup then stores its chunks again; a restore that needs a chunk
    /// only it listed fails naming it).
    pub fn load(objs: &Objects) -> Result<(ChunkIndex, Vec<DamagedIndex>)> {
        let keys: Vec<String> = objs
            .list(layout::INDEXES)?
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| layout::is_index(k))
            .collect();
        let read = kstone_core::parallel::map(
            &keys,
            8,
            |k| match objs.get(k) {
                Ok(Some(b)) => decode(&b, k).map(Some),
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            },
            |_| false,
        );
        let mut index = ChunkIndex::default();
        let mut damaged = Vec::new();
        for (k, r) in keys.into_iter().zip(read) {
            match r {
                Some(Ok(Some(packs))) => {
                    for p in packs {
                        index.add(p);
                    }
                    index.objects.push(k);
                }
                // Deleted by a prune between the listing and the read.
                Some(Ok(None)) => {}
                Some(Err(e @ Error::Corrupt { .. })) => damaged.push((k, e)),
                Some(Err(e)) => return Err(e),
                None => return Err(Error::Invalid("an index reader panicked".into())),
            }
        }
        Ok((index, damaged))
    }

    /// Add a pack (a pack already known by its key is not added twice).
    pub fn add(&mut self, p: PackInfo) {
        if self.packs.iter().any(|q| q.key == p.key) {
            return;
        }
        let at = self.packs.len() as u32;
        for (i, e) in p.entries.iter().enumerate() {
            self.by_id.entry(e.id).or_insert((at, i as u32));
        }
        self.packs.push(p);
    }

    /// Where chunk `id` is, if any index lists it.
    pub fn locate(&self, id: &ChunkId) -> Option<(&PackInfo, &Entry)> {
        let &(p, e) = self.by_id.get(id)?;
        let pack = &self.packs[p as usize];
        Some((pack, &pack.entries[e as usize]))
    }

    pub fn contains(&self, id: &ChunkId) -> bool {
        self.by_id.contains_key(id)
    }

    pub fn packs(&self) -> &[PackInfo] {
        &self.packs
    }

    /// The index objects this was read from.
    pub fn objects(&self) -> &[String] {
        &self.objects
    }

    /// Keep only the packs `present` (key → stored size) holds whole: a new
    /// backup never names a chunk whose pack is gone or truncated, and a
    /// restore reads a chunk from a copy that is there. Returns the keys of
    /// the packs dropped.
    pub fn retain_present(&mut self, present: &HashMap<String, u64>) -> Vec<String> {
        self.retain(|p| present.get(&p.key) == Some(&p.stored_size))
    }

    /// Look chunks up in the packs `worse` rejects only when no other pack
    /// holds them (a copy in a pack verify found damaged is a last resort).
    pub fn prefer_not(&mut self, worse: impl Fn(&PackInfo) -> bool) {
        self.by_id.clear();
        for pass_worse in [false, true] {
            for (at, p) in self.packs.iter().enumerate() {
                if worse(p) != pass_worse {
                    continue;
                }
                for (i, e) in p.entries.iter().enumerate() {
                    self.by_id.entry(e.id).or_insert((at as u32, i as u32));
                }
            }
        }
    }

    /// Keep only the packs `keep` accepts; returns the keys of the others.
    pub fn retain(&mut self, keep: impl Fn(&PackInfo) -> bool) -> Vec<String> {
        let packs = std::mem::take(&mut self.packs);
        self.by_id.clear();
        let mut dropped = Vec::new();
        for p in packs {
            if keep(&p) {
                self.add(p);
            } else {
                dropped.push(p.key);
            }
        }
        dropped
    }

    /// Keys of the packs some index lists.
    pub fn pack_keys(&self) -> HashSet<&str> {
        self.packs.iter().map(|p| p.key.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::Codec;

    fn pack(key: &str, ids: &[u8]) -> PackInfo {
        PackInfo {
            key: format!("packs/{key}"),
            stored_size: 100,
            stored_sha256: [5; 32],
            entries: ids
                .iter()
                .enumerate()
                .map(|(i, &b)| Entry {
                    id: ChunkId([b; 32]),
                    offset: i as u32 * 10,
                    stored_len: 10,
                    raw_len: 12,
                    codec: Codec::None,
                })
                .collect(),
        }
    }

    #[test]
    fn index_round_trips_and_damage_is_found() {
        let packs = vec![pack("a", &[1, 2]), pack("b", &[3])];
        let b = encode(&packs).unwrap();
        assert_eq!(decode(&b, "i").unwrap(), packs);
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 1;
            assert!(decode(&c, "i").is_err(), "flip at {i}");
        }
        for cut in 0..b.len() {
            assert!(decode(&b[..cut], "i").is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn lookups_and_presence() {
        let mut ix = ChunkIndex::default();
        ix.add(pack("a", &[1, 2]));
        ix.add(pack("b", &[2, 3]));
        ix.add(pack("a", &[9]));
        assert_eq!(ix.packs().len(), 2);
        assert_eq!(ix.locate(&ChunkId([2; 32])).unwrap().0.key, "packs/a");
        assert!(!ix.contains(&ChunkId([9; 32])));
        let present: HashMap<String, u64> = [("packs/b".to_string(), 100)].into();
        ix.retain_present(&present);
        assert_eq!(ix.locate(&ChunkId([2; 32])).unwrap().0.key, "packs/b");
        assert!(!ix.contains(&ChunkId([1; 32])));
    }
}
