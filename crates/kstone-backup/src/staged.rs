//! Continuing a killed restore: what its staging directory already holds.
//!
//! Nothing the killed process wrote is trusted. Each chunk the backup puts
//! in a file is read back from its offset in the staged file and kept only
//! if it matches its keyed id, so a torn write, a region never written
//! (zeros from the preallocation), a file of another backup or bytes lost
//! to a power cut are all simply fetched again. No journal is needed, and
//! the directory may have been left by any restore of the same target.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions, Permissions};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;

use crate::chunk_map::ChunkMap;
use crate::chunking::ChunkKey;
use crate::error::{IoContext, Result};

/// A file of the backup found in the staging directory.
pub(crate) struct StagedFile {
    /// Open for writing the chunks it still lacks, at the backup's size.
    pub file: File,
    /// Per chunk of the file: already in place.
    pub have: Vec<bool>,
    /// Bytes of the chunks already in place.
    pub bytes: u64,
}

/// Prepare `dir`, the staging directory of a killed restore, for building
/// `map`'s files in place: everything that is not one of them is removed,
/// and each of them is checked chunk by chunk. A file that is a hard link
/// (a delta restore links the replaced database's SSTs) is removed rather
/// than written through, which would change the other database; so is one
/// another user owns. What is kept gets the mode a new file or directory
/// gets, so the result is what a restore from nothing makes.
pub(crate) fn adopt(
    dir: &Path,
    map: &ChunkMap,
    keys: &[ChunkKey],
) -> Result<Vec<Option<StagedFile>>> {
    let wanted: HashSet<&str> = map.files.iter().map(|f| f.name.as_str()).collect();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    // Ours (the caller checked): writable for the probes whatever it was.
    fs::set_permissions(dir, Permissions::from_mode(0o700)).ctx(dir)?;
    let (file_mode, dir_mode) = fresh_modes(dir)?;
    for e in fs::read_dir(dir).ctx(dir)? {
        let e = e.ctx(dir)?;
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let meta = fs::symlink_metadata(&path).ctx(&path)?;
        let ours = meta.uid() == me;
        if meta.is_dir() && ours && ["wal", "sst", "pins"].contains(&name.as_str()) {
            fs::set_permissions(&path, dir_mode.clone()).ctx(&path)?;
            for f in fs::read_dir(&path).ctx(&path)? {
                let f = f.ctx(&path)?;
                let fp = f.path();
                let rel = format!("{name}/{}", f.file_name().to_string_lossy());
                let m = fs::symlink_metadata(&fp).ctx(&fp)?;
                if wanted.contains(rel.as_str()) && m.is_file() && m.nlink() == 1 && m.uid() == me {
                    fs::set_permissions(&fp, file_mode.clone()).ctx(&fp)?;
                } else {
                    remove(&fp, m.is_dir())?;
                }
            }
        } else if name != crate::swap::BUILDING {
            // MANIFEST and anything an interrupted check opened (LOCK, a
            // new WAL segment): rewritten or recreated as in any restore.
            remove(&path, meta.is_dir())?;
        }
    }
    fs::set_permissions(dir, dir_mode).ctx(dir)?;
    for sub in ["wal", "sst", "pins"] {
        let d = dir.join(sub);
        if !d.is_dir() {
            fs::create_dir(&d).ctx(&d)?;
        }
    }
    let found = kstone_core::parallel::try_map(
        &map.files,
        kstone_core::parallel::cpu_threads(),
        |f| -> Result<Option<StagedFile>> {
            let path = dir.join(&f.name);
            if !path.is_file() {
                return Ok(None);
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .ctx(&path)?;
            file.set_len(f.size).ctx(&path)?;
            let key = &keys[f.key as usize];
            let mut have = Vec::with_capacity(f.chunks.len());
            let mut bytes = 0u64;
            let mut off = 0u64;
            let mut buf = Vec::new();
            for (id, len) in &f.chunks {
                buf.resize(*len as usize, 0);
                // Never-written regions read as zeros: not worth a hash.
                let ok = file.read_exact_at(&mut buf, off).is_ok()
                    && buf.iter().any(|b| *b != 0)
                    && key.id(&buf) == *id;
                if ok {
                    bytes += u64::from(*len);
                }
                have.push(ok);
                off += u64::from(*len);
            }
            Ok(Some(StagedFile { file, have, bytes }))
        },
    )?;
    Ok(found)
}

/// The modes this process gives a new file and a new directory (its umask
/// applied), read off a probe of each made in `dir`.
fn fresh_modes(dir: &Path) -> Result<(Permissions, Permissions)> {
    let probe = dir.join(".restore-mode-probe");
    let _ = fs::remove_file(&probe);
    let _ = fs::remove_dir(&probe);
    File::create(&probe).ctx(&probe)?;
    let file = fs::metadata(&probe).ctx(&probe)?.permissions();
    fs::remove_file(&probe).ctx(&probe)?;
    fs::create_dir(&probe).ctx(&probe)?;
    let d = fs::metadata(&probe).ctx(&probe)?.permissions();
    fs::remove_dir(&probe).ctx(&probe)?;
    Ok((
        Permissions::from_mode(file.mode() & 0o7777),
        Permissions::from_mode(d.mode() & 0o7777),
    ))
}

/// Empty `dir` (but for its [`crate::swap::BUILDING`] marker) for a build
/// from nothing: what [`adopt`] falls back to when it cannot take a
/// directory over, so that a leftover it cannot use never blocks restores.
pub(crate) fn clear(dir: &Path) -> Result<()> {
    for e in fs::read_dir(dir).ctx(dir)? {
        let e = e.ctx(dir)?;
        let path = e.path();
        if e.file_name() != crate::swap::BUILDING {
            let meta = fs::symlink_metadata(&path).ctx(&path)?;
            remove(&path, meta.is_dir())?;
        }
    }
    for sub in ["wal", "sst", "pins"] {
        let d = dir.join(sub);
        fs::create_dir(&d).ctx(&d)?;
    }
    Ok(())
}

fn remove(path: &Path, is_dir: bool) -> Result<()> {
    if is_dir {
        fs::remove_dir_all(path).ctx(path)
    } else {
        fs::remove_file(path).ctx(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk_map::FileChunks;

    fn file(name: &str, key: &ChunkKey, chunks: &[&[u8]]) -> FileChunks {
        FileChunks {
            name: name.into(),
            size: chunks.iter().map(|c| c.len() as u64).sum(),
            key: 0,
            chunks: chunks.iter().map(|c| (key.id(c), c.len() as u32)).collect(),
        }
    }

    #[test]
    fn only_chunks_that_match_their_ids_in_place_are_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("staging");
        let key = ChunkKey::new(&[3; 32]).unwrap();
        let (a, b, c) = (vec![1u8; 100], vec![2u8; 50], vec![3u8; 70]);
        let map = ChunkMap {
            keys: vec!["keys/chunk-key".into()],
            files: vec![
                file("sst/1.sst", &key, &[&a, &b, &c]),
                file("wal/2.wal", &key, &[&c]),
                file("sst/3.sst", &key, &[&a]),
                file("sst/4.sst", &key, &[&b]),
            ],
        };
        for sub in ["sst", "wal", "pins"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        // 1: first chunk written, second torn, third never written.
        let mut one = a.clone();
        one.extend(&b[..20]);
        one.resize(220, 0);
        fs::write(dir.join("sst/1.sst"), &one).unwrap();
        // 2: longer than the backup's file (another backup's), cut back.
        let mut two = c.clone();
        two.extend([9u8; 10]);
        fs::write(dir.join("wal/2.wal"), &two).unwrap();
        // 3: a hard link into another database, holding the right bytes.
        let other = tmp.path().join("other.sst");
        fs::write(&other, &a).unwrap();
        fs::hard_link(&other, dir.join("sst/3.sst")).unwrap();
        // Strays: not the backup's.
        fs::write(dir.join("sst/9.sst"), b"x").unwrap();
        fs::write(dir.join("MANIFEST"), b"x").unwrap();
        fs::create_dir(dir.join("junk")).unwrap();

        let got = adopt(&dir, &map, &[key]).unwrap();
        let one = got[0].as_ref().unwrap();
        assert_eq!(one.have, vec![true, false, false]);
        assert_eq!(one.bytes, 100);
        let two = got[1].as_ref().unwrap();
        assert_eq!(two.have, vec![true]);
        assert_eq!(fs::metadata(dir.join("wal/2.wal")).unwrap().len(), 70);
        assert!(got[2].is_none(), "a link is not written through");
        assert!(!dir.join("sst/3.sst").exists());
        assert_eq!(
            fs::read(&other).unwrap(),
            a,
            "the other database is untouched"
        );
        assert!(got[3].is_none());
        for gone in ["sst/9.sst", "MANIFEST", "junk"] {
            assert!(!dir.join(gone).exists(), "{gone}");
        }
    }
}
