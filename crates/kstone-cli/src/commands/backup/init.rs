//! `kstone backup init`: a new repository (or a repaired config).

use kstone_backup::Repository;

use crate::exit::Exit;
use crate::repo_options::WriteOptions;
use crate::{CliError, CliResult};

/// Create a backup repository at an empty location: a directory or
/// s3://bucket/prefix (endpoint, region and credentials from the AWS_*
/// environment variables). With --recipient it is encrypted: every data
/// object is sealed with age before it leaves this machine.
#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// Repository location: a directory, or s3://bucket/prefix.
    #[arg(long)]
    pub repo: String,
    /// zstd level for stored files (1-19); data that does not compress
    /// is stored as is.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub compression_level: i32,
    /// Store files uncompressed.
    #[arg(long, conflicts_with = "compression_level")]
    pub no_compression: bool,
    /// Encrypt to this recipient: an age key (age1…) or an SSH public key
    /// ("ssh-ed25519 AAAA…" or "ssh-rsa AAAA…", quoted); repeat for
    /// several.
    #[arg(long, value_name = "PUBLIC_KEY", value_parser = recipient_arg)]
    pub recipient: Vec<String>,
    /// Encrypt to every recipient in this file (one per line: age1…,
    /// ssh-ed25519 … or ssh-rsa …; an authorized_keys file works).
    #[arg(long, value_name = "FILE")]
    pub recipients_file: Option<std::path::PathBuf>,
    /// Rewrite the lost `config` object of an existing repository from
    /// the copy its backup manifests carry (id, compression, encryption);
    /// no other option applies. Without it, init only ever creates a
    /// repository at an empty location.
    #[arg(long, conflicts_with_all = ["recipient", "recipients_file", "no_compression", "format"])]
    pub repair: bool,
    /// Repository format. 2 (the default) stores files as content-defined
    /// chunks in pack files: a chunk is stored once across backups,
    /// compactions and databases. 1 stores each file whole, readable by
    /// kstone versions before format 2.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=2))]
    pub format: Option<u32>,
    #[command(flatten)]
    pub s3: WriteOptions,
}

/// A recipient given on the command line, checked as it is read (a bad key
/// is a usage error).
pub fn recipient_arg(s: &str) -> Result<String, String> {
    kstone_backup::crypto::parse_recipient(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

/// Run `kstone backup init`.
pub fn run(a: &InitArgs) -> CliResult<Exit> {
    let InitArgs {
        repo,
        compression_level,
        no_compression,
        recipient,
        recipients_file,
        repair,
        format,
        s3,
    } = a;
    if *repair {
        let storage = kstone_backup::storage::Storage::open_with(repo, false, &s3.settings())?;
        let c = Repository::repair_config(storage)?;
        println!(
            "rewrote the config of repository {repo} (id {}, {})",
            c.repository_id,
            if c.encryption.is_some() {
                "encrypted"
            } else {
                "not encrypted"
            }
        );
        return Ok(Exit::Success);
    }
    let mut recipients = recipient.clone();
    if let Some(f) = &recipients_file {
        let from_file = kstone_backup::crypto::read_recipients_file(f)?;
        if from_file.is_empty() {
            return Err(CliError::failure(format!(
                "{} lists no recipient",
                f.display()
            )));
        }
        recipients.extend(from_file);
    }
    let init = kstone_backup::InitOptions {
        compression_level: (!no_compression).then_some(*compression_level),
        recipients,
        format: format.unwrap_or(0),
    };
    // Before the location is created: a refused init leaves nothing.
    init.validate()?;
    let storage = kstone_backup::storage::Storage::open_with(repo, true, &s3.settings())?;
    let r = Repository::init_with(storage, &init)?;
    println!(
        "initialized repository {} (id {}, format {})",
        repo, r.config.repository_id, r.config.format_version
    );
    if r.encryption().is_some() {
        let n = r.recipients()?.len();
        println!(
            "encrypted (age) to {n} recipient{}: backups need no secret; restore, verify --deep, export and PITR need --identity",
            if n == 1 { "" } else { "s" }
        );
    }
    Ok(Exit::Success)
}
