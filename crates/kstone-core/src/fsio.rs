//! Crash-safe file primitives: every durable write in the engine goes through
//! these (temp file + fsync + rename + directory fsync).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{Error, IoContext, Result};

/// fsync a directory so that entries created, renamed or removed in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).ctx(dir)
}

/// Atomically replace `path` with `bytes`: write `path.tmp`, fsync it, rename
/// over `path`, fsync the directory. A crash leaves either the old or the new
/// content, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    check_replaceable(path)?;
    // `NAME.tmp` beside `NAME` (appending, not replacing an extension, so
    // `x.req` and `x.snap` never share a temporary file).
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
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

/// Refuse to replace anything but a regular file (or nothing): a rename over
/// `/dev/null`, a FIFO or a socket would put a regular file in its place —
/// as root, `export -o /dev/null` replaced the device for every program.
pub fn check_replaceable(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if !m.is_file() && !m.file_type().is_symlink() => Err(Error::InvalidInput(format!(
            "{} exists and is not a regular file (a device, FIFO, socket or directory): \
             give a file path",
            path.display()
        ))),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).ctx(path),
        _ => Ok(()),
    }
}

/// The directory holding `path` (`.` for a bare file name).
/// Bytes of the files below `dir` (0 for what cannot be read; symlinks are
/// not followed): for reports (`stats`, benchmarks), never for decisions.
pub fn tree_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => tree_bytes(&e.path()),
                    Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
                    _ => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

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

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `n` random bytes as hex: ids of databases, histories, repositories, requests.
pub fn random_hex(n: usize) -> Result<String> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b)
        .map_err(|e| crate::error::Error::InvalidInput(format!("no randomness available: {e}")))?;
    Ok(hex(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_temp_names_do_not_collide() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(&dir.path().join("a.req"), b"1").unwrap();
        write_atomic(&dir.path().join("a.snap"), b"2").unwrap();
        assert_eq!(std::fs::read(dir.path().join("a.req")).unwrap(), b"1");
        assert_eq!(std::fs::read(dir.path().join("a.snap")).unwrap(), b"2");
        assert_eq!(random_hex(8).unwrap().len(), 16);
        assert_eq!(hex(&[0, 255]), "00ff");
    }
}
