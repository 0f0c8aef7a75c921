//! The event lifecycle through the public API: stream metadata (max count,
//! max age, truncate before), soft and hard deletes and erasure hide events
//! from every read path at once, survive a reopen, and refuse what they must
//! with typed errors. Uses its own temporary stores only.

use std::time::Duration;

use factlog::{DeleteMode, Direction, Error, ExpectedVersion, Filter, SchemaVersion, StartFrom, Store, StreamMeta};
use factlog_tests::{event, small_options};

/// Appends events `from..to` to aggregate `stream` (named "agg-{stream}"), one batch each.
fn fill(store: &Store, stream: u64, from: u64, to: u64) {
    for v in from..to {
        store.append(&format!("agg-{stream}"), ExpectedVersion::Any, vec![event(stream, v)]).unwrap();
    }
}

fn versions(store: &Store, id: &str) -> Vec<u64> {
    store.read_aggregate_owned(id, 0, Direction::Forward, usize::MAX).unwrap().iter().map(|e| e.version).collect()
}

fn all(store: &Store) -> Vec<(String, u64)> {
    store.read_all_owned(0, usize::MAX).unwrap().into_iter().map(|e| (e.aggregate_id, e.version)).collect()
}

#[test]
fn retention_rules_hide_a_prefix_in_every_read_path_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    fill(&store, 1, 0, 10);
    fill(&store, 2, 0, 3);
    store.set_stream_meta("agg-1", StreamMeta { truncate_before: Some(4), ..Default::default() }).unwrap();
    assert_eq!(versions(&store, "agg-1"), (4..10).collect::<Vec<_>>());
    store.set_stream_meta("agg-1", StreamMeta { max_count: Some(3), ..Default::default() }).unwrap();
    assert_eq!(versions(&store, "agg-1"), vec![7, 8, 9]);
    let backward = store.read_aggregate_owned("agg-1", u64::MAX, Direction::Backward, usize::MAX).unwrap();
    assert_eq!(backward.iter().map(|e| e.version).collect::<Vec<_>>(), vec![9, 8, 7]);
    // max_count follows the stream as it grows.
    fill(&store, 1, 10, 11);
    assert_eq!(versions(&store, "agg-1"), vec![8, 9, 10]);
    let expected: Vec<(String, u64)> =
        (0..3).map(|v| ("agg-2".to_string(), v)).chain((8..11).map(|v| ("agg-1".to_string(), v))).collect();
    let mut got = all(&store);
    got.sort_by(|a, b| a.0.cmp(&b.0).reverse().then(a.1.cmp(&b.1)));
    assert_eq!(got, expected);
    // Filtered reads and subscriptions skip the hidden events too.
    let reader = store.reader();
    let filter = Filter::all().aggregate_prefixes(["agg-1"]);
    let filtered: Vec<u64> = reader.read_all_filtered(0, &filter).map(|e| e.unwrap().version()).collect();
    assert_eq!(filtered, vec![8, 9, 10]);
    let mut sub = store.subscribe(StartFrom::Start, Filter::all());
    let got = sub.next_batch(100, Duration::from_millis(50)).unwrap();
    assert_eq!(got.len(), 6, "the subscription delivers only visible events");
    let mut sub = store.subscribe_aggregate("agg-1", StartFrom::Start);
    let got = sub.next_batch(100, Duration::from_millis(50)).unwrap();
    assert_eq!(got.iter().map(|e| e.version).collect::<Vec<_>>(), vec![8, 9, 10]);
    // A hidden position is reported as removed, not as some other event.
    assert!(matches!(reader.event_at_position(0), Err(Error::EventRemoved { position: 0 })));
    assert_eq!(reader.event_at_position(10).unwrap().aggregate_id(), "agg-2");
    store.close().unwrap();

    let store = Store::open(dir.path(), small_options()).unwrap();
    assert_eq!(versions(&store, "agg-1"), vec![8, 9, 10]);
    assert_eq!(store.stream_state("agg-1").unwrap().meta.max_count, Some(3));
    // The version keeps counting: nothing was removed from the log.
    assert_eq!(store.aggregate_version("agg-1"), Some(10));
    let read_only = Store::open_read_only(dir.path(), small_options()).unwrap();
    assert_eq!(versions(&read_only, "agg-1"), vec![8, 9, 10]);
}

#[test]
fn max_age_hides_what_was_recorded_too_long_ago() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    fill(&store, 1, 0, 3);
    std::thread::sleep(Duration::from_millis(300));
    fill(&store, 1, 3, 5);
    let age = Duration::from_millis(200);
    let recorded: Vec<i64> = store.read_all_owned(0, 10).unwrap().iter().map(|e| e.recorded_at).collect();
    store.set_stream_meta("agg-1", StreamMeta { max_age: Some(age), ..Default::default() }).unwrap();
    let before = factlog::now_nanos() - age.as_nanos() as i64;
    let (seen, seen_all) = (versions(&store, "agg-1"), all(&store));
    let after = factlog::now_nanos() - age.as_nanos() as i64;
    // Older than max_age before the read: hidden; younger after it: shown
    // (a stalled machine may leave an event in between either way).
    for (v, at) in recorded.iter().enumerate() {
        let v = v as u64;
        if *at < before {
            assert!(!seen.contains(&v) && !seen_all.contains(&("agg-1".to_string(), v)), "v{v} is too old");
        }
        if *at >= after {
            assert!(seen.contains(&v) && seen_all.contains(&("agg-1".to_string(), v)), "v{v} is young enough");
        }
    }
    assert!(recorded[2] < before || recorded[3] >= after, "the test's clock stalled: nothing was checked");
    store.set_stream_meta("agg-1", StreamMeta::default()).unwrap();
    assert_eq!(versions(&store, "agg-1").len(), 5, "lifting the rule shows the events again");
    assert_eq!(store.stream_state("agg-1"), None);
}

#[test]
fn a_soft_delete_hides_the_aggregate_and_a_new_append_continues_its_versions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    fill(&store, 1, 0, 4);
    fill(&store, 2, 0, 2);
    store.save_snapshot("agg-1", 3, SchemaVersion(1), b"state at 3").unwrap();
    let state = store.delete_aggregate("agg-1", DeleteMode::Soft).unwrap();
    assert_eq!((state.deleted, state.meta.truncate_before), (Some(DeleteMode::Soft), Some(4)));
    assert!(versions(&store, "agg-1").is_empty());
    assert_eq!(all(&store), vec![("agg-2".to_string(), 0), ("agg-2".to_string(), 1)]);
    assert!(store.reader().aggregates("agg-").iter().all(|a| a.aggregate_id != "agg-1"));
    let loaded = store.load("agg-1").unwrap();
    assert!(loaded.snapshot.is_none(), "a deleted aggregate's snapshot is not used");
    assert_eq!(loaded.events().count(), 0);
    // Started again as a new aggregate: its versions continue.
    let r = store.append("agg-1", ExpectedVersion::NoStream, vec![event(1, 100)]).unwrap();
    assert_eq!(r.first_version, 4);
    assert_eq!(versions(&store, "agg-1"), vec![4]);
    // Now it exists again: NoStream no longer matches.
    let again = store.append("agg-1", ExpectedVersion::NoStream, vec![event(1, 101)]);
    assert!(matches!(again, Err(Error::WrongExpectedVersion { actual: Some(4), .. })));
    store.close().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    assert_eq!(versions(&store, "agg-1"), vec![4]);
    assert_eq!(store.stream_state("agg-1").unwrap().deleted, Some(DeleteMode::Soft));
    assert!(matches!(
        store.delete_aggregate("agg-9", DeleteMode::Soft),
        Err(Error::UnknownAggregate { aggregate_id }) if aggregate_id == "agg-9"
    ));
}

#[test]
fn a_hard_delete_and_an_erasure_refuse_every_later_append_forever() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    fill(&store, 1, 0, 2);
    fill(&store, 2, 0, 2);
    fill(&store, 3, 0, 1);
    store.delete_aggregate("agg-1", DeleteMode::Hard).unwrap();
    store.erase("agg-2").unwrap();
    for id in ["agg-1", "agg-2"] {
        let r = store.append(id, ExpectedVersion::Any, vec![event(9, 9)]);
        assert!(matches!(r, Err(Error::AggregateDeleted { ref aggregate_id }) if aggregate_id == id), "{r:?}");
        let r = store.append_many([
            (id, ExpectedVersion::Any, vec![event(9, 10)]),
            ("agg-3", ExpectedVersion::Any, vec![event(9, 11)]),
        ]);
        assert!(matches!(r, Err(Error::AggregateDeleted { .. })), "all or nothing: {r:?}");
        assert!(matches!(store.set_stream_meta(id, StreamMeta::default()), Err(Error::AggregateDeleted { .. })));
        assert!(versions(&store, id).is_empty());
    }
    assert_eq!(all(&store), vec![("agg-3".to_string(), 0)]);
    store.close().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    assert!(matches!(
        store.append("agg-1", ExpectedVersion::NoStream, vec![event(9, 12)]),
        Err(Error::AggregateDeleted { .. })
    ));
    assert!(store.stream_state("agg-2").unwrap().erased);
    assert_eq!(all(&store), vec![("agg-3".to_string(), 0)]);
}

#[test]
fn a_damaged_metadata_file_is_a_typed_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    fill(&store, 1, 0, 2);
    store.delete_aggregate("agg-1", DeleteMode::Hard).unwrap();
    store.close().unwrap();
    let path = dir.path().join(factlog::STREAMS_NAME);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[22] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    match Store::open(dir.path(), small_options()) {
        Err(Error::Corrupt { path: p, .. }) => assert_eq!(p, path),
        other => panic!("expected a corruption error, got {:?}", other.map(|_| ())),
    }
}

/// Options whose retention keeps about `segments` 64 KiB segments.
fn retained(segments: u64) -> factlog::Options {
    small_options().retention(factlog::Retention { max_bytes: Some(segments * 64 * 1024), ..Default::default() })
}

#[test]
fn retention_removes_whole_segments_from_the_head_and_positions_never_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), retained(3)).unwrap();
    for round in 0..400u64 {
        for stream in 0..4 {
            store.append(&format!("agg-{stream}"), ExpectedVersion::Any, vec![event(stream, round)]).unwrap();
        }
    }
    let segments = factlog_tests::segment_files(dir.path());
    assert!(segments.len() <= 4, "{} segments kept", segments.len());
    let first = store.first_position().unwrap();
    assert!(first > 0, "retention removed the head");
    assert_eq!(store.last_position(), Some(1599));
    // Below the start: told, with where the log starts now.
    let below = store.read_all_owned(0, 1);
    assert!(matches!(below, Err(Error::BelowRetainedStart { position: 0, first_retained }) if first_retained == first));
    let mut sub = store.subscribe(StartFrom::Position(first - 1), Filter::all());
    assert!(matches!(sub.try_next(), Err(Error::BelowRetainedStart { .. })));
    // From the start: dense positions from `first` to the end.
    let events = store.read_all_owned(first, usize::MAX).unwrap();
    assert_eq!(events.iter().map(|e| e.position).collect::<Vec<_>>(), (first..1600).collect::<Vec<_>>());
    let mut sub = store.subscribe(StartFrom::Start, Filter::all());
    assert_eq!(sub.next_batch(10_000, Duration::from_millis(50)).unwrap().len() as u64, 1600 - first);
    // An aggregate read from a removed version is told where it now starts;
    // from there it reads whole, and its versions go on.
    let base = match store.read_aggregate_owned("agg-1", 0, Direction::Forward, 1) {
        Err(Error::AggregateTruncated { first_version, .. }) => first_version,
        other => panic!("expected AggregateTruncated, got {other:?}"),
    };
    let kept: Vec<u64> = store
        .read_aggregate_owned("agg-1", base, Direction::Forward, usize::MAX)
        .unwrap()
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!((kept[0], kept.last()), (base, Some(&399)));
    assert!(kept[0] > 0 && kept.windows(2).all(|w| w[1] == w[0] + 1));
    store.append("agg-1", ExpectedVersion::Exact(399), vec![event(1, 400)]).unwrap();
    // Without a snapshot covering the removed versions, a load is refused.
    assert!(
        matches!(store.load("agg-1"), Err(Error::AggregateTruncated { first_version, .. }) if first_version == kept[0])
    );
    store.save_snapshot("agg-1", 400, SchemaVersion(1), b"s").unwrap();
    assert_eq!(store.load("agg-1").unwrap().snapshot.unwrap().version, 400);
    store.close().unwrap();

    let store = Store::open(dir.path(), retained(3)).unwrap();
    assert_eq!(store.first_position(), Some(first));
    let again = store.read_aggregate_owned("agg-1", kept[0], Direction::Forward, 1).unwrap();
    assert_eq!(again[0].version, kept[0]);
    store.append("agg-2", ExpectedVersion::Exact(399), vec![event(2, 400)]).unwrap();
    let clamped = Store::open_read_only(
        dir.path(),
        small_options().retention(factlog::Retention { clamp_reads_below_start: true, ..Default::default() }),
    )
    .unwrap();
    assert_eq!(clamped.read_all_owned(0, 1).unwrap()[0].position, first);
}

#[test]
fn a_consumer_whose_checkpoint_retention_passed_is_told_not_moved() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), retained(2)).unwrap();
    let mut consumer = store.consumer("slow", factlog::ConsumerOptions::default()).unwrap();
    drop(consumer.poll(1, Duration::ZERO).unwrap());
    drop(consumer);
    for round in 0..1500u64 {
        store.append("agg-0", ExpectedVersion::Any, vec![event(0, round)]).unwrap();
    }
    let first = store.first_position().unwrap();
    assert!(first > 0);
    let mut consumer = store.consumer("slow", factlog::ConsumerOptions::default()).unwrap();
    let r = consumer.poll(10, Duration::ZERO).map(|_| ());
    assert!(
        matches!(r, Err(Error::BelowRetainedStart { position: 0, first_retained }) if first_retained == first),
        "{r:?}"
    );
    drop(consumer);
    // Also where the store clamps plain reads below the start: a consumer is always told.
    let clamping =
        small_options().retention(factlog::Retention { clamp_reads_below_start: true, ..Default::default() });
    let clamped = Store::open_read_only(dir.path(), clamping).unwrap();
    let mut consumer = clamped.consumer("slow", factlog::ConsumerOptions::default()).unwrap();
    let r = consumer.poll(10, Duration::ZERO).map(|_| ());
    assert!(matches!(r, Err(Error::BelowRetainedStart { position: 0, .. })), "{r:?}");
    drop(consumer);
    drop(clamped);
    assert_eq!(store.reset_consumer("slow", factlog::ResetTo::Start).unwrap(), first);
    // A new consumer from the start begins where the log does.
    let mut fresh = store.consumer("fresh", factlog::ConsumerOptions::default()).unwrap();
    assert_eq!(fresh.poll(1, Duration::ZERO).unwrap().events().next().unwrap().unwrap().position(), first);
}

#[test]
fn retention_by_age_removes_segments_whose_newest_event_is_old() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_options()
        .retention(factlog::Retention { max_age: Some(Duration::from_millis(300)), ..Default::default() });
    let store = Store::open(dir.path(), options).unwrap();
    for round in 0..1500u64 {
        store.append("old", ExpectedVersion::Any, vec![event(0, round)]).unwrap();
    }
    std::thread::sleep(Duration::from_millis(400));
    // Segments sealed more than 300 ms ago may be gone already (retention
    // runs at every roll); now every sealed one is, never the active one.
    store.apply_retention().unwrap();
    assert_eq!(factlog_tests::segment_files(dir.path()).len(), 1);
    assert!(store.first_position().unwrap() > 0);
    assert!(store.read_all_owned(store.first_position().unwrap(), usize::MAX).unwrap().len() < 1500);
}
