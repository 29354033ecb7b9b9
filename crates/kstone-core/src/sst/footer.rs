//! The fixed-size SST footer and the properties block it points to.

use std::path::Path;

use super::block::Handle;
use crate::error::{Error, Result};
use crate::model::varint::{put_uvarint, Reader};

pub const MAGIC: &[u8; 8] = b"KSTNSST\0";
pub const VERSION: u32 = 1;
pub const FOOTER_LEN: usize = 3 * 12 + 4 + 8 + 4;

/// Locations of the index, filter and properties blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    pub index: Handle,
    pub filter: Handle,
    pub props: Handle,
}

impl Footer {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(FOOTER_LEN);
        for h in [self.index, self.filter, self.props] {
            b.extend_from_slice(&h.offset.to_le_bytes());
            b.extend_from_slice(&h.size.to_le_bytes());
        }
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(MAGIC);
        let crc = crate::checksum::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8], path: &Path, offset: u64) -> Result<Footer> {
        let corrupt = |d: &str| Error::Corruption {
            path: path.to_path_buf(),
            offset,
            detail: d.to_string(),
        };
        if b.len() != FOOTER_LEN {
            return Err(corrupt("file too short for an SST footer"));
        }
        let crc = u32::from_le_bytes([b[48], b[49], b[50], b[51]]);
        if &b[40..48] != MAGIC {
            return Err(corrupt("not an SST file (bad magic)"));
        }
        if crate::checksum::crc32c(&b[..48]) != crc {
            return Err(corrupt("SST footer checksum mismatch"));
        }
        let mut r = Reader::new(b);
        let mut h = || -> Result<Handle> {
            Ok(Handle {
                offset: r.u64_le()?,
                size: r.u32_le()?,
            })
        };
        let (index, filter, props) = (h()?, h()?, h()?);
        let version = u32::from_le_bytes([b[36], b[37], b[38], b[39]]);
        if version != VERSION {
            return Err(Error::UnsupportedVersion {
                path: path.to_path_buf(),
                version,
            });
        }
        Ok(Footer {
            index,
            filter,
            props,
        })
    }
}

/// Summary facts about an SST, stored in its properties block.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Props {
    pub stripe: u32,
    pub entries: u64,
    pub tombstones: u64,
    pub min_lsn: u64,
    pub max_lsn: u64,
    pub data_blocks: u64,
    /// Encoded first and last keys.
    pub first_key: Vec<u8>,
    pub last_key: Vec<u8>,
}

impl Props {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [
            u64::from(self.stripe),
            self.entries,
            self.tombstones,
            self.min_lsn,
            self.max_lsn,
            self.data_blocks,
        ] {
            put_uvarint(&mut b, v);
        }
        crate::model::varint::put_len_prefixed(&mut b, &self.first_key);
        crate::model::varint::put_len_prefixed(&mut b, &self.last_key);
        b
    }

    pub fn decode(b: &[u8]) -> Result<Props> {
        let mut r = Reader::new(b);
        let stripe = u32::try_from(r.uvarint()?)
            .map_err(|_| Error::Malformed("stripe out of range".into()))?;
        Ok(Props {
            stripe,
            entries: r.uvarint()?,
            tombstones: r.uvarint()?,
            min_lsn: r.uvarint()?,
            max_lsn: r.uvarint()?,
            data_blocks: r.uvarint()?,
            first_key: r.len_prefixed()?.to_vec(),
            last_key: r.len_prefixed()?.to_vec(),
        })
    }
}
