//! `kstone backup rekey`: change who can unlock an encrypted repository.

use crate::exit::Exit;
use crate::repo_options::RepoOptions;
use crate::{CliError, CliResult};

use super::init::recipient_arg;

/// Change who can unlock an encrypted repository: re-wraps its data key
/// (one small object, whatever the repository's size). Needs --identity
/// of a current recipient.
#[derive(clap::Args, Debug)]
pub struct RekeyArgs {
    /// Repository location: a directory, or s3://bucket/prefix.
    #[arg(long)]
    pub repo: String,
    /// Add this recipient: age1…, ssh-ed25519 … or ssh-rsa …; repeat for several.
    #[arg(long, value_name = "PUBLIC_KEY", value_parser = recipient_arg)]
    pub add_recipient: Vec<String>,
    /// Remove this recipient (as `backup init --recipient` gave it); repeat for several.
    #[arg(long, value_name = "PUBLIC_KEY")]
    pub remove_recipient: Vec<String>,
    #[command(flatten)]
    pub access: RepoOptions,
}

/// Run `kstone backup rekey`.
pub fn run(a: &RekeyArgs) -> CliResult<Exit> {
    let RekeyArgs {
        repo,
        add_recipient,
        remove_recipient,
        access,
    } = a;
    if add_recipient.is_empty() && remove_recipient.is_empty() {
        return Err(CliError::failure(
            "give --add-recipient and/or --remove-recipient",
        ));
    }
    let r = crate::access::open(repo, &access.open_options())?;
    let now = r.rekey(add_recipient, remove_recipient)?;
    println!("the repository's data key is now wrapped to:");
    for k in now {
        println!("  {k}");
    }
    Ok(Exit::Success)
}
