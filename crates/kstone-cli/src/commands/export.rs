//! `kstone export`: every item as lossless JSON lines.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use kstone_core::export_line;

use crate::exit::Exit;
use crate::{CliError, CliResult};

/// Write every item as lossless JSON lines (typed values, binary keys kept).
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Database directory.
    pub db: PathBuf,
    /// Output file (written atomically); default: standard output.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
}

/// Run `kstone export`.
pub fn run(a: &ExportArgs) -> CliResult<Exit> {
    let (db_path, output) = (a.db.as_path(), a.output.as_deref());
    let db = super::open_for_reading(db_path)?;
    let schema = *db.key_schema();
    let n = match output {
        None => {
            let out = std::io::stdout();
            let mut out = BufWriter::new(out.lock());
            let n = db.for_each_item(|k, item| {
                Ok::<(), CliError>(writeln!(out, "{}", export_line(&schema, k, item))?)
            })?;
            out.flush()?;
            n
        }
        Some(path) => {
            // Write beside the target and rename, so a failed export never
            // leaves a truncated file under the requested name.
            kstone_core::fsio::check_replaceable(path)?;
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let tmp = tempfile::NamedTempFile::new_in(dir)?;
            let mut out = BufWriter::new(tmp.as_file());
            let n = db.for_each_item(|k, item| {
                Ok::<(), CliError>(writeln!(out, "{}", export_line(&schema, k, item))?)
            })?;
            out.flush()?;
            drop(out);
            tmp.as_file().sync_all()?;
            tmp.persist(path)?;
            kstone_core::fsio::sync_dir(dir)?;
            n
        }
    };
    db.close()?;
    eprintln!("exported {n} items");
    Ok(Exit::Success)
}
