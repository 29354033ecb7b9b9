//! Opening repositories with the global `--identity` / `--s3-*` options.

use std::sync::OnceLock;

use kstone_backup::{OpenOptions, Repository};

use crate::args::AccessArgs;
use crate::CliResult;

static OPTIONS: OnceLock<OpenOptions> = OnceLock::new();

/// Remember the command line's access options (first call wins).
pub fn set(a: &AccessArgs) {
    let _ = OPTIONS.set(OpenOptions {
        identity: a.identity.clone(),
        s3: kstone_backup::storage::S3Settings {
            storage_class: a.s3_storage_class.clone(),
            sse: a.s3_sse.clone(),
            sse_kms_key_id: a.s3_sse_kms_key_id.clone(),
        },
    });
}

pub fn options() -> OpenOptions {
    OPTIONS.get().cloned().unwrap_or_else(OpenOptions::from_env)
}

pub fn open(location: &str) -> CliResult<Repository> {
    Ok(Repository::open_with(location, &options())?)
}

/// Open, or create an (unencrypted) repository at an empty location — but
/// not where `db` remembers archiving to a repository that is gone (an
/// unmounted disk, a moved directory): a new unencrypted repository there
/// would take the writes meant for the old one, perhaps an encrypted one.
pub fn open_or_init(location: &str, db: &std::path::Path) -> CliResult<(Repository, bool)> {
    match Repository::open_with(location, &options()) {
        Ok(r) => return Ok((r, false)),
        Err(kstone_backup::Error::NotARepository(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let regs = kstone_core::wal::archive_mark::registrations(db).unwrap_or_default();
    if let Some((id, _)) = regs
        .iter()
        .find(|(_, r)| same_location(&r.location, location))
    {
        return Err(crate::CliError(format!(
            "{} archives to the repository {id} at {location}, which is not there any more \
             (an unmounted disk, a moved directory?); nothing was initialized. Bring it back; \
             if it is gone for good, `kstone wal-archive {} --repo {location} --unregister`, \
             then make a new one with `kstone backup init`",
            db.display(),
            db.display()
        )));
    }
    Ok(Repository::open_or_init_with(
        location,
        &options(),
        Some(3),
    )?)
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
