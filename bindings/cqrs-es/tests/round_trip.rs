//! Every field of an event and a snapshot comes back exactly as it went in,
//! through every read of the repository: non-ASCII ids, an aggregate type
//! holding the key's separator and escape, odd event versions, JSON of every
//! kind.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: panicking is how it fails

use std::collections::HashMap;

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{PersistedEventRepository, ReplayStream, SerializedEvent, SerializedSnapshot};
use cqrs_es::{Aggregate, DomainEvent, EventEnvelope};
use factlog::{Options, Store};
use factlog_cqrs::FactlogEventRepository;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Any JSON payload, as an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
struct AnyEvent(Value);

impl DomainEvent for AnyEvent {
    fn event_type(&self) -> String {
        "Any".into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

/// The error of aggregates that refuse nothing (these handle no commands).
#[derive(Debug)]
struct Never;

impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}
impl std::error::Error for Never {}

macro_rules! aggregate {
    ($name:ident, $type:expr) => {
        #[derive(Debug, Default, Serialize, Deserialize)]
        struct $name;
        impl Aggregate for $name {
            const TYPE: &'static str = $type;
            type Command = ();
            type Event = AnyEvent;
            type Error = Never;
            type Services = ();
            async fn handle(&mut self, _: (), _: &(), _: &EventSink<Self>) -> Result<(), Never> {
                Ok(())
            }
            fn apply(&mut self, _: AnyEvent) {}
        }
    };
}

// The separator and the escape inside the type, non-ASCII around them.
aggregate!(Weird, "Bank/Konto\\Ü");
// A type whose keys start like Weird's would if the type were not escaped.
aggregate!(Bank, "Bank");

fn event(aggregate_type: &str, id: &str, sequence: usize, version: &str, payload: Value) -> SerializedEvent {
    let metadata = json!({"ключ": "值 / \\ \"quoted\"", "": "", "emoji": "🦀"});
    let event_type = format!("Überweisung/ß-{sequence}");
    SerializedEvent::new(id.into(), sequence, aggregate_type.into(), event_type, version.into(), payload, metadata)
}

async fn drain<A: Aggregate<Event = AnyEvent>>(mut stream: ReplayStream) -> Vec<EventEnvelope<A>> {
    let mut out = Vec::new();
    while let Some(e) = stream.next::<A>(&[]).await {
        out.push(e.unwrap());
    }
    out
}

fn as_envelope(e: &SerializedEvent) -> (String, usize, AnyEvent, HashMap<String, String>) {
    let metadata = serde_json::from_value(e.metadata.clone()).unwrap();
    (e.aggregate_id.clone(), e.sequence, AnyEvent(e.payload.clone()), metadata)
}

fn fields<A: Aggregate<Event = AnyEvent>>(e: &EventEnvelope<A>) -> (String, usize, AnyEvent, HashMap<String, String>) {
    (e.aggregate_id.clone(), e.sequence, e.payload.clone(), e.metadata.clone())
}

#[tokio::test]
async fn every_field_round_trips_through_every_read() {
    let dir = tempfile::tempdir().unwrap();
    let repo = FactlogEventRepository::new(Store::open(dir.path(), Options::default()).unwrap());
    let id = "ключ/🦀\\x y";
    let payloads = [
        json!({"Deposited": {"amount": 1.5, "big": u64::MAX, "neg": i64::MIN, "none": null, "list": [true, "ü", {}]}}),
        json!("just a string with \u{0} and \u{10FFFF}"),
        json!([]),
    ];
    let versions = ["1.0-β", "", "0007"];
    let events: Vec<_> = (0..3).map(|i| event(Weird::TYPE, id, i + 1, versions[i], payloads[i].clone())).collect();
    let state = json!({"balance": -3, "owner": "Åsa", "nested": {"x": [1, 2.25]}});
    repo.persist::<Weird>(&events, Some((id.to_string(), state.clone(), 1))).await.unwrap();
    // Another aggregate of the type, and one of the type `Bank` with a look-alike id.
    let other = event(Weird::TYPE, "", 1, "1", json!(0));
    repo.persist::<Weird>(std::slice::from_ref(&other), None).await.unwrap();
    let lookalike = event(Bank::TYPE, "Konto\\Ü/ключ/🦀\\x y", 1, "1", json!(1));
    repo.persist::<Bank>(std::slice::from_ref(&lookalike), None).await.unwrap();

    assert_eq!(repo.get_events::<Weird>(id).await.unwrap(), events);
    assert_eq!(repo.get_last_events::<Weird>(id, 1).await.unwrap(), events[1..]);
    assert_eq!(repo.get_last_events::<Weird>(id, 3).await.unwrap(), []);
    assert_eq!(repo.get_events::<Weird>("").await.unwrap(), std::slice::from_ref(&other));
    assert_eq!(repo.get_events::<Bank>(&lookalike.aggregate_id).await.unwrap(), std::slice::from_ref(&lookalike));
    assert_eq!(repo.get_events::<Weird>("no such").await.unwrap(), []);
    let snapshot =
        SerializedSnapshot { aggregate_id: id.into(), aggregate: state, current_sequence: 3, current_snapshot: 1 };
    assert_eq!(repo.get_snapshot::<Weird>(id).await.unwrap(), Some(snapshot));
    assert_eq!(repo.get_snapshot::<Weird>("").await.unwrap(), None);

    let streamed = drain::<Weird>(repo.stream_events::<Weird>(id).await.unwrap()).await;
    assert_eq!(streamed.iter().map(fields).collect::<Vec<_>>(), events.iter().map(as_envelope).collect::<Vec<_>>());
    // All of the type, in log order, and nothing of `Bank`.
    let all = drain::<Weird>(repo.stream_all_events::<Weird>().await.unwrap()).await;
    let expected: Vec<_> = events.iter().chain([&other]).map(as_envelope).collect();
    assert_eq!(all.iter().map(fields).collect::<Vec<_>>(), expected);
    let all_bank = drain::<Bank>(repo.stream_all_events::<Bank>().await.unwrap()).await;
    assert_eq!(all_bank.iter().map(fields).collect::<Vec<_>>(), [as_envelope(&lookalike)]);

    // What factlog itself shows: the readable key, the payload as JSON text,
    // the version string in the envelope and its leading number beside it.
    let stored =
        repo.store().read_aggregate_owned("Bank\\/Konto\\\\Ü/ключ/🦀\\x y", 0, factlog::Direction::Forward, 10);
    let stored = stored.unwrap();
    assert_eq!(stored.len(), 3);
    assert_eq!(serde_json::from_slice::<Value>(&stored[0].data).unwrap(), payloads[0]);
    assert_eq!((stored[0].event_version, stored[1].event_version, stored[2].event_version), (1, 0, 7));
    let envelope: Value = serde_json::from_slice(&stored[0].metadata).unwrap();
    assert_eq!(envelope["v"], "1.0-β");
}

/// A stream's reader may stop early: the thread feeding it ends, and the
/// repository goes on working.
#[tokio::test]
async fn a_dropped_stream_ends_its_thread() {
    let dir = tempfile::tempdir().unwrap();
    let repo = FactlogEventRepository::new(Store::open(dir.path(), Options::default()).unwrap())
        .with_streaming_channel_size(1);
    let events: Vec<_> = (1..=50).map(|s| event(Weird::TYPE, "a", s, "1", json!(s))).collect();
    repo.persist::<Weird>(&events, None).await.unwrap();
    let mut stream = repo.stream_events::<Weird>("a").await.unwrap();
    assert_eq!(stream.next::<Weird>(&[]).await.unwrap().unwrap().sequence, 1);
    drop(stream);
    assert_eq!(repo.get_events::<Weird>("a").await.unwrap().len(), 50);
}

/// Ids factlog cannot hold are an error, never a panic or a truncation.
#[tokio::test]
async fn ids_too_long_for_factlog_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let repo = FactlogEventRepository::new(Store::open(dir.path(), Options::default()).unwrap());
    let long = "x".repeat(300);
    assert!(repo.get_events::<Weird>(&long).await.is_err());
    assert!(repo.get_snapshot::<Weird>(&long).await.is_err());
    let r = repo.persist::<Weird>(&[event(Weird::TYPE, &long, 1, "1", json!(1))], None).await;
    let err = r.unwrap_err();
    let source = match &err {
        cqrs_es::persist::PersistenceError::UnknownError(e) => e.downcast_ref::<factlog_cqrs::Error>(),
        _ => None,
    };
    assert!(matches!(source, Some(factlog_cqrs::Error::InvalidKey { .. })), "{err:?}");
    assert_eq!(repo.store().stats().events, 0);
}
