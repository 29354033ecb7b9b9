//! How a database file is cut into chunks and how a chunk is named: the
//! first layer of a repository that stores each piece of data once, across
//! backups, compactions and databases (issue #23; not yet used by `create`).
//!
//! * An SST is cut at its data-block boundaries, then one chunk for the rest
//!   (index, filter, properties, footer). The SST builder cuts blocks at
//!   points set by the keys (`kstone_core::sst::cut`), and a block's bytes
//!   depend only on its entries, so a key range a compaction did not change
//!   comes out as the same chunks in the new table.
//! * Any other file (WAL segments, the MANIFEST) is cut by FastCDC (the
//!   `fastcdc` crate, 2020 variant): its boundaries follow the content, so
//!   bytes inserted or removed move only the chunks around them.
//!
//! A chunk is named by HMAC-SHA256 of its bytes under a repository secret,
//! so that a name says nothing about the content to someone without the
//! secret (an encrypted repository's names cannot be checked against guessed
//! data), while equal chunks still get equal names.

use std::ops::Range;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};

/// FastCDC's smallest, average and largest chunk for files that are not
/// SSTs. WAL segments are up to 16 MiB; 64 KiB chunks keep a segment's chunk
/// list short and still localize a change.
pub const CDC_MIN: u32 = 16 << 10;
pub const CDC_AVG: u32 = 64 << 10;
pub const CDC_MAX: u32 = 256 << 10;

/// Where the file `name` (a path relative to the database directory, e.g.
/// `sst/003-000000000042.sst`), whose bytes are `bytes` and which lives at
/// `path`, is cut: ranges that tile `0..bytes.len()` in order.
pub fn spans(name: &str, path: &Path, bytes: &[u8]) -> Result<Vec<Range<u64>>> {
    let len = bytes.len() as u64;
    let is_sst = name
        .strip_prefix("sst/")
        .and_then(kstone_core::sst::parse_name)
        .is_some();
    let mut spans = if is_sst {
        let table = kstone_core::sst::reader::TableReader::open(path)?;
        if table.size() != len {
            return Err(Error::Invalid(format!(
                "{name}: the table is {} bytes, {len} were read",
                table.size()
            )));
        }
        let mut s = table.data_block_spans();
        let end = s.last().map_or(0, |r| r.end);
        if end < len {
            s.push(end..len);
        }
        s
    } else {
        fastcdc::v2020::FastCDC::new(bytes, CDC_MIN, CDC_AVG, CDC_MAX)
            .map(|c| c.offset as u64..(c.offset + c.length) as u64)
            .collect()
    };
    if len == 0 {
        spans.clear();
    }
    // Every byte in exactly one chunk, in order: a gap would be data the
    // repository claims to hold and does not.
    let mut at = 0;
    for r in &spans {
        if r.start != at || r.end <= r.start {
            return Err(Error::Invalid(format!(
                "{name}: chunks do not tile the file at byte {at}"
            )));
        }
        at = r.end;
    }
    if at != len {
        return Err(Error::Invalid(format!(
            "{name}: chunks end at byte {at} of {len}"
        )));
    }
    Ok(spans)
}

/// [`spans`] of the first `len` bytes of the file at `path`, streamed: each
/// chunk's bytes are read and handed to `each` in order, one at a time, so
/// that memory stays at one chunk whatever the file's size.
pub fn for_each_chunk(
    name: &str,
    path: &Path,
    len: u64,
    mut each: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    use std::io::Read;
    let io = |e: std::io::Error| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let is_sst = name
        .strip_prefix("sst/")
        .and_then(kstone_core::sst::parse_name)
        .is_some();
    let mut at = 0u64;
    if is_sst && len > 0 {
        let table = kstone_core::sst::reader::TableReader::open(path)?;
        if table.size() != len {
            return Err(Error::Invalid(format!(
                "{name}: the table is {} bytes, the snapshot pinned {len}",
                table.size()
            )));
        }
        let mut spans = table.data_block_spans();
        let end = spans.last().map_or(0, |r| r.end);
        if end < len {
            spans.push(end..len);
        }
        let mut r = std::io::BufReader::with_capacity(1 << 20, file);
        let mut buf = Vec::new();
        for s in spans {
            if s.start != at || s.end <= s.start || s.end > len {
                return Err(Error::Invalid(format!(
                    "{name}: chunks do not tile the file at byte {at}"
                )));
            }
            buf.resize((s.end - s.start) as usize, 0);
            r.read_exact(&mut buf).map_err(io)?;
            each(&buf)?;
            at = s.end;
        }
    } else {
        for c in fastcdc::v2020::StreamCDC::new(file.take(len), CDC_MIN, CDC_AVG, CDC_MAX) {
            let c = c.map_err(|e| match e {
                fastcdc::v2020::Error::IoError(e) => io(e),
                e => Error::Invalid(format!("{name}: chunking: {e}")),
            })?;
            if c.offset != at {
                return Err(Error::Invalid(format!(
                    "{name}: chunks do not tile the file at byte {at}"
                )));
            }
            each(&c.data)?;
            at += c.length as u64;
        }
    }
    if at != len {
        return Err(Error::Invalid(format!(
            "{name}: {at} of {len} bytes read (the file shrank?)"
        )));
    }
    Ok(())
}

/// A chunk's name: HMAC-SHA256 of its bytes under the repository's chunk
/// secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ChunkId(pub [u8; 32]);

impl std::fmt::Display for ChunkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// The keyed hash that names chunks.
///
/// ```
/// use kstone_backup::chunking::ChunkKey;
/// let k = ChunkKey::new(&[7; 32]).unwrap();
/// assert_eq!(k.id(b"block"), k.id(b"block"));
/// assert_ne!(k.id(b"block"), ChunkKey::new(&[8; 32]).unwrap().id(b"block"));
/// ```
#[derive(Clone)]
pub struct ChunkKey {
    /// The MAC with the key already absorbed: each chunk clones it.
    keyed: Hmac<Sha256>,
}

impl ChunkKey {
    /// A key from the repository's 32-byte chunk secret.
    pub fn new(secret: &[u8; 32]) -> Result<ChunkKey> {
        let keyed = <Hmac<Sha256> as Mac>::new_from_slice(secret)
            .map_err(|e| Error::Invalid(format!("chunk secret: {e}")))?;
        Ok(ChunkKey { keyed })
    }

    pub fn id(&self, bytes: &[u8]) -> ChunkId {
        let mut mac = self.keyed.clone();
        mac.update(bytes);
        ChunkId(mac.finalize().into_bytes().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        // RFC 4231 test case 2 (key "Jefe"): checks the keyed hash is HMAC.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let want = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert_eq!(
            ChunkId(mac.finalize().into_bytes().into()).to_string(),
            want
        );
    }

    #[test]
    fn other_files_are_cut_by_content() {
        // Pseudo-random bytes, then the same with 100 bytes inserted early:
        // chunks after the insertion come back unchanged.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let a: Vec<u8> = (0..2_000_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut b = a[..1000].to_vec();
        b.extend_from_slice(&[1; 100]);
        b.extend_from_slice(&a[1000..]);
        let k = ChunkKey::new(&[1; 32]).unwrap();
        let ids = |d: &[u8]| -> Vec<(ChunkId, u64)> {
            spans("wal/001-000000000007.wal", Path::new("/nonexistent"), d)
                .unwrap()
                .into_iter()
                .map(|r| (k.id(&d[r.start as usize..r.end as usize]), r.end - r.start))
                .collect()
        };
        let (ia, ib) = (ids(&a), ids(&b));
        assert!(ia.len() > 10);
        let old: std::collections::HashSet<ChunkId> = ia.iter().map(|c| c.0).collect();
        let new_bytes: u64 = ib.iter().filter(|c| !old.contains(&c.0)).map(|c| c.1).sum();
        assert!(
            new_bytes <= 2 * u64::from(CDC_MAX),
            "{new_bytes} bytes in new chunks"
        );
        assert!(spans("MANIFEST", Path::new("/nonexistent"), &[])
            .unwrap()
            .is_empty());
        // Streamed from a file, the cuts are the same; a file shorter than
        // the length asked for is an error, not a shorter chunk list.
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("seg");
        std::fs::write(&f, &b).unwrap();
        let mut streamed = Vec::new();
        for_each_chunk("wal/001-000000000007.wal", &f, b.len() as u64, |c| {
            streamed.push((k.id(c), c.len() as u64));
            Ok(())
        })
        .unwrap();
        assert_eq!(streamed, ib);
        assert!(for_each_chunk("wal/x.wal", &f, b.len() as u64 + 1, |_| Ok(())).is_err());
    }
}
