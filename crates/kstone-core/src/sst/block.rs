//! Blocks: the unit of SST I/O and checksumming.
//!
//! On disk: `payload | raw_len u32 | compression u8 | crc32c u32`, the CRC
//! covering everything before it.

use crate::error::{Error, Result};

pub const TRAILER: usize = 9;
/// Upper bound on a decoded block; larger claims are corruption (and must not
/// make us allocate).
pub const MAX_RAW_BLOCK: usize = 8 << 20;

/// Per-block compression of an SST's data blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    /// zstd at the given level.
    Zstd(i32),
}

const C_NONE: u8 = 0;
const C_ZSTD: u8 = 1;

/// Where a block lives in its file (size includes the trailer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Handle {
    pub offset: u64,
    pub size: u32,
}

/// Frame `raw` for disk, compressing it when that saves at least 1/8.
pub fn seal(raw: &[u8], compression: Compression) -> Vec<u8> {
    let (mut out, kind) = match compression {
        Compression::Zstd(level) => match zstd::bulk::compress(raw, level) {
            Ok(c) if c.len() < raw.len() - raw.len() / 8 => (c, C_ZSTD),
            _ => (raw.to_vec(), C_NONE),
        },
        Compression::None => (raw.to_vec(), C_NONE),
    };
    out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    out.push(kind);
    let crc = crate::checksum::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Check and decode an on-disk block. Errors are `Malformed`; the caller adds
/// the file and offset.
pub fn open(disk: &[u8]) -> Result<Vec<u8>> {
    open_owned(disk.to_vec())
}

/// Check an on-disk block's checksum without decoding it: bytes about to
/// be copied elsewhere (a backup) need no more.
pub fn check(disk: &[u8]) -> Result<()> {
    if disk.len() < TRAILER {
        return Err(Error::Malformed("block shorter than its trailer".into()));
    }
    let (body, crc_bytes) = disk.split_at(disk.len() - 4);
    let crc = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
    if crate::checksum::crc32c(body) != crc {
        return Err(Error::Malformed("block checksum mismatch".into()));
    }
    Ok(())
}

/// [`open`] of a block read into its own buffer: an uncompressed payload is
/// returned in that buffer, not copied out of it.
pub fn open_owned(mut disk: Vec<u8>) -> Result<Vec<u8>> {
    check(&disk)?;
    let body = &disk[..disk.len() - 4];
    let (payload, meta) = body.split_at(body.len() - 5);
    let raw_len = u32::from_le_bytes([meta[0], meta[1], meta[2], meta[3]]) as usize;
    if raw_len > MAX_RAW_BLOCK {
        return Err(Error::Malformed(format!("block claims {raw_len} bytes")));
    }
    let raw = match meta[4] {
        C_NONE => {
            let n = payload.len();
            disk.truncate(n);
            disk
        }
        C_ZSTD => zstd::bulk::decompress(payload, raw_len)
            .map_err(|e| Error::Malformed(format!("zstd: {e}")))?,
        c => return Err(Error::Malformed(format!("unknown block compression {c}"))),
    };
    if raw.len() != raw_len {
        return Err(Error::Malformed("block length mismatch".into()));
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_detects_flips() {
        let raw: Vec<u8> = b"abcabcabcabcabcabcabcabcabcabcabcabc".repeat(20);
        for c in [Compression::None, Compression::Zstd(3)] {
            let disk = seal(&raw, c);
            assert_eq!(open(&disk).unwrap(), raw);
            check(&disk).unwrap();
            for i in 0..disk.len() {
                let mut d = disk.clone();
                d[i] ^= 0x10;
                assert!(open(&d).is_err(), "flip at {i} undetected");
                assert!(check(&d).is_err(), "flip at {i} unchecked");
            }
        }
        assert!(seal(&raw, Compression::Zstd(3)).len() < raw.len());
    }
}
