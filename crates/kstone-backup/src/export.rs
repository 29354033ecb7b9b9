//! The tar export (`backup export`): a backup as a portable `tar.gz` that
//! `tar xzf` unpacks into an openable database directory, with a
//! `sha256sum -c` checksum file beside it; and restoring from such an
//! archive with strict entry checks. (Not the WAL archive: that is
//! `wal_archive.rs`.)

use std::fs;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use flate2::bufread::GzDecoder;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

use crate::error::{Error, IoContext, Result};
use crate::repository::Repository;
use crate::restore::{check_database, restore_with, RestoreReport};

/// Paths written by [`Repository::export_archive`].
#[derive(Debug, Clone)]
pub struct ArchiveReport {
    pub archive: PathBuf,
    pub checksum_file: PathBuf,
    pub sha256: String,
    pub bytes: u64,
}

fn sha256_file(p: &Path) -> Result<String> {
    let mut f = fs::File::open(p).ctx(p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).ctx(p)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(kstone_core::fsio::hex(&h.finalize()))
}

impl Repository {
    /// Write backup `id` as a self-contained `tar.gz` at `out` (atomically),
    /// plus `out.sha256` in `sha256sum -c` format.
    pub fn export_archive(&self, id: &str, out: &Path) -> Result<ArchiveReport> {
        kstone_core::fsio::check_replaceable(out)?;
        kstone_core::fsio::check_replaceable(&PathBuf::from(format!("{}.sha256", out.display())))?;
        let _lock = self.lock_for_read("an export")?;
        let m = self.manifest(id)?;
        let dir = kstone_core::fsio::parent(out).to_path_buf();
        let work = tempfile::tempdir_in(&dir).ctx(&dir)?;
        let db = work.path().join("db");
        self.materialize(&m, &db)?;
        let tmp = tempfile::NamedTempFile::new_in(&dir).ctx(&dir)?;
        {
            let gz = GzEncoder::new(tmp.as_file(), flate2::Compression::default());
            let mut tar = tar::Builder::new(gz);
            tar.mode(tar::HeaderMode::Deterministic);
            tar.follow_symlinks(false);
            let mut names: Vec<String> = m.files.iter().map(|f| f.name.clone()).collect();
            names.push(kstone_core::Manifest::FILE_NAME.into());
            names.sort();
            // Deterministic headers (no owner, fixed modes), dated at the
            // backup's snapshot rather than the tar crate's fixed 2006.
            let when = m.started_at_us / 1_000_000;
            let header = |path: &Path| -> Result<tar::Header> {
                let meta = fs::metadata(path).ctx(path)?;
                let mut h = tar::Header::new_gnu();
                h.set_metadata_in_mode(&meta, tar::HeaderMode::Deterministic);
                h.set_mtime(when);
                Ok(h)
            };
            for sub in ["pins", "sst", "wal"] {
                let mut h = header(&db.join(sub))?;
                tar.append_data(&mut h, sub, std::io::empty()).ctx(&db)?;
            }
            for n in names {
                let path = db.join(&n);
                let mut h = header(&path)?;
                let f = fs::File::open(&path).ctx(&path)?;
                tar.append_data(&mut h, &n, f).ctx(&path)?;
            }
            let gz = tar.into_inner().ctx(out)?;
            gz.finish().ctx(out)?.flush().ctx(out)?;
        }
        tmp.as_file().sync_all().ctx(out)?;
        tmp.persist(out).map_err(|e| Error::Io {
            path: out.to_path_buf(),
            source: e.error,
        })?;
        let sha = sha256_file(out)?;
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let sum = PathBuf::from(format!("{}.sha256", out.display()));
        kstone_core::fsio::write_atomic(&sum, format!("{sha}  {name}\n").as_bytes())?;
        let bytes = fs::metadata(out).ctx(out)?.len();
        Ok(ArchiveReport {
            archive: out.to_path_buf(),
            checksum_file: sum,
            sha256: sha,
            bytes,
        })
    }
}

/// Restore a database from an archive made by `export_archive` (or any
/// `tar.gz` of a database directory). The `.sha256` file beside it, if
/// present, must match. Absolute paths, `..`, links and device files are
/// refused before anything is written outside the staging directory.
pub fn restore_archive(archive: &Path, target: &Path) -> Result<RestoreReport> {
    if !archive.exists() {
        return Err(Error::NoSuchFile(archive.to_path_buf()));
    }
    let sum = PathBuf::from(format!("{}.sha256", archive.display()));
    if sum.exists() {
        let text = fs::read_to_string(&sum).ctx(&sum)?;
        // `HASH  name` or `HASH *name` (sha256sum), or a bare hash;
        // `sha256sum` writes lowercase, other tools uppercase.
        let mut words = text.split_whitespace();
        let want = words.next().unwrap_or_default().to_ascii_lowercase();
        if want.len() != 64 || !want.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::Refused(format!(
                "{} is not a SHA-256 checksum file (`sha256sum` output: 64 hex digits, then the file name)",
                sum.display()
            )));
        }
        let got = sha256_file(archive)?;
        if want != got {
            let named = words.next().map(|n| n.trim_start_matches('*'));
            let own = archive
                .file_name()
                .map(|n| n.to_string_lossy().into_owned());
            return Err(Error::Refused(format!(
                "{} does not match its checksum file {}{}",
                archive.display(),
                sum.display(),
                match (named, own) {
                    (Some(n), Some(o)) if !n.ends_with(o.as_str()) => {
                        format!(" (which is the checksum of {n})")
                    }
                    _ => String::new(),
                }
            )));
        }
    }
    restore_with(target, crate::swap::Leftovers::Remove, |staging| {
        unpack(archive, staging)?;
        check_database(staging)
    })
}

fn unpack(archive: &Path, dest: &Path) -> Result<()> {
    fs::create_dir(dest).ctx(dest)?;
    let f = fs::File::open(archive).ctx(archive)?;
    let mut ar = tar::Archive::new(GzDecoder::new(std::io::BufReader::new(f)));
    let bad = |what: String| Error::Refused(format!("archive {}: {what}", archive.display()));
    // What reading the archive fails with is damage to the archive, not an
    // I/O error of the file being written.
    let damaged = |e: std::io::Error| {
        let sum = PathBuf::from(format!("{}.sha256", archive.display()));
        bad(format!(
            "damaged or not a tar.gz made by `kstone backup export` ({e}){}",
            if sum.exists() {
                ""
            } else {
                "; there is no .sha256 file beside it to check it against"
            }
        ))
    };
    for entry in ar.entries().map_err(damaged)? {
        let mut entry = entry.map_err(damaged)?;
        let path = entry.path().map_err(damaged)?.into_owned();
        let safe = !path.as_os_str().is_empty()
            && path
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !safe {
            return Err(bad(format!("entry {:?} escapes the target", path)));
        }
        let out = dest.join(&path);
        match entry.header().entry_type() {
            tar::EntryType::Directory => fs::create_dir_all(&out).ctx(&out)?,
            tar::EntryType::Regular => {
                if let Some(p) = out.parent() {
                    fs::create_dir_all(p).ctx(p)?;
                }
                let mut w = fs::File::create(&out).ctx(&out)?;
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    let n = std::io::Read::read(&mut entry, &mut buf).map_err(damaged)?;
                    if n == 0 {
                        break;
                    }
                    std::io::Write::write_all(&mut w, &buf[..n]).ctx(&out)?;
                }
                w.sync_all().ctx(&out)?;
            }
            other => return Err(bad(format!("entry {:?} is a {other:?}, not a file", path))),
        }
    }
    // tar stops at its end-of-archive blocks; reading gzip to its end checks
    // its CRC, so damage anywhere in the stream is found here.
    let mut gz = ar.into_inner();
    std::io::copy(&mut gz, &mut std::io::sink()).map_err(damaged)?;
    // Bytes after the gzip stream are not ours: a file glued to another, or
    // a transfer that appended garbage.
    let rest = std::io::BufRead::fill_buf(gz.get_mut()).map_err(damaged)?;
    if !rest.is_empty() {
        return Err(damaged(std::io::Error::other(
            "bytes follow the end of the gzip stream",
        )));
    }
    for sub in ["wal", "sst"] {
        let d = dest.join(sub);
        if d.is_dir() {
            kstone_core::fsio::sync_dir(&d)?;
        }
    }
    kstone_core::fsio::sync_dir(dest)?;
    Ok(())
}
