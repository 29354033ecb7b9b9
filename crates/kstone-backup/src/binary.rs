//! Little-endian fields of the binary repository objects (pack trailers,
//! indexes, chunk maps; `docs/formats.md`). Hand-written rather than a
//! serialization crate: four field types, and the layout is the documented
//! format itself, so it must not move with a crate's version.

use crate::chunking::ChunkId;
use crate::error::{Error, Result};

/// Appends fields to a body.
#[derive(Default)]
pub(crate) struct Writer(pub Vec<u8>);

impl Writer {
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bytes(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }
    /// A string of at most 65,535 bytes, length first.
    pub fn str(&mut self, s: &str) -> Result<()> {
        let n = u16::try_from(s.len())
            .map_err(|_| Error::Invalid(format!("name too long for the format: {s:?}")))?;
        self.u16(n);
        self.bytes(s.as_bytes());
        Ok(())
    }
}

/// Reads fields from a body whose frame checksum already passed; running
/// out of bytes is damage to `object`.
pub(crate) struct Reader<'a> {
    b: &'a [u8],
    object: &'a str,
}

impl<'a> Reader<'a> {
    pub fn new(b: &'a [u8], object: &'a str) -> Reader<'a> {
        Reader { b, object }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.b.len() < n {
            return Err(Error::Corrupt {
                object: self.object.to_string(),
                detail: "body ends inside a field".into(),
            });
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn id(&mut self) -> Result<ChunkId> {
        Ok(ChunkId(self.array()?))
    }
    pub fn sha(&mut self) -> Result<[u8; 32]> {
        self.array()
    }
    pub fn str(&mut self) -> Result<String> {
        let n = self.u16()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| Error::Corrupt {
            object: self.object.to_string(),
            detail: "a name is not UTF-8".into(),
        })
    }
    /// A count of items at least `each` bytes long, checked against what is
    /// left (a damaged count must not allocate gigabytes).
    pub fn count(&mut self, each: usize) -> Result<usize> {
        let n = self.u32()? as usize;
        if n.saturating_mul(each) > self.b.len() {
            return Err(Error::Corrupt {
                object: self.object.to_string(),
                detail: format!("a count of {n} is more than the body holds"),
            });
        }
        Ok(n)
    }
    /// The body must be used up exactly.
    pub fn end(&self) -> Result<()> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(Error::Corrupt {
                object: self.object.to_string(),
                detail: format!("{} bytes after the last field", self.b.len()),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_short_bodies_are_damage() {
        let mut w = Writer::default();
        w.u8(7);
        w.u16(300);
        w.u32(70_000);
        w.u64(1 << 40);
        w.str("sst/a.sst").unwrap();
        w.bytes(&[9; 32]);
        let b = w.0;
        let mut r = Reader::new(&b, "x");
        assert_eq!(r.u8().unwrap(), 7);
        assert_eq!(r.u16().unwrap(), 300);
        assert_eq!(r.u32().unwrap(), 70_000);
        assert_eq!(r.u64().unwrap(), 1 << 40);
        assert_eq!(r.str().unwrap(), "sst/a.sst");
        assert_eq!(r.id().unwrap(), ChunkId([9; 32]));
        r.end().unwrap();
        for cut in 0..b.len() {
            let mut r = Reader::new(&b[..cut], "x");
            let all = (|| -> Result<()> {
                r.u8()?;
                r.u16()?;
                r.u32()?;
                r.u64()?;
                r.str()?;
                r.id()?;
                Ok(())
            })();
            assert!(all.is_err(), "cut at {cut}");
        }
        let huge = 1_000_000u32.to_le_bytes();
        assert!(Reader::new(&huge, "x").count(45).is_err());
    }
}
