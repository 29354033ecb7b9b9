//! `kstone get`: print an item.

use std::path::PathBuf;

use kstone_core::{item_to_plain_json, item_to_typed_json, Item, Value};

use crate::exit::Exit;
use crate::key_options::KeyArgs;
use crate::CliResult;

/// Print an item as JSON; exits 1 with "not found" if absent.
///
/// Plain JSON (the default) is lossy: B values print as base64 text and
/// sets as lists, so putting it back changes their types. --typed prints
/// DynamoDB JSON, which round-trips.
#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// Database directory.
    pub db: PathBuf,
    #[command(flatten)]
    pub key: KeyArgs,
    /// Print DynamoDB-typed JSON (lossless) instead of plain JSON.
    #[arg(long)]
    pub typed: bool,
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

/// Run `kstone get`.
pub fn run(a: &GetArgs) -> CliResult<Exit> {
    let d = super::open_for_reading(&a.db)?;
    let item = match a.key.key_in(&d) {
        Ok(k) => d.get(&k.pk, k.sk.as_deref())?,
        Err(e) => {
            d.close()?;
            return Err(e);
        }
    };
    d.close()?;
    match item {
        Some(item) => {
            let j = if a.typed {
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
            Ok(Exit::Success)
        }
        // An absent item is an answer, not a missing database: exit 1.
        None => {
            eprintln!("not found");
            Ok(Exit::Failure)
        }
    }
}
