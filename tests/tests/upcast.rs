//! Upcasting on the read path: chains, a type rename, failing and panicking
//! upcasters (a typed error naming the position, the store unharmed),
//! registrations refused, the borrowed-when-untouched property (an event no
//! upcaster applies to is the very bytes of the map), owned reads, `load`
//! and subscriptions (catch-up, live, zero-copy batches, a failure that
//! holds the cursor), `load_with` and a snapshot of a stale schema version,
//! and a property test of upcast reads against a model of the chain. Uses
//! its own temp stores only.

use std::time::Duration;

use bytes::Bytes;
use factlog::{
    Direction, Error, EventId, ExpectedVersion, Filter, LoadOptions, NewEvent, Options, SchemaVersion, StaleSnapshot,
    StartFrom, Store, Upcast, UpcastError, Upcasted, Upcasters,
};
use proptest::prelude::*;

const WAIT: Duration = Duration::from_secs(30);

fn ev(n: u64, event_type: &str, version: u32, data: &str) -> NewEvent {
    NewEvent::new(factlog_tests::id(7, n), event_type, data).with_event_version(version).with_metadata("meta")
}

/// Appends `suffix` to the payload.
fn suffix(s: &'static str) -> impl Fn(&mut Upcast) -> Result<(), UpcastError> + Send + Sync {
    move |e: &mut Upcast| {
        let mut data = e.data.to_vec();
        data.extend_from_slice(s.as_bytes());
        e.data = Bytes::from(data);
        Ok(())
    }
}

/// `OrderPlaced` v1 → v2 (adds a currency) → v3 (renames the amount field);
/// `AccountCreated` v1 → `AccountOpened` v2 (a rename).
fn upcasters() -> Upcasters {
    let mut up = Upcasters::new();
    up.register(("OrderPlaced", 1), ("OrderPlaced", 2), |e: &mut Upcast| {
        let old = std::str::from_utf8(&e.data)?;
        let body = old.strip_suffix('}').ok_or_else(|| UpcastError::new("not an object"))?;
        e.data = Bytes::from(format!(r#"{body},"currency":"EUR"}}"#));
        Ok(())
    })
    .unwrap();
    up.register(("OrderPlaced", 2), ("OrderPlaced", 3), |e: &mut Upcast| {
        e.data = Bytes::from(std::str::from_utf8(&e.data)?.replace("\"amount\"", "\"total\""));
        e.metadata = Bytes::from(format!("{}+v3", std::str::from_utf8(&e.metadata)?));
        Ok(())
    })
    .unwrap();
    up.register(("AccountCreated", 1), ("AccountOpened", 2), suffix("")).unwrap();
    up
}

/// A store with events of every kind: a v1, a v2 and a v3 `OrderPlaced`, a
/// renamed type, and a type no upcaster knows.
fn filled(dir: &std::path::Path, up: Upcasters) -> Store {
    let store = Store::open(dir, Options::default().upcasters(up)).unwrap();
    let events = vec![
        ev(0, "AccountCreated", 1, r#"{"owner":"ada"}"#),
        ev(1, "OrderPlaced", 1, r#"{"amount":10}"#),
        ev(2, "OrderPlaced", 2, r#"{"amount":20,"currency":"USD"}"#),
        ev(3, "OrderPlaced", 3, r#"{"total":30,"currency":"USD"}"#),
        ev(4, "FundsDeposited", 1, r#"{"amount":5}"#),
    ];
    store.append("acct-1", ExpectedVersion::NoStream, events).unwrap();
    store
}

#[test]
fn a_chain_and_a_rename_upcast_old_events_and_leave_the_rest_as_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled(dir.path(), upcasters());
    let got = store.read_all_upcast(0, usize::MAX).unwrap();
    let summary: Vec<(&str, u32, &[u8])> =
        got.iter().map(|e| (e.event_type.as_str(), e.event_version, &e.data[..])).collect();
    assert_eq!(
        summary,
        [
            ("AccountOpened", 2, &br#"{"owner":"ada"}"#[..]),
            ("OrderPlaced", 3, br#"{"total":10,"currency":"EUR"}"#),
            ("OrderPlaced", 3, br#"{"total":20,"currency":"USD"}"#),
            ("OrderPlaced", 3, br#"{"total":30,"currency":"USD"}"#),
            ("FundsDeposited", 1, br#"{"amount":5}"#),
        ]
    );
    let meta: Vec<&[u8]> = got.iter().map(|e| &e.metadata[..]).collect();
    assert_eq!(meta, [&b"meta"[..], b"meta+v3", b"meta+v3", b"meta", b"meta"]);
    // The identity never changes; the stored events do not either.
    let stored = store.read_all_owned(0, usize::MAX).unwrap();
    for (up, st) in got.iter().zip(&stored) {
        assert_eq!(
            (up.event_id, &up.aggregate_id, up.version, up.position),
            (st.event_id, &st.aggregate_id, st.version, st.position)
        );
        assert_eq!((up.occurred_at, up.recorded_at), (st.occurred_at, st.recorded_at));
    }
    assert_eq!(stored[1].event_type, "OrderPlaced");
    assert_eq!((stored[1].event_version, &stored[1].data[..]), (1, &br#"{"amount":10}"#[..]));
    assert_eq!(stored[0].event_type, "AccountCreated");

    // One aggregate, backwards, from version 2.
    let back = store.read_aggregate_upcast("acct-1", 2, Direction::Backward, 10).unwrap();
    let versions: Vec<(u64, &str, u32)> =
        back.iter().map(|e| (e.version, e.event_type.as_str(), e.event_version)).collect();
    assert_eq!(versions, [(2, "OrderPlaced", 3), (1, "OrderPlaced", 3), (0, "AccountOpened", 2)]);
    store.close().unwrap();
}

#[test]
fn an_event_no_upcaster_applies_to_is_borrowed_from_the_map() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled(dir.path(), upcasters());
    let reader = store.reader();
    let plain: Vec<_> = reader.read_all(0).map(Result::unwrap).collect();
    let up = store.upcasters();
    let upcast: Vec<Upcasted<'_>> = up.events(reader.read_all(0)).map(Result::unwrap).collect();
    let borrowed: Vec<bool> = upcast.iter().map(|e| !e.is_upcast()).collect();
    assert_eq!(borrowed, [false, false, false, true, true]);
    for (u, p) in upcast.iter().zip(&plain) {
        match u {
            Upcasted::Borrowed(e) => {
                // The same bytes of the same map, not a copy.
                assert!(std::ptr::eq(e.data(), p.data()) && std::ptr::eq(u.data(), p.data()));
                assert!(std::ptr::eq(u.metadata(), p.metadata()) && std::ptr::eq(u.event_type(), p.event_type()));
            }
            Upcasted::Owned(e) => assert!(!std::ptr::eq(&e.data[..], p.data())),
        }
        assert_eq!(
            (u.position(), u.version(), u.aggregate_id(), u.event_id()),
            (p.position(), p.version(), p.aggregate_id(), p.event_id())
        );
    }
    // With no upcasters at all, every event is borrowed.
    let none = Upcasters::new();
    assert!(none.events(reader.read_all(0)).all(|e| !e.unwrap().is_upcast()));
    // Plain reads never upcast, whatever the store holds.
    assert_eq!(reader.read_all(0).nth(1).unwrap().unwrap().event_version(), 1);
    drop(reader);
    store.close().unwrap();
}

#[test]
fn a_failing_or_panicking_upcaster_is_a_typed_error_naming_the_position() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = Upcasters::new();
    up.register(("OrderPlaced", 1), ("OrderPlaced", 2), |e: &mut Upcast| {
        if e.data.starts_with(b"bad") {
            return Err(UpcastError::new("no amount in the payload"));
        }
        Ok(())
    })
    .unwrap();
    up.register(("Exploded", 1), ("Exploded", 2), |_: &mut Upcast| -> Result<(), UpcastError> {
        panic!("upcaster bug")
    })
    .unwrap();
    let store = Store::open(dir.path(), Options::default().upcasters(up)).unwrap();
    let events = vec![ev(0, "OrderPlaced", 1, "ok"), ev(1, "OrderPlaced", 1, "bad"), ev(2, "Exploded", 1, "x")];
    store.append("a", ExpectedVersion::Any, events).unwrap();
    store.append("b", ExpectedVersion::Any, vec![ev(3, "Fine", 1, "x")]).unwrap();

    match store.read_all_upcast(0, usize::MAX) {
        Err(Error::UpcastFailed { position: 1, aggregate_id, version: 1, event_type, event_version: 1, reason }) => {
            assert_eq!((aggregate_id.as_str(), event_type.as_str()), ("a", "OrderPlaced"));
            assert_eq!(reason, "no amount in the payload");
        }
        other => panic!("{other:?}"),
    }
    // An iterator reports the error once, then ends, as a read error does.
    let reader = store.reader();
    let results: Vec<bool> = store.upcasters().events(reader.read_all(0)).map(|r| r.is_ok()).collect();
    assert_eq!(results, [true, false]);
    match store.read_all_upcast(2, usize::MAX) {
        Err(e @ Error::UpcastFailed { position: 2, .. }) => assert!(e.to_string().contains("upcaster bug"), "{e}"),
        other => panic!("{other:?}"),
    }
    // The store is unharmed: plain reads, appends and reads past the bad events work.
    assert_eq!(store.read_all_owned(0, usize::MAX).unwrap().len(), 4);
    store.append("b", ExpectedVersion::Exact(0), vec![ev(4, "Fine", 1, "y")]).unwrap();
    assert_eq!(store.read_all_upcast(3, usize::MAX).unwrap().len(), 2);
    drop(reader);
    store.close().unwrap();
}

#[test]
fn ambiguous_and_looping_registrations_are_refused() {
    let mut up = Upcasters::new();
    up.register(("A", 1), ("A", 2), suffix("")).unwrap();
    up.register(("A", 2), ("B", 2), suffix("")).unwrap();
    let refused = |r: Result<&mut Upcasters, Error>| matches!(r, Err(Error::InvalidUpcaster { .. }));
    assert!(refused(up.register(("A", 1), ("C", 5), suffix(""))), "two upcasters from A v1");
    assert!(refused(up.register(("B", 2), ("A", 1), suffix(""))), "back to an earlier version");
    assert!(refused(up.register(("B", 2), ("A", 2), suffix(""))), "a rename loop A v2 -> B v2 -> A v2");
    assert!(refused(up.register(("A", 3), ("A", 3), suffix(""))), "to itself");
    assert_eq!(up.len(), 2);
    match up.register(("A", 1), ("A", 9), suffix("")) {
        Err(e @ Error::InvalidUpcaster { event_version: 1, .. }) => assert!(e.to_string().contains("\"A\""), "{e}"),
        other => panic!("{other:?}"),
    }
    // The same name at a later version, or a new name at the same one, is fine.
    up.register(("B", 2), ("B", 3), suffix("")).unwrap();
    up.register(("Old", 1), ("New", 1), suffix("")).unwrap();
    assert_eq!(up.len(), 4);
    assert!(format!("{up:?}").contains("Old v1 -> New v1"));
}

#[test]
fn load_upcasts_the_events_after_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled(dir.path(), upcasters());
    store.save_snapshot("acct-1", 1, SchemaVersion(1), b"state@1").unwrap();
    let loaded = store.load("acct-1").unwrap();
    assert_eq!(loaded.snapshot.as_ref().map(|s| s.version), Some(1));
    let events: Vec<(u64, String, u32, bool)> = loaded
        .upcast_events(store.upcasters())
        .map(|e| e.map(|e| (e.version(), e.event_type().to_string(), e.event_version(), e.is_upcast())))
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        events,
        [
            (2, "OrderPlaced".into(), 3, true),
            (3, "OrderPlaced".into(), 3, false),
            (4, "FundsDeposited".into(), 1, false)
        ]
    );
    drop(loaded);
    store.close().unwrap();
}

#[test]
fn load_with_refuses_or_skips_a_snapshot_of_a_stale_schema_and_replays_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled(dir.path(), upcasters());
    store.save_snapshot("acct-1", 3, SchemaVersion(1), b"old state").unwrap();

    // The default accepts any schema, as `load` does.
    let any = store.load_with("acct-1", &LoadOptions::default()).unwrap();
    assert_eq!((any.snapshot.as_ref().map(|s| s.version), any.events().count()), (Some(3), 1));

    let refuse = LoadOptions::default().snapshot_schema(SchemaVersion(2), StaleSnapshot::Refuse);
    match store.load_with("acct-1", &refuse) {
        Err(Error::StaleSnapshot { aggregate_id, version: 3, found: SchemaVersion(1), expected: SchemaVersion(2) }) => {
            assert_eq!(aggregate_id, "acct-1")
        }
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("a stale snapshot was accepted"),
    }

    let skip = LoadOptions::default().snapshot_schema(SchemaVersion(2), StaleSnapshot::Skip);
    let replayed = store.load_with("acct-1", &skip).unwrap();
    assert!(replayed.snapshot.is_none());
    assert_eq!(replayed.version(), Some(4));
    let versions: Vec<u64> = replayed.upcast_events(store.upcasters()).map(|e| e.unwrap().version()).collect();
    assert_eq!(versions, [0, 1, 2, 3, 4], "replayed from the log's first event");
    drop(replayed);

    // A snapshot in the schema asked for is used; then neither policy matters.
    store.save_snapshot("acct-1", 4, SchemaVersion(2), b"new state").unwrap();
    for options in [refuse, skip] {
        let loaded = store.load_with("acct-1", &options).unwrap();
        assert_eq!(loaded.snapshot.as_ref().map(|s| (s.version, s.schema_version)), Some((4, 2)));
        assert_eq!(loaded.events().count(), 0);
    }

    // As of version 2: the one kept snapshot (at 4, `snapshots_keep` is 1) is past that point,
    // so the load replays versions 0..=2 from the log.
    let past = store.load_with("acct-1", &skip.as_of(factlog::AsOf::Version(2))).unwrap();
    assert!(past.snapshot.is_none());
    assert_eq!((past.version(), past.events().count()), (Some(2), 3));
    drop(past);
    // An aggregate with no events: nothing to load, no error.
    let empty = store.load_with("nobody", &refuse).unwrap();
    assert!(empty.snapshot.is_none() && empty.version().is_none());
    drop(empty);
    store.close().unwrap();
}

#[test]
fn load_with_as_of_a_point_between_snapshots_refuses_the_stale_one_it_would_use() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default().snapshots_keep(2).upcasters(upcasters())).unwrap();
    for n in 0..6 {
        store.append("acct", ExpectedVersion::Any, vec![ev(n, "OrderPlaced", 1, r#"{"amount":1}"#)]).unwrap();
    }
    store.save_snapshot("acct", 1, SchemaVersion(1), b"v1 state").unwrap();
    store.save_snapshot("acct", 4, SchemaVersion(2), b"v2 state").unwrap();
    let refuse = LoadOptions::default().snapshot_schema(SchemaVersion(2), StaleSnapshot::Refuse);
    assert!(matches!(
        store.load_with("acct", &refuse.as_of(factlog::AsOf::Version(3))),
        Err(Error::StaleSnapshot { version: 1, .. })
    ));
    let now = store.load_with("acct", &refuse).unwrap();
    assert_eq!(now.snapshot.as_ref().map(|s| s.version), Some(4));
    let tail: Vec<String> =
        now.upcast_events(store.upcasters()).map(|e| String::from_utf8(e.unwrap().data().to_vec()).unwrap()).collect();
    assert_eq!(tail, [r#"{"total":1,"currency":"EUR"}"#]);
    drop(now);
    store.close().unwrap();
}

#[test]
fn a_subscription_delivers_upcast_events_caught_up_and_live() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled(dir.path(), upcasters());
    let mut sub = store.subscribe(StartFrom::Start, Filter::all()).upcast(store.upcasters());
    let mut got = Vec::new();
    while got.len() < 5 {
        got.extend(sub.next_batch(5, WAIT).unwrap());
    }
    let live = {
        let store = store.clone();
        std::thread::spawn(move || {
            store.append("acct-2", ExpectedVersion::Any, vec![ev(10, "OrderPlaced", 1, r#"{"amount":7}"#)]).unwrap();
        })
    };
    let next = sub.next_timeout(WAIT).unwrap().expect("the live event");
    live.join().unwrap();
    assert_eq!((next.event_type.as_str(), next.event_version), ("OrderPlaced", 3));
    assert_eq!(&next.data[..], br#"{"total":7,"currency":"EUR"}"#);
    let types: Vec<(String, u32)> = got.iter().map(|e| (e.event_type.clone(), e.event_version)).collect();
    assert_eq!(types[0], ("AccountOpened".to_string(), 2));
    assert_eq!(got, store.read_all_upcast(0, 5).unwrap());

    // A filter sees the stored type names.
    let mut renamed =
        store.subscribe(StartFrom::Start, Filter::all().event_types(["AccountCreated"])).upcast(store.upcasters());
    let first = renamed.next_timeout(WAIT).unwrap().unwrap();
    assert_eq!((first.position, first.event_type.as_str()), (0, "AccountOpened"));

    // One aggregate, zero-copy: borrowed where nothing applies.
    let mut agg = store.subscribe_aggregate("acct-1", StartFrom::Start).upcast(store.upcasters());
    let mut batch = agg.batch(100, WAIT).unwrap();
    let kinds: Vec<(u64, bool)> =
        batch.upcast_events().map(|e| e.map(|e| (e.version(), e.is_upcast()))).collect::<Result<_, _>>().unwrap();
    drop(batch);
    assert_eq!(kinds, [(0, true), (1, true), (2, true), (3, false), (4, false)]);
    assert_eq!(agg.position(), 5);
    // Without `upcast`, a subscription delivers events as stored.
    let mut plain = store.subscribe(StartFrom::Start, Filter::all());
    assert_eq!(plain.next_timeout(WAIT).unwrap().unwrap().event_type, "AccountCreated");
    store.close().unwrap();
}

#[test]
fn a_failing_upcaster_stops_a_subscription_at_the_event() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = Upcasters::new();
    up.register(("Bad", 1), ("Bad", 2), |e: &mut Upcast| {
        Err(UpcastError::new(format!("cannot read {} bytes", e.data.len())))
    })
    .unwrap();
    let store = Store::open(dir.path(), Options::default().upcasters(up)).unwrap();
    let events = vec![ev(0, "Good", 1, "a"), ev(1, "Good", 1, "b"), ev(2, "Bad", 1, "cc"), ev(3, "Good", 1, "d")];
    store.append("x", ExpectedVersion::Any, events).unwrap();

    for filtered in [false, true] {
        let filter = if filtered { Filter::all().event_types(["Bad", "Good"]) } else { Filter::all() };
        let mut sub = store.subscribe(StartFrom::Start, filter).upcast(store.upcasters());
        // The events before the bad one come out; the cursor stops on it.
        let first = sub.next_batch(10, WAIT).unwrap();
        assert_eq!(first.iter().map(|e| e.position).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(sub.position(), 2);
        for _ in 0..2 {
            match sub.try_next() {
                Err(Error::UpcastFailed { position: 2, reason, .. }) => assert_eq!(reason, "cannot read 2 bytes"),
                other => panic!("{other:?}"),
            }
            assert_eq!(sub.position(), 2, "the cursor stays on the bad event");
        }
        // The zero-copy batch reports it too and leaves the cursor there.
        let mut batch = sub.batch(10, WAIT).unwrap();
        let results: Vec<bool> = batch.upcast_events().map(|r| r.is_ok()).collect();
        drop(batch);
        assert_eq!(results, [false]);
        assert_eq!(sub.position(), 2);
    }
    // An aggregate subscription: its cursor is a version.
    let mut agg = store.subscribe_aggregate("x", StartFrom::Position(1)).upcast(store.upcasters());
    assert_eq!(agg.next_batch(10, WAIT).unwrap().len(), 1);
    assert!(matches!(agg.try_next(), Err(Error::UpcastFailed { position: 2, version: 2, .. })));
    assert_eq!(agg.position(), 2);
    store.close().unwrap();
}

/// The model: the chain applied by hand. Types `T0..T2`, versions 1..=4;
/// `steps[t][v]` says whether `T{t}` v → v+1 is registered; `T2` v4 is
/// renamed to `T0` v4 when `rename` is set (and T0 v4 → v5 if registered).
fn model(event_type: usize, version: u32, data: &str, steps: &[[bool; 5]; 3], rename: bool) -> (String, u32, String) {
    let (mut t, mut v, mut d) = (event_type, version, data.to_string());
    loop {
        if t == 2 && v == 4 && rename {
            t = 0;
            d.push_str("|r");
            continue;
        }
        if steps[t].get(v as usize).copied().unwrap_or(false) {
            d.push_str(&format!("|{t}.{v}"));
            v += 1;
            continue;
        }
        return (format!("T{t}"), v, d);
    }
}

fn registered(steps: &[[bool; 5]; 3], rename: bool) -> Upcasters {
    let mut up = Upcasters::new();
    for (t, versions) in steps.iter().enumerate() {
        for (v, on) in versions.iter().enumerate() {
            if *on {
                let tag = format!("|{t}.{v}");
                let name = format!("T{t}");
                up.register((&name, v as u32), (&name, v as u32 + 1), move |e: &mut Upcast| {
                    e.data = Bytes::from(format!("{}{tag}", std::str::from_utf8(&e.data)?));
                    Ok(())
                })
                .unwrap();
            }
        }
    }
    if rename && !steps[2][4] {
        up.register(("T2", 4), ("T0", 4), suffix("|r")).unwrap();
    }
    up
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Every upcast read (owned, through a reader, through a subscription)
    /// agrees with the model, and exactly the events the model leaves alone
    /// come out borrowed.
    #[test]
    fn upcast_reads_agree_with_the_model(
        events in proptest::collection::vec((0usize..3, 1u32..5), 1..40),
        steps in proptest::array::uniform3(proptest::array::uniform5(any::<bool>())),
        rename in any::<bool>(),
    ) {
        let up = registered(&steps, rename);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Options::default().upcasters(up)).unwrap();
        let batch: Vec<NewEvent> = events
            .iter()
            .enumerate()
            .map(|(i, (t, v))| NewEvent::new(EventId([i as u8; 16]), format!("T{t}"), format!("e{i}")).with_event_version(*v))
            .collect();
        store.append("agg", ExpectedVersion::NoStream, batch).unwrap();
        let expected: Vec<(String, u32, String)> = events
            .iter()
            .enumerate()
            // The rename is registered only where no step starts at T2 v4 (see `registered`).
            .map(|(i, (t, v))| model(*t, *v, &format!("e{i}"), &steps, rename && !steps[2][4]))
            .collect();
        let shape = |e: &factlog::RecordedEvent| (e.event_type.clone(), e.event_version, String::from_utf8(e.data.to_vec()).unwrap());
        let owned: Vec<_> = store.read_all_upcast(0, usize::MAX).unwrap().iter().map(shape).collect();
        prop_assert_eq!(&owned, &expected);
        let by_aggregate: Vec<_> =
            store.read_aggregate_upcast("agg", 0, Direction::Forward, usize::MAX).unwrap().iter().map(shape).collect();
        prop_assert_eq!(&by_aggregate, &expected);

        let reader = store.reader();
        for ((e, (t, v)), want) in store.upcasters().events(reader.read_all(0)).zip(&events).zip(&expected) {
            let e = e.unwrap();
            let untouched = want.0 == format!("T{t}") && want.1 == *v;
            prop_assert_eq!(e.is_upcast(), !untouched);
        }
        drop(reader);

        let mut sub = store.subscribe(StartFrom::Start, Filter::all()).upcast(store.upcasters());
        let delivered: Vec<_> = sub.next_batch(usize::MAX, WAIT).unwrap().iter().map(shape).collect();
        prop_assert_eq!(&delivered, &expected);
        store.close().unwrap();
    }
}
