//! What `query` and `scan` share: `--limit`, `--start-after` and printing a
//! page of items.

use std::io::{BufWriter, Write};

use kstone_core::{export_line, key_from_json, key_json, plain_line, Key, KeySchema, Page};

use crate::exit::Exit;
use crate::{CliError, CliResult};

/// A count within `lo..=hi`.
pub fn count_within(s: &str, lo: usize, hi: usize, why: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        Ok(_) => Err(why.into()),
        Err(e) => Err(e.to_string()),
    }
}

/// `--limit`: at least 1, as DynamoDB's Limit.
pub fn positive(s: &str) -> Result<usize, String> {
    count_within(s, 1, usize::MAX, "must be at least 1")
}

/// The key `--start-after` gives, checked against the schema.
pub fn start_after(schema: &KeySchema, s: &Option<String>) -> CliResult<Option<Key>> {
    s.as_deref()
        .map(|j| {
            let v: serde_json::Value = serde_json::from_str(j)
                .map_err(|e| CliError::failure(format!("--start-after: {e}")))?;
            if let Some(extra) = v
                .as_object()
                .and_then(|o| o.keys().find(|k| !matches!(k.as_str(), "pk" | "sk")))
            {
                return Err(CliError::failure(format!(
                    "--start-after: unexpected field {extra:?}"
                )));
            }
            let k = key_from_json(schema, &v)
                .and_then(|k| schema.check_key(&k.pk, k.sk.as_deref()).map(|_| k));
            k.map_err(|e| CliError::failure(format!("--start-after: {e}")))
        })
        .transpose()
}

/// Print a page, one JSON line per item; say on stderr how to continue.
pub fn print_page(schema: &KeySchema, page: &Page, typed: bool) -> CliResult<Exit> {
    let out = std::io::stdout();
    let mut out = BufWriter::new(out.lock());
    for (k, item) in &page.items {
        let line = if typed {
            export_line(schema, k, item)
        } else {
            plain_line(schema, k, item)
        };
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    if let Some(k) = &page.last_evaluated_key {
        eprintln!(
            "more results: continue with --start-after '{}'",
            key_json(schema, k)
        );
    }
    Ok(Exit::Success)
}
