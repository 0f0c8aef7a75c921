//! Round trips, optimistic concurrency, idempotency, reopen and bad input.
//! Public API only; every store lives in its own temporary directory.

use factlog::{Direction, Error, ExpectedVersion, Options, Store};
use factlog_tests::{event, id, small_options};

#[test]
fn every_envelope_field_round_trips_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    let evs: Vec<_> = (0..5).map(|n| event(1, n)).collect();
    let r = store.append("acct-1", ExpectedVersion::NoStream, evs.clone()).unwrap();
    assert_eq!(
        (r.first_version, r.last_version, r.first_position, r.last_position, r.deduplicated),
        (0, 4, 0, 4, false)
    );
    let check = |store: &Store| {
        let got = store.read_aggregate_owned("acct-1", 0, Direction::Forward, 100).unwrap();
        assert_eq!(got.len(), 5);
        for (i, (g, e)) in got.iter().zip(&evs).enumerate() {
            assert_eq!(g.event_id, e.event_id);
            assert_eq!(g.aggregate_id, "acct-1");
            assert_eq!(g.version, i as u64);
            assert_eq!(g.position, i as u64);
            assert_eq!(g.event_type, e.event_type);
            assert_eq!(g.event_version, e.event_version);
            assert_eq!(g.occurred_at, e.occurred_at);
            assert!(g.recorded_at > 0);
            assert_eq!(g.causation_id, e.causation_id);
            assert_eq!(g.correlation_id, e.correlation_id);
            assert_eq!(g.metadata, e.metadata);
            assert_eq!(g.data, e.data);
        }
    };
    check(&store);
    store.close().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    check(&store);
    assert_eq!(store.aggregate_version("acct-1"), Some(4));
    assert_eq!(store.last_position(), Some(4));
}

#[test]
fn expected_version_conflicts_are_typed_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    assert_eq!(store.last_position(), None);
    match store.append("a", ExpectedVersion::StreamExists, vec![event(1, 0)]) {
        Err(Error::WrongExpectedVersion { actual: None, .. }) => {}
        other => panic!("unexpected {other:?}"),
    }
    store.append("a", ExpectedVersion::NoStream, vec![event(1, 0)]).unwrap();
    match store.append("a", ExpectedVersion::NoStream, vec![event(1, 1)]) {
        Err(Error::WrongExpectedVersion { actual: Some(0), expected: ExpectedVersion::NoStream, .. }) => {}
        other => panic!("unexpected {other:?}"),
    }
    match store.append("a", ExpectedVersion::Exact(5), vec![event(1, 1)]) {
        Err(e @ Error::WrongExpectedVersion { actual: Some(0), .. }) => assert!(e.to_string().contains("\"a\"")),
        other => panic!("unexpected {other:?}"),
    }
    store.append("a", ExpectedVersion::Exact(0), vec![event(1, 1)]).unwrap();
    store.append("a", ExpectedVersion::Any, vec![event(1, 2)]).unwrap();
    assert_eq!(store.aggregate_version("a"), Some(2));
    assert_eq!(store.read_all_owned(0, 100).unwrap().len(), 3);
}

#[test]
fn retried_append_is_deduplicated_and_misplaced_id_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    store.append("other", ExpectedVersion::Any, vec![event(9, 0)]).unwrap();
    let batch = vec![event(1, 0), event(1, 1)];
    let first = store.append("a", ExpectedVersion::NoStream, batch.clone()).unwrap();
    let retry = store.append("a", ExpectedVersion::NoStream, batch.clone()).unwrap();
    assert!(retry.deduplicated);
    assert_eq!((retry.first_position, retry.last_version), (first.first_position, first.last_version));
    assert_eq!(store.read_all_owned(0, 100).unwrap().len(), 3);
    match store.append("b", ExpectedVersion::Any, vec![event(1, 1)]) {
        Err(Error::DuplicateEventId { existing_position: 2, existing_aggregate, .. }) => {
            assert_eq!(existing_aggregate, "a")
        }
        other => panic!("unexpected {other:?}"),
    }
    match store.append("a", ExpectedVersion::Any, vec![event(5, 0), event(5, 0)]) {
        Err(Error::InvalidInput(_)) => {}
        other => panic!("unexpected {other:?}"),
    }
    // The window survives a restart.
    store.close().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    assert!(store.append("a", ExpectedVersion::NoStream, batch).unwrap().deduplicated);
    assert_eq!(store.stats().events, 3);
}

#[test]
fn bad_input_gives_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    assert!(matches!(store.append("", ExpectedVersion::Any, vec![event(1, 0)]), Err(Error::InvalidInput(_))));
    assert!(matches!(
        store.append(&"x".repeat(256), ExpectedVersion::Any, vec![event(1, 0)]),
        Err(Error::InvalidInput(_))
    ));
    let mut e = event(1, 0);
    e.event_type = String::new();
    assert!(matches!(store.append("a", ExpectedVersion::Any, vec![e]), Err(Error::InvalidInput(_))));
    assert!(matches!(store.append("a", ExpectedVersion::Any, vec![]), Err(Error::InvalidInput(_))));
    let mut big = event(1, 0);
    big.data = vec![7u8; 20 * 1024].into();
    assert!(matches!(store.append("a", ExpectedVersion::Any, vec![big]), Err(Error::EventTooLarge { .. })));
    // Just under the limit by data size, over it once encoded.
    let mut edge = event(1, 1);
    edge.data = vec![7u8; 16 * 1024 - 60].into();
    assert!(matches!(store.append("a", ExpectedVersion::Any, vec![edge]), Err(Error::EventTooLarge { .. })));
    store.append("a", ExpectedVersion::NoStream, vec![event(1, 2)]).unwrap();
    assert_eq!(store.stats().events, 1);
    assert!(matches!(Store::open(dir.path(), small_options()), Err(Error::Locked { .. })));
    let bad = Options::default().segment_bytes(1000);
    assert!(matches!(Store::open(dir.path().join("x"), bad), Err(Error::InvalidOptions(_))));
    let not_store = tempfile::tempdir().unwrap();
    std::fs::write(not_store.path().join("hello.txt"), "hi").unwrap();
    assert!(matches!(Store::open(not_store.path(), Options::default()), Err(Error::NotAStore { .. })));
    let s2 = store.clone();
    store.close().unwrap();
    assert!(matches!(s2.append("a", ExpectedVersion::Any, vec![event(1, 3)]), Err(Error::Closed)));
}

#[test]
fn many_segments_roll_and_reopen_from_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    for n in 0..2000u64 {
        let agg = format!("agg-{}", n % 7);
        store.append(&agg, ExpectedVersion::Any, vec![event(n % 7, n)]).unwrap();
    }
    let stats = store.stats();
    assert!(stats.segments > 3, "{stats:?}");
    let all = store.read_all_owned(0, usize::MAX).unwrap();
    assert_eq!(all.len(), 2000);
    assert!(all.iter().enumerate().all(|(i, e)| e.position == i as u64));
    store.close().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    let rep = store.recovery_report().clone();
    assert_eq!(rep.checkpoints_loaded as u64, stats.segments - 1, "{rep:?}");
    assert_eq!(store.read_all_owned(0, usize::MAX).unwrap(), all);
    let back = store.read_aggregate_owned("agg-3", u64::MAX, Direction::Backward, 5).unwrap();
    assert_eq!(back.iter().map(|e| e.version).collect::<Vec<_>>(), vec![285, 284, 283, 282, 281]);
    // Delete the checkpoints: same reads, rebuilt.
    store.close().unwrap();
    for f in std::fs::read_dir(dir.path()).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "idx") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let store = Store::open(dir.path(), small_options()).unwrap();
    assert_eq!(store.recovery_report().checkpoints_rebuilt.len() as u64, stats.segments - 1);
    assert_eq!(store.read_all_owned(0, usize::MAX).unwrap(), all);
    assert_eq!(store.read_aggregate_owned("agg-3", 0, Direction::Forward, 1000).unwrap().len(), 286);
    let _ = id(0, 0);
}
