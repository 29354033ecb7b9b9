//! WAL segment files: `wal/SSS-IIIIIIIIIIII.wal` (stripe, file id). Each has a
//! checksummed header, then framed records appended by one writer at a time.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::record::{read_frame, Frame, Record};
use crate::error::{Error, IoContext, Result};
use crate::model::varint::Reader;

pub const MAGIC: &[u8; 8] = b"KSTNWAL\0";
pub const VERSION: u32 = 1;
pub const HEADER_LEN: usize = 36;

/// File name of a segment.
pub fn file_name(stripe: usize, id: u64) -> String {
    format!("{stripe:03}-{id:012}.wal")
}

/// `(stripe, id)` from a segment file name, or `None` for any other file.
pub fn parse_name(name: &str) -> Option<(usize, u64)> {
    let stem = name.strip_suffix(".wal")?;
    let (s, id) = stem.split_once('-')?;
    if s.len() != 3 || id.len() != 12 {
        return None;
    }
    let stripe: usize = s.parse().ok()?;
    (stripe < crate::model::key::STRIPES).then_some(())?;
    Some((stripe, id.parse().ok()?))
}

/// The fixed header at the start of each segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub stripe: u32,
    pub id: u64,
    /// The id of the stripe's previous segment (0 if none), so a missing
    /// segment in the middle of a stripe's log is detected.
    pub prev: u64,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.stripe.to_le_bytes());
        b[16..24].copy_from_slice(&self.id.to_le_bytes());
        b[24..32].copy_from_slice(&self.prev.to_le_bytes());
        let crc = crc32c::crc32c(&b[..32]);
        b[32..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8], path: &Path) -> Result<Header> {
        let corrupt = |d: &str| Error::Corruption {
            path: path.to_path_buf(),
            offset: 0,
            detail: d.to_string(),
        };
        if b.len() < HEADER_LEN {
            return Err(corrupt("segment header is truncated"));
        }
        let mut r = Reader::new(&b[..HEADER_LEN]);
        let magic = r.bytes(8)?;
        let version = r.u32_le()?;
        let stripe = r.u32_le()?;
        let id = r.u64_le()?;
        let prev = r.u64_le()?;
        let crc = r.u32_le()?;
        if magic != MAGIC {
            return Err(corrupt("not a WAL segment (bad magic)"));
        }
        if crc != crc32c::crc32c(&b[..32]) {
            return Err(corrupt("segment header checksum mismatch"));
        }
        if version != VERSION {
            return Err(Error::UnsupportedVersion {
                path: path.to_path_buf(),
                version,
            });
        }
        Ok(Header { stripe, id, prev })
    }
}

/// The segment a stripe is currently appending to.
#[derive(Debug)]
pub struct ActiveSegment {
    pub id: u64,
    pub path: PathBuf,
    pub file: Arc<File>,
    pub len: u64,
}

impl ActiveSegment {
    /// Create a new segment and write its header. Nothing is fsynced here (a
    /// writer creates one at every memtable seal, on the write path): the
    /// caller registers the file and the directory with the group commit,
    /// whose next round makes header, records and directory entry durable
    /// together before any of them is acknowledged. A header lost to a power
    /// cut leaves a short or empty last segment, which recovery removes.
    pub fn create(dir: &Path, stripe: usize, id: u64, prev: u64) -> Result<ActiveSegment> {
        let path = dir.join(file_name(stripe, id));
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .ctx(&path)?;
        let header = Header {
            stripe: stripe as u32,
            id,
            prev,
        };
        let written = f.write_all(&header.encode()).ctx(&path);
        if let Err(e) = written {
            // A full disk must not leave a headerless segment behind.
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Ok(ActiveSegment {
            id,
            path,
            file: Arc::new(f),
            len: HEADER_LEN as u64,
        })
    }

    /// Continue appending to an existing segment whose first `len` bytes are
    /// known good (recovery has already cut off any torn tail).
    pub fn reopen(path: &Path, id: u64, len: u64) -> Result<ActiveSegment> {
        let f = OpenOptions::new().append(true).open(path).ctx(path)?;
        Ok(ActiveSegment {
            id,
            path: path.to_path_buf(),
            file: Arc::new(f),
            len,
        })
    }

    /// Append already-framed records (one `write` call; not yet durable).
    pub fn append(&mut self, bytes: &[u8]) -> Result<()> {
        (&*self.file).write_all(bytes).ctx(&self.path)?;
        self.len += bytes.len() as u64;
        Ok(())
    }
}

/// What a scan of a segment found.
#[derive(Debug)]
pub struct Scan {
    /// `None` when the header itself was torn (a crash while creating the
    /// segment, before any record could be acknowledged).
    pub header: Option<Header>,
    pub records: Vec<Record>,
    /// Bytes up to the end of the last good record.
    pub valid_len: u64,
    pub file_len: u64,
}

impl Scan {
    pub fn is_torn(&self) -> bool {
        self.valid_len < self.file_len
    }
}

/// Read a segment, tolerating only a torn tail: an incomplete last frame, a
/// last frame whose payload fails its checksum, or a zero-filled tail. Any
/// other damage is `Error::Corruption` naming the file and offset.
pub fn scan(path: &Path) -> Result<Scan> {
    let buf = std::fs::read(path).ctx(path)?;
    scan_bytes(&buf, path)
}

pub fn scan_bytes(buf: &[u8], path: &Path) -> Result<Scan> {
    let file_len = buf.len() as u64;
    let all_zero = |b: &[u8]| b.iter().all(|&x| x == 0);
    if buf.len() < HEADER_LEN || all_zero(&buf[..HEADER_LEN]) {
        if !all_zero(buf) && buf.len() >= HEADER_LEN {
            return Err(Error::Corruption {
                path: path.to_path_buf(),
                offset: 0,
                detail: "segment header is zeroed but data follows".into(),
            });
        }
        return Ok(Scan {
            header: None,
            records: Vec::new(),
            valid_len: 0,
            file_len,
        });
    }
    let header = Header::decode(buf, path)?;
    let mut records = Vec::new();
    let mut at = HEADER_LEN;
    let corrupt = |offset: usize, detail: String| Error::Corruption {
        path: path.to_path_buf(),
        offset: offset as u64,
        detail,
    };
    while at < buf.len() {
        let rest = &buf[at..];
        match read_frame(rest) {
            Frame::Ok(payload, n) => {
                let rec = Record::decode_payload(payload)
                    .map_err(|e| corrupt(at, format!("undecodable WAL record: {e}")))?;
                records.push(rec);
                at += n;
            }
            Frame::Incomplete => break,
            Frame::BadHeader if all_zero(rest) => break,
            Frame::BadHeader => {
                return Err(corrupt(at, "WAL record header checksum mismatch".into()))
            }
            Frame::BadPayload => {
                let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                let end = super::record::FRAME_HEADER + len;
                if all_zero(&rest[end..]) {
                    break;
                }
                return Err(corrupt(at, "WAL record checksum mismatch".into()));
            }
        }
    }
    Ok(Scan {
        header: Some(header),
        records,
        valid_len: at as u64,
        file_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::key::Key;
    use crate::wal::record::Op;

    fn rec(lsn: u64) -> Record {
        Record {
            lsn,
            ts: lsn * 10,
            op: Op::Put {
                key: Key::new(format!("k{lsn}").as_bytes(), None).unwrap(),
                value: vec![lsn as u8; 20],
            },
        }
    }

    fn segment(n: u64) -> Vec<u8> {
        let mut b = Header {
            stripe: 3,
            id: 9,
            prev: 2,
        }
        .encode()
        .to_vec();
        (1..=n).for_each(|i| rec(i).encode_framed(&mut b));
        b
    }

    #[test]
    fn names() {
        assert_eq!(parse_name(&file_name(255, 42)), Some((255, 42)));
        assert_eq!(parse_name("256-000000000001.wal"), None);
        assert_eq!(parse_name("x.wal"), None);
    }

    #[test]
    fn torn_tail_is_tolerated() {
        let b = segment(5);
        let p = Path::new("seg");
        let full = scan_bytes(&b, p).unwrap();
        assert_eq!(full.records.len(), 5);
        assert!(!full.is_torn());
        for cut in 1..40 {
            let s = scan_bytes(&b[..b.len() - cut], p).unwrap();
            assert_eq!(s.records.len(), 4, "cut {cut}");
            assert!(s.is_torn());
        }
        let mut z = b.clone();
        z.extend_from_slice(&[0u8; 100]);
        assert_eq!(scan_bytes(&z, p).unwrap().records.len(), 5);
    }

    #[test]
    fn damage_in_the_middle_is_an_error_with_offset() {
        let b = segment(5);
        let p = Path::new("seg");
        let mid = HEADER_LEN + (b.len() - HEADER_LEN) / 2;
        for i in [HEADER_LEN, HEADER_LEN + 2, HEADER_LEN + 13, mid] {
            let mut c = b.clone();
            c[i] ^= 0x40;
            match scan_bytes(&c, p) {
                Err(Error::Corruption { offset, .. }) => assert!(offset as usize <= i),
                other => panic!("flip at {i}: {other:?}"),
            }
        }
        let mut c = b.clone();
        c[20] ^= 1;
        assert!(matches!(
            scan_bytes(&c, p),
            Err(Error::Corruption { offset: 0, .. })
        ));
    }
}
