//! The CLI's failure type and its exit codes. Every command returns
//! [`CliError`]; `main` prints it as `error: <message>` on stderr and exits
//! with [`CliError::exit_code`].
//!
//! Exit codes: 0 success, 1 any error, 2 a conflict — the store refused an
//! append because its state disagrees with the caller (wrong expected
//! version, or an event id already stored elsewhere; nothing was written in
//! either case), 3 `factlog verify` found the store damaged (problems in its
//! files, or corruption that keeps it from opening).

use std::fmt;

/// Exit code of every error that is not a conflict (usage, I/O, corruption, ...).
pub const EXIT_ERROR: u8 = 1;
/// Exit code of an append refused by optimistic concurrency or event-id dedupe.
pub const EXIT_CONFLICT: u8 = 2;
/// Exit code of `factlog verify` when it finds the store damaged.
pub const EXIT_PROBLEMS: u8 = 3;

/// A failed command: the message to print and the exit code.
#[derive(Debug)]
pub struct CliError {
    message: String,
    code: u8,
}

impl CliError {
    /// A general error (exit code 1).
    pub fn new(message: impl Into<String>) -> CliError {
        CliError { message: message.into(), code: EXIT_ERROR }
    }

    /// A failure with an explicit exit code. An empty message prints nothing
    /// (the command has already said everything on stdout).
    pub fn with_code(code: u8, message: impl Into<String>) -> CliError {
        CliError { message: message.into(), code }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        self.code
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<factlog::Error> for CliError {
    fn from(e: factlog::Error) -> Self {
        let code = match e {
            factlog::Error::WrongExpectedVersion { .. } | factlog::Error::DuplicateEventId { .. } => EXIT_CONFLICT,
            _ => EXIT_ERROR,
        };
        CliError { message: e.to_string(), code }
    }
}

/// Result alias of the commands.
pub type CliResult<T = ()> = Result<T, CliError>;
