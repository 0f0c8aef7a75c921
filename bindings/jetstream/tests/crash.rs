//! A relay in a child process (`relay_child`, on a read-only open beside
//! this process, which keeps appending) is killed with SIGKILL at random
//! moments, again and again: mid-batch, with acknowledgements in flight,
//! between the broker's acknowledgement and the checkpoint, while starting.
//! Afterwards the stream holds every event exactly once, in position order,
//! at sequences 1, 2, ... The kill points are drawn from a seed printed at
//! the start; `FACTLOG_RELAY_KILLS` sets the number of kills (default 20).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: panicking is how it fails

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{assert_exactly_once, fill, keep_appending, read_stream, Broker};
use factlog::{Options, Store};
use factlog_relay::{Relay, RelayOptions};
use rand::{Rng, SeedableRng};

const CHILD: &str = env!("CARGO_BIN_EXE_relay_child");

fn kills() -> usize {
    std::env::var("FACTLOG_RELAY_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(20)
}

#[test]
fn killed_relays_leave_every_event_exactly_once_in_order() {
    let Some(broker) = Broker::start("killed_relays_leave_every_event_exactly_once_in_order") else { return };
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let store = Store::open(&store_dir, Options::default()).unwrap();
    fill(&store, 0, 300, 9);
    let (stop_writer, writer) = keep_appending(&store, 300);
    let seed: u64 = rand::random();
    eprintln!("crash test seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut progress = Vec::new();
    for _ in 0..kills() {
        let mut child = Command::new(CHILD)
            .args([store_dir.to_str().unwrap(), &broker.url(), "CRASH"])
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.gen_range(10..400)));
        assert!(child.try_wait().unwrap().is_none(), "the relay child stopped by itself (see its stderr above)");
        child.kill().unwrap();
        child.wait().unwrap();
        progress.push(store.consumer_info("relay-CRASH").map(|c| c.next_position).unwrap_or(0));
    }
    stop_writer.store(true, Ordering::SeqCst);
    let appended = writer.join().unwrap();
    let end = store.durable_position().unwrap() + 1;
    eprintln!("{appended} events appended during {} kills; checkpoints after each kill: {progress:?}", kills());
    // A last relay, in this process, finishes the job.
    let mut relay = Relay::new(&store, RelayOptions::new(broker.url(), "CRASH")).unwrap();
    let run = relay.run_until_caught_up().unwrap();
    assert_eq!(run.next_position, end);
    eprintln!("the last relay shipped {} of {end} events", run.published);
    assert_exactly_once(&store, &read_stream(&broker.url(), "CRASH"), end);
}
