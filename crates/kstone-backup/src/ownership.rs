//! Who owns a restored database (the chapter's `chown -R` and `chmod 700`,
//! done by the restore itself): an owner and a mode given to every file and
//! directory of the new database. A backup restore applies it in staging,
//! before the swap, so a failure (a full disk, say) leaves the target as it
//! was.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::error::{IoContext, Result};

/// Owner and directory mode to give a restored database.
///
/// ```
/// let o = kstone_backup::ownership::Ownership { uid: None, gid: None, mode: Some(0o750) };
/// assert_eq!(o.describe(), "owner -:-, mode 750");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ownership {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Directories get this mode; files the same without execute bits.
    pub mode: Option<u32>,
}

impl Ownership {
    pub fn is_empty(&self) -> bool {
        *self == Ownership::default()
    }

    /// Give every directory and file below `root` (and `root`) this owner
    /// and mode. Symlinks are not followed. A file with other links (a
    /// delta restore links the tables of the database it replaces) that
    /// this would change first gets an inode of its own: changing the
    /// shared one would change that other database too. Returns the bytes
    /// so copied.
    pub fn apply(&self, root: &Path) -> Result<u64> {
        if self.is_empty() {
            return Ok(0);
        }
        let meta = std::fs::symlink_metadata(root).ctx(root)?;
        if meta.file_type().is_symlink() {
            return Ok(0);
        }
        let mut copied = 0;
        if meta.is_file() && meta.nlink() > 1 && self.changes(&meta) {
            unshare(root)?;
            copied += meta.len();
        }
        if self.uid.is_some() || self.gid.is_some() {
            std::os::unix::fs::lchown(root, self.uid, self.gid).ctx(root)?;
        }
        if let Some(mode) = self.mode {
            let m = if meta.is_dir() { mode } else { mode & 0o666 };
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(m)).ctx(root)?;
        }
        if meta.is_dir() {
            for e in std::fs::read_dir(root).ctx(root)? {
                copied += self.apply(&e.ctx(root)?.path())?;
            }
        }
        Ok(copied)
    }

    /// Whether applying this to a file with `meta` would change it.
    fn changes(&self, meta: &std::fs::Metadata) -> bool {
        self.uid.is_some_and(|u| u != meta.uid())
            || self.gid.is_some_and(|g| g != meta.gid())
            || self.mode.is_some_and(|m| m & 0o666 != meta.mode() & 0o7777)
    }

    /// `uid:gid mode` for the summary line.
    pub fn describe(&self) -> String {
        let id = |v: Option<u32>| v.map_or("-".to_string(), |v| v.to_string());
        let mode = self.mode.map_or("-".to_string(), |m| format!("{m:o}"));
        format!("owner {}:{}, mode {mode}", id(self.uid), id(self.gid))
    }
}

/// Give `path` an inode of its own: a durable copy renamed over it (a
/// leftover copy from a kill is in the staging directory, which a later
/// restore clears).
fn unshare(path: &Path) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = kstone_core::fsio::parent(path);
    let tmp = dir.join(format!(".{name}.unshare"));
    let _ = std::fs::remove_file(&tmp);
    let copied = std::fs::copy(path, &tmp)
        .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).ctx(path);
    }
    kstone_core::fsio::sync_dir(dir)?;
    Ok(())
}
