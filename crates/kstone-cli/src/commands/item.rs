//! Single-item commands: put, get, delete.

use std::path::Path;
use std::process::ExitCode;

use kstone_core::{
    item_from_plain_json, item_from_typed_json, item_to_plain_json, item_to_typed_json, Database,
    Item, Key, KeyAttr, KeySchema, Options, Value,
};

use crate::args::{KeyArgs, KeyTypeArg};
use crate::CliResult;

/// A key part given on the command line, typed as asked or as the schema declares.
pub fn key_part(
    schema: &KeySchema,
    text: &str,
    asked: Option<KeyTypeArg>,
    declared: kstone_core::KeyType,
    what: &str,
) -> CliResult<KeyAttr> {
    let t = asked.map_or(declared, Into::into);
    KeyAttr::parse(text, t)
        .map_err(|e| crate::CliError(format!("{what}: {e}")))
        .and_then(|a| {
            schema.encode(&a)?;
            Ok(a)
        })
}

/// The stored key the command line names.
fn key_of(db: &Database, k: &KeyArgs) -> CliResult<Key> {
    let s = db.key_schema();
    let pk = key_part(s, &k.pk, k.pk_type, s.pk_type(), "partition key")?;
    let sk =
        k.sk.as_deref()
            .map(|t| key_part(s, t, k.sk_type, s.sk_type(), "sort key"))
            .transpose()?;
    Ok(db.key(&pk, sk.as_ref())?)
}

pub fn put(db: &Path, key: &KeyArgs, json: &str, typed: bool) -> CliResult<ExitCode> {
    // Parse before opening, so bad input never touches the database.
    let item = if typed {
        item_from_typed_json(json)?
    } else {
        item_from_plain_json(json)?
    };
    let d = Database::open(db, Options::default())?;
    let k = key_of(&d, key)?;
    let lsn = d.put(&k.pk, k.sk.as_deref(), &item)?;
    d.close()?;
    eprintln!("ok (lsn {lsn})");
    Ok(ExitCode::SUCCESS)
}

/// Does plain JSON lose this item's types (B values, sets)?
fn plain_is_lossy(item: &Item) -> bool {
    fn lossy(v: &Value) -> bool {
        match v {
            Value::B(_) | Value::SS(_) | Value::NS(_) | Value::BS(_) => true,
            Value::L(l) => l.iter().any(lossy),
            Value::M(m) => m.values().any(lossy),
            _ => false,
        }
    }
    item.values().any(lossy)
}

pub fn get(db: &Path, key: &KeyArgs, typed: bool) -> CliResult<ExitCode> {
    let d = super::open_for_reading(db)?;
    let k = key_of(&d, key);
    let item = match k {
        Ok(k) => d.get(&k.pk, k.sk.as_deref())?,
        Err(e) => {
            d.close()?;
            return Err(e);
        }
    };
    d.close()?;
    match item {
        Some(item) => {
            let j = if typed {
                item_to_typed_json(&item)
            } else {
                if plain_is_lossy(&item) {
                    eprintln!(
                        "note: plain JSON shows B values as base64 text and sets as lists; \
                         use --typed for output that puts back unchanged"
                    );
                }
                item_to_plain_json(&item)
            };
            println!("{j}");
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("not found");
            Ok(ExitCode::from(1))
        }
    }
}

pub fn delete(db: &Path, key: &KeyArgs) -> CliResult<ExitCode> {
    let d = Database::open(db, Options::default())?;
    let k = key_of(&d, key)?;
    let lsn = d.delete(&k.pk, k.sk.as_deref())?;
    d.close()?;
    eprintln!("ok (lsn {lsn})");
    Ok(ExitCode::SUCCESS)
}
