//! The process exit codes, one per kind of outcome a script can act on.
//! The table operators read is in docs/operations.md ("Exit codes"); keep
//! the two in step.

use std::process::ExitCode;

use kstone_core::error::ErrorKind;

/// How `kstone` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: the command did what was asked.
    Success,
    /// 1: any other failure; also a command that reports problems it found
    /// (`check`, `backup verify`, `backup status`) and a restore that cannot
    /// reach exactly the point asked for (the recovery contract).
    Failure,
    /// 2: the command line is wrong (clap's usage errors).
    Usage,
    /// 3: no database at the path, no repository at the location, no such
    /// backup, restore point name or archive file.
    NotFound,
    /// 4: another process holds the database's `LOCK`, the repository's
    /// lock, or archives the database already.
    Locked,
    /// 5: an encrypted repository's data cannot be decrypted: no `--identity`,
    /// or none given is a recipient.
    CannotDecrypt,
    /// 6: stored data is damaged (a checksum or structural check failed).
    Corruption,
}

impl Exit {
    /// The numeric code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failure => 1,
            Exit::Usage => 2,
            Exit::NotFound => 3,
            Exit::Locked => 4,
            Exit::CannotDecrypt => 5,
            Exit::Corruption => 6,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}

impl From<ErrorKind> for Exit {
    fn from(k: ErrorKind) -> Exit {
        match k {
            ErrorKind::Failure => Exit::Failure,
            ErrorKind::NotFound => Exit::NotFound,
            ErrorKind::Locked => Exit::Locked,
            ErrorKind::CannotDecrypt => Exit::CannotDecrypt,
            ErrorKind::Corruption => Exit::Corruption,
        }
    }
}
