//! `kstone import`: load items from JSON lines as written by `export`.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use kstone_core::{parse_export_line, Database, Options, WriteOp};

use crate::exit::Exit;
use crate::{CliError, CliResult};

/// Items per `write_batch` during import (one group commit each).
const IMPORT_BATCH: usize = 1000;

/// Load items from JSON lines as written by `export` (FILE or - for stdin).
/// The whole input is checked first: a bad line aborts with its line
/// number and nothing imported (unless --skip-invalid).
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// Database directory.
    pub db: PathBuf,
    /// Input file, or - for standard input.
    pub input: String,
    /// Import the lines this database accepts and list the others on
    /// stderr (`line N: why; skipped`) instead of importing nothing:
    /// for moving a database whose items an older version accepted
    /// (e.g. an empty sort key) into a typed one.
    #[arg(long)]
    pub skip_invalid: bool,
}

/// Run `kstone import`.
pub fn run(a: &ImportArgs) -> CliResult<Exit> {
    let (db_path, input, skip_invalid) = (a.db.as_path(), a.input.as_str(), a.skip_invalid);
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
            CliError::failure(format!("{}: {e}", path.display()))
        })?))
    };
    // Lines are checked against the target's key schema before it is opened.
    let schema = Database::key_schema_of(db_path)?;
    let mut lines = 0u64;
    let mut skipped = std::collections::BTreeSet::new();
    for (i, line) in open()?.lines().enumerate() {
        let line = line.map_err(|e| CliError::failure(format!("line {}: {e}", i + 1)))?;
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
                return Err(CliError::failure(format!(
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
            // A failed batch is not undone: some of its items may be in.
            let msg = format!(
                "{e}; {imported} of {lines} items were imported before the failing batch, \
                 and up to {n} of its items may have been written too"
            );
            CliError::from(e).with_msg(msg)
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
    Ok(Exit::Success)
}
