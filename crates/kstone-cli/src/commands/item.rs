//! Single-item commands: put, get, delete.

use std::path::Path;
use std::process::ExitCode;

use kstone_core::{
    item_from_plain_json, item_from_typed_json, item_to_plain_json, item_to_typed_json, Database,
    Options,
};

use crate::CliResult;

pub fn put(db: &Path, pk: &str, sk: Option<&str>, json: &str, typed: bool) -> CliResult<ExitCode> {
    // Parse before opening, so bad input never touches the database.
    let item = if typed {
        item_from_typed_json(json)?
    } else {
        item_from_plain_json(json)?
    };
    let d = Database::open(db, Options::default())?;
    let lsn = d.put(pk.as_bytes(), sk.map(str::as_bytes), &item)?;
    d.close()?;
    eprintln!("ok (lsn {lsn})");
    Ok(ExitCode::SUCCESS)
}

pub fn get(db: &Path, pk: &str, sk: Option<&str>, typed: bool) -> CliResult<ExitCode> {
    let d = super::open_for_reading(db)?;
    let item = d.get(pk.as_bytes(), sk.map(str::as_bytes))?;
    d.close()?;
    match item {
        Some(item) => {
            let j = if typed {
                item_to_typed_json(&item)
            } else {
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

pub fn delete(db: &Path, pk: &str, sk: Option<&str>) -> CliResult<ExitCode> {
    let d = Database::open(db, Options::default())?;
    let lsn = d.delete(pk.as_bytes(), sk.map(str::as_bytes))?;
    d.close()?;
    eprintln!("ok (lsn {lsn})");
    Ok(ExitCode::SUCCESS)
}
