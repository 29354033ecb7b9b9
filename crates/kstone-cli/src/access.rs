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

/// Open, or create an (unencrypted) repository at an empty location.
pub fn open_or_init(location: &str) -> CliResult<(Repository, bool)> {
    Ok(Repository::open_or_init_with(
        location,
        &options(),
        Some(3),
    )?)
}
