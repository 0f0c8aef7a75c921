//! The scavenge through the public API: it removes what the lifecycle rules
//! hide and nothing else, positions never change, readers that hold the old
//! maps keep reading them, appends go on meanwhile, an erased aggregate's
//! bytes leave every file, and a reopen (with or without the new
//! checkpoints) sees the same log. Uses its own temporary stores only.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use factlog::{DeleteMode, Direction, Error, ExpectedVersion, Filter, NewEvent, StartFrom, Store, StreamMeta};
use factlog_tests::{event, id, small_options};

const AGGREGATES: u64 = 8;
const ROUNDS: u64 = 300;

/// `ROUNDS` rounds of one event to each of `AGGREGATES` aggregates ("agg-N").
fn fill(store: &Store) {
    for round in 0..ROUNDS {
        for a in 0..AGGREGATES {
            store.append(&format!("agg-{a}"), ExpectedVersion::Any, vec![event(a, round)]).unwrap();
        }
    }
}

fn all(store: &Store) -> Vec<(u64, String, u64)> {
    let first = store.first_position().unwrap_or(0);
    store
        .read_all_owned(first, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|e| (e.position, e.aggregate_id, e.version))
        .collect()
}

fn segment_bytes(dir: &Path) -> u64 {
    factlog_tests::segment_files(dir).iter().map(|p| std::fs::metadata(p).unwrap().len()).sum()
}

#[test]
fn a_scavenge_removes_exactly_what_is_hidden_and_positions_never_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    fill(&store);
    for a in (0..AGGREGATES).step_by(2) {
        store.delete_aggregate(&format!("agg-{a}"), DeleteMode::Soft).unwrap();
    }
    store.set_stream_meta("agg-1", StreamMeta { truncate_before: Some(100), ..Default::default() }).unwrap();
    let visible = all(&store);
    let before = segment_bytes(dir.path());
    let old_reader = store.reader();
    let old_first = old_reader.read_all(0).next().unwrap().unwrap().position();
    let mut sub = store.subscribe(StartFrom::Start, Filter::all());
    let head: Vec<_> = sub.next_batch(50, std::time::Duration::ZERO).unwrap();

    let mut calls = 0;
    let report = store.scavenge(&mut |_, _| calls += 1).unwrap();
    assert!(report.segments_rewritten > 0 && calls > 0, "{report:?}");
    // Hidden: four deleted aggregates and 100 truncated events; those in the
    // active segment stay until it is sealed.
    assert!(report.events_removed > 0 && report.events_removed <= 4 * ROUNDS + 100, "{report:?}");
    assert!(report.bytes_reclaimed() > 0 && segment_bytes(dir.path()) < before, "{report:?}");
    // The same visible log, at the same positions.
    assert_eq!(all(&store), visible);
    // The subscription goes on across the rewritten segments without a gap or a duplicate.
    let rest: Vec<_> = sub.next_batch(100_000, std::time::Duration::ZERO).unwrap();
    let delivered: Vec<u64> = head.iter().chain(&rest).map(|e| e.position).collect();
    assert_eq!(delivered, visible.iter().map(|v| v.0).collect::<Vec<_>>());
    // A reader made before still reads its own (old) maps, whole.
    assert_eq!(old_reader.read_all(0).next().unwrap().unwrap().position(), old_first);
    assert_eq!(old_reader.read_aggregate("agg-3", 0, Direction::Forward).count() as u64, ROUNDS);
    // Removed positions: reported as removed; a walk from one starts at the next survivor.
    let removed = (0..).find(|p| !visible.iter().any(|v| v.0 == *p)).unwrap();
    assert!(matches!(store.reader().event_at_position(removed), Err(Error::EventRemoved { .. })));
    let next = visible.iter().find(|v| v.0 > removed).unwrap().0;
    assert_eq!(store.read_all_owned(removed, 1).unwrap()[0].position, next);
    // Appends and deleted aggregates go on as before.
    let r = store.append("agg-0", ExpectedVersion::NoStream, vec![event(0, 1000)]).unwrap();
    assert_eq!(r.first_version, ROUNDS, "a restarted aggregate's versions go on");
    let verify = store.verify(&mut |_, _| {}).unwrap();
    assert!(verify.problems.is_empty(), "{:?}", verify.problems);
    let visible = all(&store);
    drop((old_reader, sub));
    store.close().unwrap();

    let store = Store::open(dir.path(), small_options()).unwrap();
    assert_eq!(all(&store), visible);
    assert_eq!(store.aggregate_version("agg-0"), Some(ROUNDS));
    let r = store.append("agg-2", ExpectedVersion::NoStream, vec![event(2, 1000)]).unwrap();
    assert_eq!(r.first_version, ROUNDS, "versions go on after a reopen too");
    let verify = store.verify(&mut |_, _| {}).unwrap();
    assert!(verify.problems.is_empty(), "{:?}", verify.problems);
    // A second scavenge finds nothing new to remove.
    let again = store.scavenge(&mut |_, _| {}).unwrap();
    assert_eq!(again.events_removed, 0, "{again:?}");
    let visible = all(&store);
    store.close().unwrap();

    // Without the checkpoints, recovery scans the sparse segments and rebuilds them.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "idx") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let store = Store::open(dir.path(), small_options()).unwrap();
    assert_eq!(all(&store), visible);
    assert!(!store.recovery_report().checkpoints_rebuilt.is_empty());
    let verify = store.verify(&mut |_, _| {}).unwrap();
    assert!(verify.problems.is_empty(), "{:?}", verify.problems);
}

fn holds(path: &Path, needle: &[u8]) -> bool {
    let bytes = std::fs::read(path).unwrap();
    bytes.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn after_a_scavenge_no_file_holds_an_erased_aggregates_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    let secret = "customer-7f3a9c-SECRET";
    let marked = |n: u64| NewEvent {
        event_id: id(77, n),
        event_type: "AddressChanged".into(),
        data: Bytes::from(format!("{{\"street\":\"MARKER-DATA-{n}\"}}")),
        metadata: Bytes::from_static(b"MARKER-META"),
        ..event(77, n)
    };
    for round in 0..ROUNDS {
        for a in 0..4 {
            store.append(&format!("agg-{a}"), ExpectedVersion::Any, vec![event(a, round)]).unwrap();
        }
        if round % 10 == 0 {
            store.append(secret, ExpectedVersion::Any, vec![marked(round)]).unwrap();
        }
    }
    // Some of it in the active segment too, and in snapshots (and another
    // aggregate's snapshot that must stay).
    let last = store.append(secret, ExpectedVersion::Any, vec![marked(9999)]).unwrap().last_version;
    store.save_snapshot(secret, last - 1, factlog::SchemaVersion(1), b"MARKER-DATA in an older state").unwrap();
    store.save_snapshot(secret, last, factlog::SchemaVersion(1), b"state with MARKER-DATA inside").unwrap();
    store.save_snapshot("agg-1", 10, factlog::SchemaVersion(1), b"kept state").unwrap();
    let others = all(&store).into_iter().filter(|e| e.1 != secret).collect::<Vec<_>>();
    store.erase(secret).unwrap();
    let report = store.scavenge(&mut |_, _| {}).unwrap();
    assert_eq!(report.erasures_completed, 1, "{report:?}");
    assert!(report.snapshots_dropped >= 1, "{report:?}");
    assert_eq!(&store.latest_snapshot("agg-1").unwrap().unwrap().data[..], b"kept state");
    for needle in [&b"MARKER-DATA"[..], b"MARKER-META", secret.as_bytes()] {
        for f in factlog_tests::all_files(dir.path()) {
            assert!(!holds(&f, needle), "{} still holds {:?}", f.display(), String::from_utf8_lossy(needle));
        }
    }
    assert_eq!(all(&store), others);
    assert!(matches!(
        store.append(secret, ExpectedVersion::Any, vec![marked(10_000)]),
        Err(Error::AggregateDeleted { .. })
    ));
    store.close().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    assert_eq!(all(&store), others);
    assert!(store.stream_state(secret).is_none(), "the id left the metadata file");
    assert!(matches!(
        store.append(secret, ExpectedVersion::NoStream, vec![marked(10_001)]),
        Err(Error::AggregateDeleted { .. })
    ));
}

#[test]
fn appends_and_reads_go_on_during_a_scavenge_and_nothing_acknowledged_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    fill(&store);
    for a in 0..AGGREGATES / 2 {
        store.delete_aggregate(&format!("agg-{a}"), DeleteMode::Hard).unwrap();
    }
    let store = Arc::new(store);
    let writer = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            let mut acked = Vec::new();
            for n in 0..400u64 {
                let r = store.append("live", ExpectedVersion::Any, vec![event(500, n)]).unwrap();
                acked.push(r.first_position);
            }
            acked
        })
    };
    let reader = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            for _ in 0..20 {
                let n = store.read_aggregate_owned("agg-7", 0, Direction::Forward, usize::MAX).unwrap().len() as u64;
                assert_eq!(n, ROUNDS);
            }
        })
    };
    let report = store.scavenge(&mut |_, _| {}).unwrap();
    let acked = writer.join().unwrap();
    reader.join().unwrap();
    assert!(report.events_removed > 0);
    let live: Vec<u64> = all(&store).into_iter().filter(|e| e.1 == "live").map(|e| e.0).collect();
    assert_eq!(live, acked);
    let verify = store.verify(&mut |_, _| {}).unwrap();
    assert!(verify.problems.is_empty(), "{:?}", verify.problems);
}
