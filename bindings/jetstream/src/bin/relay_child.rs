//! A test helper, not a tool: `relay_child DIR URL STREAM` runs a relay of
//! the store in DIR (opened read-only, beside the test's writer) into STREAM
//! until it is killed. `tests/crash.rs` kills it with SIGKILL at random
//! moments; use `factlog relay` for real work.

use std::process::ExitCode;
use std::time::Duration;

use factlog::{Options, Store};
use factlog_relay::{Relay, RelayOptions};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, url, stream] = args.as_slice() else {
        eprintln!("usage: relay_child DIR URL STREAM");
        return ExitCode::from(2);
    };
    let run = || -> Result<(), factlog_relay::Error> {
        let store = Store::open_read_only(dir, Options::default().lock_wait(Duration::from_secs(30)))?;
        // Small batches and a short pipeline: more moments to be killed in.
        let options = RelayOptions::new(url, stream)
            .batch_events(64)
            .max_in_flight(256)
            .ack_timeout(Duration::from_secs(2))
            .retry(Duration::from_millis(20), Duration::from_millis(500));
        Relay::new(&store, options)?.run().map(|_| ())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay_child: {e}");
            ExitCode::FAILURE
        }
    }
}
