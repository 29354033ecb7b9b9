//! Bulk and range commands: query, scan, export, import.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

use kstone_core::{
    export_line, key_from_json, key_json, parse_export_line, plain_line, Database, Item, Key,
    KeySchema, Options, Page, Query, Scan, TypedCondition, WriteOp,
};

use super::item::key_part;

use crate::args::{QueryArgs, ScanArgs};
use crate::{CliError, CliResult};

/// Items per `write_batch` during import (one group commit each).
const IMPORT_BATCH: usize = 1000;

fn start_after(schema: &KeySchema, s: &Option<String>) -> CliResult<Option<Key>> {
    s.as_deref()
        .map(|j| {
            let v: serde_json::Value =
                serde_json::from_str(j).map_err(|e| CliError(format!("--start-after: {e}")))?;
            if let Some(extra) = v
                .as_object()
                .and_then(|o| o.keys().find(|k| !matches!(k.as_str(), "pk" | "sk")))
            {
                return Err(CliError(format!(
                    "--start-after: unexpected field {extra:?}"
                )));
            }
            let k = key_from_json(schema, &v)
                .and_then(|k| schema.check_key(&k.pk, k.sk.as_deref()).map(|_| k));
            k.map_err(|e| CliError(format!("--start-after: {e}")))
        })
        .transpose()
}

fn print_page(schema: &KeySchema, page: &Page, typed: bool) -> CliResult<ExitCode> {
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
    Ok(ExitCode::SUCCESS)
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
            _ => return Err(CliError("--sk-between takes two values".into())),
        }
    } else {
        a.sk_begins_with
            .as_ref()
            .map(|x| v(x).map(TypedCondition::BeginsWith))
            .transpose()?
    })
}

pub fn query(a: &QueryArgs) -> CliResult<ExitCode> {
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

pub fn scan(a: &ScanArgs) -> CliResult<ExitCode> {
    let db = super::open_for_reading(&a.db)?;
    let schema = *db.key_schema();
    let page = start_after(&schema, &a.start_after).and_then(|start| {
        Ok(db.scan(&Scan {
            limit: a.limit,
            segment: a.segment,
            total_segments: a.total_segments,
            exclusive_start: start,
        })?)
    });
    db.close()?;
    print_page(&schema, &page?, a.typed)
}

/// Stream every item through `f`, a page at a time.
pub fn for_each_item(db: &Database, f: impl FnMut(&Key, &Item) -> CliResult) -> CliResult<u64> {
    db.for_each_item(f)
}

pub fn export(db_path: &Path, output: Option<&Path>) -> CliResult<ExitCode> {
    let db = super::open_for_reading(db_path)?;
    let schema = *db.key_schema();
    let n = match output {
        None => {
            let out = std::io::stdout();
            let mut out = BufWriter::new(out.lock());
            let n = for_each_item(&db, |k, item| {
                Ok(writeln!(out, "{}", export_line(&schema, k, item))?)
            })?;
            out.flush()?;
            n
        }
        Some(path) => {
            // Write beside the target and rename, so a failed export never
            // leaves a truncated file under the requested name.
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let tmp = tempfile::NamedTempFile::new_in(dir)?;
            let mut out = BufWriter::new(tmp.as_file());
            let n = for_each_item(&db, |k, item| {
                Ok(writeln!(out, "{}", export_line(&schema, k, item))?)
            })?;
            out.flush()?;
            drop(out);
            tmp.as_file().sync_all()?;
            tmp.persist(path).map_err(|e| CliError(e.to_string()))?;
            kstone_core::fsio::sync_dir(dir)?;
            n
        }
    };
    db.close()?;
    eprintln!("exported {n} items");
    Ok(ExitCode::SUCCESS)
}

pub fn import(db_path: &Path, input: &str, skip_invalid: bool) -> CliResult<ExitCode> {
    // Standard input is spooled to a temporary file so it can be checked
    // completely before anything is written.
    let spool;
    let path: &Path = if input == "-" {
        let mut t = tempfile::NamedTempFile::new()?;
        std::io::copy(&mut std::io::stdin().lock(), &mut t)?;
        spool = t;
        spool.path()
    } else {
        Path::new(input)
    };
    let open = || -> CliResult<BufReader<File>> {
        Ok(BufReader::new(File::open(path).map_err(|e| {
            CliError(format!("{}: {e}", path.display()))
        })?))
    };
    // Lines are checked against the target's key schema before it is opened.
    let schema = Database::key_schema_of(db_path)?;
    let mut lines = 0u64;
    let mut skipped = std::collections::BTreeSet::new();
    for (i, line) in open()?.lines().enumerate() {
        let line = line.map_err(|e| CliError(format!("line {}: {e}", i + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        let checked = parse_export_line(&schema, &line)
            .and_then(|(k, item)| kstone_core::check_put(&k.pk, k.sk.as_deref(), &item));
        match checked {
            Ok(()) => lines += 1,
            Err(e) if skip_invalid => {
                eprintln!("line {}: {e}; skipped", i + 1);
                skipped.insert(i);
            }
            Err(e) => {
                return Err(CliError(format!(
                    "line {}: {e}; nothing imported (--skip-invalid imports the other lines)",
                    i + 1
                )));
            }
        }
    }
    let db = Database::open(db_path, Options::default())?;
    let mut batch = Vec::with_capacity(IMPORT_BATCH);
    let mut imported = 0u64;
    let flush = |batch: &mut Vec<WriteOp>, imported: &mut u64| -> CliResult {
        let n = batch.len() as u64;
        db.write_batch(batch).map_err(|e| {
            CliError(format!(
                "{e}; {imported} of {lines} items were imported before the failure"
            ))
        })?;
        *imported += n;
        batch.clear();
        Ok(())
    };
    for (i, line) in open()?.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() || skipped.contains(&i) {
            continue;
        }
        let (k, item) = parse_export_line(&schema, &line)?;
        batch.push(WriteOp::Put {
            pk: k.pk,
            sk: k.sk,
            item,
        });
        if batch.len() == IMPORT_BATCH {
            flush(&mut batch, &mut imported)?;
        }
    }
    flush(&mut batch, &mut imported)?;
    db.close()?;
    if skipped.is_empty() {
        println!("imported {imported} items");
    } else {
        println!(
            "imported {imported} items, skipped {} invalid lines (listed above)",
            skipped.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
