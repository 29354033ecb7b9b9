//! The JSON-lines form of whole items with their keys, used by `export`,
//! `import`, `query` and `scan`:
//! `{"item":{…typed…},"pk":{"S":"user#1"},"sk":{"B":"AAE="}}`.
//!
//! Keys are bytes: a key that is valid UTF-8 is written as `{"S": …}`,
//! any other as `{"B": base64}`; both read back to the same bytes. A missing
//! `sk` means "no sort key", which differs from an empty one.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{Map, Value as Json};

use super::json::{item_to_plain_json, item_to_typed_json, typed_json_to_item};
use super::key::Key;
use super::value::Item;
use crate::error::{Error, Result};

/// A key part as typed JSON.
pub fn key_part_json(b: &[u8]) -> Json {
    let mut m = Map::new();
    match std::str::from_utf8(b) {
        Ok(s) => m.insert("S".into(), Json::String(s.into())),
        Err(_) => m.insert("B".into(), Json::String(B64.encode(b))),
    };
    Json::Object(m)
}

fn key_part_plain(b: &[u8]) -> Json {
    match std::str::from_utf8(b) {
        Ok(s) => Json::String(s.into()),
        Err(_) => key_part_json(b),
    }
}

fn key_part_from(v: &Json, what: &str) -> Result<Vec<u8>> {
    let bad = || {
        Error::InvalidInput(format!(
            "{what} must be {{\"S\": string}} or {{\"B\": base64}}"
        ))
    };
    let o = v.as_object().filter(|o| o.len() == 1).ok_or_else(bad)?;
    match (o.get("S"), o.get("B")) {
        (Some(Json::String(s)), None) => Ok(s.as_bytes().to_vec()),
        (None, Some(Json::String(b))) => B64
            .decode(b)
            .map_err(|e| Error::InvalidInput(format!("{what}: bad base64: {e}"))),
        _ => Err(bad()),
    }
}

/// A key as a typed JSON object `{"pk": …, "sk": …}`.
pub fn key_json(key: &Key) -> Json {
    let mut m = Map::new();
    m.insert("pk".into(), key_part_json(&key.pk));
    if let Some(sk) = &key.sk {
        m.insert("sk".into(), key_part_json(sk));
    }
    Json::Object(m)
}

/// Parse `{"pk": …, "sk": …}` (extra fields are not allowed, except `item`
/// which callers handle).
pub fn key_from_json(v: &Json) -> Result<Key> {
    let o = v
        .as_object()
        .ok_or_else(|| Error::InvalidInput("a key must be a JSON object".into()))?;
    let pk = key_part_from(
        o.get("pk")
            .ok_or_else(|| Error::InvalidInput("missing \"pk\"".into()))?,
        "pk",
    )?;
    let sk = o.get("sk").map(|v| key_part_from(v, "sk")).transpose()?;
    Key::new(&pk, sk.as_deref())
}

/// One export line (lossless, typed).
pub fn export_line(key: &Key, item: &Item) -> String {
    let mut v = key_json(key);
    if let Json::Object(m) = &mut v {
        m.insert("item".into(), item_to_typed_json(item));
    }
    v.to_string()
}

/// One line in plain form: keys as strings where possible, item as plain JSON.
pub fn plain_line(key: &Key, item: &Item) -> String {
    let mut m = Map::new();
    m.insert("pk".into(), key_part_plain(&key.pk));
    if let Some(sk) = &key.sk {
        m.insert("sk".into(), key_part_plain(sk));
    }
    m.insert("item".into(), item_to_plain_json(item));
    Json::Object(m).to_string()
}

/// Parse an export line back into its key and item.
pub fn parse_export_line(line: &str) -> Result<(Key, Item)> {
    let v: Json = serde_json::from_str(line)
        .map_err(|e| Error::InvalidInput(format!("malformed JSON: {e}")))?;
    let o = v
        .as_object()
        .ok_or_else(|| Error::InvalidInput("a line must be a JSON object".into()))?;
    if let Some(extra) = o
        .keys()
        .find(|k| !matches!(k.as_str(), "pk" | "sk" | "item"))
    {
        return Err(Error::InvalidInput(format!("unexpected field {extra:?}")));
    }
    let key = key_from_json(&v)?;
    let item = typed_json_to_item(
        o.get("item")
            .ok_or_else(|| Error::InvalidInput("missing \"item\"".into()))?,
    )?;
    crate::model::value::validate_item(&item)?;
    Ok((key, item))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_binary_and_absent_sort_keys() {
        let item = crate::item_from_plain_json(r#"{"a":1}"#).unwrap();
        for key in [
            Key::new(b"user", None).unwrap(),
            Key::new(b"user", Some(b"")).unwrap(),
            Key::new(&[0xff, 0, 1], Some(&[0x80])).unwrap(),
        ] {
            let line = export_line(&key, &item);
            assert_eq!(parse_export_line(&line).unwrap(), (key, item.clone()));
        }
    }

    #[test]
    fn bad_lines() {
        for l in [
            "",
            "[]",
            r#"{"pk":{"S":"a"}}"#,
            r#"{"pk":{"N":"1"},"item":{}}"#,
            r#"{"pk":{"S":""},"item":{}}"#,
            r#"{"pk":{"S":"a"},"item":{},"x":1}"#,
            r#"{"pk":{"B":"!!"},"item":{}}"#,
        ] {
            assert!(parse_export_line(l).is_err(), "{l}");
        }
    }
}
