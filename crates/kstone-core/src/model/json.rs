//! Items as JSON: plain JSON (convenient, lossy for bytes and sets) and
//! DynamoDB-typed JSON (`{"a": {"S": "x"}}`, lossless).

use std::collections::{BTreeMap, BTreeSet};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{Map, Value as Json};

use super::number::Number;
use super::value::{Item, Value};
use crate::error::{Error, Result};

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidInput(msg.into())
}

/// Plain JSON object → item: string→S, number→N, bool→BOOL, null→NULL,
/// array→L, object→M.
///
/// ```
/// let item = kstone_core::item_from_plain_json(r#"{"name":"Ada","age":36}"#).unwrap();
/// assert_eq!(item.len(), 2);
/// ```
pub fn item_from_plain_json(text: &str) -> Result<Item> {
    let v: Json =
        serde_json::from_str(text).map_err(|e| invalid(format!("malformed JSON: {e}")))?;
    match v {
        Json::Object(m) => m
            .into_iter()
            .map(|(k, v)| Ok((k, plain_to_value(v)?)))
            .collect(),
        _ => Err(invalid("an item must be a JSON object")),
    }
}

fn plain_to_value(v: Json) -> Result<Value> {
    Ok(match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(b),
        Json::Number(n) => Value::N(Number::parse(&n.to_string())?),
        Json::String(s) => Value::S(s),
        Json::Array(a) => Value::L(a.into_iter().map(plain_to_value).collect::<Result<_>>()?),
        Json::Object(m) => Value::M(
            m.into_iter()
                .map(|(k, v)| Ok((k, plain_to_value(v)?)))
                .collect::<Result<_>>()?,
        ),
    })
}

/// Item → plain JSON. Bytes become base64 strings and sets become arrays, so
/// this form does not round-trip; use [`item_to_typed_json`] for that.
pub fn item_to_plain_json(item: &Item) -> Json {
    Json::Object(
        item.iter()
            .map(|(k, v)| (k.clone(), value_to_plain(v)))
            .collect(),
    )
}

pub(crate) fn number_json(n: &Number) -> Json {
    // Canonical numbers are valid JSON numbers; with arbitrary precision the
    // text is kept exactly.
    serde_json::from_str(n.as_str()).unwrap_or_else(|_| Json::String(n.as_str().to_string()))
}

fn value_to_plain(v: &Value) -> Json {
    match v {
        Value::S(s) => Json::String(s.clone()),
        Value::N(n) => number_json(n),
        Value::B(b) => Json::String(B64.encode(b)),
        Value::Bool(b) => Json::Bool(*b),
        Value::Null => Json::Null,
        Value::L(l) => Json::Array(l.iter().map(value_to_plain).collect()),
        Value::M(m) => Json::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), value_to_plain(v)))
                .collect(),
        ),
        Value::SS(s) => Json::Array(s.iter().map(|e| Json::String(e.clone())).collect()),
        Value::NS(s) => Json::Array(s.iter().map(number_json).collect()),
        Value::BS(s) => Json::Array(s.iter().map(|e| Json::String(B64.encode(e))).collect()),
    }
}

/// DynamoDB-typed JSON object → item.
///
/// ```
/// let item = kstone_core::item_from_typed_json(r#"{"id":{"N":"7"},"tags":{"SS":["a","b"]}}"#).unwrap();
/// assert_eq!(kstone_core::item_to_typed_json(&item).to_string(),
///            r#"{"id":{"N":"7"},"tags":{"SS":["a","b"]}}"#);
/// ```
pub fn item_from_typed_json(text: &str) -> Result<Item> {
    let v: Json =
        serde_json::from_str(text).map_err(|e| invalid(format!("malformed JSON: {e}")))?;
    typed_json_to_item(&v)
}

/// An already-parsed typed JSON object → item.
pub fn typed_json_to_item(v: &Json) -> Result<Item> {
    match v {
        Json::Object(m) => m
            .iter()
            .map(|(k, v)| Ok((k.clone(), typed_to_value(v).map_err(|e| at(k, e))?)))
            .collect(),
        _ => Err(invalid("a typed item must be a JSON object")),
    }
}

fn at(attr: &str, e: Error) -> Error {
    match e {
        Error::InvalidInput(m) => invalid(format!("attribute {attr:?}: {m}")),
        other => other,
    }
}

fn typed_to_value(v: &Json) -> Result<Value> {
    let obj = v
        .as_object()
        .filter(|o| o.len() == 1)
        .ok_or_else(|| invalid("a typed value must be an object with exactly one type key"))?;
    let (tag, inner) = obj
        .iter()
        .next()
        .ok_or_else(|| invalid("empty typed value"))?;
    let s = |v: &Json| -> Result<String> {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| invalid(format!("{tag} needs a string")))
    };
    let arr = |v: &Json| -> Result<Vec<Json>> {
        v.as_array()
            .cloned()
            .ok_or_else(|| invalid(format!("{tag} needs an array")))
    };
    let b64 = |v: &Json| -> Result<Vec<u8>> {
        B64.decode(s(v)?)
            .map_err(|e| invalid(format!("{tag}: bad base64: {e}")))
    };
    fn set<T: Ord>(items: Vec<T>, tag: &str) -> Result<BTreeSet<T>> {
        let n = items.len();
        let set: BTreeSet<T> = items.into_iter().collect();
        if set.len() != n {
            return Err(invalid(format!("{tag} has duplicate elements")));
        }
        if set.is_empty() {
            return Err(invalid(format!("{tag} set must not be empty")));
        }
        Ok(set)
    }
    Ok(match tag.as_str() {
        "S" => Value::S(s(inner)?),
        "N" => Value::N(Number::parse(&s(inner)?)?),
        "B" => Value::B(b64(inner)?),
        "BOOL" => Value::Bool(
            inner
                .as_bool()
                .ok_or_else(|| invalid("BOOL needs true or false"))?,
        ),
        "NULL" => {
            if inner != &Json::Bool(true) {
                return Err(invalid("NULL must be true"));
            }
            Value::Null
        }
        "L" => Value::L(
            arr(inner)?
                .iter()
                .map(typed_to_value)
                .collect::<Result<_>>()?,
        ),
        "M" => {
            let m = inner
                .as_object()
                .ok_or_else(|| invalid("M needs an object"))?;
            Value::M(
                m.iter()
                    .map(|(k, v)| Ok((k.clone(), typed_to_value(v)?)))
                    .collect::<Result<BTreeMap<_, _>>>()?,
            )
        }
        "SS" => Value::SS(set(arr(inner)?.iter().map(s).collect::<Result<_>>()?, tag)?),
        "NS" => Value::NS(set(
            arr(inner)?
                .iter()
                .map(|v| Number::parse(&s(v)?))
                .collect::<Result<_>>()?,
            tag,
        )?),
        "BS" => Value::BS(set(
            arr(inner)?.iter().map(b64).collect::<Result<_>>()?,
            tag,
        )?),
        other => return Err(invalid(format!("unknown type {other:?}"))),
    })
}

/// Item → DynamoDB-typed JSON (lossless).
pub fn item_to_typed_json(item: &Item) -> Json {
    Json::Object(
        item.iter()
            .map(|(k, v)| (k.clone(), value_to_typed(v)))
            .collect(),
    )
}

fn value_to_typed(v: &Value) -> Json {
    let one = |tag: &str, inner: Json| {
        let mut m = Map::new();
        m.insert(tag.to_string(), inner);
        Json::Object(m)
    };
    match v {
        Value::S(s) => one("S", Json::String(s.clone())),
        Value::N(n) => one("N", Json::String(n.as_str().into())),
        Value::B(b) => one("B", Json::String(B64.encode(b))),
        Value::Bool(b) => one("BOOL", Json::Bool(*b)),
        Value::Null => one("NULL", Json::Bool(true)),
        Value::L(l) => one("L", Json::Array(l.iter().map(value_to_typed).collect())),
        Value::M(m) => one(
            "M",
            Json::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), value_to_typed(v)))
                    .collect(),
            ),
        ),
        Value::SS(s) => one("SS", s.iter().map(|e| Json::String(e.clone())).collect()),
        Value::NS(s) => one(
            "NS",
            s.iter().map(|e| Json::String(e.as_str().into())).collect(),
        ),
        Value::BS(s) => one(
            "BS",
            s.iter().map(|e| Json::String(B64.encode(e))).collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_round_trip_every_type() {
        let text = r#"{"b":{"B":"AP8H"},"bool":{"BOOL":true},"bs":{"BS":["","AQ=="]},"l":{"L":[{"NULL":true},{"N":"-0.5"}]},"m":{"M":{"x":{"S":""}}},"n":{"N":"123456789012345678901234567890.5"},"ns":{"NS":["1","2.5"]},"s":{"S":"hé"},"ss":{"SS":["a","b"]}}"#;
        let item = item_from_typed_json(text).unwrap();
        assert_eq!(item_to_typed_json(&item).to_string(), text);
    }

    #[test]
    fn plain_json_keeps_big_numbers_exact() {
        let item = item_from_plain_json(
            r#"{"n": 12345678901234567890123.25, "a": [1, "x", null, {"k": false}]}"#,
        )
        .unwrap();
        assert_eq!(
            item["n"],
            Value::N(Number::parse("12345678901234567890123.25").unwrap())
        );
        let back = item_to_plain_json(&item).to_string();
        assert_eq!(
            back,
            r#"{"a":[1,"x",null,{"k":false}],"n":12345678901234567890123.25}"#
        );
    }

    #[test]
    fn errors_are_clear() {
        assert!(item_from_plain_json("[1]").is_err());
        assert!(item_from_plain_json("{").is_err());
        let e = item_from_typed_json(r#"{"a":{"N":"abc"}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"a\"") && e.contains("abc"), "{e}");
        assert!(item_from_typed_json(r#"{"a":{"SS":[]}}"#).is_err());
        assert!(item_from_typed_json(r#"{"a":{"SS":["x","x"]}}"#).is_err());
        assert!(item_from_typed_json(r#"{"a":{"X":1}}"#).is_err());
        assert!(item_from_typed_json(r#"{"a":{"S":"x","N":"1"}}"#).is_err());
    }
}
