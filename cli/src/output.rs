//! Standard output for the commands: one locked, buffered writer per command,
//! and the rule that a closed pipe (`factlog read ... | head`) is a quiet
//! success, not an error. Rust ignores `SIGPIPE`, so a closed pipe shows up
//! as an [`io::ErrorKind::BrokenPipe`] write error, handled here.

use std::io::{self, BufWriter, StdoutLock, Write};

use crate::error::{CliError, CliResult};

/// Size of the stdout buffer.
const BUFFER_BYTES: usize = 64 * 1024;

/// A locked, buffered stdout.
pub fn stdout() -> BufWriter<StdoutLock<'static>> {
    BufWriter::with_capacity(BUFFER_BYTES, io::stdout().lock())
}

/// Turns the outcome of writing to stdout into the command's result: a
/// broken pipe means the consumer has seen enough, which is success.
pub fn finish(result: io::Result<()>) -> CliResult {
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::new(format!("writing output: {e}"))),
    }
}

/// Writes `text` to stdout and flushes it.
pub fn print(text: &str) -> CliResult {
    let mut out = stdout();
    finish(out.write_all(text.as_bytes()).and_then(|()| out.flush()))
}
