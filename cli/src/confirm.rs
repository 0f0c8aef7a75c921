//! The question a command asks before it destroys something for good
//! (`repair`, `erase`): asked on stderr, answered on standard input, and
//! only `yes` (or `y`) proceeds. The commands skip it with `--yes`.

use std::io::{self, BufRead, Write};

use crate::error::{CliError, CliResult};

/// Longest answer read from standard input, bytes.
const ANSWER_BYTES_MAX: u64 = 256;

/// Prints `question` and ` Type yes to proceed: ` on stderr and reads one
/// line from `input`: whether it is `yes` or `y` (any case, spaces around).
/// An empty input (end of file) is a no.
pub fn ask(question: &str, input: impl BufRead) -> CliResult<bool> {
    eprint!("{question} Type yes to proceed: ");
    let _ = io::stderr().flush();
    let mut answer = String::new();
    input
        .take(ANSWER_BYTES_MAX)
        .read_line(&mut answer)
        .map_err(|e| CliError::new(format!("reading the answer from standard input: {e}")))?;
    let answer = answer.trim().to_ascii_lowercase();
    if answer.is_empty() {
        eprintln!();
    }
    Ok(answer == "yes" || answer == "y")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_yes_confirms() {
        for (answer, want) in [("yes\n", true), ("Y\n", true), (" YES \n", true), ("no\n", false), ("", false)] {
            assert_eq!(ask("Go?", answer.as_bytes()).unwrap(), want, "{answer:?}");
        }
        let long = format!("{}yes\n", " ".repeat(1000));
        assert!(!ask("Go?", long.as_bytes()).unwrap());
    }
}
