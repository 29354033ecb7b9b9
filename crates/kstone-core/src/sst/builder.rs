//! Writing an SST: sorted entries → data blocks, then index, filter,
//! properties and footer; written under a temporary name, fsynced, renamed,
//! and the directory fsynced.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::block::{self, Compression, Handle};
use super::bloom;
use super::cut;
use super::footer::{Footer, Props};
use crate::entry::Entry;
use crate::error::{Error, IoContext, Result};
use crate::fsio::sync_dir;
use crate::model::key::{Key, KeyRef};
use crate::model::varint::{put_len_prefixed, put_uvarint, uvarint_len};

pub const KIND_PUT: u8 = 1;
pub const KIND_TOMBSTONE: u8 = 2;

/// Encode one entry into a data block: `key (len-prefixed) | lsn varint |
/// kind u8 | value (len-prefixed, puts only)`.
pub fn encode_entry(encoded_key: &[u8], lsn: u64, value: Option<&[u8]>, out: &mut Vec<u8>) {
    put_len_prefixed(out, encoded_key);
    put_uvarint(out, lsn);
    match value {
        Some(v) => {
            out.push(KIND_PUT);
            put_len_prefixed(out, v);
        }
        None => out.push(KIND_TOMBSTONE),
    }
}

/// Length of [`encode_entry`]'s output, without encoding.
pub fn encoded_entry_len(encoded_key_len: usize, lsn: u64, value: Option<&[u8]>) -> usize {
    let prefixed = |n: usize| uvarint_len(n as u64) + n;
    prefixed(encoded_key_len) + uvarint_len(lsn) + 1 + value.map_or(0, |v| prefixed(v.len()))
}

/// Metadata of a finished SST.
#[derive(Debug, Clone)]
pub struct Built {
    pub path: PathBuf,
    pub size: u64,
    pub props: Props,
}

pub struct TableBuilder {
    path: PathBuf,
    tmp: PathBuf,
    /// `None` once finished.
    out: Option<BufWriter<File>>,
    offset: u64,
    compression: Compression,
    block: Vec<u8>,
    block_last_key: Vec<u8>,
    index: Vec<u8>,
    hashes: Vec<(u64, u64)>,
    props: Props,
    last_key: Option<Key>,
}

impl TableBuilder {
    pub fn create(path: &Path, stripe: usize, compression: Compression) -> Result<TableBuilder> {
        let tmp = path.with_extension("sst.tmp");
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .ctx(&tmp)?;
        Ok(TableBuilder {
            path: path.to_path_buf(),
            tmp,
            out: Some(BufWriter::with_capacity(256 << 10, f)),
            offset: 0,
            compression,
            block: Vec::with_capacity(cut::MAX_BLOCK),
            block_last_key: Vec::new(),
            index: Vec::new(),
            hashes: Vec::new(),
            props: Props {
                stripe: stripe as u32,
                min_lsn: u64::MAX,
                ..Props::default()
            },
            last_key: None,
        })
    }

    fn writer(&mut self) -> Result<&mut BufWriter<File>> {
        self.out
            .as_mut()
            .ok_or_else(|| Error::InvalidInput("SST builder already finished".into()))
    }

    /// Add the next entry; keys must be strictly increasing.
    pub fn add(&mut self, e: &Entry) -> Result<()> {
        self.add_ref(e.key.as_key_ref(), e.lsn, e.value.as_deref())
    }

    /// [`TableBuilder::add`] from borrowed parts; allocates nothing per
    /// entry once the buffers are warm (flushes call it for every write).
    pub fn add_ref(&mut self, key: KeyRef<'_>, lsn: u64, value: Option<&[u8]>) -> Result<()> {
        match &mut self.last_key {
            Some(prev) if prev.as_key_ref() >= key => {
                return Err(Error::InvalidInput("SST keys out of order".into()))
            }
            Some(prev) => key.copy_into(prev),
            None => {
                self.last_key = Some(key.to_key());
                self.props.first_key.clear();
                key.encode(&mut self.props.first_key);
            }
        }
        // Blocks end where `sst::cut` says (content-defined, see there).
        let entry_len = encoded_entry_len(key.encoded_len(), lsn, value);
        if cut::cut_before(self.block.len(), entry_len) {
            self.finish_block()?;
        }
        self.block_last_key.clear();
        key.encode(&mut self.block_last_key);
        let hash = bloom::key_hash(&self.block_last_key);
        self.hashes.push(hash);
        let before = self.block.len();
        encode_entry(&self.block_last_key, lsn, value, &mut self.block);
        debug_assert_eq!(self.block.len() - before, entry_len);
        self.props.entries += 1;
        if value.is_none() {
            self.props.tombstones += 1;
        }
        self.props.min_lsn = self.props.min_lsn.min(lsn);
        self.props.max_lsn = self.props.max_lsn.max(lsn);
        if cut::cut_after(self.block.len(), entry_len, hash) {
            self.finish_block()?;
        }
        Ok(())
    }

    fn write_block(&mut self, raw: &[u8], compression: Compression) -> Result<Handle> {
        let disk = block::seal(raw, compression);
        self.writer()?.write_all(&disk).ctx(&self.tmp)?;
        let h = Handle {
            offset: self.offset,
            size: disk.len() as u32,
        };
        self.offset += disk.len() as u64;
        Ok(h)
    }

    fn finish_block(&mut self) -> Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let raw = std::mem::take(&mut self.block);
        let h = self.write_block(&raw, self.compression)?;
        self.block = raw;
        self.block.clear();
        put_len_prefixed(&mut self.index, &self.block_last_key);
        put_uvarint(&mut self.index, h.offset);
        put_uvarint(&mut self.index, u64::from(h.size));
        self.props.data_blocks += 1;
        Ok(())
    }

    /// Write the metadata blocks and footer, fsync, and rename into place.
    pub fn finish(self) -> Result<Built> {
        let path = self.path.clone();
        let built = self.finish_leaving_dir_sync()?;
        sync_dir(crate::fsio::parent(&path))?;
        Ok(built)
    }

    /// [`finish`](Self::finish) but the directory's fsync, which the caller
    /// owes before anything refers to the table (one fsync for a batch of
    /// tables built together).
    pub fn finish_leaving_dir_sync(mut self) -> Result<Built> {
        self.finish_block()?;
        if self.props.entries == 0 {
            self.props.min_lsn = 0;
        }
        self.props.last_key = self.block_last_key.clone();
        let index = std::mem::take(&mut self.index);
        let index = self.write_block(&index, Compression::None)?;
        let filter = bloom::build(&self.hashes);
        let filter = self.write_block(&filter, Compression::None)?;
        let props = self.props.encode();
        let props = self.write_block(&props, Compression::None)?;
        let footer = Footer {
            index,
            filter,
            props,
        }
        .encode();
        self.writer()?.write_all(&footer).ctx(&self.tmp)?;
        let size = self.offset + footer.len() as u64;
        let file = self
            .out
            .take()
            .ok_or_else(|| Error::InvalidInput("SST builder already finished".into()))?
            .into_inner()
            .map_err(|e| e.into_error())
            .ctx(&self.tmp)?;
        file.sync_all().ctx(&self.tmp)?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path).ctx(&self.path)?;
        Ok(Built {
            path: self.path.clone(),
            size,
            props: std::mem::take(&mut self.props),
        })
    }
}

impl Drop for TableBuilder {
    /// A builder abandoned by an error (a full disk, say) removes its
    /// temporary file instead of leaving it to fill the disk further.
    fn drop(&mut self) {
        if self.out.is_some() {
            self.out = None;
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
