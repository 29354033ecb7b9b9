//! `kstone backup keygen`: a new age identity file.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::exit::Exit;
use crate::{CliError, CliResult};

/// Write a new age identity file (mode 0600) and print its public key,
/// for `backup init --recipient` (same format as age-keygen).
#[derive(clap::Args, Debug)]
pub struct KeygenArgs {
    /// The identity file to write (must not exist).
    #[arg(short = 'o', long)]
    pub output: PathBuf,
}

/// Run `kstone backup keygen`.
pub fn run(a: &KeygenArgs) -> CliResult<Exit> {
    let output = &a.output;
    let (text, public) = kstone_backup::crypto::generate_identity();
    write_new_secret(output, text.as_bytes())?;
    eprintln!(
        "wrote identity to {} (keep it safe and off the backup host)",
        output.display()
    );
    println!("{public}");
    Ok(Exit::Success)
}

/// Create `path` with mode 0600; never replaces an existing file.
fn write_new_secret(path: &Path, bytes: &[u8]) -> CliResult<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| CliError::failure(format!("cannot create {}: {e}", path.display())))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        kstone_core::fsio::sync_dir(dir)?;
    }
    Ok(())
}
