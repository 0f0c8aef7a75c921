//! Child process of the consumer kill test (`tests/tests/consumer_crash.rs`):
//! opens the store, opens the durable consumer `c` (small commit intervals,
//! no parking behind, one attempt) and runs it to the end of the log with
//! `workers` threads (0: the single-threaded runner). Before handling it
//! writes `start N` (its resume point) to the handled log, and for every
//! event `P` before the handler returns. Events at positions `P % 97 == 13`
//! fail and are parked. One `write` per line on an `O_APPEND` file, so a
//! SIGKILL never leaves half a line. Prints `done` when caught up.
//!
//! Usage: `consumer_child STORE_DIR HANDLED_LOG WORKERS [read-only]`: with
//! `read-only` it opens the store read-only, beside a writer in another process.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use factlog::{ConsumerOptions, EventRef, Options, RecordedEvent, RetryPolicy, Store};

/// Whether the handler fails (for good) on the event at `position`.
pub fn poisoned(position: u64) -> bool {
    position % 97 == 13
}

/// The consumer's options, shared with the checker.
pub fn options() -> ConsumerOptions {
    ConsumerOptions::default()
        .commit_every_events(7)
        .commit_every(Duration::from_millis(2))
        .checkpoint_sync_interval(Duration::from_millis(5))
        .retry(RetryPolicy::new(1, Duration::ZERO, Duration::ZERO))
        .park_aggregate_behind(false)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (dir, log, workers) = (&args[1], &args[2], args[3].parse::<usize>().expect("workers"));
    let store = if args.get(4).is_some_and(|a| a == "read-only") {
        Store::open_read_only(dir, Options::default()).expect("open store read-only")
    } else {
        Store::open(dir, Options::default()).expect("open store")
    };
    let mut consumer = store.consumer("c", options()).expect("open consumer");
    let file = OpenOptions::new().create(true).append(true).open(log).expect("open handled log");
    let file = Mutex::new(file);
    let note = |line: String| file.lock().expect("log lock").write_all(line.as_bytes()).expect("write handled log");
    note(format!("start {}\n", consumer.committed()));
    let handle = |position: u64| -> Result<(), String> {
        note(format!("{position}\n"));
        std::thread::sleep(Duration::from_micros(200));
        if poisoned(position) {
            return Err(format!("poisoned {position}"));
        }
        Ok(())
    };
    let summary = if workers == 0 {
        consumer.run_until_caught_up(|e: &EventRef<'_>| handle(e.position()))
    } else {
        consumer.run_workers_until_caught_up(workers, |e: &RecordedEvent| handle(e.position))
    };
    summary.expect("run consumer");
    println!("done");
}
