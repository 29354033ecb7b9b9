//! Who owns a restored database: `restore --owner USER[:GROUP] --mode 700`,
//! or by default the owner and mode of the database it replaces (the
//! chapter's `chown -R keystonedb:keystonedb` and `chmod 700`, done by the
//! restore itself).

use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

pub use kstone_backup::ownership::Ownership;

use crate::{CliError, CliResult};

/// The owner and mode for a restore into `target`: from `--owner`/`--mode`,
/// falling back to those of the existing `target` (read before the restore
/// replaces it).
pub fn for_restore(owner: Option<&str>, mode: Option<&str>, target: &Path) -> CliResult<Ownership> {
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
