//! `kstone create`: a new, empty database directory.

use std::path::PathBuf;

use kstone_core::{Database, KeySchema, Options, SortKeyRule};

use crate::exit::Exit;
use crate::key_options::KeyTypeArg;
use crate::CliResult;

/// Create a new, empty database directory, optionally declaring its key
/// schema as a DynamoDB table does (enforced on every write).
///
/// Keys are typed S (string), N (number) or B (binary): N sort keys order
/// numerically. Without --pk-type/--sk-type/--no-sk any key type is
/// accepted and items may have a sort key or not.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  kstone create orders.keystone --pk-type S --sk-type N\n  \
kstone create users.keystone --pk-type S --no-sk"
)]
pub struct CreateArgs {
    /// Database directory (by convention `NAME.keystone`).
    pub db: PathBuf,
    /// Type of every partition key.
    #[arg(long, value_enum, value_name = "TYPE")]
    pub pk_type: Option<KeyTypeArg>,
    /// Every item has a sort key of this type.
    #[arg(long, value_enum, value_name = "TYPE", conflicts_with = "no_sk")]
    pub sk_type: Option<KeyTypeArg>,
    /// Items have no sort key.
    #[arg(long)]
    pub no_sk: bool,
}

/// Run `kstone create`.
pub fn run(a: &CreateArgs) -> CliResult<Exit> {
    let sk = match (a.sk_type, a.no_sk) {
        (Some(t), _) => SortKeyRule::Required(t.into()),
        (None, true) => SortKeyRule::Absent,
        (None, false) => SortKeyRule::Optional,
    };
    let schema = KeySchema::typed(a.pk_type.map(Into::into), sk);
    Database::create_with_keys(&a.db, Options::default(), schema)?.close()?;
    println!("created {} (keys: {})", a.db.display(), schema);
    Ok(Exit::Success)
}
