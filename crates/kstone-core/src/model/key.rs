//! Item keys: a partition key and an optional sort key, both bytes.

use std::cmp::Ordering;

use super::varint::{put_len_prefixed, uvarint_len, Reader};
use crate::error::{Error, Result};

/// Number of stripes; a partition's items always live in one stripe.
pub const STRIPES: usize = 256;
/// DynamoDB's limits on key sizes (of the value: [`crate::KeySchema`]
/// checks them on writes).
pub const MAX_PK_BYTES: usize = 2048;
pub const MAX_SK_BYTES: usize = 1024;
/// A stored key part may hold one more byte: a typed B key's type mark.
const TYPE_MARK: usize = 1;

/// A primary key. Keys order bytewise by partition key, then sort key, with
/// "no sort key" ordering before any sort key (so `None != Some(b"")`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub pk: Vec<u8>,
    pub sk: Option<Vec<u8>>,
}

impl Key {
    /// Build and validate a key.
    ///
    /// ```
    /// use kstone_core::Key;
    /// let k = Key::new(b"user#1", Some(b"order#7")).unwrap();
    /// assert!(Key::new(b"", None).is_err());
    /// assert!(k.stripe() < 256);
    /// ```
    pub fn new(pk: &[u8], sk: Option<&[u8]>) -> Result<Key> {
        KeyRef::new(pk, sk).map(KeyRef::to_key)
    }

    /// The stripe that owns this key: `crc32(pk) % 256`.
    pub fn stripe(&self) -> usize {
        stripe_of(&self.pk)
    }

    /// Binary form: varint-prefixed pk, a flag byte, and a varint-prefixed sk if present.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.as_key_ref().encode(out)
    }

    pub fn encoded_len(&self) -> usize {
        self.as_key_ref().encoded_len()
    }

    /// Decode from a reader (the inverse of [`Key::encode`]), validating sizes.
    pub fn decode(r: &mut Reader<'_>) -> Result<Key> {
        KeyRef::decode(r).map(KeyRef::to_key)
    }
}

/// DynamoDB's key size limits (an `InvalidInput` error names the violation).
fn check_sizes(pk: &[u8], sk: Option<&[u8]>) -> Result<()> {
    if pk.is_empty() || pk.len() > MAX_PK_BYTES + TYPE_MARK {
        return Err(Error::InvalidInput(format!(
            "partition key must be 1..={MAX_PK_BYTES} bytes, got {}",
            pk.len()
        )));
    }
    if let Some(sk) = sk {
        if sk.len() > MAX_SK_BYTES + TYPE_MARK {
            return Err(Error::InvalidInput(format!(
                "sort key must be at most {MAX_SK_BYTES} bytes, got {}",
                sk.len()
            )));
        }
    }
    Ok(())
}

/// A borrowed key, ordered exactly like [`Key`] (used where keys are held
/// packed, e.g. an SST's in-memory index, to compare without allocating).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRef<'a> {
    pub pk: &'a [u8],
    pub sk: Option<&'a [u8]>,
}

/// Bytewise order of two byte strings, as `<[u8]>::cmp`. Keys are short
/// (often 8-16 bytes) and compared tens of times per memtable insert, where
/// a call to `memcmp` per comparison costs more than comparing 8 bytes at a
/// time inline.
#[inline]
pub fn cmp_bytes(a: &[u8], b: &[u8]) -> Ordering {
    let mut ac = a.chunks_exact(8);
    let mut bc = b.chunks_exact(8);
    for (x, y) in ac.by_ref().zip(bc.by_ref()) {
        let x = u64::from_be_bytes(x.try_into().unwrap_or_default());
        let y = u64::from_be_bytes(y.try_into().unwrap_or_default());
        if x != y {
            return x.cmp(&y);
        }
    }
    let n = a.len().min(b.len()) / 8 * 8;
    a[n..].cmp(&b[n..])
}

/// Bytes `at..at + 8` of `b`, zero-padded, big-endian: where two such words
/// differ, the byte strings order as the words do (padding is the smallest
/// byte, and a string that ends first is a prefix of the other so far).
/// Lets a search compare one `u64` held inline instead of following a
/// pointer to the key (memtable entries, SST block indexes).
pub(crate) fn word(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(rest) = b.get(at..) {
        let n = rest.len().min(8);
        w[..n].copy_from_slice(&rest[..n]);
    }
    u64::from_be_bytes(w)
}

#[inline]
fn cmp_parts(a: (&[u8], Option<&[u8]>), b: (&[u8], Option<&[u8]>)) -> Ordering {
    cmp_bytes(a.0, b.0).then_with(|| match (a.1, b.1) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => cmp_bytes(x, y),
    })
}

impl Ord for Key {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_parts(
            (&self.pk, self.sk.as_deref()),
            (&other.pk, other.sk.as_deref()),
        )
    }
}

impl PartialOrd for Key {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for KeyRef<'_> {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_parts((self.pk, self.sk), (other.pk, other.sk))
    }
}

impl PartialOrd for KeyRef<'_> {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Key {
    pub fn as_key_ref(&self) -> KeyRef<'_> {
        KeyRef {
            pk: &self.pk,
            sk: self.sk.as_deref(),
        }
    }
}

impl<'a> KeyRef<'a> {
    /// A validated borrowed key ([`Key::new`] without the copy).
    pub fn new(pk: &'a [u8], sk: Option<&'a [u8]>) -> Result<KeyRef<'a>> {
        check_sizes(pk, sk)?;
        Ok(KeyRef { pk, sk })
    }

    /// [`Key::encode`]'s binary form.
    pub fn encode(self, out: &mut Vec<u8>) {
        put_len_prefixed(out, self.pk);
        match self.sk {
            None => out.push(0),
            Some(sk) => {
                out.push(1);
                put_len_prefixed(out, sk);
            }
        }
    }

    /// Length of [`KeyRef::encode`]'s output, without encoding.
    pub fn encoded_len(self) -> usize {
        let prefixed = |b: &[u8]| uvarint_len(b.len() as u64) + b.len();
        prefixed(self.pk) + 1 + self.sk.map_or(0, prefixed)
    }

    /// Decode a key in [`Key::encode`]'s form without copying it, with
    /// [`Key::new`]'s size checks ([`Key::decode`] is this plus a copy).
    pub fn decode(r: &mut Reader<'a>) -> Result<KeyRef<'a>> {
        let pk = r.len_prefixed()?;
        let sk = match r.u8()? {
            0 => None,
            1 => Some(r.len_prefixed()?),
            f => return Err(Error::Malformed(format!("bad sort-key flag {f}"))),
        };
        check_sizes(pk, sk).map_err(|e| Error::Malformed(e.to_string()))?;
        Ok(KeyRef { pk, sk })
    }

    /// Overwrite `key` with this key, reusing its buffers.
    pub fn copy_into(self, key: &mut Key) {
        key.pk.clear();
        key.pk.extend_from_slice(self.pk);
        match self.sk {
            Some(sk) => {
                let b = key.sk.get_or_insert_with(Vec::new);
                b.clear();
                b.extend_from_slice(sk);
            }
            None => key.sk = None,
        }
    }

    pub fn to_key(self) -> Key {
        Key {
            pk: self.pk.to_vec(),
            sk: self.sk.map(<[u8]>::to_vec),
        }
    }
}

/// The stripe of a partition key.
pub fn stripe_of(pk: &[u8]) -> usize {
    (crc32fast::hash(pk) as usize) % STRIPES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_identity() {
        let a = Key::new(b"a", None).unwrap();
        let b = Key::new(b"a", Some(b"")).unwrap();
        let c = Key::new(b"a", Some(b"x")).unwrap();
        let d = Key::new(b"b", None).unwrap();
        assert!(a < b && b < c && c < d);
        assert_ne!(a, b);
        assert!(a.as_key_ref() < b.as_key_ref() && b.as_key_ref() < c.as_key_ref());
        assert!(c.as_key_ref() < d.as_key_ref());
        let mut reused = Key::new(b"zzz", Some(b"old")).unwrap();
        for k in [a, b, c, d] {
            let mut v = Vec::new();
            k.encode(&mut v);
            assert_eq!(Key::decode(&mut Reader::new(&v)).unwrap(), k);
            let kr = KeyRef::decode(&mut Reader::new(&v)).unwrap();
            assert_eq!(kr, k.as_key_ref());
            kr.copy_into(&mut reused);
            assert_eq!(reused, k);
        }
        assert!(KeyRef::decode(&mut Reader::new(&[0, 0])).is_err());
    }

    proptest::proptest! {
        #[test]
        fn cmp_bytes_is_slice_order(a in proptest::collection::vec(0u8..4, 0..40),
                                    b in proptest::collection::vec(0u8..4, 0..40)) {
            proptest::prop_assert_eq!(cmp_bytes(&a, &b), a.cmp(&b));
            let (ka, kb) = (Key::new(&[1], Some(&a)).unwrap(), Key::new(&a[..a.len().min(1)], Some(&b)));
            if let Ok(kb) = kb {
                let derived = (&ka.pk, &ka.sk).cmp(&(&kb.pk, &kb.sk));
                proptest::prop_assert_eq!(ka.cmp(&kb), derived);
                proptest::prop_assert_eq!(ka.as_key_ref().cmp(&kb.as_key_ref()), derived);
            }
        }
    }

    #[test]
    fn limits() {
        assert!(Key::new(&[1; 2048], Some(&[2; 1024])).is_ok());
        assert!(Key::new(&[1; 2050], None).is_err());
        assert!(Key::new(b"p", Some(&[2; 1026])).is_err());
    }
}
