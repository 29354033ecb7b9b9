//! The `kstone` command-line tool: parses arguments, calls the libraries,
//! prints results. Each command lives in its own file under `commands/`.
//!
//! Exit codes ([`exit::Exit`]; the table is in docs/operations.md, "Exit
//! codes"): 0 success, 1 failure (also problems found by `check`, `backup
//! verify` and `backup status`, and a restore that cannot reach exactly the
//! point asked for), 2 usage error, 3 not found, 4 lock held, 5 cannot
//! decrypt, 6 corruption.

pub mod access;
pub mod agent;
pub mod args;
pub mod bench;
pub mod commands;
pub mod demo;
pub mod exit;
pub mod key_options;
pub mod ownership;
pub mod paging;
pub mod progress;
pub mod repo_options;
pub mod stop;
pub mod time_args;

use std::process::ExitCode;

use clap::Parser;

use crate::exit::Exit;

/// A failure the CLI reports as one line on stderr, ending with the exit
/// code of its kind.
#[derive(Debug)]
pub struct CliError {
    /// How the process ends.
    pub exit: Exit,
    /// The line printed after `error: `.
    pub msg: String,
}

impl CliError {
    /// An error ending with `exit`.
    pub fn new(exit: Exit, msg: impl Into<String>) -> CliError {
        CliError {
            exit,
            msg: msg.into(),
        }
    }

    /// A failure (exit 1) that only has a message.
    pub fn failure(msg: impl Into<String>) -> CliError {
        CliError {
            exit: Exit::Failure,
            msg: msg.into(),
        }
    }

    /// The same failure kind with another message (e.g. with context added).
    pub fn with_msg(self, msg: impl Into<String>) -> CliError {
        CliError {
            exit: self.exit,
            msg: msg.into(),
        }
    }
}

impl From<kstone_core::Error> for CliError {
    fn from(e: kstone_core::Error) -> Self {
        CliError {
            exit: e.kind().into(),
            msg: e.to_string(),
        }
    }
}

impl From<kstone_backup::Error> for CliError {
    fn from(e: kstone_backup::Error) -> Self {
        CliError {
            exit: e.kind().into(),
            msg: e.to_string(),
        }
    }
}

/// Errors that carry no kind beyond "it failed" (exit 1).
macro_rules! failure_from {
    ($($t:ty),* $(,)?) => {
        $(impl From<$t> for CliError {
            fn from(e: $t) -> Self {
                CliError::failure(e.to_string())
            }
        })*
    };
}

failure_from!(std::io::Error, serde_json::Error, tempfile::PersistError,);

/// What every command returns: the exit code of a completed command (0, or
/// 1 for problems it reports), or the error that stopped it.
pub type CliResult<T = ()> = Result<T, CliError>;

/// Parse `args` and run the command.
pub fn main_with<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match args::Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                Exit::Usage
            } else {
                Exit::Success
            }
            .into();
        }
    };
    match commands::run(cli.command) {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("error: {}", e.msg);
            e.exit.into()
        }
    }
}
