//! Child process of the consumer crash tests (`tests/tests/consumer_crash.rs`):
//! opens the store, opens the durable consumer `c` (small commit intervals,
//! no parking behind, one attempt) and runs it with `workers` threads (0: the
//! single-threaded runner). Before handling it writes `start N` (its resume
//! point) to the handled log, and for every event `P` before the handler
//! returns. Events at positions `P % 97 == 13` fail and are parked. One
//! `write` per line on an `O_APPEND` file, so a kill never leaves half a line.
//!
//! Usage: `consumer_child STORE_DIR HANDLED_LOG WORKERS [read-only | rounds CYCLE]`:
//! * no mode: runs the consumer to the end of the log, prints `done`;
//! * `read-only`: the same on a store opened read-only, beside a writer in
//!   another process;
//! * `rounds CYCLE` (the power-cut suite): opens the store read-write with
//!   [`rounds_options`] and the consumer with [`rounds_consumer_options`],
//!   prints `ready`, then until it is killed or fails: one thread appends
//!   batches of 1..=40 events every 2..=12 ms (`appended END` once a batch is
//!   acknowledged: the log's end is at least END), in bursts the consumer
//!   takes a while to handle, while another runs the consumer until caught up,
//!   again and again (`caught-up N` after each run returns: N is its
//!   committed checkpoint, which is durable by then). Event ids are unique
//!   per CYCLE.
//!
//! The handled log must live on a disk that the test never cuts the power of.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use factlog::{ConsumerOptions, EventRef, ExpectedVersion, Options, RecordedEvent, RetryPolicy, Store};
use rand::Rng;

/// First word of the line a run writes before it handles anything.
pub const START: &str = "start";
/// First word of the line written after a batch of appends was acknowledged.
pub const APPENDED: &str = "appended";
/// First word of the line written after a run until caught up returned.
pub const CAUGHT_UP: &str = "caught-up";

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

/// The consumer's options in `rounds` mode: commits every 3 events, synced
/// at most every 20 ms, so that a power cut finds unsynced commits, and
/// sometimes a torn one.
pub fn rounds_consumer_options() -> ConsumerOptions {
    options().commit_every_events(3).checkpoint_sync_interval(Duration::from_millis(20))
}

/// The store options of `rounds` mode: `Sync`, small segments (rolls and
/// index checkpoints land between the consumer's commits).
pub fn rounds_options() -> Options {
    factlog_tests::small_options()
}

/// Give up if nobody killed us by then (the power-cut suite cuts within a second).
const LIFETIME: Duration = Duration::from_secs(60);

/// The handled log: one `write` per line.
struct Log(Mutex<File>);

impl Log {
    fn note(&self, line: String) {
        self.0.lock().expect("log lock").write_all(line.as_bytes()).expect("write handled log");
    }

    /// The handler: notes the position, waits `pause`, fails on a poisoned one.
    fn handle(&self, position: u64, pause: Duration) -> Result<(), String> {
        self.note(format!("{position}\n"));
        std::thread::sleep(pause);
        if poisoned(position) {
            return Err(format!("poisoned {position}"));
        }
        Ok(())
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (dir, log, workers) = (&args[1], &args[2], args[3].parse::<usize>().expect("workers"));
    let mode = args.get(4).map(String::as_str);
    let rounds = (mode == Some("rounds")).then(|| args[5].parse::<u64>().expect("cycle"));
    let store = match mode {
        Some("read-only") => Store::open_read_only(dir, Options::default()).expect("open store read-only"),
        Some("rounds") => Store::open(dir, rounds_options()).expect("open store"),
        _ => Store::open(dir, Options::default()).expect("open store"),
    };
    let consumer_options = if rounds.is_some() { rounds_consumer_options() } else { options() };
    let mut consumer = store.consumer("c", consumer_options).expect("open consumer");
    let log = Log(Mutex::new(OpenOptions::new().create(true).append(true).open(log).expect("open handled log")));
    log.note(format!("{START} {}\n", consumer.committed()));
    let pause = Duration::from_micros(200);
    let log = &log;
    let mut run_until_caught_up = || {
        let summary = if workers == 0 {
            consumer.run_until_caught_up(|e: &EventRef<'_>| log.handle(e.position(), pause))
        } else {
            consumer.run_workers_until_caught_up(workers, |e: &RecordedEvent| log.handle(e.position, pause))
        };
        summary.expect("run consumer");
        consumer.committed()
    };
    let Some(cycle) = rounds else {
        run_until_caught_up();
        println!("done");
        return;
    };
    println!("ready");
    std::io::stdout().flush().expect("flush stdout");
    std::thread::scope(|scope| {
        scope.spawn(|| append_until_killed(&store, log, cycle));
        let started = Instant::now();
        let mut last = None;
        while started.elapsed() < LIFETIME {
            let committed = run_until_caught_up();
            if last == Some(committed) {
                // Nothing new: do not spin.
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            log.note(format!("{CAUGHT_UP} {committed}\n"));
            last = Some(committed);
        }
    });
    panic!("consumer_child: not killed within {LIFETIME:?}");
}

/// `rounds` mode's appender: a batch of 1..=40 events every 2..=12 ms.
fn append_until_killed(store: &Store, log: &Log, cycle: u64) {
    let mut rng = factlog_tests::random::rng(&[cycle, 0xC0_5E]);
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < LIFETIME {
        let count = rng.gen_range(1..=40);
        let events = (n..n + count).map(|i| factlog_tests::event(1000 + cycle, i)).collect();
        let r = store.append(&format!("acct-{}", n % 15), ExpectedVersion::Any, events).expect("append");
        log.note(format!("{APPENDED} {}\n", r.last_position + 1));
        n += count;
        std::thread::sleep(Duration::from_millis(rng.gen_range(2..=12)));
    }
}
