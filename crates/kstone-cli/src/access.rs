//! Opening repositories with the options a command was given
//! ([`crate::repo_options::RepoOptions`]).

use kstone_backup::{OpenOptions, Repository};

use crate::exit::Exit;
use crate::{CliError, CliResult};

/// Open the repository at `location`.
pub fn open(location: &str, opts: &OpenOptions) -> CliResult<Repository> {
    Ok(Repository::open_with(location, opts)?)
}

/// Open, or create an (unencrypted) repository at an empty location — but
/// not where `db` remembers archiving to a repository that is gone (an
/// unmounted disk, a moved directory): a new unencrypted repository there
/// would take the writes meant for the old one, perhaps an encrypted one.
pub fn open_or_init(
    location: &str,
    db: &std::path::Path,
    opts: &OpenOptions,
) -> CliResult<(Repository, bool)> {
    match Repository::open_with(location, opts) {
        Ok(r) => return Ok((r, false)),
        Err(kstone_backup::Error::NotARepository(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let regs = kstone_core::archiving::registrations(db).unwrap_or_default();
    if let Some((id, _)) = regs
        .iter()
        .find(|(_, r)| same_location(&r.location, location))
    {
        // No repository where one was: not found (exit 3).
        return Err(CliError::new(
            Exit::NotFound,
            format!(
                "{} archives to the repository {id} at {location}, which is not there any more \
             (an unmounted disk, a moved directory?); nothing was initialized. Bring it back; \
             if it is gone for good, `kstone wal-archive {} --repo {location} --unregister`, \
             then make a new one with `kstone backup init`",
                db.display(),
                db.display()
            ),
        ));
    }
    Ok(Repository::open_or_init_with(location, opts, Some(3))?)
}

/// Two spellings of one repository location (`repo`, `./repo/`, its
/// absolute path; an `s3://` location as written).
fn same_location(a: &str, b: &str) -> bool {
    let norm = |s: &str| -> std::path::PathBuf {
        let p = std::path::Path::new(s.trim_end_matches('/'));
        std::path::absolute(p)
            .map(|abs| abs.components().collect())
            .unwrap_or_else(|_| p.to_path_buf())
    };
    if a.contains("://") || b.contains("://") {
        a.trim_end_matches('/') == b.trim_end_matches('/')
    } else {
        norm(a) == norm(b)
    }
}
