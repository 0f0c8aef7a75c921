//! `factlog tail`: prints the log's durable events from a start point as JSON
//! lines (the lines `read` prints, rendered by [`crate::json`]), filtered by
//! event type and aggregate-id prefix, and with `--follow` keeps printing new
//! ones as they become durable. It works beside an application that has the
//! store open for writing: the store is opened read-only, its view ends at
//! the writer's published durable watermark, and an engine subscription
//! follows that watermark (polling it every millisecond). It never changes
//! the store. A closed pipe ends it quietly with success.

use std::io::Write;
use std::time::Duration;

use factlog::{Filter, StartFrom};

use crate::error::{CliError, CliResult};
use crate::json::{write_event_line, EventFields};
use crate::{open, output, TailArgs};

/// Most events taken from the subscription at a time.
const BATCH_EVENTS: usize = 1024;
/// How long `--follow` waits for new events before waiting again (it checks
/// the store is still following in between).
const FOLLOW_WAIT: Duration = Duration::from_secs(1);

/// Runs `factlog tail`.
pub fn run(args: &TailArgs, wait: Duration) -> CliResult {
    let store = open::open_existing(&args.dir, wait)?;
    let mut sub = store.subscribe(args.from, filter(&args.event_types, &args.aggregate_prefixes));
    let mut out = output::stdout();
    loop {
        let timeout = if args.follow { FOLLOW_WAIT } else { Duration::ZERO };
        let batch = match sub.next_batch(BATCH_EVENTS, timeout) {
            Ok(batch) => batch,
            Err(factlog::Error::Closed) => {
                output::finish(out.flush())?;
                // A follower stops on its first failure; `refresh` names it.
                return store.refresh().map(|_| ()).map_err(CliError::from);
            }
            Err(e) => {
                output::finish(out.flush())?;
                return Err(CliError::from(e));
            }
        };
        if batch.is_empty() && !args.follow {
            return output::finish(out.flush());
        }
        let written = batch.iter().try_for_each(|e| write_event_line(&mut out, &EventFields::from(e)));
        // Each batch reaches the reader of the pipe at once (`--follow` is live).
        if let Err(e) = written.and_then(|()| out.flush()) {
            return output::finish(Err(e));
        }
    }
}

/// The filter of `--type T`... and `--aggregate-prefix X`... (all events when neither is given).
pub fn filter(event_types: &[String], aggregate_prefixes: &[String]) -> Filter {
    let mut filter = Filter::all();
    if !event_types.is_empty() {
        filter = filter.event_types(event_types.iter().cloned());
    }
    if !aggregate_prefixes.is_empty() {
        filter = filter.aggregate_prefixes(aggregate_prefixes.iter().cloned());
    }
    filter
}

/// Parses `--from`: `start`, `end` or a position.
pub fn parse_from(s: &str) -> Result<StartFrom, String> {
    match s {
        "start" => Ok(StartFrom::Start),
        "end" => Ok(StartFrom::End),
        n => {
            n.parse().map(StartFrom::Position).map_err(|_| format!("expected `start`, `end` or a position, not {s:?}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_spellings() {
        assert_eq!(parse_from("start"), Ok(StartFrom::Start));
        assert_eq!(parse_from("end"), Ok(StartFrom::End));
        assert_eq!(parse_from("42"), Ok(StartFrom::Position(42)));
        assert!(parse_from("-1").is_err());
        assert!(parse_from("later").is_err());
    }
}
