//! `kstone put`: store an item.

use std::path::PathBuf;

use kstone_core::{item_from_plain_json, item_from_typed_json, Database, Options};

use crate::exit::Exit;
use crate::key_options::KeyArgs;
use crate::CliResult;

/// Store an item (replacing any item with the same key).
///
/// Plain JSON cannot say B or sets: use --typed for those.
#[derive(clap::Args, Debug)]
pub struct PutArgs {
    /// Database directory.
    pub db: PathBuf,
    #[command(flatten)]
    pub key: KeyArgs,
    /// The item as a JSON object (plain JSON, or DynamoDB JSON with --typed).
    pub json: String,
    /// Parse JSON as DynamoDB-typed JSON: {"a": {"S": "x"}, "n": {"N": "1"}}.
    #[arg(long)]
    pub typed: bool,
}

/// Run `kstone put`.
pub fn run(a: &PutArgs) -> CliResult<Exit> {
    // Parse before opening, so bad input never touches the database.
    let item = if a.typed {
        item_from_typed_json(&a.json)?
    } else {
        item_from_plain_json(&a.json)?
    };
    let d = Database::open(&a.db, Options::default())?;
    let k = a.key.key_in(&d)?;
    let lsn = d.put(&k.pk, k.sk.as_deref(), &item)?;
    d.close()?;
    eprintln!("ok (lsn {lsn})");
    Ok(Exit::Success)
}
