//! A store written by a format 1 build (`tests/fixtures/format-v1`, made by
//! the last format 1 build with the generator described in that folder's
//! README) opens, reads, filters, verifies and takes appends with this
//! build: its old segments keep format 1 (the active one takes appends in
//! format 1 until it is full), new segments get format 2.

use std::path::Path;

use factlog::{
    Direction, EventId, ExpectedVersion, Filter, NewEvent, Options, RecordedEvent, Store, FORMAT_VERSION,
    SEGMENT_BYTES_MIN,
};
use factlog_tests::segment_files;

/// Events in the fixture (600 asked for, in batches of 1 to 4).
const EVENTS: u64 = 603;

fn fixture_copy() -> tempfile::TempDir {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/format-v1");
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&src, dir.path());
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn options() -> Options {
    let mut o = Options::default().segment_bytes(SEGMENT_BYTES_MIN);
    o.max_event_bytes = 4096;
    o
}

fn id(k: u64, tag: u8) -> EventId {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&k.to_be_bytes());
    b[15] = tag;
    EventId(b)
}

/// Event `k` as the fixture's generator wrote it (`recorded_at` aside).
fn expected(k: u64) -> NewEvent {
    let ty = if k.is_multiple_of(3) { "FundsDeposited" } else { "FundsWithdrawn" };
    let data = format!("{{\"n\":{k},\"pad\":\"{}\"}}", "x".repeat((k % 50) as usize));
    let mut e = NewEvent::new(id(k, 1), ty, data)
        .with_occurred_at(1_700_000_000_000_000_000 + k as i64)
        .with_event_version((k % 3) as u32 + 1)
        .with_metadata(format!("{{\"k\":{k}}}"));
    if k.is_multiple_of(5) {
        e = e.with_causation_id(id(k, 2));
    }
    if k.is_multiple_of(4) {
        e = e.with_correlation_id(id(7, 3));
    }
    e
}

fn assert_is(got: &RecordedEvent, k: u64) {
    let want = expected(k);
    assert_eq!(got.position, k);
    assert_eq!(
        (got.event_id, &got.event_type, got.event_version, got.occurred_at),
        (want.event_id, &want.event_type, want.event_version, want.occurred_at),
        "event {k}"
    );
    assert_eq!((got.causation_id, got.correlation_id), (want.causation_id, want.correlation_id), "event {k}");
    assert_eq!((&got.metadata, &got.data), (&want.metadata, &want.data), "event {k}");
}

fn segment_version(path: &Path) -> u32 {
    let bytes = std::fs::read(path).unwrap();
    u32::from_le_bytes(bytes[8..12].try_into().unwrap())
}

#[test]
fn a_format_1_store_reads_verifies_and_filters_with_this_build() {
    let dir = fixture_copy();
    assert!(segment_files(dir.path()).iter().all(|s| segment_version(s) == 1), "the fixture is format 1");
    let store = Store::open_read_only(dir.path(), options()).unwrap();
    let all = store.read_all_owned(0, usize::MAX).unwrap();
    assert_eq!(all.len() as u64, EVENTS);
    for (k, e) in all.iter().enumerate() {
        assert_is(e, k as u64);
    }
    // Aggregates are dense and in order; the snapshot reads.
    let acct1 = store.read_aggregate_owned("acct-1", 0, Direction::Forward, usize::MAX).unwrap();
    assert!(acct1.iter().enumerate().all(|(v, e)| e.version == v as u64 && e.aggregate_id == "acct-1"));
    assert_eq!(store.latest_snapshot("acct-1").unwrap().unwrap().data[..], b"state of acct-1 at 50"[..]);
    // A filtered read agrees with filtering the whole log.
    let filter = Filter::all().event_types(["FundsDeposited"]).aggregate_prefixes(["acct-2", "acct-5"]);
    let reader = store.reader();
    let filtered: Vec<u64> = reader.read_all_filtered(0, &filter).map(|e| e.unwrap().position()).collect();
    let by_hand: Vec<u64> = all
        .iter()
        .filter(|e| e.event_type == "FundsDeposited" && (e.aggregate_id == "acct-2" || e.aggregate_id == "acct-5"))
        .map(|e| e.position)
        .collect();
    assert!(!by_hand.is_empty());
    assert_eq!(filtered, by_hand);
    drop(reader);
    let report = store.verify(&mut |_, _| {}).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn appends_fill_a_format_1_segment_in_format_1_and_new_segments_get_format_2() {
    let dir = fixture_copy();
    let before = segment_files(dir.path());
    let store = Store::open(dir.path(), options()).unwrap();
    let mut k = EVENTS;
    for batch in [1u64, 3, 2] {
        let events =
            (k..k + batch).map(|i| NewEvent::new(EventId::new_v4(), "FundsDeposited", format!("{i}"))).collect();
        let r = store.append("acct-new", ExpectedVersion::Any, events).unwrap();
        assert_eq!(r.first_position, k);
        k += batch;
    }
    // A retry of a format 1 event is still recognised.
    let again = store.append("acct-0", ExpectedVersion::Any, vec![expected(0)]).unwrap();
    assert!(again.deduplicated && again.first_position == 0, "{again:?}");
    assert_eq!(segment_files(dir.path()), before, "the format 1 active segment takes the small appends");
    // Enough to fill it: the roll makes a format 2 segment.
    for _ in 0..40 {
        let events = (k..k + 5)
            .map(|i| NewEvent::new(EventId::new_v4(), "FundsWithdrawn", "x".repeat(200 + i as usize % 7)))
            .collect();
        store.append("acct-new", ExpectedVersion::Any, events).unwrap();
        k += 5;
    }
    store.close().unwrap();
    let after = segment_files(dir.path());
    assert_eq!(after.len(), before.len() + 1, "one new segment");
    assert!(before.iter().all(|s| segment_version(s) == 1), "old segments keep their format");
    assert_eq!(segment_version(after.last().unwrap()), 2, "the new segment is format 2");
    assert_eq!(FORMAT_VERSION, 2, "this build writes format 2");

    let store = Store::open(dir.path(), options()).unwrap();
    let all = store.read_all_owned(0, usize::MAX).unwrap();
    assert_eq!(all.len() as u64, k);
    for e in &all[..EVENTS as usize] {
        assert_is(e, e.position);
    }
    let new: Vec<_> = all[EVENTS as usize..].iter().map(|e| (e.aggregate_id.as_str(), e.version)).collect();
    assert_eq!(new, (0..k - EVENTS).map(|v| ("acct-new", v)).collect::<Vec<_>>());
    // A subscription with a filter walks both formats.
    let mut sub = store.subscribe(factlog::StartFrom::Start, Filter::all().aggregate_prefixes(["acct-new", "acct-3"]));
    let mut seen = Vec::new();
    while let Some(e) = sub.try_next().unwrap() {
        seen.push(e.position);
    }
    let want: Vec<u64> =
        all.iter().filter(|e| e.aggregate_id == "acct-new" || e.aggregate_id == "acct-3").map(|e| e.position).collect();
    assert_eq!(seen, want);
    let report = store.verify(&mut |_, _| {}).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    store.close().unwrap();
}

/// An empty format 1 segment at the end (a format 1 store never appended to,
/// or one killed right after a roll) takes the next appends in format 1: no
/// second segment with its first position is ever made.
#[test]
fn an_empty_format_1_segment_at_the_end_takes_appends_and_followers_keep_up() {
    let dir = fixture_copy();
    let mut seg = vec![0u8; SEGMENT_BYTES_MIN as usize];
    seg[0..8].copy_from_slice(b"FACTLOG\x1a");
    seg[8..12].copy_from_slice(&1u32.to_le_bytes());
    seg[12..16].copy_from_slice(&64u32.to_le_bytes());
    seg[16..24].copy_from_slice(&EVENTS.to_le_bytes());
    seg[24..32].copy_from_slice(&SEGMENT_BYTES_MIN.to_le_bytes());
    let crc = crc32fast::hash(&seg[..60]);
    seg[60..64].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(dir.path().join(format!("{EVENTS:020}.seg")), &seg).unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    let follower = Store::open_read_only(dir.path(), options()).unwrap();
    for n in 0..3u64 {
        let r = store
            .append("acct-new", ExpectedVersion::Any, vec![NewEvent::new(EventId::new_v4(), "Noted", format!("{n}"))])
            .unwrap();
        assert_eq!(r.first_position, EVENTS + n);
    }
    let all = store.read_all_owned(0, usize::MAX).unwrap();
    assert_eq!(all.len() as u64, EVENTS + 3);
    assert_eq!(store.stats().segments, 4);
    follower.refresh().unwrap();
    assert_eq!(follower.read_all_owned(0, usize::MAX).unwrap(), all);
    store.close().unwrap();
    assert!(segment_files(dir.path()).iter().all(|s| segment_version(s) == 1));
    let store = Store::open(dir.path(), options()).unwrap();
    assert_eq!(store.read_all_owned(0, usize::MAX).unwrap(), all);
    assert!(store.verify(&mut |_, _| {}).unwrap().problems.is_empty());
}

/// A scavenge of format 1 segments re-encodes their survivors in format 2
/// (format 2 frames are copied as they are): every surviving event reads
/// back field for field at its position, before and after a reopen.
#[test]
fn a_scavenge_re_encodes_format_1_survivors() {
    let dir = fixture_copy();
    let store = Store::open(dir.path(), options()).unwrap();
    let all = store.read_all_owned(0, usize::MAX).unwrap();
    store.delete_aggregate("acct-1", factlog::DeleteMode::Soft).unwrap();
    let report = store.scavenge(&mut |_, _| {}).unwrap();
    assert!(report.segments_rewritten >= 1 && report.events_removed > 0, "{report:?}");
    let want: Vec<u64> = all.iter().filter(|e| e.aggregate_id != "acct-1").map(|e| e.position).collect();
    let check = |store: &Store| {
        let got = store.read_all_owned(0, usize::MAX).unwrap();
        assert_eq!(got.iter().map(|e| e.position).collect::<Vec<_>>(), want);
        for e in &got {
            assert_is(e, e.position);
        }
        let report = store.verify(&mut |_, _| {}).unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    };
    check(&store);
    store.close().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    check(&store);
    store.close().unwrap();
}
