//! Bad days: what the relay cannot fix by waiting ends its run with a typed
//! error that names the stream and the position, and says what to do.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: panicking is how it fails

mod common;

use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{Config, StorageType};
use common::{fill, read_stream, runtime, Broker};
use factlog::{EventId, ExpectedVersion, NewEvent, Options, Store};
use factlog_relay::{Error, Relay, RelayOptions};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    fill(&store, 0, 20, 3);
    (dir, store)
}

fn create_stream(url: &str, config: Config) {
    runtime().block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(url).await.unwrap());
        js.create_stream(config).await.unwrap();
    })
}

fn publish(url: &str, subject: &str, message: PublishMessage) -> Result<u64, String> {
    runtime().block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(url).await.unwrap());
        let ack = js.send_publish(subject.to_string(), message).await.map_err(|e| e.to_string())?;
        ack.await.map(|a| a.sequence).map_err(|e| e.to_string())
    })
}

fn relay_run(store: &Store, options: RelayOptions) -> Result<factlog_relay::RunSummary, Error> {
    Relay::new(store, options)?.run_until_caught_up()
}

#[test]
fn a_stream_with_a_conflicting_configuration_is_named_field_by_field() {
    let Some(broker) = Broker::start("a_stream_with_a_conflicting_configuration_is_named_field_by_field") else {
        return;
    };
    let (_dir, store) = store();
    let base = |name: &str| Config { name: name.into(), subjects: vec![format!("{name}.>")], ..Default::default() };
    create_stream(&broker.url(), Config { subjects: vec!["elsewhere.>".into()], ..base("SUBJ") });
    create_stream(&broker.url(), Config { storage: StorageType::Memory, ..base("MEM") });
    create_stream(&broker.url(), Config { duplicate_window: Duration::from_secs(5), ..base("WIN") });
    for (stream, field) in [("SUBJ", "subjects"), ("MEM", "storage"), ("WIN", "duplicate_window")] {
        match relay_run(&store, RelayOptions::new(broker.url(), stream)) {
            Err(Error::StreamConfigConflict { stream: s, field: f, .. }) => {
                assert_eq!((s.as_str(), f), (stream, field))
            }
            other => panic!("{stream}: {other:?}"),
        }
    }
    // A relay that asks for what the stream has gets on with it.
    let run =
        relay_run(&store, RelayOptions::new(broker.url(), "WIN").duplicate_window(Duration::from_secs(5))).unwrap();
    assert_eq!(run.published, 20);
    // Subjects another stream holds: the broker refuses to create the stream.
    match relay_run(&store, RelayOptions::new(broker.url(), "OTHER").subject_prefix("WIN")) {
        Err(Error::StreamRefused { stream, action: "creating", code: 10065, .. }) => assert_eq!(stream, "OTHER"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_refused_publish_names_the_position_and_ships_nothing_after_it() {
    let Some(broker) = Broker::start("a_refused_publish_names_the_position_and_ships_nothing_after_it") else {
        return;
    };
    let (_dir, store) = store();
    let big = NewEvent::new(EventId::new_v7(), "Scanned", vec![7u8; 4000]);
    store.append("acct-big", ExpectedVersion::Any, vec![big]).unwrap();
    fill(&store, 21, 30, 3);
    // The operator's limit, which the relay does not check: the broker refuses the big event.
    let config =
        Config { name: "SMALL".into(), subjects: vec!["SMALL.>".into()], max_message_size: 2048, ..Default::default() };
    create_stream(&broker.url(), config);
    let err = relay_run(&store, RelayOptions::new(broker.url(), "SMALL")).unwrap_err();
    match &err {
        Error::PublishRefused { stream, position: 20, code, .. } => {
            assert_eq!((stream.as_str(), *code), ("SMALL", 10054))
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("position 20"), "{err}");
    let shipped = read_stream(&broker.url(), "SMALL");
    assert_eq!(shipped.len(), 20, "everything before the refused event, nothing after it");
    // The checkpoint says the same.
    assert_eq!(store.consumer_info("relay-SMALL").unwrap().next_position, 20);
}

#[test]
fn a_stream_from_another_store_or_ahead_of_this_one_is_refused() {
    let Some(broker) = Broker::start("a_stream_from_another_store_or_ahead_of_this_one_is_refused") else { return };
    let (_a, first) = store();
    relay_run(&first, RelayOptions::new(broker.url(), "ONE")).unwrap();
    // Another store with more events: the stream's last position holds another event.
    let (_b, other) = store();
    fill(&other, 20, 40, 3);
    match relay_run(&other, RelayOptions::new(broker.url(), "ONE")) {
        Err(Error::StoreMismatch { stream, position: 19, sequence: 20, .. }) => assert_eq!(stream, "ONE"),
        r => panic!("{r:?}"),
    }
    // A store with fewer events (cut back, or replaced): the stream is ahead of it.
    let dir = tempfile::tempdir().unwrap();
    let short = Store::open(dir.path(), Options::default()).unwrap();
    fill(&short, 0, 5, 3);
    match relay_run(&short, RelayOptions::new(broker.url(), "ONE")) {
        Err(Error::StreamAhead { position: 19, store_end: 5, .. }) => {}
        r => panic!("{r:?}"),
    }
    // Nothing was added to the stream by either.
    assert_eq!(read_stream(&broker.url(), "ONE").len(), 20);
}

#[test]
fn a_foreign_last_message_and_a_purged_stream_are_told_apart() {
    let Some(broker) = Broker::start("a_foreign_last_message_and_a_purged_stream_are_told_apart") else { return };
    let url = broker.url();
    let (_dir, store) = store();
    relay_run(&store, RelayOptions::new(&url, "MIX")).unwrap();
    // Someone else publishes into the relay's subjects.
    let seq = publish(&url, "MIX.hand", PublishMessage::build().payload("hi".into())).unwrap();
    match relay_run(&store, RelayOptions::new(&url, "MIX")) {
        Err(Error::ForeignMessage { stream, sequence, .. }) => assert_eq!((stream.as_str(), sequence), ("MIX", seq)),
        r => panic!("{r:?}"),
    }
    // Purged: the relay falls back on its checkpoint (20) and goes on from there.
    runtime().block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(url.as_str()).await.unwrap());
        js.get_stream("MIX").await.unwrap().purge().await.unwrap();
    });
    fill(&store, 20, 25, 3);
    let run = relay_run(&store, RelayOptions::new(&url, "MIX")).unwrap();
    assert_eq!((run.published, run.next_position), (5, 25));
    let shipped = read_stream(&url, "MIX");
    assert_eq!(shipped.iter().map(|s| s.event.position).collect::<Vec<_>>(), (20..25).collect::<Vec<_>>());
    // Purged, with no checkpoint to fall back on: the relay cannot tell where to resume.
    runtime().block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(url.as_str()).await.unwrap());
        js.get_stream("MIX").await.unwrap().purge().await.unwrap();
    });
    store.delete_consumer("relay-MIX").unwrap();
    match relay_run(&store, RelayOptions::new(&url, "MIX")) {
        Err(Error::StreamHistoryGone { stream, last_sequence: 26 }) => assert_eq!(stream, "MIX"),
        r => panic!("{r:?}"),
    }
}

#[test]
fn two_relays_cannot_interleave() {
    let Some(broker) = Broker::start("two_relays_cannot_interleave") else { return };
    let url = broker.url();
    let (_dir, store) = store();
    // One consumer, one relay: a second of the same name is refused by the store.
    let mut first = Relay::new(&store, RelayOptions::new(&url, "PAIR")).unwrap();
    first.run_until_caught_up().unwrap();
    let (stop, status) = (first.stop_handle(), first.status_handle());
    let running = std::thread::spawn(move || first.run());
    common::wait_until(
        30,
        "the first relay to run",
        || format!("{:?}", status.get()),
        || status.get().state == factlog_relay::RelayState::CaughtUp,
    );
    match relay_run(&store, RelayOptions::new(&url, "PAIR")) {
        Err(Error::Store(factlog::Error::ConsumerLocked { name, .. })) => assert_eq!(name, "relay-PAIR"),
        r => panic!("{r:?}"),
    }
    stop.stop();
    running.join().unwrap().unwrap();
    // The guard exactly-once rests on, as this server keeps it: a publish that
    // expects another last sequence is refused, 0 (an empty stream) included.
    for expected in [0, 5, 21] {
        let m = PublishMessage::build().payload("x".into()).expected_last_sequence(expected);
        let refused = publish(&url, "PAIR.x", m).unwrap_err();
        assert!(refused.contains("wrong last sequence"), "{refused}");
    }
    assert_eq!(read_stream(&url, "PAIR").len(), 20);
}

#[test]
fn a_broker_that_never_comes_and_bad_options_are_typed_errors() {
    let (_dir, store) = store();
    // Nobody listens on this port (it was free a moment ago).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let options = RelayOptions::new(format!("nats://127.0.0.1:{port}"), "NONE")
        .retry(Duration::from_millis(20), Duration::from_millis(100))
        .give_up_after(Some(Duration::from_millis(300)));
    match relay_run(&store, options) {
        Err(Error::BrokerUnavailable { stream, url, .. }) => {
            assert_eq!((stream.as_str(), url), ("NONE", format!("nats://127.0.0.1:{port}")))
        }
        r => panic!("{r:?}"),
    }
    for options in [
        RelayOptions::new("nats://127.0.0.1:1", "a.b"),
        RelayOptions::new("nats://127.0.0.1:1", "S").subject_prefix("a..b"),
        RelayOptions::new("nats://127.0.0.1:1", "S").subject_prefix("a.*"),
        RelayOptions::new("nats://127.0.0.1:1", "S").max_in_flight(0),
    ] {
        assert!(matches!(Relay::new(&store, options), Err(Error::InvalidOptions(_))));
    }
}
