//! The CLI's failure type and its exit codes. Every command returns
//! [`CliError`]; `main` prints it as `error: <message>` on stderr, then its
//! hint line if it has one, and exits with [`CliError::exit_code`]. An error
//! made from the engine's `Error::Corrupt` remembers that it is corruption,
//! so that `main` can add the `factlog repair` line with the store's path.
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
    /// A line printed after the message: what to do about it.
    hint: Option<String>,
    /// The store's data is damaged (the engine's `Error::Corrupt`).
    corruption: bool,
}

impl CliError {
    /// A general error (exit code 1).
    pub fn new(message: impl Into<String>) -> CliError {
        CliError::with_code(EXIT_ERROR, message)
    }

    /// A failure with an explicit exit code. An empty message prints nothing
    /// (the command has already said everything on stdout).
    pub fn with_code(code: u8, message: impl Into<String>) -> CliError {
        CliError { message: message.into(), code, hint: None, corruption: false }
    }

    /// Marks this error as caused by damaged data (see [`CliError::is_corruption`]).
    pub fn corruption(mut self) -> CliError {
        self.corruption = true;
        self
    }

    /// Adds a line telling the user what to do, printed after the message.
    pub fn with_hint(mut self, hint: impl Into<String>) -> CliError {
        self.hint = Some(hint.into());
        self
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        self.code
    }

    /// Whether the store's data is damaged: the engine reported corruption.
    pub fn is_corruption(&self) -> bool {
        self.corruption
    }

    /// The line to print after the message, if any.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
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
        let corruption = matches!(e, factlog::Error::Corrupt { .. });
        CliError { message: e.to_string(), code, hint: None, corruption }
    }
}

/// Result alias of the commands.
pub type CliResult<T = ()> = Result<T, CliError>;
