//! In-process subscriptions: catch-up then live with no gap and no duplicate
//! under concurrent appends across segment rolls, starting points, filters
//! (and the filtered read that must agree with them), per-aggregate
//! subscriptions, durable-only delivery in `Buffered` mode, timeouts, and
//! closing the store ending every subscription. Uses its own temp stores only.

use std::time::{Duration, Instant};

use factlog::{Durability, Error, ExpectedVersion, Filter, RecordedEvent, StartFrom, Store};
use factlog_tests::{event, small_options};

const WAIT: Duration = Duration::from_secs(30);

fn collect(sub: &mut factlog::Subscription, n: usize) -> Vec<RecordedEvent> {
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    while got.len() < n && Instant::now() < deadline {
        got.extend(sub.next_batch(n - got.len(), Duration::from_millis(200)).unwrap());
    }
    got
}

#[test]
fn catch_up_then_live_delivers_every_event_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    for n in 0..300u64 {
        store.append(&format!("agg-{}", n % 7), ExpectedVersion::Any, vec![event(n % 7, n)]).unwrap();
    }
    let mut sub = store.subscribe(StartFrom::Start, Filter::all());
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for n in 300..1500u64 {
                let batch = (0..(n % 3 + 1)).map(|i| event(100 + n % 5, n * 10 + i)).collect();
                store.append(&format!("live-{}", n % 5), ExpectedVersion::Any, batch).unwrap();
            }
        })
    };
    writer.join().unwrap();
    let total = store.last_position().unwrap() + 1;
    let got = collect(&mut sub, total as usize);
    let positions: Vec<u64> = got.iter().map(|e| e.position).collect();
    assert_eq!(positions, (0..total).collect::<Vec<_>>(), "no gap, no duplicate, in order");
    assert_eq!(got, store.read_all_owned(0, usize::MAX).unwrap());
    assert!(sub.try_next().unwrap().is_none());
    assert_eq!(sub.position(), total);
}

#[test]
fn a_subscriber_wakes_for_each_live_append() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    store.append("a", ExpectedVersion::Any, vec![event(1, 0)]).unwrap();
    let mut sub = store.subscribe(StartFrom::End, Filter::all());
    assert!(sub.try_next().unwrap().is_none(), "End starts after what is there");
    let reader = std::thread::spawn(move || {
        (0..50).map(|_| sub.next_timeout(WAIT).unwrap().expect("an event within the wait").position).collect::<Vec<_>>()
    });
    for n in 1..=50u64 {
        store.append("a", ExpectedVersion::Any, vec![event(1, n)]).unwrap();
        if n % 10 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    assert_eq!(reader.join().unwrap(), (1..=50).collect::<Vec<u64>>());
}

#[test]
fn filters_select_by_type_prefix_and_predicate_and_agree_with_filtered_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    for n in 0..200u64 {
        let agg = if n % 2 == 0 { format!("acct-{}", n % 6) } else { format!("user-{}", n % 6) };
        store.append(&agg, ExpectedVersion::Any, vec![event(n % 6, n)]).unwrap();
    }
    let filters = [
        Filter::all().event_types(["Thing1Happened"]),
        Filter::all().aggregate_prefixes(["acct-"]),
        Filter::all().event_types(["Thing0Happened", "Thing2Happened"]).aggregate_prefixes(["user-"]),
        Filter::all().predicate(|e| e.version() % 3 == 0),
    ];
    let all = store.read_all_owned(0, usize::MAX).unwrap();
    for filter in filters {
        let reader = store.reader();
        let read: Vec<RecordedEvent> = reader.read_all_filtered(0, &filter).map(|e| e.unwrap().to_recorded()).collect();
        let expected: Vec<RecordedEvent> = all
            .iter()
            .filter(|e| {
                let r = reader.event_at_position(e.position).unwrap();
                filter.matches(&r)
            })
            .cloned()
            .collect();
        assert!(!read.is_empty() && read.len() < all.len(), "{filter:?}");
        assert_eq!(read, expected, "{filter:?}");
        let mut sub = store.subscribe(StartFrom::Start, filter.clone());
        assert_eq!(collect(&mut sub, expected.len()), expected, "{filter:?}");
        assert!(sub.try_next().unwrap().is_none());
        assert_eq!(sub.position(), 200, "a filtered catch-up moves past skipped events");
    }
}

/// A filtered catch-up never reads the payload of an event it skips: with
/// one skipped event's payload damaged on disk, the filtered read and the
/// filtered subscription deliver every match, while an unfiltered read of
/// the same log stops at the damage with `Corrupt` naming its file and offset.
#[test]
fn a_filtered_catch_up_never_reads_a_skipped_payload() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    for n in 0..100u64 {
        let agg = if n % 10 == 0 { format!("acct-{n}") } else { format!("user-{n}") };
        store.append(&agg, ExpectedVersion::Any, vec![event(n % 6, n)]).unwrap();
    }
    // Damage the last payload byte of position 55 (a skipped "user-" event).
    let (path, offset) = store.locate(55).unwrap();
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    let mut header = [0u8; 32];
    file.read_exact_at(&mut header, offset).unwrap();
    // Frame format 2: body length at 8, payload (the body's last bytes) length at 12.
    let body_len = u32::from_le_bytes(header[8..12].try_into().unwrap()) as u64;
    let last_payload_byte = offset + 32 + body_len - 1;
    let mut b = [0u8; 1];
    file.read_exact_at(&mut b, last_payload_byte).unwrap();
    file.write_all_at(&[b[0] ^ 0x20], last_payload_byte).unwrap();

    let filter = Filter::all().aggregate_prefixes(["acct-"]);
    let reader = store.reader();
    let read: Vec<u64> = reader.read_all_filtered(0, &filter).map(|e| e.unwrap().position()).collect();
    assert_eq!(read, (0..100).step_by(10).collect::<Vec<u64>>());
    let mut sub = store.subscribe(StartFrom::Start, filter);
    assert_eq!(collect(&mut sub, 10).iter().map(|e| e.position).collect::<Vec<_>>(), read);
    assert!(sub.try_next().unwrap().is_none());
    assert_eq!(sub.position(), 100, "the subscription moved past the damaged, skipped event");
    // The payload is checked whenever an event is handed out.
    match reader.read_all(0).find_map(|e| e.err()) {
        Some(Error::Corrupt { path: p, offset: o, reason }) => {
            assert_eq!((p, o), (path.clone(), offset));
            assert!(reason.contains("payload checksum"), "{reason}");
        }
        other => panic!("an unfiltered read of a damaged payload gave {other:?}"),
    }
    let mut all = store.subscribe(StartFrom::Position(50), Filter::all());
    let err = loop {
        match all.try_next() {
            Ok(Some(e)) => assert!(e.position < 55, "delivered {} past the damage", e.position),
            Ok(None) => panic!("the damaged event was skipped"),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
}

#[test]
fn an_aggregate_subscription_follows_one_aggregate_from_a_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    for n in 0..10u64 {
        store.append("a", ExpectedVersion::Any, vec![event(1, n)]).unwrap();
        store.append("b", ExpectedVersion::Any, vec![event(2, n)]).unwrap();
    }
    let mut sub = store.subscribe_aggregate("a", StartFrom::Position(7));
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for n in 10..20u64 {
                store.append("b", ExpectedVersion::Any, vec![event(2, n)]).unwrap();
                store.append("a", ExpectedVersion::Any, vec![event(1, n)]).unwrap();
            }
        })
    };
    let got = collect(&mut sub, 13);
    writer.join().unwrap();
    assert!(got.iter().all(|e| e.aggregate_id == "a"));
    assert_eq!(got.iter().map(|e| e.version).collect::<Vec<_>>(), (7..20).collect::<Vec<u64>>());
    let mut from_end = store.subscribe_aggregate("a", StartFrom::End);
    assert!(from_end.try_next().unwrap().is_none());
    store.append("a", ExpectedVersion::Exact(19), vec![event(1, 99)]).unwrap();
    assert_eq!(from_end.next_timeout(WAIT).unwrap().map(|e| e.version), Some(20));
}

#[test]
fn buffered_mode_delivers_only_flushed_events() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_options().durability(Durability::Buffered { flush_interval_ms: 3_600_000 });
    let store = Store::open(dir.path(), opts).unwrap();
    let mut sub = store.subscribe(StartFrom::Start, Filter::all());
    store.append("a", ExpectedVersion::Any, vec![event(1, 0)]).unwrap();
    assert_eq!(store.last_position(), Some(0), "visible to readers");
    assert!(sub.next_timeout(Duration::from_millis(100)).unwrap().is_none(), "not durable yet");
    store.sync().unwrap();
    assert_eq!(sub.next_timeout(WAIT).unwrap().map(|e| e.position), Some(0));
}

#[test]
fn buffered_mode_delivers_unflushed_events_live_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_options().durability(Durability::Buffered { flush_interval_ms: 3_600_000 });
    let store = Store::open(dir.path(), opts).unwrap();
    let mut flushed = store.subscribe(StartFrom::Start, Filter::all());
    let mut unflushed = store.subscribe(StartFrom::Start, Filter::all()).include_unflushed(true);
    store.append("a", ExpectedVersion::Any, vec![event(1, 0)]).unwrap();
    assert_eq!(unflushed.try_next().unwrap().map(|e| e.position), Some(0), "visible, not yet flushed");
    // A caught-up subscriber of unflushed events is woken by the write itself.
    let writer = store.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        writer.append("a", ExpectedVersion::Any, vec![event(1, 1)]).unwrap();
    });
    let started = Instant::now();
    assert_eq!(unflushed.next_timeout(WAIT).unwrap().map(|e| e.position), Some(1));
    assert!(started.elapsed() < Duration::from_secs(10), "woken by the write, not by a flush");
    t.join().unwrap();
    assert!(flushed.try_next().unwrap().is_none(), "the default subscription still waits for the flush");
    assert_eq!(store.durable_position(), None);
    store.sync().unwrap();
    assert_eq!(collect(&mut flushed, 2).len(), 2);
}

#[test]
fn a_caught_up_subscriber_times_out_and_closing_the_store_ends_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    let mut sub = store.subscribe(StartFrom::Start, Filter::all());
    let started = Instant::now();
    assert!(sub.next_timeout(Duration::from_millis(50)).unwrap().is_none());
    assert!(started.elapsed() >= Duration::from_millis(50));
    let blocked = std::thread::spawn(move || {
        let r = sub.recv();
        let ended = sub.next();
        (r, ended.is_none())
    });
    std::thread::sleep(Duration::from_millis(50));
    store.close().unwrap();
    let (r, iteration_ended) = blocked.join().unwrap();
    assert!(matches!(r, Err(Error::Closed)), "{r:?}");
    assert!(iteration_ended);
}

#[test]
fn zero_copy_batches_follow_concurrent_appends_and_a_half_read_batch_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    for n in 0..200u64 {
        store.append(&format!("agg-{}", n % 4), ExpectedVersion::Any, vec![event(n % 4, n)]).unwrap();
    }
    let mut all = store.subscribe(StartFrom::Start, Filter::all());
    let filter = Filter::all().event_types(["Thing1Happened"]).aggregate_prefixes(["live-"]);
    let mut filtered = store.subscribe(StartFrom::Start, filter.clone());
    let appends = 1200u64;
    let written = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            for n in 0..appends {
                let batch = (0..(n % 3 + 1)).map(|i| event(100 + n % 5, n * 10 + i)).collect();
                store.append(&format!("live-{}", n % 5), ExpectedVersion::Any, batch).unwrap();
            }
            written.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        // Consume while the writer goes on; stop some batches half way.
        let total = |store: &Store| store.durable_position().map_or(0, |p| p + 1);
        let mut got = Vec::new();
        let mut got_filtered = Vec::new();
        let deadline = Instant::now() + WAIT;
        let mut round = 0usize;
        loop {
            // The writer's flag first: once it is set, `total` is final.
            let finished = written.load(std::sync::atomic::Ordering::SeqCst);
            if (finished && got.len() as u64 == total(&store)) || Instant::now() > deadline {
                break;
            }
            round += 1;
            let mut batch = all.batch(64, Duration::from_millis(100)).unwrap();
            let take = if round.is_multiple_of(3) { 7 } else { usize::MAX };
            for e in batch.events().take(take) {
                let e = e.unwrap();
                got.push((e.position(), e.event_id()));
            }
            drop(batch);
            assert_eq!(
                all.position(),
                got.last().map_or(0, |(p, _)| p + 1),
                "the cursor is after the last event taken"
            );
            let mut batch = filtered.batch(1000, Duration::ZERO).unwrap();
            got_filtered.extend(batch.events().map(|e| e.unwrap().position()));
        }
        let end = total(&store);
        let positions: Vec<u64> = got.iter().map(|(p, _)| *p).collect();
        assert_eq!(positions, (0..end).collect::<Vec<_>>(), "no gap, no duplicate, in order");
        let model = store.read_all_owned(0, usize::MAX).unwrap();
        assert!(got.iter().zip(&model).all(|((p, id), e)| *p == e.position && *id == e.event_id));
        // The filtered subscription agrees with the filtered read, up to where it got.
        let reader = store.reader();
        let upto = filtered.position();
        let expected: Vec<u64> =
            reader.read_all_filtered(0, &filter).map(|e| e.unwrap().position()).take_while(|p| *p < upto).collect();
        assert_eq!(got_filtered, expected);
        assert!(!expected.is_empty());
    });
}

#[test]
fn an_aggregate_batch_smaller_than_what_is_durable_does_not_wait_for_more() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    for n in 0..10u64 {
        store.append("one", ExpectedVersion::Any, vec![event(1, n)]).unwrap();
    }
    let mut sub = store.subscribe_aggregate("one", StartFrom::Start);
    let started = Instant::now();
    let mut versions = Vec::new();
    for _ in 0..3 {
        let mut batch = sub.batch(4, WAIT).unwrap();
        versions.extend(batch.events().map(|e| e.unwrap().version()));
    }
    assert_eq!(versions, (0..10).collect::<Vec<_>>());
    assert!(started.elapsed() < WAIT / 2, "a batch waited although events were durable");
}
