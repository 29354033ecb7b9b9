//! The JSON-lines form of whole items with their keys, used by `export`,
//! `import`, `query` and `scan`:
//! `{"item":{…typed…},"pk":{"S":"user#1"},"sk":{"B":"AAE="}}`.
//!
//! Key parts are typed as the database's [`KeySchema`] reads them: in a
//! typed database as stored (`S`, `N` or `B`); in a database with byte keys
//! (format 1), `{"S": …}` for bytes that are UTF-8 and `{"B": base64}` for
//! others. A missing `sk` means "no sort key".

use serde_json::{Map, Value as Json};

use super::json::{item_to_plain_json, item_to_typed_json, number_json, typed_json_to_item};
use super::key::Key;
use super::key_attr::KeyAttr;
use super::key_schema::KeySchema;
use super::value::Item;
use crate::error::{Error, Result};

/// A stored key part as the schema reads it. A typed database only holds
/// parts that decode (every write is checked), so a part that does not is
/// shown as its raw bytes rather than hidden.
fn part(schema: &KeySchema, b: &[u8]) -> KeyAttr {
    schema.decode(b).unwrap_or_else(|_| KeyAttr::B(b.to_vec()))
}

fn key_part_plain(a: &KeyAttr) -> Json {
    match a {
        KeyAttr::S(s) => Json::String(s.clone()),
        KeyAttr::N(n) => number_json(n),
        KeyAttr::B(_) => a.to_typed_json(),
    }
}

/// A key as a typed JSON object `{"pk": …, "sk": …}`.
pub fn key_json(schema: &KeySchema, key: &Key) -> Json {
    let mut m = Map::new();
    m.insert("pk".into(), part(schema, &key.pk).to_typed_json());
    if let Some(sk) = &key.sk {
        m.insert("sk".into(), part(schema, sk).to_typed_json());
    }
    Json::Object(m)
}

/// Parse `{"pk": …, "sk": …}` into a stored key (extra fields are not
/// allowed, except `item` which callers handle).
pub fn key_from_json(schema: &KeySchema, v: &Json) -> Result<Key> {
    let o = v
        .as_object()
        .ok_or_else(|| Error::InvalidInput("a key must be a JSON object".into()))?;
    let pk = KeyAttr::from_typed_json(
        o.get("pk")
            .ok_or_else(|| Error::InvalidInput("missing \"pk\"".into()))?,
        "pk",
    )?;
    let sk = o
        .get("sk")
        .map(|v| KeyAttr::from_typed_json(v, "sk"))
        .transpose()?;
    let sk = sk.map(|a| schema.encode(&a)).transpose()?;
    Key::new(&schema.encode(&pk)?, sk.as_deref())
}

/// One export line (lossless, typed).
pub fn export_line(schema: &KeySchema, key: &Key, item: &Item) -> String {
    let mut v = key_json(schema, key);
    if let Json::Object(m) = &mut v {
        m.insert("item".into(), item_to_typed_json(item));
    }
    v.to_string()
}

/// One line in plain form: S keys as strings, N as numbers, B typed; the
/// item as plain JSON (lossy: B values become base64 text, sets lists).
pub fn plain_line(schema: &KeySchema, key: &Key, item: &Item) -> String {
    let mut m = Map::new();
    m.insert("pk".into(), key_part_plain(&part(schema, &key.pk)));
    if let Some(sk) = &key.sk {
        m.insert("sk".into(), key_part_plain(&part(schema, sk)));
    }
    m.insert("item".into(), item_to_plain_json(item));
    Json::Object(m).to_string()
}

/// Parse an export line back into its stored key and item. The key is
/// checked against the schema as a put would be.
pub fn parse_export_line(schema: &KeySchema, line: &str) -> Result<(Key, Item)> {
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
    let key = key_from_json(schema, &v)?;
    schema.check_put(&key.pk, key.sk.as_deref())?;
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
    use crate::model::key_attr::KeyType;
    use crate::model::key_schema::SortKeyRule;

    #[test]
    fn round_trip_binary_and_absent_sort_keys() {
        let item = crate::item_from_plain_json(r#"{"a":1}"#).unwrap();
        let bytes = KeySchema::bytes();
        for key in [
            Key::new(b"user", None).unwrap(),
            Key::new(&[0xff, 0, 1], Some(&[0x80])).unwrap(),
        ] {
            let line = export_line(&bytes, &key, &item);
            assert_eq!(
                parse_export_line(&bytes, &line).unwrap(),
                (key, item.clone())
            );
        }
        let typed = KeySchema::typed(None, SortKeyRule::Optional);
        for (pk, sk) in [
            (KeyAttr::S("user".into()), None),
            (KeyAttr::B(b"AB".to_vec()), Some(KeyAttr::B(b"x".to_vec()))),
            (
                KeyAttr::S("AB".into()),
                Some(KeyAttr::N(crate::Number::parse("-1.5").unwrap())),
            ),
        ] {
            let key = Key::new(
                &pk.to_stored(),
                sk.as_ref().map(KeyAttr::to_stored).as_deref(),
            )
            .unwrap();
            let line = export_line(&typed, &key, &item);
            assert_eq!(
                parse_export_line(&typed, &line).unwrap(),
                (key, item.clone()),
                "{line}"
            );
        }
        // A B key whose bytes are UTF-8 stays B, and differs from the S key.
        let b = Key::new(&KeyAttr::B(b"AB".to_vec()).to_stored(), None).unwrap();
        let s = Key::new(b"AB", None).unwrap();
        assert_ne!(b, s);
        assert!(export_line(&typed, &b, &item).contains(r#""pk":{"B":"QUI="}"#));
    }

    #[test]
    fn bad_lines() {
        let typed = KeySchema::typed(Some(KeyType::S), SortKeyRule::Optional);
        for l in [
            "",
            "[]",
            r#"{"pk":{"S":"a"}}"#,
            r#"{"pk":{"N":"1"},"item":{}}"#,
            r#"{"pk":{"S":""},"item":{}}"#,
            r#"{"pk":{"S":"a"},"sk":{"S":""},"item":{}}"#,
            r#"{"pk":{"S":"a"},"sk":{"B":""},"item":{}}"#,
            r#"{"pk":{"S":"a"},"item":{},"x":1}"#,
            r#"{"pk":{"B":"!!"},"item":{}}"#,
            r#"{"pk":{"S":"a"},"item":{"":{"S":"x"}}}"#,
        ] {
            assert!(parse_export_line(&typed, l).is_err(), "{l}");
        }
        // A byte-keyed database has no N keys.
        assert!(parse_export_line(
            &KeySchema::bytes(),
            r#"{"pk":{"S":"a"},"sk":{"N":"1"},"item":{}}"#
        )
        .is_err());
    }
}
