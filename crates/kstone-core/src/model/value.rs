//! Attribute values and items, and their binary encoding (used inside WAL
//! records and SST entries).

use std::collections::{BTreeMap, BTreeSet};

use super::number::Number;
use super::varint::{put_len_prefixed, put_uvarint, Reader};
use crate::error::{Error, Result};

/// An item: attribute name → value.
pub type Item = BTreeMap<String, Value>;

/// DynamoDB's maximum item size; we apply it to the encoded key + item.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// DynamoDB nests documents at most 32 levels deep.
pub const MAX_DEPTH: usize = 32;

/// One attribute value. Sets are kept sorted and duplicate-free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    S(String),
    N(Number),
    B(Vec<u8>),
    Bool(bool),
    Null,
    L(Vec<Value>),
    M(BTreeMap<String, Value>),
    SS(BTreeSet<String>),
    NS(BTreeSet<Number>),
    BS(BTreeSet<Vec<u8>>),
}

const T_S: u8 = 1;
const T_N: u8 = 2;
const T_B: u8 = 3;
const T_FALSE: u8 = 4;
const T_TRUE: u8 = 5;
const T_NULL: u8 = 6;
const T_L: u8 = 7;
const T_M: u8 = 8;
const T_SS: u8 = 9;
const T_NS: u8 = 10;
const T_BS: u8 = 11;

/// Check the rules an item must meet before it is written: sets non-empty,
/// nesting at most [`MAX_DEPTH`].
pub fn validate_item(item: &Item) -> Result<()> {
    fn walk(v: &Value, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(Error::InvalidInput(format!(
                "item nests deeper than {MAX_DEPTH} levels"
            )));
        }
        match v {
            Value::SS(s) if s.is_empty() => Err(empty_set("SS")),
            Value::NS(s) if s.is_empty() => Err(empty_set("NS")),
            Value::BS(s) if s.is_empty() => Err(empty_set("BS")),
            Value::L(l) => l.iter().try_for_each(|v| walk(v, depth + 1)),
            Value::M(m) => m.values().try_for_each(|v| walk(v, depth + 1)),
            _ => Ok(()),
        }
    }
    item.values().try_for_each(|v| walk(v, 1))
}

fn empty_set(kind: &str) -> Error {
    Error::InvalidInput(format!("{kind} set must not be empty"))
}

/// Encode an item into its binary form.
pub fn encode_item(item: &Item, out: &mut Vec<u8>) {
    encode_map(item, out);
}

fn encode_map(m: &BTreeMap<String, Value>, out: &mut Vec<u8>) {
    put_uvarint(out, m.len() as u64);
    for (k, v) in m {
        put_len_prefixed(out, k.as_bytes());
        encode_value(v, out);
    }
}

fn encode_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::S(s) => {
            out.push(T_S);
            put_len_prefixed(out, s.as_bytes());
        }
        Value::N(n) => {
            out.push(T_N);
            put_len_prefixed(out, n.as_str().as_bytes());
        }
        Value::B(b) => {
            out.push(T_B);
            put_len_prefixed(out, b);
        }
        Value::Bool(b) => out.push(if *b { T_TRUE } else { T_FALSE }),
        Value::Null => out.push(T_NULL),
        Value::L(l) => {
            out.push(T_L);
            put_uvarint(out, l.len() as u64);
            for v in l {
                encode_value(v, out);
            }
        }
        Value::M(m) => {
            out.push(T_M);
            encode_map(m, out);
        }
        Value::SS(s) => {
            out.push(T_SS);
            put_uvarint(out, s.len() as u64);
            s.iter().for_each(|e| put_len_prefixed(out, e.as_bytes()));
        }
        Value::NS(s) => {
            out.push(T_NS);
            put_uvarint(out, s.len() as u64);
            s.iter()
                .for_each(|e| put_len_prefixed(out, e.as_str().as_bytes()));
        }
        Value::BS(s) => {
            out.push(T_BS);
            put_uvarint(out, s.len() as u64);
            s.iter().for_each(|e| put_len_prefixed(out, e));
        }
    }
}

/// Decode an item; rejects trailing bytes, bad UTF-8, bad numbers, and
/// nesting beyond [`MAX_DEPTH`]. Never allocates more than the input size.
pub fn decode_item(buf: &[u8]) -> Result<Item> {
    let mut r = Reader::new(buf);
    let item = decode_map(&mut r, 0)?;
    if !r.is_empty() {
        return Err(Error::Malformed("trailing bytes after item".into()));
    }
    Ok(item)
}

fn count(r: &mut Reader<'_>) -> Result<usize> {
    let n = r.uvarint()?;
    // Every element takes at least one byte, so a count beyond the remaining
    // input is corrupt; this also bounds allocation.
    if n > r.remaining() as u64 {
        return Err(Error::Malformed(format!("element count {n} exceeds input")));
    }
    Ok(n as usize)
}

fn string(r: &mut Reader<'_>) -> Result<String> {
    let b = r.len_prefixed()?;
    String::from_utf8(b.to_vec()).map_err(|_| Error::Malformed("string is not UTF-8".into()))
}

fn number(r: &mut Reader<'_>) -> Result<Number> {
    let s = string(r)?;
    let n = Number::parse(&s).map_err(|e| Error::Malformed(e.to_string()))?;
    if n.as_str() != s {
        return Err(Error::Malformed(format!("number {s:?} is not canonical")));
    }
    Ok(n)
}

fn decode_map(r: &mut Reader<'_>, depth: usize) -> Result<BTreeMap<String, Value>> {
    let n = count(r)?;
    let mut m = BTreeMap::new();
    for _ in 0..n {
        let k = string(r)?;
        let v = decode_value(r, depth + 1)?;
        if m.insert(k, v).is_some() {
            return Err(Error::Malformed("duplicate attribute name".into()));
        }
    }
    Ok(m)
}

fn decode_set<T: Ord>(
    r: &mut Reader<'_>,
    mut elem: impl FnMut(&mut Reader<'_>) -> Result<T>,
) -> Result<BTreeSet<T>> {
    let n = count(r)?;
    let mut s = BTreeSet::new();
    for _ in 0..n {
        if !s.insert(elem(r)?) {
            return Err(Error::Malformed("duplicate set element".into()));
        }
    }
    if s.is_empty() {
        return Err(Error::Malformed("empty set".into()));
    }
    Ok(s)
}

fn decode_value(r: &mut Reader<'_>, depth: usize) -> Result<Value> {
    if depth > MAX_DEPTH {
        return Err(Error::Malformed("nesting too deep".into()));
    }
    Ok(match r.u8()? {
        T_S => Value::S(string(r)?),
        T_N => Value::N(number(r)?),
        T_B => Value::B(r.len_prefixed()?.to_vec()),
        T_FALSE => Value::Bool(false),
        T_TRUE => Value::Bool(true),
        T_NULL => Value::Null,
        T_L => {
            let n = count(r)?;
            let mut l = Vec::with_capacity(n);
            for _ in 0..n {
                l.push(decode_value(r, depth + 1)?);
            }
            Value::L(l)
        }
        T_M => Value::M(decode_map(r, depth)?),
        T_SS => Value::SS(decode_set(r, string)?),
        T_NS => Value::NS(decode_set(r, number)?),
        T_BS => Value::BS(decode_set(r, |r| Ok(r.len_prefixed()?.to_vec()))?),
        t => return Err(Error::Malformed(format!("unknown value tag {t}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Item {
        let mut inner = BTreeMap::new();
        inner.insert(
            "deep".to_string(),
            Value::L(vec![Value::Null, Value::Bool(true)]),
        );
        let mut item = Item::new();
        item.insert("s".into(), Value::S("héllo".into()));
        item.insert("n".into(), Value::N(Number::parse("-1.25").unwrap()));
        item.insert("b".into(), Value::B(vec![0, 255, 7]));
        item.insert("f".into(), Value::Bool(false));
        item.insert("m".into(), Value::M(inner));
        item.insert("ss".into(), Value::SS(["a".into(), "b".into()].into()));
        item.insert(
            "ns".into(),
            Value::NS([Number::parse("1").unwrap(), Number::parse("2.5").unwrap()].into()),
        );
        item.insert("bs".into(), Value::BS([vec![1u8], vec![]].into()));
        item
    }

    #[test]
    fn item_round_trip() {
        let item = sample();
        let mut b = Vec::new();
        encode_item(&item, &mut b);
        assert_eq!(decode_item(&b).unwrap(), item);
    }

    #[test]
    fn decode_rejects_every_truncation() {
        let mut b = Vec::new();
        encode_item(&sample(), &mut b);
        for n in 0..b.len() {
            assert!(decode_item(&b[..n]).is_err(), "prefix {n} accepted");
        }
    }

    #[test]
    fn validation() {
        let mut item = Item::new();
        item.insert("x".into(), Value::SS(BTreeSet::new()));
        assert!(validate_item(&item).is_err());
        let mut v = Value::Null;
        for _ in 0..40 {
            v = Value::L(vec![v]);
        }
        let mut item = Item::new();
        item.insert("x".into(), v);
        assert!(validate_item(&item).is_err());
    }
}
