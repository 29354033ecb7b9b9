//! Pack objects (repository format 2): many chunks in one object of tens of
//! MiB, so that a GiB is a few dozen objects and requests, not thousands.
//!
//! A pack's body, before sealing (`docs/formats.md`, "Pack"):
//! `blob* | trailer | trailer_len u32`, where each blob is one chunk's bytes
//! as they are or as a zstd frame, and the trailer is a framed
//! (`KSTNBKPK`, version 2, CRC32C) list of entries naming each blob. The
//! trailer makes a pack self-describing: the packs of a backup that was
//! interrupted before its index was written can still be read and reused.
//! In an encrypted repository the whole body is one age object.

use crate::binary::{Reader, Writer};
use crate::chunking::ChunkId;
use crate::error::{Error, Result};
use crate::objects::Codec;

pub const PACK_MAGIC: &[u8; 8] = b"KSTNBKPK";
pub const PACK_VERSION: u32 = 2;
/// A pack is sealed once its blobs reach this size.
pub const PACK_TARGET: usize = 32 << 20;
/// Bytes of one entry in a trailer or an index.
pub const ENTRY_LEN: usize = 32 + 4 + 4 + 4 + 1;

/// Where one chunk lies in its pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub id: ChunkId,
    /// Offset of the blob in the pack's body.
    pub offset: u32,
    /// Bytes of the blob.
    pub stored_len: u32,
    /// Bytes of the chunk once decoded.
    pub raw_len: u32,
    pub codec: Codec,
}

impl Entry {
    pub(crate) fn write(&self, w: &mut Writer) {
        w.bytes(&self.id.0);
        w.u32(self.offset);
        w.u32(self.stored_len);
        w.u32(self.raw_len);
        w.u8(match self.codec {
            Codec::None => 0,
            Codec::Zstd => 1,
        });
    }

    pub(crate) fn read(r: &mut Reader<'_>, object: &str) -> Result<Entry> {
        let (id, offset, stored_len, raw_len) = (r.id()?, r.u32()?, r.u32()?, r.u32()?);
        let codec = match r.u8()? {
            0 => Codec::None,
            1 => Codec::Zstd,
            c => {
                return Err(Error::Corrupt {
                    object: object.to_string(),
                    detail: format!("unknown codec {c}"),
                })
            }
        };
        Ok(Entry {
            id,
            offset,
            stored_len,
            raw_len,
            codec,
        })
    }
}

/// A pack being filled.
#[derive(Default)]
pub struct PackBuilder {
    body: Vec<u8>,
    entries: Vec<Entry>,
}

impl PackBuilder {
    /// Bytes of blobs so far.
    pub fn len(&self) -> usize {
        self.body.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the pack should be sealed now.
    pub fn full(&self) -> bool {
        self.body.len() >= PACK_TARGET
    }

    /// Add chunk `id` with bytes `raw`, compressed at `level` if that saves
    /// a tenth or more. Returns the blob's size.
    pub fn add(&mut self, id: ChunkId, raw: &[u8], level: Option<i32>) -> Result<u32> {
        let too_big = || Error::Invalid(format!("chunk {id} does not fit a pack"));
        let raw_len = u32::try_from(raw.len()).map_err(|_| too_big())?;
        let offset = u32::try_from(self.body.len()).map_err(|_| too_big())?;
        let compressed = match level {
            Some(l) if !raw.is_empty() => zstd::bulk::compress(raw, l)
                .ok()
                .filter(|c| c.len() * 10 <= raw.len() * 9),
            _ => None,
        };
        let (codec, blob) = match &compressed {
            Some(c) => (Codec::Zstd, c.as_slice()),
            None => (Codec::None, raw),
        };
        self.body.extend_from_slice(blob);
        let stored_len = blob.len() as u32;
        self.entries.push(Entry {
            id,
            offset,
            stored_len,
            raw_len,
            codec,
        });
        Ok(stored_len)
    }

    /// Add a blob as another pack stored it (a repack moves blobs without
    /// decoding them).
    pub fn add_stored(&mut self, e: &Entry, blob: &[u8]) -> Result<()> {
        let offset = u32::try_from(self.body.len())
            .map_err(|_| Error::Invalid(format!("chunk {} does not fit a pack", e.id)))?;
        self.body.extend_from_slice(blob);
        self.entries.push(Entry { offset, ..*e });
        Ok(())
    }

    /// Move every blob of `other` (still being filled) into this pack.
    pub fn append(&mut self, other: &mut PackBuilder) -> Result<()> {
        let body = std::mem::take(&mut other.body);
        for e in std::mem::take(&mut other.entries) {
            self.add_stored(&e, stored_blob(&body, &e, "pack being filled")?)?;
        }
        Ok(())
    }

    /// The pack's body and its entries; the builder is empty again.
    pub fn finish(&mut self) -> (Vec<u8>, Vec<Entry>) {
        let mut body = std::mem::take(&mut self.body);
        let entries = std::mem::take(&mut self.entries);
        let mut w = Writer::default();
        for e in &entries {
            e.write(&mut w);
        }
        let trailer = kstone_core::framed::encode(PACK_MAGIC, PACK_VERSION, &w.0);
        body.extend_from_slice(&trailer);
        body.extend_from_slice(&(trailer.len() as u32).to_le_bytes());
        (body, entries)
    }
}

fn corrupt(object: &str, detail: impl Into<String>) -> Error {
    Error::Corrupt {
        object: object.to_string(),
        detail: detail.into(),
    }
}

/// The entries a pack's trailer lists, each checked to lie inside the
/// blobs.
pub fn entries(pack: &[u8], object: &str) -> Result<Vec<Entry>> {
    let n = pack.len();
    if n < 4 {
        return Err(corrupt(object, "too short for a pack"));
    }
    let tlen = u32::from_le_bytes([pack[n - 4], pack[n - 3], pack[n - 2], pack[n - 1]]) as usize;
    let blobs_end = n
        .checked_sub(4 + tlen)
        .ok_or_else(|| corrupt(object, "trailer length exceeds the pack (truncated?)"))?;
    let (version, body) = kstone_core::framed::decode(
        &pack[blobs_end..n - 4],
        PACK_MAGIC,
        std::path::Path::new(object),
    )
    .map_err(|e| corrupt(object, e.to_string()))?;
    if version != PACK_VERSION {
        return Err(corrupt(
            object,
            format!("unsupported pack version {version}"),
        ));
    }
    let mut r = Reader::new(body, object);
    let mut v = Vec::with_capacity(body.len() / ENTRY_LEN);
    while v.len() * ENTRY_LEN < body.len() {
        let e = Entry::read(&mut r, object)?;
        if e.offset as usize + e.stored_len as usize > blobs_end {
            return Err(corrupt(
                object,
                format!("chunk {} lies past the blobs", e.id),
            ));
        }
        v.push(e);
    }
    r.end()?;
    Ok(v)
}

/// A blob's bytes as stored in its pack.
pub fn stored_blob<'a>(pack: &'a [u8], e: &Entry, object: &str) -> Result<&'a [u8]> {
    let at = e.offset as usize;
    pack.get(at..at + e.stored_len as usize)
        .ok_or_else(|| corrupt(object, format!("chunk {} lies past the pack's end", e.id)))
}

/// A chunk's bytes from its pack, decoded and checked against its length
/// (the caller checks its id, which needs the chunk key).
pub fn blob(pack: &[u8], e: &Entry, object: &str) -> Result<Vec<u8>> {
    let stored = stored_blob(pack, e, object)?;
    let raw = match e.codec {
        Codec::None => stored.to_vec(),
        Codec::Zstd => zstd::bulk::decompress(stored, e.raw_len as usize)
            .map_err(|z| corrupt(object, format!("chunk {}: zstd: {z}", e.id)))?,
    };
    if raw.len() != e.raw_len as usize {
        return Err(corrupt(
            object,
            format!(
                "chunk {} decodes to {} bytes, the index says {}",
                e.id,
                raw.len(),
                e.raw_len
            ),
        ));
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pack_lists_its_chunks_and_returns_them() {
        let mut p = PackBuilder::default();
        let a = vec![7u8; 5000];
        let b: Vec<u8> = (0..3000u32)
            .map(|i| (i.wrapping_mul(2654435761u32) >> 13) as u8)
            .collect();
        p.add(ChunkId([1; 32]), &a, Some(3)).unwrap();
        p.add(ChunkId([2; 32]), &b, Some(3)).unwrap();
        let mut q = PackBuilder::default();
        q.add(ChunkId([3; 32]), &[], None).unwrap();
        p.append(&mut q).unwrap();
        assert!(q.is_empty());
        let (body, es) = p.finish();
        assert!(p.is_empty());
        assert_eq!(es[0].codec, Codec::Zstd, "a run of one byte compresses");
        assert_eq!(entries(&body, "p").unwrap(), es);
        assert_eq!(blob(&body, &es[0], "p").unwrap(), a);
        assert_eq!(blob(&body, &es[1], "p").unwrap(), b);
        assert!(blob(&body, &es[2], "p").unwrap().is_empty());
        // Any flipped trailer byte or truncation is damage, never a shorter list.
        let blobs = es[1].offset as usize + es[1].stored_len as usize;
        for i in blobs..body.len() {
            let mut c = body.clone();
            c[i] ^= 0x10;
            assert!(entries(&c, "p").is_err(), "flip at {i}");
        }
        for cut in 0..body.len() {
            assert!(entries(&body[..cut], "p").is_err(), "cut at {cut}");
        }
        // A flipped compressed blob fails to decode or to match its length.
        let mut c = body.clone();
        c[es[0].offset as usize + 3] ^= 0xff;
        let r = blob(&c, &es[0], "p");
        assert!(r.is_err() || r.unwrap() != a);
    }
}
