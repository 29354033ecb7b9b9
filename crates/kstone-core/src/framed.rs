//! The framing shared by small metadata files (the MANIFEST here; backup
//! manifests and repository config in `kstone-backup`):
//! `magic (8) | version u32 | body_len u32 | crc32c(body) u32 | body`.

use std::path::Path;

use crate::error::{Error, Result};

pub const HEADER_LEN: usize = 20;

/// Frame `body` under `magic` and `version`.
pub fn encode(magic: &[u8; 8], version: u32, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER_LEN + body.len());
    b.extend_from_slice(magic);
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&(body.len() as u32).to_le_bytes());
    b.extend_from_slice(&crate::checksum::crc32c(body).to_le_bytes());
    b.extend_from_slice(body);
    b
}

/// Check the frame and return `(version, body)`. `path` names the file in errors.
pub fn decode<'a>(b: &'a [u8], magic: &[u8; 8], path: &Path) -> Result<(u32, &'a [u8])> {
    let corrupt = |offset: u64, d: &str| Error::Corruption {
        path: path.to_path_buf(),
        offset,
        detail: d.to_string(),
    };
    if b.len() < HEADER_LEN || &b[..8] != magic {
        return Err(corrupt(0, "bad magic: not the expected kind of file"));
    }
    let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let (version, len, crc) = (word(8), word(12) as usize, word(16));
    let body = &b[HEADER_LEN..];
    if body.len() != len {
        return Err(corrupt(12, "length does not match the file (truncated?)"));
    }
    if crate::checksum::crc32c(body) != crc {
        return Err(corrupt(HEADER_LEN as u64, "checksum mismatch"));
    }
    Ok((version, body))
}
