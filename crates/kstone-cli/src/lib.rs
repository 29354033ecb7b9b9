//! The `kstone` command-line tool: parses arguments, calls the libraries,
//! prints results. Exit codes: 0 success, 1 failure, 2 usage error.

pub mod access;
pub mod agent;
pub mod args;
pub mod bench;
pub mod commands;
pub mod demo;
pub mod ownership;
pub mod progress;
pub mod stop;

use std::process::ExitCode;

use clap::Parser;

/// A failure the CLI reports as one line on stderr with exit code 1.
#[derive(Debug)]
pub struct CliError(pub String);

impl<E: std::fmt::Display> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError(e.to_string())
    }
}

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
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    access::set(&cli.access);
    match commands::run(cli.command) {
        Ok(code) => code,
        Err(CliError(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
    }
}
