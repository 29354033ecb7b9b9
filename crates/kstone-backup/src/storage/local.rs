//! A repository in a local directory, through `object_store`'s file store
//! with fsync on: each object is written to a staging file, fsynced,
//! renamed into place and its directory fsynced, so a crash leaves either
//! the old object or the whole new one. The repository's root directory is
//! never created again once it is gone (see [`check_root`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::ObjectStore;

use crate::error::{Error, IoContext, Result};

/// The store for the directory `location` (created if `create`, else it
/// must exist) and its canonical path.
pub(super) fn open(location: &str, create: bool) -> Result<(Arc<dyn ObjectStore>, PathBuf)> {
    let path = PathBuf::from(location);
    if create {
        std::fs::create_dir_all(&path).ctx(&path)?;
    } else if !path.is_dir() {
        return Err(Error::NotARepository(location.to_string()));
    }
    let abs = std::fs::canonicalize(&path).ctx(&path)?;
    let fs = LocalFileSystem::new_with_prefix(&abs)
        .map_err(|e| Error::Store {
            location: location.into(),
            source: e,
        })?
        .with_fsync(true)
        .with_automatic_cleanup(true);
    Ok((Arc::new(fs), abs))
}

/// A local repository's directory must still be there: the file store
/// would create it again (with only the new object in it) under a writer
/// that has not noticed the repository is gone.
pub(super) fn check_root(root: &Path, location: &str) -> Result<()> {
    if root.is_dir() {
        return Ok(());
    }
    Err(Error::RepositoryGone {
        location: location.to_string(),
        why: "its directory is gone (an unmounted disk, a moved directory?)".into(),
    })
}

/// Remove what is left under `prefix` once its objects are deleted: the
/// staging files of an upload killed half-way, which the object listing
/// does not show.
pub(super) fn remove_staging(root: &Path, prefix: &str) -> Result<()> {
    let dir = root.join(prefix);
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).ctx(&dir),
        _ => Ok(()),
    }
}
