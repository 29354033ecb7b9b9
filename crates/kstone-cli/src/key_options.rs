//! An item's key on the command line (`put`, `get`, `delete`) and the key
//! types every key-taking command accepts.

use clap::ValueEnum;
use kstone_core::{Database, Key, KeyAttr, KeySchema};

use crate::{CliError, CliResult};

/// A key type: S (string), N (number), B (binary, given as base64).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyTypeArg {
    #[value(name = "S", alias = "s")]
    S,
    #[value(name = "N", alias = "n")]
    N,
    #[value(name = "B", alias = "b")]
    B,
}

impl From<KeyTypeArg> for kstone_core::KeyType {
    fn from(t: KeyTypeArg) -> Self {
        match t {
            KeyTypeArg::S => kstone_core::KeyType::S,
            KeyTypeArg::N => kstone_core::KeyType::N,
            KeyTypeArg::B => kstone_core::KeyType::B,
        }
    }
}

/// An item's key on the command line.
#[derive(clap::Args, Debug, Clone)]
pub struct KeyArgs {
    /// Partition key (a number for N, base64 for B).
    #[arg(allow_hyphen_values = true)]
    pub pk: String,
    /// Sort key (a number for N, base64 for B; `--sk=-5` or `--sk -5`).
    #[arg(long, allow_hyphen_values = true)]
    pub sk: Option<String>,
    /// Type of the partition key (default: the type declared at create, else S).
    #[arg(long, value_enum, value_name = "TYPE")]
    pub pk_type: Option<KeyTypeArg>,
    /// Type of the sort key (default: the type declared at create, else S).
    #[arg(long, value_enum, value_name = "TYPE", requires = "sk")]
    pub sk_type: Option<KeyTypeArg>,
}

impl KeyArgs {
    /// The stored key these arguments name in `db`.
    pub fn key_in(&self, db: &Database) -> CliResult<Key> {
        let s = db.key_schema();
        let pk = key_part(s, &self.pk, self.pk_type, s.pk_type(), "partition key")?;
        let sk = self
            .sk
            .as_deref()
            .map(|t| key_part(s, t, self.sk_type, s.sk_type(), "sort key"))
            .transpose()?;
        Ok(db.key(&pk, sk.as_ref())?)
    }
}

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
        .map_err(|e| CliError::failure(format!("{what}: {e}")))
        .and_then(|a| {
            schema.encode(&a)?;
            Ok(a)
        })
}
