//! `kstone query`: the items of one partition.

use std::path::PathBuf;

use kstone_core::{KeySchema, Query, TypedCondition};

use crate::exit::Exit;
use crate::key_options::{key_part, KeyTypeArg};
use crate::paging::{positive, print_page, start_after};
use crate::{CliError, CliResult};

/// Items of one partition, optionally filtered by a sort-key condition;
/// one JSON object per line.
#[derive(clap::Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("condition").multiple(false)))]
pub struct QueryArgs {
    /// Database directory.
    pub db: PathBuf,
    /// Partition key.
    #[arg(allow_hyphen_values = true)]
    pub pk: String,
    /// Type of the partition key (default: the type declared at create, else S).
    #[arg(long, value_enum, value_name = "TYPE")]
    pub pk_type: Option<KeyTypeArg>,
    /// Type of the sort-key values below (default: the type declared at
    /// create, else S). A condition matches sort keys of its type only.
    #[arg(long, value_enum, value_name = "TYPE")]
    pub sk_type: Option<KeyTypeArg>,
    /// Sort key equals X.
    #[arg(
        long,
        group = "condition",
        value_name = "X",
        allow_hyphen_values = true
    )]
    pub sk_eq: Option<String>,
    /// Sort key less than X.
    #[arg(
        long,
        group = "condition",
        value_name = "X",
        allow_hyphen_values = true
    )]
    pub sk_lt: Option<String>,
    /// Sort key less than or equal to X.
    #[arg(
        long,
        group = "condition",
        value_name = "X",
        allow_hyphen_values = true
    )]
    pub sk_le: Option<String>,
    /// Sort key greater than X.
    #[arg(
        long,
        group = "condition",
        value_name = "X",
        allow_hyphen_values = true
    )]
    pub sk_gt: Option<String>,
    /// Sort key greater than or equal to X.
    #[arg(
        long,
        group = "condition",
        value_name = "X",
        allow_hyphen_values = true
    )]
    pub sk_ge: Option<String>,
    /// Sort key between A and B, both inclusive (`--sk-between -5 5` works).
    #[arg(long, group = "condition", num_args = 2, value_names = ["A", "B"], allow_hyphen_values = true)]
    pub sk_between: Option<Vec<String>>,
    /// Sort key starts with P (S and B sort keys).
    #[arg(
        long,
        group = "condition",
        value_name = "P",
        allow_hyphen_values = true
    )]
    pub sk_begins_with: Option<String>,
    /// Descending sort-key order.
    #[arg(long)]
    pub reverse: bool,
    /// Return at most N items (N ≥ 1); if more exist, stderr says how to
    /// continue. Unlike DynamoDB, no continuation is printed when the page
    /// ends exactly at the last item.
    #[arg(long, value_name = "N", value_parser = positive)]
    pub limit: Option<usize>,
    /// Continue after this key (JSON printed by a previous --limit run).
    #[arg(long, value_name = "KEY_JSON")]
    pub start_after: Option<String>,
    /// Print lossless typed lines (the export format). The default plain
    /// lines show B values as base64 text and sets as lists.
    #[arg(long)]
    pub typed: bool,
}

/// The query's sort-key condition, its values typed by --sk-type or the schema.
fn condition(schema: &KeySchema, a: &QueryArgs) -> CliResult<Option<TypedCondition>> {
    let v = |x: &String| key_part(schema, x, a.sk_type, schema.sk_type(), "sort key condition");
    Ok(if let Some(x) = &a.sk_eq {
        Some(TypedCondition::Eq(v(x)?))
    } else if let Some(x) = &a.sk_lt {
        Some(TypedCondition::Lt(v(x)?))
    } else if let Some(x) = &a.sk_le {
        Some(TypedCondition::Le(v(x)?))
    } else if let Some(x) = &a.sk_gt {
        Some(TypedCondition::Gt(v(x)?))
    } else if let Some(x) = &a.sk_ge {
        Some(TypedCondition::Ge(v(x)?))
    } else if let Some(b) = &a.sk_between {
        match b.as_slice() {
            [lo, hi] => Some(TypedCondition::Between(v(lo)?, v(hi)?)),
            _ => return Err(CliError::failure("--sk-between takes two values")),
        }
    } else {
        a.sk_begins_with
            .as_ref()
            .map(|x| v(x).map(TypedCondition::BeginsWith))
            .transpose()?
    })
}

/// Run `kstone query`.
pub fn run(a: &QueryArgs) -> CliResult<Exit> {
    let db = super::open_for_reading(&a.db)?;
    let schema = *db.key_schema();
    let q = (|| -> CliResult<Query> {
        let pk = key_part(&schema, &a.pk, a.pk_type, schema.pk_type(), "partition key")?;
        let pk = schema.encode(&pk)?;
        schema.check_pk(&pk)?;
        let mut q = Query::new(&pk);
        q.condition = condition(&schema, a)?
            .map(|c| schema.condition(&c))
            .transpose()?;
        q.reverse = a.reverse;
        q.limit = a.limit;
        q.exclusive_start = start_after(&schema, &a.start_after)?;
        Ok(q)
    })();
    let page = q.and_then(|q| Ok(db.query(&q)?));
    db.close()?;
    print_page(&schema, &page?, a.typed)
}
