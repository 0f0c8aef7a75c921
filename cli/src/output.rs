//! Standard output for the commands: one locked, buffered writer per command,
//! and the rule that a closed pipe (`factlog read ... | head`) is a quiet
//! success, not an error. Rust ignores `SIGPIPE`, so a closed pipe shows up
//! as an [`io::ErrorKind::BrokenPipe`] write error, handled here. Also the
//! aligned tables of the listing commands (`aggregates`, `snapshots`).

use std::borrow::Cow;
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

/// A column of a [`write_table`] table: its header and whether its values
/// (numbers) are aligned to the right.
pub struct Column {
    /// The header.
    pub name: &'static str,
    /// Align right (numbers) instead of left.
    pub right: bool,
}

/// Writes a header line and one line per row, columns separated by two
/// spaces and padded to their widest cell (in characters). The last column
/// is not padded when it is aligned left.
pub fn write_table<W: Write>(w: &mut W, columns: &[Column], rows: &[Vec<String>]) -> io::Result<()> {
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| rows.iter().filter_map(|r| r.get(i)).map(|v| v.chars().count()).fold(c.name.len(), usize::max))
        .collect();
    let header: Vec<&str> = columns.iter().map(|c| c.name).collect();
    write_row(w, columns, &widths, &header)?;
    for row in rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        write_row(w, columns, &widths, &cells)?;
    }
    Ok(())
}

fn write_row<W: Write>(w: &mut W, columns: &[Column], widths: &[usize], cells: &[&str]) -> io::Result<()> {
    let mut line = String::new();
    for (i, (column, (width, cell))) in columns.iter().zip(widths.iter().zip(cells)).enumerate() {
        if i > 0 {
            line.push_str("  ");
        }
        let last = i + 1 == columns.len();
        match (column.right, last) {
            (true, _) => line.push_str(&format!("{cell:>width$}")),
            (false, false) => line.push_str(&format!("{cell:<width$}")),
            (false, true) => line.push_str(cell),
        }
    }
    line.push('\n');
    w.write_all(line.as_bytes())
}

/// A name (an aggregate id) for a table cell: as it is, or quoted and
/// escaped like a Rust string when it is empty or holds whitespace, quotes,
/// backslashes or control characters, which would break the columns.
pub fn cell_name(name: &str) -> Cow<'_, str> {
    let plain = !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\\');
    if plain {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(format!("{name:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_their_columns() {
        let columns = [Column { name: "aggregate", right: false }, Column { name: "n", right: true }];
        let rows = vec![vec!["a".to_string(), "10".to_string()], vec!["long-name-é".to_string(), "2".to_string()]];
        let mut out = Vec::new();
        write_table(&mut out, &columns, &rows).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "aggregate     n\na            10\nlong-name-é   2\n");
    }

    #[test]
    fn names_that_would_break_columns_are_quoted() {
        assert_eq!(cell_name("acct-1"), "acct-1");
        assert_eq!(cell_name("ünï"), "ünï");
        assert_eq!(cell_name("a b"), "\"a b\"");
        assert_eq!(cell_name("a\tb"), "\"a\\tb\"");
        assert_eq!(cell_name("say \"hi\""), "\"say \\\"hi\\\"\"");
    }
}
