//! `factlog relay`: ships the store's log to a NATS JetStream stream (the
//! `factlog-relay` crate does the work), opened read-only so that it runs
//! beside the application that writes the store. It runs until interrupted,
//! waiting for the broker whenever it is down, and prints a status line with
//! its lag on stderr every `--report-every` seconds. It returns only on an
//! error that waiting does not fix (a conflicting stream, a refused publish).

use std::time::Duration;

use factlog_relay::{Relay, RelayOptions};

use crate::error::{CliError, CliResult};
use crate::{open, tail, RelayArgs};

/// Runs `factlog relay`.
pub fn run(args: &RelayArgs, wait: Duration) -> CliResult {
    let store = open::open_existing(&args.dir, wait)?;
    let filter = tail::filter(&args.event_types, &args.aggregate_prefixes);
    let mut options =
        RelayOptions::new(&args.nats, &args.stream).filter(filter).accept_retention_gap(args.accept_retention_gap);
    if let Some(prefix) = &args.subject_prefix {
        options = options.subject_prefix(prefix);
    }
    if let Some(name) = &args.consumer {
        options = options.consumer(name);
    }
    let mut relay = Relay::new(&store, options).map_err(relay_error)?;
    let status = relay.status_handle();
    let every = Duration::from_secs(args.report_every.max(1));
    // The reporter ends with the process; `run` returns only on an error.
    std::thread::spawn(move || loop {
        std::thread::sleep(every);
        let s = status.get();
        eprintln!(
            "relay: {:?}; next position {}, lag {} events, {} in flight, stream sequence {}, {} published",
            s.state, s.next_position, s.lag_events, s.in_flight, s.stream_sequence, s.published
        );
        if let Some(gap) = s.last_gap {
            eprintln!(
                "relay: skipped {} positions retention removed before they were shipped (last gap {}..{})",
                s.skipped_positions, gap.start, gap.end
            );
        }
    });
    relay.run().map(|_| ()).map_err(relay_error)
}

fn relay_error(e: factlog_relay::Error) -> CliError {
    match e {
        factlog_relay::Error::Store(e) => CliError::from(e),
        other => CliError::new(other.to_string()),
    }
}
