//! Sorted string tables: immutable, block-based files of key-ordered entries
//! with an index, a bloom filter and per-block checksums.

pub mod block;
pub mod bloom;
pub mod builder;
pub mod cache;
pub mod cursor;
pub mod cut;
pub mod footer;
pub mod index;
pub mod reader;

/// File name of an SST: `SSS-IIIIIIIIIIII.sst` (stripe, file id).
pub fn file_name(stripe: usize, id: u64) -> String {
    format!("{stripe:03}-{id:012}.sst")
}

/// `(stripe, id)` from an SST file name.
pub fn parse_name(name: &str) -> Option<(usize, u64)> {
    let stem = name.strip_suffix(".sst")?;
    let (s, id) = stem.split_once('-')?;
    if s.len() != 3 || id.len() != 12 {
        return None;
    }
    let stripe: usize = s.parse().ok()?;
    (stripe < crate::model::key::STRIPES).then_some(())?;
    Some((stripe, id.parse().ok()?))
}
