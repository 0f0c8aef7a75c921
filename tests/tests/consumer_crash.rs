//! A durable consumer in a real child process (`consumer_child`), killed
//! with SIGKILL at random moments again and again, single-threaded and with
//! competing workers. Checked on every restart and at the end:
//!
//! 1. the checkpoint the child resumes at is never ahead of what was
//!    handled: every position below it was handed to the handler before;
//! 2. every event is handled at least once (no event skipped);
//! 3. the events whose handler fails are parked, exactly those, and their
//!    parking survives the kills.
//!
//! The third mode runs the consumer on a read-only store while this process
//! holds the store open and keeps appending: the deployment of a projector
//! beside the application.
//!
//! `FACTLOG_CONSUMER_KILLS` sets the most kills per mode (default 25; a run
//! that finishes before its kill ends the loop early).

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use factlog::{ExpectedVersion, Options, Store};
use factlog_tests::event;
use rand::{Rng, SeedableRng};

#[allow(dead_code)]
#[path = "../src/bin/consumer_child.rs"]
mod consumer_child;

const CHILD: &str = env!("CARGO_BIN_EXE_consumer_child");
const EVENTS: u64 = 3000;

fn kills() -> usize {
    std::env::var("FACTLOG_CONSUMER_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(25)
}

/// Appends events `from..to` over 15 aggregates.
fn fill(store: &Store, from: u64, to: u64) {
    for n in from..to {
        let aggregate = format!("acct-{}", n % 15);
        store.append(&aggregate, ExpectedVersion::Any, vec![event(n % 15, n)]).unwrap();
    }
}

/// Checks the handled log; returns the positions handled so far.
fn check_log(text: &str) -> BTreeSet<u64> {
    let mut handled = BTreeSet::new();
    for line in text.lines() {
        if let Some(start) = line.strip_prefix("start ") {
            let start: u64 = start.parse().unwrap();
            let missing: Vec<u64> = (0..start).filter(|p| !handled.contains(p)).take(5).collect();
            assert!(missing.is_empty(), "resumed at {start} but {missing:?} were never handled");
        } else {
            handled.insert(line.parse::<u64>().unwrap());
        }
    }
    handled
}

fn torture(workers: usize, seed: u64, beside_writer: bool) {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let log = dir.path().join("handled.log");
    let buffered = Options::default().durability(factlog::Durability::Buffered { flush_interval_ms: 5 });
    let store = Store::open(&store_dir, buffered).unwrap();
    // Beside a writer: a third of the events exist at the start, the rest come while consumers are killed.
    let first = if beside_writer { EVENTS / 3 } else { EVENTS };
    fill(&store, 0, first);
    store.sync().unwrap();
    let writer = if beside_writer {
        let store = store.clone();
        Some(std::thread::spawn(move || {
            for chunk in (first..EVENTS).step_by(50) {
                fill(&store, chunk, (chunk + 50).min(EVENTS));
                store.sync().unwrap();
                std::thread::sleep(Duration::from_millis(10));
            }
        }))
    } else {
        None
    };
    // Without a writer beside them, the children open the store read-write: let it go.
    let store = if beside_writer {
        Some(store)
    } else {
        store.close().unwrap();
        None
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mode = if beside_writer { "read-only" } else { "read-write" };
    let spawn = || {
        Command::new(CHILD)
            .args([store_dir.to_str().unwrap(), log.to_str().unwrap(), &workers.to_string(), mode])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap()
    };
    let read_log = || {
        std::fs::read_to_string(&log)
            .or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(String::new()) } else { Err(e) })
            .unwrap()
    };
    let mut killed = 0;
    while killed < kills() {
        let mut child = spawn();
        std::thread::sleep(Duration::from_micros(rng.gen_range(1_000..15_000)));
        let finished = child.try_wait().unwrap().is_some();
        if !finished {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
        check_log(&read_log());
        let writing = writer.as_ref().is_some_and(|w| !w.is_finished());
        if finished && !writing {
            break;
        }
    }
    if let Some(w) = writer {
        w.join().unwrap();
    }
    let out = spawn().wait_with_output().unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("done"));
    let handled = check_log(&read_log());
    assert_eq!(handled, (0..EVENTS).collect::<BTreeSet<_>>(), "every event handled at least once");
    assert!(killed >= kills().min(10), "only {killed} runs were killed before one finished: the test proves little");

    let store = store.unwrap_or_else(|| Store::open(&store_dir, Options::default()).unwrap());
    let info = store.consumer_info("c").unwrap();
    assert_eq!(info.next_position, EVENTS);
    let parked: Vec<u64> = store.parked_events("c").unwrap().iter().map(|p| p.position).collect();
    let poisoned: Vec<u64> = (0..EVENTS).filter(|p| consumer_child::poisoned(*p)).collect();
    assert_eq!(parked, poisoned, "exactly the failing events are parked, across {killed} kills");
}

#[test]
fn a_killed_single_threaded_consumer_never_skips_an_event() {
    torture(0, 0xC0FFEE, false);
}

#[test]
fn a_killed_consumer_in_another_process_than_the_writer_never_skips_an_event() {
    torture(2, 0xFEED, true);
}

#[test]
fn a_killed_consumer_with_competing_workers_never_skips_an_event() {
    torture(3, 0xBEEF, false);
}
