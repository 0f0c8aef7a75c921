//! Every event of a store reaches the stream once, in order, with every
//! envelope field; a JetStream consumer rebuilds what a local replay sees.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: panicking is how it fails

mod common;

use std::collections::BTreeMap;

use common::{assert_exactly_once, fill, read_stream, Broker};
use factlog::{EventId, ExpectedVersion, Filter, NewEvent, Options, Store};
use factlog_relay::{Relay, RelayOptions};

#[test]
fn every_event_arrives_once_in_order_with_every_header() {
    let Some(broker) = Broker::start("every_event_arrives_once_in_order_with_every_header") else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    fill(&store, 0, 500, 7);
    // Names a header or subject cannot hold as they are.
    for (i, id) in ["a.b", ".lead", "sp ace", "100%", "é*>", "x\r\ny", " pad "].iter().enumerate() {
        let e = NewEvent::new(EventId::new_v7(), format!(" T%{i}\t"), vec![0u8, 255, i as u8])
            .with_metadata(vec![1u8, 0, 2]);
        store.append(id, ExpectedVersion::Any, vec![e]).unwrap();
    }
    let mut relay = Relay::new(&store, RelayOptions::new(broker.url(), "EVENTS")).unwrap();
    let run = relay.run_until_caught_up().unwrap();
    assert_eq!((run.published, run.next_position, run.stream_sequence), (507, 507, 507));
    let shipped = read_stream(&broker.url(), "EVENTS");
    assert_exactly_once(&store, &shipped, 507);
    for s in &shipped {
        assert_eq!(s.subject, factlog_relay::envelope::subject("EVENTS", &s.event.aggregate_id));
    }
    assert_eq!(shipped[500].subject, "EVENTS.a.b");
    assert_eq!(shipped[501].subject, "EVENTS.%2Elead");

    // Aggregate states rebuilt from the stream equal a local replay's.
    let fold = |events: &mut dyn Iterator<Item = factlog::RecordedEvent>| {
        let mut states: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for e in events {
            states.entry(e.aggregate_id.clone()).or_default().extend_from_slice(&e.data);
        }
        states
    };
    let remote = fold(&mut shipped.iter().map(|s| s.event.clone()));
    let local = fold(&mut store.read_all_owned(0, usize::MAX).unwrap().into_iter());
    assert_eq!(remote, local);

    // A second run ships only what is new; the consumer checkpoint agrees.
    fill(&store, 507, 600, 7);
    drop(relay);
    let mut relay = Relay::new(&store, RelayOptions::new(broker.url(), "EVENTS")).unwrap();
    let run = relay.run_until_caught_up().unwrap();
    assert_eq!((run.published, run.next_position), (93, 600));
    assert_exactly_once(&store, &read_stream(&broker.url(), "EVENTS"), 600);
    drop(relay);
    assert_eq!(store.consumer_info("relay-EVENTS").unwrap().next_position, 600);
}

#[test]
fn a_filtered_relay_ships_only_what_it_selects() {
    let Some(broker) = Broker::start("a_filtered_relay_ships_only_what_it_selects") else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    fill(&store, 0, 300, 5);
    let filter = Filter::all().event_types(["Type1"]).aggregate_prefixes(["acct-1", "acct-2"]);
    let options = RelayOptions::new(broker.url(), "SOME").subject_prefix("some.events").filter(filter.clone());
    let mut relay = Relay::new(&store, options.clone()).unwrap();
    relay.run_until_caught_up().unwrap();
    let want: Vec<_> = store
        .read_all_owned(0, usize::MAX)
        .unwrap()
        .into_iter()
        .filter(|e| {
            e.event_type == "Type1" && (e.aggregate_id.starts_with("acct-1") || e.aggregate_id.starts_with("acct-2"))
        })
        .collect();
    let got: Vec<_> = read_stream(&broker.url(), "SOME").into_iter().map(|s| s.event).collect();
    assert_eq!(got, want);
    // The checkpoint is past the last event examined, selected or not.
    drop(relay);
    fill(&store, 300, 310, 5);
    let mut relay = Relay::new(&store, options).unwrap();
    relay.run_until_caught_up().unwrap();
    drop(relay);
    assert_eq!(store.consumer_info("relay-SOME").unwrap().next_position, 310);
}
