//! The broker stops mid-run (SIGTERM), comes back, then dies (SIGKILL) and
//! comes back, while the application keeps appending and the relay keeps
//! running: the relay waits, resumes, loses nothing and duplicates nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: panicking is how it fails

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{assert_exactly_once, fill, keep_appending, read_stream, wait_until, Broker};
use factlog::{Options, Store};
use factlog_relay::{Relay, RelayOptions, RelayState};

#[test]
fn the_relay_waits_for_the_broker_and_resumes_without_loss_or_duplicates() {
    let Some(mut broker) = Broker::start("the_relay_waits_for_the_broker_and_resumes_without_loss_or_duplicates")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    fill(&store, 0, 300, 9);
    let options = RelayOptions::new(broker.url(), "DOWN")
        .ack_timeout(Duration::from_secs(1))
        .retry(Duration::from_millis(50), Duration::from_millis(500));
    let mut relay = Relay::new(&store, options).unwrap();
    let (status, stop) = (relay.status_handle(), relay.stop_handle());
    let running = std::thread::spawn(move || relay.run());
    let (stop_writer, writer) = keep_appending(&store, 300);
    let show = || format!("{:?}", status.get());

    let mut published = 0;
    for crash in [false, true] {
        wait_until(60, "the relay to ship", show, || status.get().published > published + 100);
        if crash {
            broker.server.kill().unwrap();
        } else {
            broker.server.stop().unwrap();
        }
        wait_until(60, "the relay to wait for the broker", show, || {
            matches!(status.get().state, RelayState::WaitingForBroker { .. })
        });
        std::thread::sleep(Duration::from_millis(300)); // appends go on meanwhile
        broker.restart();
        published = status.get().published;
    }
    wait_until(60, "the relay to ship again", show, || status.get().published > published + 100);
    stop_writer.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let end = store.durable_position().unwrap() + 1;
    wait_until(60, "the relay to catch up", show, || {
        let s = status.get();
        s.next_position == end && s.in_flight == 0
    });
    stop.stop();
    let run = running.join().unwrap().unwrap();
    assert!(run.broker_failures >= 2, "{run:?}");
    assert_exactly_once(&store, &read_stream(&broker.url(), "DOWN"), end);
}
