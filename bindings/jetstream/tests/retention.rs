//! Retention removes the head of the store's log while the relay is down:
//! the relay must never skip the events it did not ship without being told
//! to. It stops with `Error::BelowRetainedStart` naming both positions, the
//! stream untouched; with `accept_retention_gap` it resumes at the log's new
//! start and reports the gap. A filtered relay whose checkpoint had passed
//! the removed events (none of them selected) just goes on.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: panicking is how it fails

mod common;

use common::{full_event, read_stream, Broker};
use factlog::{ExpectedVersion, Filter, Options, Retention, Store};
use factlog_relay::{Error, Relay, RelayOptions};

/// Small segments, so that a few hundred events make several.
fn options() -> Options {
    Options::default().segment_bytes(64 * 1024).first_segment_bytes(64 * 1024).max_event_bytes(16 * 1024)
}

/// Keeps about two segments of log; `clamp`: reads below the start start
/// there instead of failing (the relay must not rely on the engine to tell it).
fn retained(clamp: bool) -> Options {
    options().retention(Retention {
        max_bytes: Some(2 * 64 * 1024),
        clamp_reads_below_start: clamp,
        ..Default::default()
    })
}

/// Appends events `from..to`, 50 per append, over 7 aggregates, with event
/// types `type_of(n)`.
fn append(store: &Store, from: u64, to: u64, type_of: impl Fn(u64) -> Option<&'static str>) {
    for chunk in (from..to).step_by(50) {
        let batch = (chunk..(chunk + 50).min(to))
            .map(|n| {
                let mut e = full_event(n);
                if let Some(t) = type_of(n) {
                    e.event_type = t.into();
                }
                e
            })
            .collect();
        store.append(&format!("acct-{}", chunk % 7), ExpectedVersion::Any, batch).unwrap();
    }
}

/// Reopens the store in `dir` with retention and applies it; the new start.
fn reopen_retained(dir: &std::path::Path, clamp: bool) -> (Store, u64) {
    let store = Store::open(dir, retained(clamp)).unwrap();
    store.apply_retention().unwrap();
    let first = store.reader().first_position();
    (store, first)
}

#[test]
fn a_relay_below_the_retained_start_stops_naming_both_positions_or_skips_when_told() {
    let Some(broker) = Broker::start("a_relay_below_the_retained_start_stops_naming_both_positions_or_skips_when_told")
    else {
        return;
    };
    let url = broker.url();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    append(&store, 0, 100, |_| None);
    let run = Relay::new(&store, RelayOptions::new(&url, "KEPT")).unwrap().run_until_caught_up().unwrap();
    assert_eq!(run.next_position, 100);
    // The relay is down; the application goes on, and retention removes the
    // head of the log, past what the relay shipped.
    append(&store, 100, 2000, |_| None);
    store.close().unwrap();
    let (store, first) = reopen_retained(dir.path(), true);
    assert!(first > 100, "retention must have removed past the relay's position, the log starts at {first}");

    let err = Relay::new(&store, RelayOptions::new(&url, "KEPT")).unwrap().run_until_caught_up().unwrap_err();
    match &err {
        Error::BelowRetainedStart { stream, next: 100, first_retained } => {
            assert_eq!((stream.as_str(), *first_retained), ("KEPT", first))
        }
        other => panic!("{other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("position 100") && text.contains(&format!("{first}")), "{text}");
    assert!(text.contains("accept-retention-gap"), "the error says what to do: {text}");
    // Nothing was shipped, nothing skipped: the stream and the checkpoint are where they were.
    assert_eq!(read_stream(&url, "KEPT").len(), 100);
    assert_eq!(store.consumer_info("relay-KEPT").unwrap().next_position, 100);

    // Told to accept the gap, it resumes at the log's start and says so.
    let mut relay = Relay::new(&store, RelayOptions::new(&url, "KEPT").accept_retention_gap(true)).unwrap();
    let run = relay.run_until_caught_up().unwrap();
    let end = store.durable_position().unwrap() + 1;
    assert_eq!((run.next_position, run.skipped_positions, run.published), (end, first - 100, end - first));
    assert_eq!(relay.status().last_gap, Some(100..first));
    drop(relay);
    let shipped = read_stream(&url, "KEPT");
    let positions: Vec<u64> = shipped.iter().map(|s| s.event.position).collect();
    assert_eq!(positions, (0..100).chain(first..end).collect::<Vec<_>>(), "each event once, in order, one gap");
    assert!(shipped.iter().enumerate().all(|(i, s)| s.sequence == i as u64 + 1));
    let local = store.read_all_owned(first, usize::MAX).unwrap();
    assert!(shipped[100..].iter().map(|s| &s.event).eq(local.iter()), "the events after the gap, every field");

    // A fresh stream of a store whose log no longer starts at 0: told too.
    match Relay::new(&store, RelayOptions::new(&url, "FRESH")).unwrap().run_until_caught_up() {
        Err(Error::BelowRetainedStart { next: 0, first_retained, .. }) => assert_eq!(first_retained, first),
        r => panic!("{r:?}"),
    }
    assert_eq!(read_stream(&url, "FRESH").len(), 0);
}

#[test]
fn a_filtered_relay_whose_checkpoint_passed_the_removed_events_goes_on() {
    let Some(broker) = Broker::start("a_filtered_relay_whose_checkpoint_passed_the_removed_events_goes_on") else {
        return;
    };
    let url = broker.url();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    // Only the first 50 events are of the type the relay selects.
    let rare = |n: u64| (n < 50).then_some("Rare");
    append(&store, 0, 2000, rare);
    let relay_options = RelayOptions::new(&url, "RARE").filter(Filter::all().event_types(["Rare"]));
    let run = Relay::new(&store, relay_options.clone()).unwrap().run_until_caught_up().unwrap();
    assert_eq!((run.published, run.next_position), (50, 2000));
    store.close().unwrap();
    let (store, first) = reopen_retained(dir.path(), false);
    assert!(first > 50, "the log starts at {first}");
    // The stream ends at position 49, below the new start, but the checkpoint
    // (2000) shows that nothing between was selected: nothing is missing.
    append(&store, 2000, 2010, |n| (n % 2 == 0).then_some("Rare"));
    let run = Relay::new(&store, relay_options).unwrap().run_until_caught_up().unwrap();
    assert_eq!((run.published, run.next_position, run.skipped_positions), (5, 2010, 0));
    let positions: Vec<u64> = read_stream(&url, "RARE").iter().map(|s| s.event.position).collect();
    assert_eq!(positions, (0..50).chain((2000..2010).step_by(2)).collect::<Vec<_>>());
}
