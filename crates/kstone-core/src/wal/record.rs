//! WAL record framing and payload encoding (layout in `docs/formats.md`).
//!
//! Frame: `len u32 | len_crc u32 | payload_crc u32 | payload`. The length has
//! its own checksum so a damaged length in the middle of a segment is reported
//! as corruption instead of being mistaken for a torn tail.

use crate::error::{Error, Result};
use crate::model::key::{Key, KeyRef};
use crate::model::varint::{put_len_prefixed, Reader};

pub const FRAME_HEADER: usize = 12;
/// A record can never be larger than this (an item is at most 400 KiB).
pub const MAX_PAYLOAD: usize = 1 << 20;
const MASK: u32 = 0xa282_ead8;

const KIND_PUT: u8 = 1;
const KIND_DELETE: u8 = 2;
const KIND_MARKER: u8 = 3;

/// What a record does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Store `value` (an encoded item) under `key`.
    Put { key: Key, value: Vec<u8> },
    /// Remove `key`.
    Delete { key: Key },
    /// A named restore point; changes no data.
    Marker { name: String },
}

/// One logged write, with its global LSN and commit timestamp (µs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub lsn: u64,
    pub ts: u64,
    pub op: Op,
}

/// Append a framed put (`value` given) or delete straight from borrowed
/// parts: the write path logs without building an owned [`Record`].
pub fn encode_data(lsn: u64, ts: u64, key: KeyRef<'_>, value: Option<&[u8]>, out: &mut Vec<u8>) {
    let kind = if value.is_some() {
        KIND_PUT
    } else {
        KIND_DELETE
    };
    let start = begin(kind, lsn, ts, out);
    key.encode(out);
    if let Some(v) = value {
        put_len_prefixed(out, v);
    }
    finish(start, out);
}

fn begin(kind: u8, lsn: u64, ts: u64, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER]);
    out.push(kind);
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(&ts.to_le_bytes());
    start
}

/// Append a frame around the payload that `payload` appends (the commit
/// log frames its entries like records).
pub fn encode_frame(out: &mut Vec<u8>, payload: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER]);
    payload(out);
    finish(start, out);
}

fn finish(start: usize, out: &mut [u8]) {
    let len = (out.len() - start - FRAME_HEADER) as u32;
    let payload_crc = crate::checksum::crc32c(&out[start + FRAME_HEADER..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&len_crc(len).to_le_bytes());
    out[start + 8..start + 12].copy_from_slice(&payload_crc.to_le_bytes());
}

impl Record {
    /// The key a data record writes (`None` for a marker).
    pub fn key(&self) -> Option<&Key> {
        match &self.op {
            Op::Put { key, .. } | Op::Delete { key } => Some(key),
            Op::Marker { .. } => None,
        }
    }

    /// Append the framed record to `out`.
    pub fn encode_framed(&self, out: &mut Vec<u8>) {
        match &self.op {
            Op::Put { key, value } => {
                encode_data(self.lsn, self.ts, key.as_key_ref(), Some(value), out)
            }
            Op::Delete { key } => encode_data(self.lsn, self.ts, key.as_key_ref(), None, out),
            Op::Marker { name } => {
                let start = begin(KIND_MARKER, self.lsn, self.ts, out);
                put_len_prefixed(out, name.as_bytes());
                finish(start, out);
            }
        }
    }

    /// Decode a payload (the bytes after the frame header).
    pub fn decode_payload(p: &[u8]) -> Result<Record> {
        RecordRef::decode_payload(p).map(RecordRef::to_record)
    }
}

/// A record lent from the payload it was decoded from: replay copies each
/// straight into a memtable entry, without an owned key and value between.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    pub lsn: u64,
    pub ts: u64,
    pub op: OpRef<'a>,
}

/// [`Op`], lent.
#[derive(Debug, Clone, Copy)]
pub enum OpRef<'a> {
    Put { key: KeyRef<'a>, value: &'a [u8] },
    Delete { key: KeyRef<'a> },
    Marker { name: &'a str },
}

impl<'a> RecordRef<'a> {
    /// Decode one frame's payload (the inverse of `Record::encode_framed`).
    pub fn decode_payload(p: &'a [u8]) -> Result<RecordRef<'a>> {
        let mut r = Reader::new(p);
        let kind = r.u8()?;
        let lsn = r.u64_le()?;
        let ts = r.u64_le()?;
        let op = match kind {
            KIND_PUT => OpRef::Put {
                key: KeyRef::decode(&mut r)?,
                value: r.len_prefixed()?,
            },
            KIND_DELETE => OpRef::Delete {
                key: KeyRef::decode(&mut r)?,
            },
            KIND_MARKER => OpRef::Marker {
                name: std::str::from_utf8(r.len_prefixed()?)
                    .map_err(|_| Error::Malformed("restore point name is not UTF-8".into()))?,
            },
            k => return Err(Error::Malformed(format!("unknown WAL record kind {k}"))),
        };
        if !r.is_empty() {
            return Err(Error::Malformed("trailing bytes in WAL record".into()));
        }
        Ok(RecordRef { lsn, ts, op })
    }

    pub fn to_record(self) -> Record {
        let op = match self.op {
            OpRef::Put { key, value } => Op::Put {
                key: key.to_key(),
                value: value.to_vec(),
            },
            OpRef::Delete { key } => Op::Delete { key: key.to_key() },
            OpRef::Marker { name } => Op::Marker {
                name: name.to_string(),
            },
        };
        Record {
            lsn: self.lsn,
            ts: self.ts,
            op,
        }
    }
}

pub fn len_crc(len: u32) -> u32 {
    crate::checksum::crc32c(&len.to_le_bytes()) ^ MASK
}

/// The outcome of reading one frame at the start of `buf`.
#[derive(Debug)]
pub enum Frame<'a> {
    /// A whole, checksummed payload and the frame's total size.
    Ok(&'a [u8], usize),
    /// The buffer ends inside this frame (a torn write at the tail).
    Incomplete,
    /// The frame header is damaged.
    BadHeader,
    /// The header is sound but the payload fails its checksum.
    BadPayload,
}

pub fn read_frame(buf: &[u8]) -> Frame<'_> {
    if buf.len() < FRAME_HEADER {
        return Frame::Incomplete;
    }
    let word = |i: usize| u32::from_le_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
    let (len, lcrc, pcrc) = (word(0), word(4), word(8));
    if len_crc(len) != lcrc || len as usize > MAX_PAYLOAD {
        return Frame::BadHeader;
    }
    let end = FRAME_HEADER + len as usize;
    if buf.len() < end {
        return Frame::Incomplete;
    }
    let payload = &buf[FRAME_HEADER..end];
    if crate::checksum::crc32c(payload) != pcrc {
        return Frame::BadPayload;
    }
    Frame::Ok(payload, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let recs = [
            Record {
                lsn: 7,
                ts: 99,
                op: Op::Put {
                    key: Key::new(b"p", Some(b"s")).unwrap(),
                    value: vec![1, 2, 3],
                },
            },
            Record {
                lsn: 8,
                ts: 100,
                op: Op::Delete {
                    key: Key::new(b"p", None).unwrap(),
                },
            },
            Record {
                lsn: 9,
                ts: 101,
                op: Op::Marker {
                    name: "before-migration".into(),
                },
            },
        ];
        let mut buf = Vec::new();
        recs.iter().for_each(|r| r.encode_framed(&mut buf));
        let mut at = 0;
        for want in &recs {
            match read_frame(&buf[at..]) {
                Frame::Ok(p, n) => {
                    assert_eq!(&Record::decode_payload(p).unwrap(), want);
                    at += n;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(at, buf.len());
    }

    #[test]
    fn damage_is_classified() {
        let mut buf = Vec::new();
        Record {
            lsn: 1,
            ts: 1,
            op: Op::Delete {
                key: Key::new(b"k", None).unwrap(),
            },
        }
        .encode_framed(&mut buf);
        assert!(matches!(
            read_frame(&buf[..buf.len() - 1]),
            Frame::Incomplete
        ));
        let mut b = buf.clone();
        b[1] ^= 1;
        assert!(matches!(read_frame(&b), Frame::BadHeader));
        let mut b = buf.clone();
        let last = b.len() - 1;
        b[last] ^= 1;
        assert!(matches!(read_frame(&b), Frame::BadPayload));
    }
}
