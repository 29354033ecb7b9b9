//! Typed key parts — DynamoDB's key types S, N and B — and their stored form.
//!
//! The engine keeps keys as bytes and orders them bytewise; a typed
//! database stores each key part so that this byte order is the type's order:
//!
//! - **S**: the UTF-8 bytes as they are (string keys of a format-1 database
//!   read the same);
//! - **N**: `0xFE` then [`Number::to_order_bytes`] (numeric order);
//! - **B**: `0xFF` then the raw bytes (unsigned byte order).
//!
//! `0xFE` and `0xFF` never occur in UTF-8, so the first byte names the type,
//! and across types S < N < B. The format is documented in `docs/formats.md`
//! ("Typed keys").

use std::fmt;
use std::ops::Bound;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use super::number::Number;
use crate::error::{Error, Result};

const MARK_N: u8 = 0xFE;
const MARK_B: u8 = 0xFF;

/// The type of a key part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyType {
    S,
    N,
    B,
}

impl KeyType {
    /// Parse `S`, `N` or `B` (case-insensitive).
    pub fn parse(s: &str) -> Result<KeyType> {
        match s {
            "S" | "s" => Ok(KeyType::S),
            "N" | "n" => Ok(KeyType::N),
            "B" | "b" => Ok(KeyType::B),
            _ => Err(Error::InvalidInput(format!(
                "key type {s:?}: expected S (string), N (number) or B (binary)"
            ))),
        }
    }

    /// The stored keys of this type: a range in byte order (S below N below B).
    pub fn stored_range(self) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
        match self {
            KeyType::S => (Bound::Included(Vec::new()), Bound::Excluded(vec![MARK_N])),
            KeyType::N => (Bound::Included(vec![MARK_N]), Bound::Excluded(vec![MARK_B])),
            KeyType::B => (Bound::Included(vec![MARK_B]), Bound::Unbounded),
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyType::S => "S",
            KeyType::N => "N",
            KeyType::B => "B",
        })
    }
}

/// A typed key part.
///
/// ```
/// use kstone_core::{KeyAttr, Number};
/// let (a, b) = (KeyAttr::N(Number::parse("-2").unwrap()), KeyAttr::N(Number::parse("10").unwrap()));
/// assert!(a.to_stored() < b.to_stored()); // numeric, not text, order
/// assert_eq!(KeyAttr::from_stored(&b.to_stored()).unwrap(), b);
/// assert_eq!(KeyAttr::S("x".into()).to_stored(), b"x"); // strings are stored as they are
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyAttr {
    S(String),
    N(Number),
    B(Vec<u8>),
}

impl KeyAttr {
    pub fn key_type(&self) -> KeyType {
        match self {
            KeyAttr::S(_) => KeyType::S,
            KeyAttr::N(_) => KeyType::N,
            KeyAttr::B(_) => KeyType::B,
        }
    }

    /// Parse a key part given as text: S as is, N as a decimal number, B as
    /// base64 (the forms the CLI takes).
    pub fn parse(text: &str, t: KeyType) -> Result<KeyAttr> {
        Ok(match t {
            KeyType::S => KeyAttr::S(text.to_string()),
            KeyType::N => KeyAttr::N(Number::parse(text)?),
            KeyType::B => {
                KeyAttr::B(B64.decode(text).map_err(|e| {
                    Error::InvalidInput(format!("B key {text:?} is not base64: {e}"))
                })?)
            }
        })
    }

    /// Is this an empty S or B (which DynamoDB refuses as a key)?
    pub fn is_empty(&self) -> bool {
        match self {
            KeyAttr::S(s) => s.is_empty(),
            KeyAttr::B(b) => b.is_empty(),
            KeyAttr::N(_) => false,
        }
    }

    /// The stored form in a typed database (see the module docs).
    pub fn to_stored(&self) -> Vec<u8> {
        match self {
            KeyAttr::S(s) => s.as_bytes().to_vec(),
            KeyAttr::N(n) => {
                let mut v = vec![MARK_N];
                n.to_order_bytes(&mut v);
                v
            }
            KeyAttr::B(b) => {
                let mut v = Vec::with_capacity(b.len() + 1);
                v.push(MARK_B);
                v.extend_from_slice(b);
                v
            }
        }
    }

    /// The inverse of [`KeyAttr::to_stored`]: refuses bytes no key part stores as.
    pub fn from_stored(b: &[u8]) -> Result<KeyAttr> {
        match b.split_first() {
            Some((&MARK_N, rest)) => Number::from_order_bytes(rest).map(KeyAttr::N),
            Some((&MARK_B, rest)) => Ok(KeyAttr::B(rest.to_vec())),
            _ => match std::str::from_utf8(b) {
                Ok(s) => Ok(KeyAttr::S(s.to_string())),
                Err(_) => Err(Error::InvalidInput(format!(
                    "key bytes {:02x?} are not a typed key (S is UTF-8; build N and B keys with KeyAttr)",
                    &b[..b.len().min(16)]
                ))),
            },
        }
    }

    /// The type of a stored key part, checked as [`KeyAttr::from_stored`]
    /// checks it but without building the value (writes call this).
    pub fn stored_type(b: &[u8]) -> Result<KeyType> {
        match b.first() {
            Some(&MARK_N) if Number::is_order_bytes(&b[1..]) => Ok(KeyType::N),
            Some(&MARK_N) => Number::from_order_bytes(&b[1..]).map(|_| KeyType::N),
            Some(&MARK_B) => Ok(KeyType::B),
            _ if std::str::from_utf8(b).is_ok() => Ok(KeyType::S),
            _ => KeyAttr::from_stored(b).map(|a| a.key_type()),
        }
    }

    /// The length of a stored key part's value (a B key without its mark).
    pub fn stored_value_len(b: &[u8]) -> usize {
        match b.first() {
            Some(&MARK_B) => b.len() - 1,
            _ => b.len(),
        }
    }

    /// Is a stored key part an empty S or B?
    pub fn stored_is_empty(b: &[u8]) -> bool {
        b.is_empty() || b == [MARK_B]
    }

    /// How a format-1 (untyped) database's key bytes read: S when they are
    /// UTF-8, B otherwise.
    pub fn from_untyped(b: &[u8]) -> KeyAttr {
        match std::str::from_utf8(b) {
            Ok(s) => KeyAttr::S(s.to_string()),
            Err(_) => KeyAttr::B(b.to_vec()),
        }
    }

    /// DynamoDB's size of this value (its part of the 400 KB item limit).
    pub fn size(&self) -> usize {
        match self {
            KeyAttr::S(s) => s.len(),
            KeyAttr::N(n) => n.significant_digits().div_ceil(2) + 1,
            KeyAttr::B(b) => b.len(),
        }
    }

    /// Typed JSON: `{"S": "…"}`, `{"N": "…"}` or `{"B": base64}`.
    pub fn to_typed_json(&self) -> Json {
        let mut m = Map::new();
        let (t, v) = match self {
            KeyAttr::S(s) => ("S", s.clone()),
            KeyAttr::N(n) => ("N", n.as_str().to_string()),
            KeyAttr::B(b) => ("B", B64.encode(b)),
        };
        m.insert(t.into(), Json::String(v));
        Json::Object(m)
    }

    /// Parse typed JSON (`what` names the part in errors).
    pub fn from_typed_json(v: &Json, what: &str) -> Result<KeyAttr> {
        let bad = || {
            Error::InvalidInput(format!(
                "{what} must be {{\"S\": string}}, {{\"N\": number string}} or {{\"B\": base64}}"
            ))
        };
        let o = v.as_object().filter(|o| o.len() == 1).ok_or_else(bad)?;
        let (t, v) = o.iter().next().ok_or_else(bad)?;
        let text = v.as_str().ok_or_else(bad)?;
        let t = match t.as_str() {
            "S" => KeyType::S,
            "N" => KeyType::N,
            "B" => KeyType::B,
            _ => return Err(bad()),
        };
        KeyAttr::parse(text, t).map_err(|e| match e {
            Error::InvalidInput(m) => Error::InvalidInput(format!("{what}: {m}")),
            e => e,
        })
    }
}

impl fmt::Display for KeyAttr {
    /// S as is, N as its canonical number, B as base64.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyAttr::S(s) => f.write_str(s),
            KeyAttr::N(n) => f.write_str(n.as_str()),
            KeyAttr::B(b) => f.write_str(&B64.encode(b)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> KeyAttr {
        KeyAttr::N(Number::parse(s).unwrap())
    }

    #[test]
    fn stored_forms_round_trip_and_order_by_type() {
        let sorted = [
            KeyAttr::S("".into()),
            KeyAttr::S("A".into()),
            KeyAttr::S("é".into()),
            KeyAttr::S("\u{10FFFF}".into()),
            n("-10"),
            n("-2"),
            n("0"),
            n("1.5"),
            n("2"),
            n("10"),
            KeyAttr::B(vec![]),
            KeyAttr::B(vec![0]),
            KeyAttr::B(vec![0xff, 0xff]),
        ];
        for w in sorted.windows(2) {
            assert!(w[0].to_stored() < w[1].to_stored(), "{w:?}");
        }
        for a in &sorted {
            assert_eq!(&KeyAttr::from_stored(&a.to_stored()).unwrap(), a);
            let (lo, hi) = a.key_type().stored_range();
            let s = a.to_stored();
            assert!(
                crate::read::query::within(&s, &lo, &hi),
                "{a:?} outside its type's stored range"
            );
            let j = a.to_typed_json();
            assert_eq!(&KeyAttr::from_typed_json(&j, "sk").unwrap(), a);
        }
        assert!(KeyAttr::from_stored(&[0xc3]).is_err());
        assert!(KeyAttr::from_stored(&[MARK_N, 9]).is_err());
        assert_eq!(KeyAttr::from_untyped(&[0xff, 1]), KeyAttr::B(vec![0xff, 1]));
        assert_eq!(KeyAttr::from_untyped(b"ab"), KeyAttr::S("ab".into()));
    }

    #[test]
    fn parse_and_size() {
        assert_eq!(KeyAttr::parse("-1.50", KeyType::N).unwrap(), n("-1.5"));
        assert_eq!(
            KeyAttr::parse("AAE=", KeyType::B).unwrap(),
            KeyAttr::B(vec![0, 1])
        );
        assert!(KeyAttr::parse("x", KeyType::N).is_err());
        assert!(KeyAttr::parse("!", KeyType::B).is_err());
        assert_eq!(KeyType::parse("n").unwrap(), KeyType::N);
        assert!(KeyType::parse("NS").is_err());
        assert_eq!(n("12345").size(), 4);
        assert_eq!(n("1E+125").size(), 2);
        for bad in [
            r#"{"S":1}"#,
            r#"{"X":"a"}"#,
            r#"{"S":"a","N":"1"}"#,
            r#""a""#,
        ] {
            let v: Json = serde_json::from_str(bad).unwrap();
            assert!(KeyAttr::from_typed_json(&v, "pk").is_err(), "{bad}");
        }
    }
}
