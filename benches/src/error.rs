//! The benchmark's error type: one string-carrying error that every engine
//! adapter, workload and measurement converts its failures into.

use std::fmt;

/// A benchmark failure with a human-readable explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchError(pub String);

/// Result alias used throughout the benchmark crate.
pub type BenchResult<T> = Result<T, BenchError>;

impl BenchError {
    /// Builds an error from anything printable.
    pub fn msg(text: impl Into<String>) -> Self {
        BenchError(text.into())
    }

    /// Prefixes the message with what was being done when it failed.
    #[must_use]
    pub fn context(self, what: impl fmt::Display) -> Self {
        BenchError(format!("{what}: {}", self.0))
    }
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BenchError {}

impl From<std::io::Error> for BenchError {
    fn from(e: std::io::Error) -> Self {
        BenchError(format!("I/O error: {e}"))
    }
}

impl From<rusqlite::Error> for BenchError {
    fn from(e: rusqlite::Error) -> Self {
        BenchError(format!("sqlite: {e}"))
    }
}

impl From<fjall::Error> for BenchError {
    fn from(e: fjall::Error) -> Self {
        BenchError(format!("fjall: {e}"))
    }
}

impl From<factlog::Error> for BenchError {
    fn from(e: factlog::Error) -> Self {
        BenchError(format!("factlog: {e}"))
    }
}

/// Adds `.ctx("doing X")` to any result whose error converts into [`BenchError`].
pub trait Context<T> {
    /// Converts the error and prefixes it with `what`.
    fn ctx(self, what: impl fmt::Display) -> BenchResult<T>;
}

impl<T, E: Into<BenchError>> Context<T> for Result<T, E> {
    fn ctx(self, what: impl fmt::Display) -> BenchResult<T> {
        self.map_err(|e| e.into().context(what))
    }
}
