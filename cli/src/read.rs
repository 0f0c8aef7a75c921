//! `factlog read`: streams events of one aggregate (`--aggregate`) or of the
//! whole log (`--all`) to stdout as JSON lines. Events are borrowed from the
//! engine's zero-copy [`factlog::Reader`] and rendered one at a time into a
//! locked, buffered stdout: memory use does not grow with the number of
//! events. A closed pipe ends the command quietly with success. The store is
//! opened read-only: reading never changes it, and runs beside other readers.
//! An aggregate with no events prints nothing on stdout and a note on stderr
//! (a mistyped id is then visible), and still succeeds. The line format is in
//! [`crate::json`].

use std::io::{self, Write};
use std::time::Duration;

use factlog::{Direction, EventRef};

use crate::error::{CliError, CliResult};
use crate::json::{write_event_line, EventFields};
use crate::{open, output, ReadArgs};

/// Why streaming stopped early.
enum StreamError {
    /// Writing to stdout failed (a closed pipe included).
    Output(io::Error),
    /// The store failed to produce an event (corruption, I/O).
    Store(factlog::Error),
}

/// Runs `factlog read`.
pub fn run(args: &ReadArgs, wait: Duration) -> CliResult {
    let store = open::open_existing(&args.dir, wait)?;
    let reader = store.reader();
    let limit = args.limit.unwrap_or(usize::MAX);
    let mut out = output::stdout();
    let streamed = match &args.aggregate {
        Some(aggregate) => {
            if store.aggregate_version(aggregate).is_none() {
                eprintln!("note: aggregate {aggregate:?} has no events in {}", args.dir.display());
            }
            let (from, direction) = match (args.backward, args.from) {
                (false, from) => (from.unwrap_or(0), Direction::Forward),
                (true, from) => (from.unwrap_or(u64::MAX), Direction::Backward),
            };
            stream(reader.read_aggregate(aggregate, from, direction).take(limit), &mut out)
        }
        None => stream(reader.read_all(args.from.unwrap_or_else(|| reader.first_position())).take(limit), &mut out),
    };
    match streamed {
        Ok(()) => output::finish(out.flush()),
        Err(StreamError::Output(e)) => output::finish(Err(e)),
        Err(StreamError::Store(e)) => {
            // Keep what was read before the failure, then report it.
            output::finish(out.flush())?;
            Err(CliError::from(e))
        }
    }
}

/// Writes each event as one JSON line, stopping at the first failure.
fn stream<'r, W: Write>(
    events: impl Iterator<Item = factlog::Result<EventRef<'r>>>,
    out: &mut W,
) -> Result<(), StreamError> {
    for event in events {
        let event = event.map_err(StreamError::Store)?;
        write_event_line(out, &EventFields::from(&event)).map_err(StreamError::Output)?;
    }
    Ok(())
}
