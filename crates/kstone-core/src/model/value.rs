//! Attribute values and items, and their binary encoding (used inside WAL
//! records and SST entries).

use std::collections::{BTreeMap, BTreeSet};

use super::number::Number;
use super::varint::{put_len_prefixed, put_uvarint, Reader};
use crate::error::{Error, Result};

/// An item: attribute name → value.
pub type Item = BTreeMap<String, Value>;

/// DynamoDB's maximum item size, counted by [`item_size`] plus the key.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// Limit on an item's stored form (key + encoded item). Numbers are stored as
/// their canonical text, so an item of long zero runs (`1E+125` is 126
/// characters, 2 bytes by DynamoDB's rule) can be larger stored than counted.
pub const MAX_STORED_ITEM_BYTES: usize = 1 << 20;
/// DynamoDB's limit on an attribute name.
pub const MAX_NAME_BYTES: usize = 65535;
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

/// DynamoDB's size of an item's attributes: names plus values, S and B by
/// length, N one byte per two significant digits plus one, BOOL and NULL 1,
/// L and M 3 plus 1 per element, sets the sum of their elements.
///
/// ```
/// use kstone_core::{item_from_plain_json, model::value::item_size};
/// let item = item_from_plain_json(r#"{"name":"Ada","n":[1E+125, 12345]}"#).unwrap();
/// assert_eq!(item_size(&item), 4 + 3 + 1 + (3 + 1 + 2 + 1 + 4));
/// ```
pub fn item_size(item: &Item) -> usize {
    fn size(v: &Value) -> usize {
        let num = |n: &Number| n.significant_digits().div_ceil(2) + 1;
        match v {
            Value::S(s) => s.len(),
            Value::N(n) => num(n),
            Value::B(b) => b.len(),
            Value::Bool(_) | Value::Null => 1,
            Value::L(l) => 3 + l.iter().map(|v| 1 + size(v)).sum::<usize>(),
            Value::M(m) => 3 + m.iter().map(|(k, v)| 1 + k.len() + size(v)).sum::<usize>(),
            Value::SS(s) => s.iter().map(String::len).sum(),
            Value::NS(s) => s.iter().map(num).sum(),
            Value::BS(s) => s.iter().map(Vec::len).sum(),
        }
    }
    item.iter().map(|(k, v)| k.len() + size(v)).sum()
}

/// Check the rules an item must meet before it is written: attribute names
/// 1..=65535 bytes, sets non-empty, nesting at most [`MAX_DEPTH`].
pub fn validate_item(item: &Item) -> Result<()> {
    if let Some(name) = item
        .keys()
        .find(|k| k.is_empty() || k.len() > MAX_NAME_BYTES)
    {
        return Err(Error::InvalidInput(if name.is_empty() {
            "an attribute name is empty: names must be 1 to 65535 bytes".into()
        } else {
            format!(
                "an attribute name is {} bytes; the limit is 65535",
                name.len()
            )
        }));
    }
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
        let mut item = Item::new();
        item.insert("".into(), Value::Null);
        assert!(validate_item(&item).is_err());
        let mut item = Item::new();
        item.insert("m".into(), Value::M([("".to_string(), Value::Null)].into()));
        assert!(validate_item(&item).is_ok(), "map keys may be empty");
    }

    #[test]
    fn dynamodb_sizes() {
        let mut item = sample();
        // s: 1+6 (é is 2 bytes), n: 1+(3 digits→2+1), b: 1+3, f: 1+1,
        // m: 1+3+(1+4+(3+(1+1)+(1+1))), ss: 2+2, ns: 2+(2+2), bs: 2+1
        assert_eq!(item_size(&item), 7 + 4 + 4 + 2 + 16 + 4 + 6 + 3);
        item.clear();
        let big = Number::parse("1E+125").unwrap();
        item.insert("l".into(), Value::L(vec![Value::N(big); 3300]));
        assert_eq!(item_size(&item), 1 + 3 + 3300 * 3);
    }
}
