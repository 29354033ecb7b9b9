//! Who owns a restored database: `restore --owner USER[:GROUP] --mode 700`,
//! or by default the owner and mode of the database it replaces (the
//! chapter's `chown -R keystonedb:keystonedb` and `chmod 700`, done by the
//! restore itself).

use std::ffi::CString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::{CliError, CliResult};

/// Owner and directory mode to give a restored database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ownership {
    uid: Option<u32>,
    gid: Option<u32>,
    /// Directories get this mode; files the same without execute bits.
    mode: Option<u32>,
}

impl Ownership {
    /// From `--owner`/`--mode`, falling back to those of the existing
    /// `target` (read before the restore replaces it).
    pub fn for_restore(
        owner: Option<&str>,
        mode: Option<&str>,
        target: &Path,
    ) -> CliResult<Ownership> {
        let old = std::fs::metadata(target).ok().filter(|m| m.is_dir());
        let (old_uid, old_gid) = (old.as_ref().map(|m| m.uid()), old.as_ref().map(|m| m.gid()));
        // As with chown, the part not given is kept: `--owner alice` keeps
        // the replaced database's group.
        let (uid, gid) = match owner {
            Some(o) => {
                let (u, g) = parse_owner(o)?;
                (u.or(old_uid), g.or(old_gid))
            }
            None => (old_uid, old_gid),
        };
        let mode = match mode {
            Some(m) => Some(parse_mode(m)?),
            // The old database's mode, but never one its owner cannot use.
            None => old.as_ref().map(|m| (m.mode() & 0o777) | 0o700),
        };
        Ok(Ownership { uid, gid, mode })
    }

    pub fn is_empty(&self) -> bool {
        *self == Ownership::default()
    }

    /// Give every directory and file below `root` (and `root`) this owner
    /// and mode. Symlinks are not followed.
    pub fn apply(&self, root: &Path) -> CliResult<()> {
        if self.is_empty() {
            return Ok(());
        }
        let meta = std::fs::symlink_metadata(root).map_err(|e| io(root, e))?;
        if meta.file_type().is_symlink() {
            return Ok(());
        }
        if meta.is_file() && meta.nlink() > 1 && self.changes(&meta) {
            // A delta restore hard-links the tables the database it
            // replaced holds unchanged: changing this inode would change
            // that moved-aside copy too, which a restore never touches.
            unshare(root)?;
        }
        if self.uid.is_some() || self.gid.is_some() {
            std::os::unix::fs::lchown(root, self.uid, self.gid).map_err(|e| io(root, e))?;
        }
        if let Some(mode) = self.mode {
            let m = if meta.is_dir() { mode } else { mode & 0o666 };
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(m))
                .map_err(|e| io(root, e))?;
        }
        if meta.is_dir() {
            for e in std::fs::read_dir(root).map_err(|e| io(root, e))? {
                self.apply(&e.map_err(|e| io(root, e))?.path())?;
            }
        }
        Ok(())
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

/// Give `path` an inode of its own: a durable copy renamed over it.
fn unshare(path: &Path) -> CliResult<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = kstone_core::fsio::parent(path);
    let tmp = dir.join(format!(".{name}.unshare"));
    let _ = std::fs::remove_file(&tmp);
    std::fs::copy(path, &tmp).map_err(|e| io(&tmp, e))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))?;
    kstone_core::fsio::sync_dir(dir).map_err(|e| CliError::failure(e.to_string()))
}

fn io(path: &Path, e: std::io::Error) -> CliError {
    CliError::failure(format!("{}: {e}", path.display()))
}

/// `--owner` checked when the command line is read: a bad one is a usage
/// error (exit 2) before anything happens.
pub fn owner_arg(s: &str) -> Result<String, String> {
    parse_owner(s).map(|_| s.to_string()).map_err(|e| e.msg)
}

/// `--mode`, checked like `--owner`.
pub fn mode_arg(s: &str) -> Result<String, String> {
    parse_mode(s).map(|_| s.to_string()).map_err(|e| e.msg)
}

/// `USER`, `USER:GROUP`, `:GROUP`, names or numeric ids.
fn parse_owner(s: &str) -> CliResult<(Option<u32>, Option<u32>)> {
    let (user, group) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    let uid = if user.is_empty() {
        None
    } else {
        Some(match user.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup_user(user)?,
        })
    };
    let gid = match group {
        None | Some("") => None,
        Some(g) => Some(match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup_group(g)?,
        }),
    };
    if uid.is_none() && gid.is_none() {
        return Err(CliError::failure(format!(
            "--owner {s:?}: expected USER, USER:GROUP or :GROUP"
        )));
    }
    Ok((uid, gid))
}

fn lookup_user(name: &str) -> CliResult<u32> {
    let c =
        CString::new(name).map_err(|_| CliError::failure(format!("--owner: bad user {name:?}")))?;
    // SAFETY: getpwnam returns null or a pointer to static storage, read at once.
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    if pw.is_null() {
        return Err(CliError::failure(format!(
            "--owner: no user {name:?} on this host"
        )));
    }
    // SAFETY: non-null, as checked.
    Ok(unsafe { (*pw).pw_uid })
}

fn lookup_group(name: &str) -> CliResult<u32> {
    let c = CString::new(name)
        .map_err(|_| CliError::failure(format!("--owner: bad group {name:?}")))?;
    // SAFETY: getgrnam returns null or a pointer to static storage, read at once.
    let gr = unsafe { libc::getgrnam(c.as_ptr()) };
    if gr.is_null() {
        return Err(CliError::failure(format!(
            "--owner: no group {name:?} on this host"
        )));
    }
    // SAFETY: non-null, as checked.
    Ok(unsafe { (*gr).gr_gid })
}

/// An octal mode such as `700` or `0750` (no setuid/setgid/sticky bits).
fn parse_mode(s: &str) -> CliResult<u32> {
    match u32::from_str_radix(s, 8) {
        Ok(m) if m <= 0o777 && m & 0o700 == 0o700 => Ok(m),
        Ok(m) if m <= 0o777 => Err(CliError::failure(format!(
            "--mode {s:?}: the owner needs read, write and search on the database ({:o} lacks them); give e.g. 700 or 750",
            m
        ))),
        Ok(_) => Err(CliError::failure(format!(
            "--mode {s:?}: setuid, setgid and sticky bits are not set on a database; give e.g. 700 or 750"
        ))),
        Err(_) => Err(CliError::failure(format!(
            "--mode {s:?}: expected an octal mode such as 700 or 750"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_and_modes_parse() {
        assert_eq!(parse_owner("0").unwrap(), (Some(0), None));
        assert_eq!(parse_owner("0:0").unwrap(), (Some(0), Some(0)));
        assert_eq!(parse_owner("root:root").unwrap(), (Some(0), Some(0)));
        assert_eq!(parse_owner(":0").unwrap(), (None, Some(0)));
        assert!(parse_owner(":").is_err());
        assert!(parse_owner("no-such-user-kstone").is_err());
        assert_eq!(parse_mode("700").unwrap(), 0o700);
        assert_eq!(parse_mode("0750").unwrap(), 0o750);
        // Directories the owner cannot enter are no database.
        assert!(parse_mode("600").is_err());
        assert!(parse_mode("0").is_err());
        assert!(parse_mode("800").is_err());
        assert!(parse_mode("4755").is_err());
    }
}
