//! Crash-safe file primitives: every durable write in the engine goes through
//! these (temp file + fsync + rename + directory fsync).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{IoContext, Result};

/// fsync a directory so that entries created, renamed or removed in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).ctx(dir)
}

/// Atomically replace `path` with `bytes`: write `path.tmp`, fsync it, rename
/// over `path`, fsync the directory. A crash leaves either the old or the new
/// content, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .ctx(&tmp)?;
        f.write_all(bytes).ctx(&tmp)?;
        f.sync_all().ctx(&tmp)?;
    }
    fs::rename(&tmp, path).ctx(path)?;
    sync_dir(parent(path))
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Current wall-clock time in microseconds since the Unix epoch.
pub fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
