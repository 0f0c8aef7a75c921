//! Durable consumers: resuming after the committed checkpoint (automatic
//! and explicit commits), listing with lag, reset, delete, the dead-letter
//! list (park after retries, park behind, replay, discard, surviving a
//! reopen), competing workers (each event once, each aggregate in order),
//! and bad input (unknown consumer, bad names, a reset past the end, a
//! corrupted checkpoint), each a typed error. Uses its own temp stores only.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use factlog::{
    AsOf, ConsumerOptions, Error, EventRef, ExpectedVersion, Filter, ResetTo, RetryPolicy, StartFrom, Store,
};
use factlog_tests::{event, small_options};

fn append(store: &Store, aggregate: u64, n: u64) {
    let id = format!("acct-{aggregate}");
    for _ in 0..n {
        let v = store.aggregate_version(&id).map_or(0, |v| v + 1);
        let expected = if v == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(v - 1) };
        store.append(&id, expected, vec![event(aggregate, v)]).unwrap();
    }
}

fn no_retry() -> RetryPolicy {
    RetryPolicy::new(1, Duration::ZERO, Duration::ZERO)
}

#[test]
fn a_consumer_resumes_after_its_checkpoint_and_sees_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    for a in 0..5 {
        append(&store, a, 40);
    }
    let mut seen = Vec::new();
    {
        let mut c = store.consumer("projector", ConsumerOptions::default()).unwrap();
        let summary = c.run_until_caught_up(|e: &EventRef<'_>| -> Result<(), String> {
            seen.push(e.position());
            Ok(())
        });
        let summary = summary.unwrap();
        assert_eq!((summary.handled, summary.next_position), (200, 200));
        assert_eq!(c.committed(), 200);
    }
    append(&store, 9, 30);
    let mut c = store.consumer("projector", ConsumerOptions::default()).unwrap();
    assert_eq!(c.position(), 200);
    c.run_until_caught_up(|e: &EventRef<'_>| -> Result<(), String> {
        seen.push(e.position());
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, (0..230).collect::<Vec<_>>());
    // A second consumer is independent and starts where its options say.
    let mut late = store.consumer("late", ConsumerOptions::default().start(StartFrom::End)).unwrap();
    assert_eq!(late.position(), 230);
    let s = late.run_until_caught_up(|_: &EventRef<'_>| -> Result<(), String> { Ok(()) }).unwrap();
    assert_eq!(s.handled, 0);
}

#[test]
fn a_runner_commits_every_n_events_within_one_long_batch_not_only_between_batches() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    append(&store, 1, 300);
    // 300 events come in one batch; the checkpoint must still move every 10.
    let seen_at_250 = std::cell::Cell::new(None);
    let options = ConsumerOptions::default().commit_every_events(10).commit_every(Duration::from_secs(3600));
    let mut c = store.consumer("every-10", options).unwrap();
    c.run_until_caught_up(|e: &EventRef<'_>| -> Result<(), String> {
        if e.position() == 250 {
            seen_at_250.set(Some(store.consumer_info("every-10").unwrap().next_position));
        }
        Ok(())
    })
    .unwrap();
    let committed = seen_at_250.get().unwrap();
    assert!((240..=250).contains(&committed), "handling position 250, the checkpoint was at {committed}");
    assert_eq!(c.committed(), 300);

    // With workers: 3,000 events, more than their queues hold.
    append(&store, 2, 2700);
    let seen_at_2500 = Mutex::new(None);
    let options = ConsumerOptions::default().commit_every_events(10).commit_every(Duration::from_secs(3600));
    let mut c = store.consumer("workers-every-10", options).unwrap();
    c.run_workers_until_caught_up(2, |e: &factlog::RecordedEvent| -> Result<(), String> {
        if e.position == 2500 {
            *seen_at_2500.lock().unwrap() = Some(store.consumer_info("workers-every-10").unwrap().next_position);
        }
        Ok(())
    })
    .unwrap();
    let committed = seen_at_2500.lock().unwrap().unwrap();
    assert!(committed >= 1000, "handling position 2,500 with workers, the checkpoint was at {committed}");
}

#[test]
fn explicit_commits_decide_where_a_restart_resumes_and_polls_auto_commit_what_they_handed_out() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    append(&store, 1, 50);
    {
        let mut c = store.consumer("manual", ConsumerOptions::default().auto_commit(false)).unwrap();
        let mut batch = c.poll(100, Duration::ZERO).unwrap();
        let positions: Vec<u64> = batch.events().map(|e| e.unwrap().position()).collect();
        assert_eq!(positions.len(), 50);
        c.commit(19).unwrap();
        assert!(matches!(c.commit(50), Err(Error::PastEnd { position: 50, end: 50 })));
    }
    let c = store.consumer("manual", ConsumerOptions::default().auto_commit(false)).unwrap();
    assert_eq!((c.position(), c.committed()), (20, 20));
    drop(c);

    // Auto-commit with polls: a poll commits what the one before handed out.
    let opts = || ConsumerOptions::default().commit_every_events(10);
    {
        let mut c = store.consumer("polling", opts()).unwrap();
        assert_eq!(c.poll(25, Duration::ZERO).unwrap().events().count(), 25);
        assert_eq!(c.committed(), 0, "nothing is committed before the next poll");
        assert_eq!(c.poll(5, Duration::ZERO).unwrap().events().count(), 5);
        assert_eq!(c.committed(), 25);
    }
    let c = store.consumer("polling", opts()).unwrap();
    assert_eq!(c.position(), 25, "the 5 handed out last were never committed: delivered again");
}

#[test]
fn listing_shows_checkpoint_lag_and_parked_and_reset_and_delete_work_on_idle_consumers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    append(&store, 1, 100);
    let ok = |_: &EventRef<'_>| -> Result<(), String> { Ok(()) };
    {
        let mut c = store.consumer("a", ConsumerOptions::default().auto_commit(false)).unwrap();
        c.commit(59).unwrap();
        let info = store.consumer_info("a").unwrap();
        assert!(info.active, "open handle: active");
        assert!(matches!(store.reset_consumer("a", ResetTo::Start), Err(Error::ConsumerLocked { .. })));
        assert!(matches!(store.delete_consumer("a"), Err(Error::ConsumerLocked { .. })));
        assert!(matches!(store.consumer("a", ConsumerOptions::default()), Err(Error::ConsumerLocked { .. })));
    }
    store.consumer("b", ConsumerOptions::default()).unwrap().run_until_caught_up(ok).unwrap();
    let list = store.consumers().unwrap();
    assert_eq!(list.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    let a = &list[0];
    assert_eq!((a.next_position, a.checkpoint, a.lag_events, a.parked, a.active), (60, Some(59), 40, 0, false));
    let whole: u64 = store.consumer_info("b").unwrap().lag_bytes;
    assert_eq!(whole, 0);
    // 40 events of lag: their frames' bytes, more than the payloads alone.
    let payload: usize = store.read_all_owned(60, 100).unwrap().iter().map(|e| e.data.len()).sum();
    assert!(a.lag_bytes > payload as u64, "{} vs {payload}", a.lag_bytes);

    assert_eq!(store.reset_consumer("a", ResetTo::Position(10)).unwrap(), 10);
    assert_eq!(store.consumer_info("a").unwrap().lag_events, 90);
    assert_eq!(store.reset_consumer("a", ResetTo::End).unwrap(), 100);
    assert_eq!(store.reset_consumer("a", ResetTo::Start).unwrap(), 0);
    assert_eq!(store.reset_consumer("a", ResetTo::AsOf(AsOf::Position(41))).unwrap(), 42);
    let t = store.reader().event_at_position(70).unwrap().recorded_at();
    let to = store.reset_consumer("a", ResetTo::AsOf(AsOf::RecordedAt(t))).unwrap();
    assert!((71..=100).contains(&to), "{to}");
    assert!(matches!(
        store.reset_consumer("a", ResetTo::Position(101)),
        Err(Error::PastEnd { position: 101, end: 100 })
    ));
    assert_eq!(store.consumer("a", ConsumerOptions::default()).unwrap().position(), to);

    store.delete_consumer("a").unwrap();
    assert!(matches!(store.consumer_info("a"), Err(Error::UnknownConsumer { .. })));
    assert_eq!(store.consumers().unwrap().len(), 1);
    // Deleted means gone: a new consumer of that name starts afresh.
    assert_eq!(store.consumer("a", ConsumerOptions::default()).unwrap().position(), 0);
}

#[test]
fn bad_input_gives_typed_errors_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    append(&store, 1, 5);
    for name in ["", ".hidden", "-x", "a/b", "a b", "é", &"x".repeat(65), "..", "a\0b"] {
        assert!(matches!(store.consumer(name, ConsumerOptions::default()), Err(Error::InvalidInput(_))), "{name:?}");
        assert!(matches!(store.consumer_info(name), Err(Error::InvalidInput(_))), "{name:?}");
    }
    assert!(store.consumer(&"x".repeat(64), ConsumerOptions::default()).is_ok());
    assert!(matches!(store.consumer_info("nobody"), Err(Error::UnknownConsumer { .. })));
    assert!(matches!(store.reset_consumer("nobody", ResetTo::Start), Err(Error::UnknownConsumer { .. })));
    assert!(matches!(store.delete_consumer("nobody"), Err(Error::UnknownConsumer { .. })));
    assert!(matches!(store.parked_events("nobody"), Err(Error::UnknownConsumer { .. })));
    assert!(matches!(store.discard_parked("nobody", 1), Err(Error::UnknownConsumer { .. })));
    let past = ConsumerOptions::default().start(StartFrom::Position(6));
    assert!(matches!(store.consumer("new", past), Err(Error::PastEnd { position: 6, end: 5 })));
    drop(store.consumer("c", ConsumerOptions::default()).unwrap());
    assert!(matches!(store.discard_parked("c", 3), Err(Error::NotParked { position: 3, .. })));
    assert!(matches!(store.request_parked_replay("c", 3), Err(Error::NotParked { position: 3, .. })));
    let mut c = store.consumer("c", ConsumerOptions::default()).unwrap();
    let no = |_: &EventRef<'_>| -> Result<(), String> { Ok(()) };
    assert!(matches!(c.replay_parked(Some(3), no), Err(Error::NotParked { position: 3, .. })));
    assert!(matches!(
        c.run_workers(0, |_: &factlog::RecordedEvent| -> Result<(), String> { Ok(()) }),
        Err(Error::InvalidInput(_))
    ));
    drop(c);

    // A corrupted checkpoint is reported with its file, never reset to 0.
    let path = dir.path().join(factlog::CONSUMERS_DIR).join("c.checkpoint");
    std::fs::write(&path, vec![0xAB; 1024]).unwrap();
    for result in [store.consumer("c", ConsumerOptions::default()).map(|_| ()), store.consumers().map(|_| ())] {
        match result {
            Err(Error::Corrupt { path: p, .. }) => assert_eq!(p, path),
            other => panic!("{other:?}"),
        }
    }
    std::fs::write(&path, b"").unwrap();
    assert!(matches!(store.consumer_info("c"), Err(Error::Corrupt { .. })));
}

#[test]
fn failing_events_are_retried_then_parked_and_can_be_replayed_or_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    // Positions 0..10 on acct-1, 10..20 on acct-2, 20..30 on acct-3.
    for a in 1..=3 {
        append(&store, a, 10);
    }
    let calls: Mutex<HashMap<u64, u32>> = Mutex::default();
    let failing: BTreeSet<u64> = [3, 25].into();
    let retry = RetryPolicy::new(3, Duration::from_millis(1), Duration::from_millis(2));
    let opts = ConsumerOptions::default().retry(retry);
    {
        let mut c = store.consumer("proj", opts.clone()).unwrap();
        let s = c
            .run_until_caught_up(|e: &EventRef<'_>| {
                *calls.lock().unwrap().entry(e.position()).or_default() += 1;
                if failing.contains(&e.position()) {
                    return Err(format!("cannot handle {}", e.position()));
                }
                Ok(())
            })
            .unwrap();
        // 3 and 25 fail; 4..10 of acct-1 and 26..30 of acct-3 are parked behind them.
        assert_eq!((s.handled, s.parked, s.next_position), (30 - 2 - 6 - 4, 12, 30));
        assert_eq!(calls.lock().unwrap()[&3], 3, "three attempts");
        assert!(!calls.lock().unwrap().contains_key(&4), "parked behind: never handed out");
    }
    let parked = store.parked_events("proj").unwrap();
    let positions: Vec<u64> = parked.iter().map(|p| p.position).collect();
    assert_eq!(positions, [3, 4, 5, 6, 7, 8, 9, 25, 26, 27, 28, 29]);
    assert_eq!((parked[0].attempts, parked[0].error.as_str(), parked[0].behind), (3, "cannot handle 3", None));
    assert_eq!((parked[1].attempts, parked[1].behind), (0, Some(3)));
    assert_eq!(store.consumer_info("proj").unwrap().parked, 12);
    // Parking is a pointer: the events are still in the log.
    assert_eq!(store.read_all_owned(0, 100).unwrap().len(), 30);

    // Discard acct-3's head from the CLI-style API; ask for acct-1's to be replayed.
    store.discard_parked("proj", 25).unwrap();
    store.request_parked_replay("proj", 3).unwrap();
    let mut c = store.consumer("proj", opts.clone()).unwrap();
    // The next run replays the requested one first (it now succeeds).
    let mut replayed = Vec::new();
    let s = c
        .run_until_caught_up(|e: &EventRef<'_>| -> Result<(), String> {
            replayed.push(e.position());
            Ok(())
        })
        .unwrap();
    assert_eq!((replayed.as_slice(), s.replayed), (&[3][..], 1));
    // The rest: replay everything parked, in order; acct-1's tail now goes through.
    let s = c
        .replay_parked(None, |e: &EventRef<'_>| -> Result<(), String> {
            replayed.push(e.position());
            Ok(())
        })
        .unwrap();
    assert_eq!(s.replayed, 10);
    assert_eq!(replayed, [3, 4, 5, 6, 7, 8, 9, 26, 27, 28, 29]);
    assert!(c.parked().is_empty());
}

#[test]
fn without_park_behind_later_events_of_the_aggregate_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    append(&store, 1, 10);
    let opts = ConsumerOptions::default().retry(no_retry()).park_aggregate_behind(false);
    let mut c = store.consumer("p", opts).unwrap();
    let s = c.run_until_caught_up(|e: &EventRef<'_>| if e.position() == 2 { Err("no") } else { Ok(()) }).unwrap();
    assert_eq!((s.handled, s.parked), (9, 1));
    // A failing replay keeps it parked, with its attempts added up and the new error.
    c.replay_parked(Some(2), |_: &EventRef<'_>| Err("still no")).unwrap();
    let p = &c.parked()[0];
    assert_eq!((p.position, p.attempts, p.error.as_str()), (2, 2, "still no"));
}

#[test]
fn competing_workers_handle_each_event_once_in_aggregate_order_while_appends_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    for a in 0..20 {
        append(&store, a, 10);
    }
    let seen: Mutex<BTreeMap<String, Vec<u64>>> = Mutex::default();
    let calls = AtomicUsize::new(0);
    let mut c = store.consumer("workers", ConsumerOptions::default().commit_every_events(50)).unwrap();
    let stop = c.stop_handle();
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            for round in 0..10 {
                for a in 0..20 {
                    append(&store, a, 1 + round % 2);
                }
            }
        });
        let run = s.spawn(|| {
            c.run_workers(4, |e: &factlog::RecordedEvent| -> Result<(), String> {
                calls.fetch_add(1, Ordering::SeqCst);
                seen.lock().unwrap().entry(e.aggregate_id.clone()).or_default().push(e.version);
                Ok(())
            })
        });
        writer.join().unwrap();
        let end = store.durable_position().unwrap() + 1;
        while calls.load(Ordering::SeqCst) < end as usize {
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.stop();
        let summary = run.join().unwrap().unwrap();
        assert_eq!((summary.handled, summary.next_position), (end, end));
    });
    let total = store.durable_position().unwrap() + 1;
    assert_eq!(calls.load(Ordering::SeqCst) as u64, total, "each event exactly once");
    for (aggregate, versions) in seen.into_inner().unwrap() {
        let n = store.aggregate_version(&aggregate).unwrap() + 1;
        assert_eq!(versions, (0..n).collect::<Vec<_>>(), "{aggregate} handled in order");
    }
    assert_eq!(c.committed(), total);
}

#[test]
fn a_filtered_consumer_moves_its_checkpoint_past_skipped_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    append(&store, 1, 30);
    let filter = Filter::all().event_types(["Thing1Happened"]);
    let mut c = store.consumer("f", ConsumerOptions::default().filter(filter)).unwrap();
    let mut types = BTreeSet::new();
    let s = c
        .run_until_caught_up(|e: &EventRef<'_>| -> Result<(), String> {
            types.insert(e.event_type().to_string());
            Ok(())
        })
        .unwrap();
    assert_eq!((s.handled, c.committed()), (10, 30));
    assert_eq!(types.into_iter().collect::<Vec<_>>(), ["Thing1Happened"]);
}

#[test]
fn a_consumer_runs_on_a_read_only_store_and_ends_when_it_closes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), small_options()).unwrap();
        append(&store, 1, 20);
        store.close().unwrap();
    }
    let store = Store::open_read_only(dir.path(), small_options()).unwrap();
    let mut c = store.consumer("ro", ConsumerOptions::default()).unwrap();
    let s = c.run_until_caught_up(|_: &EventRef<'_>| -> Result<(), String> { Ok(()) }).unwrap();
    assert_eq!(s.handled, 20);
    let closer = store.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        closer.close().unwrap();
    });
    let s = c.run(|_: &EventRef<'_>| -> Result<(), String> { Ok(()) }).unwrap();
    assert_eq!(s.next_position, 20);
    t.join().unwrap();
}

#[test]
fn with_workers_the_checkpoint_waits_for_the_oldest_event_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    for a in 0..8 {
        append(&store, a, 25);
    }
    let release = std::sync::atomic::AtomicBool::new(false);
    let done = AtomicUsize::new(0);
    let opts = ConsumerOptions::default().commit_every_events(1).commit_every(Duration::ZERO);
    let mut c = store.consumer("slow", opts).unwrap();
    std::thread::scope(|s| {
        let run = s.spawn(|| {
            c.run_workers_until_caught_up(4, |e: &factlog::RecordedEvent| -> Result<(), String> {
                // Position 5 is slow; every other aggregate's events go on meanwhile.
                while e.position == 5 && !release.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                done.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
        });
        // Everything not queued behind position 5 on its worker gets handled...
        // (Quiet for 200 ms: the other workers have nothing left, even on a loaded machine.)
        let mut last = usize::MAX;
        while done.load(Ordering::SeqCst) != last {
            last = done.load(Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(200));
        }
        let went_on = last > 100;
        // ...yet the committed checkpoint stays at or below the event in flight.
        let info = store.consumer_info("slow").unwrap();
        release.store(true, Ordering::SeqCst);
        assert!(went_on, "only {last} handled: the other workers did not go on");
        assert!(info.next_position <= 5, "checkpoint {} passed the event in flight", info.next_position);
        let summary = run.join().unwrap().unwrap();
        assert_eq!(summary.next_position, 200);
    });
    assert_eq!(store.consumer_info("slow").unwrap().next_position, 200);
}

#[test]
fn two_spellings_of_one_store_still_give_one_owner() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    append(&store, 1, 3);
    store.close().unwrap();
    // The same directory by two paths, opened read-only twice in this process.
    let other = dir.path().join("..").join(dir.path().file_name().unwrap());
    let one = Store::open_read_only(dir.path(), small_options()).unwrap();
    let two = Store::open_read_only(&other, small_options()).unwrap();
    let first = one.consumer("solo", ConsumerOptions::default()).unwrap();
    assert!(matches!(two.consumer("solo", ConsumerOptions::default()), Err(Error::ConsumerLocked { .. })));
    drop(first);
    assert!(two.consumer("solo", ConsumerOptions::default()).is_ok());
}
