//! What `Options::repair` reports it lost (exactly, wherever the damage is),
//! and idempotent retries at the edge of the dedupe window. These tests
//! damage files of their own temp stores only.

use std::path::{Path, PathBuf};

use factlog::{Error, ExpectedVersion, NewEvent, Store};
use factlog_tests::{event, segment_files, small_options};

fn flip_body_byte(path: &Path, frame_offset: u64) {
    let mut b = std::fs::read(path).unwrap();
    b[frame_offset as usize + 40] ^= 0x01;
    std::fs::write(path, &b).unwrap();
}

#[test]
fn repair_after_damage_in_a_sealed_segment_counts_the_active_segments_events_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    for n in 0..700u64 {
        store.append(&format!("agg-{}", n % 5), ExpectedVersion::Any, vec![event(n % 5, n)]).unwrap();
    }
    let total = store.last_position().unwrap() + 1;
    let damaged = 100;
    let (path, offset) = store.locate(damaged).unwrap();
    store.close().unwrap();
    let segs = segment_files(dir.path());
    assert!(segs.len() >= 3 && path == segs[0], "the damage must be in a sealed segment");
    flip_body_byte(&path, offset);

    let store = Store::open(dir.path(), small_options().repair(true)).unwrap();
    let rep = store.recovery_report().repaired.clone().expect("repair reported");
    let kept = store.read_all_owned(0, usize::MAX).unwrap().len() as u64;
    assert_eq!(rep.lost_from_position, damaged);
    assert_eq!(kept, damaged);
    // The old count stopped at the first position of the last (active) segment.
    assert_eq!(rep.events_lost, total - kept, "every event after the damage is lost, and reported");
}

#[test]
fn repair_after_damage_in_the_active_segment_counts_what_it_cuts() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    for n in 0..50u64 {
        // One append each: every frame is its own synced write.
        store.append("a", ExpectedVersion::Any, vec![event(1, n)]).unwrap();
    }
    let damaged = 7;
    let (path, offset) = store.locate(damaged).unwrap();
    store.close().unwrap();
    assert_eq!(segment_files(dir.path()), vec![path.clone()]);
    flip_body_byte(&path, offset);
    assert!(matches!(Store::open(dir.path(), small_options()), Err(Error::Corrupt { .. })));

    let store = Store::open(dir.path(), small_options().repair(true)).unwrap();
    let rep = store.recovery_report().repaired.clone().expect("repair reported");
    assert_eq!(rep.lost_from_position, damaged);
    // The old report said 0 here.
    assert_eq!(rep.events_lost, 50 - damaged);
    assert_eq!(store.read_all_owned(0, usize::MAX).unwrap().len() as u64, damaged);
}

fn batch(tag: u64, n: u64) -> Vec<NewEvent> {
    (0..n).map(|i| event(tag, i)).collect()
}

#[test]
fn a_retry_straddling_the_dedupe_horizon_is_deduplicated_not_refused() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_options().dedupe_window_events(4);
    let store = Store::open(dir.path(), opts.clone()).unwrap();
    let first = store.append("x", ExpectedVersion::NoStream, batch(1, 4)).unwrap();
    store.append("y", ExpectedVersion::Any, batch(2, 2)).unwrap();
    // The window now holds the last two events of the first batch and y's two.
    for expected in [ExpectedVersion::Any, ExpectedVersion::NoStream] {
        let again = store.append("x", expected, batch(1, 4)).unwrap();
        assert!(again.deduplicated, "{expected:?}");
        assert_eq!((again.first_position, again.last_version), (first.first_position, first.last_version));
    }
    assert_eq!(store.read_all_owned(0, 100).unwrap().len(), 6);

    // After a reopen the window is rebuilt from the log: same answer.
    drop(store);
    let store = Store::open(dir.path(), opts).unwrap();
    assert!(store.append("x", ExpectedVersion::Any, batch(1, 4)).unwrap().deduplicated);

    // The same ids in another order, or with an event added, are not a retry.
    let mut shuffled = batch(1, 4);
    shuffled.swap(2, 3);
    assert!(matches!(store.append("x", ExpectedVersion::Any, shuffled), Err(Error::DuplicateEventId { .. })));
    let mut longer = batch(1, 4);
    longer.push(event(1, 99));
    assert!(matches!(store.append("x", ExpectedVersion::Any, longer), Err(Error::DuplicateEventId { .. })));
    // Another aggregate's batch with those ids is refused.
    assert!(matches!(store.append("z", ExpectedVersion::Any, batch(1, 4)), Err(Error::DuplicateEventId { .. })));
    assert_eq!(store.read_all_owned(0, 100).unwrap().len(), 6);
}

#[test]
fn a_batch_repeating_an_id_is_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    let e = event(1, 1);
    match store.append("x", ExpectedVersion::Any, vec![e.clone(), e]) {
        Err(Error::InvalidInput(msg)) => assert!(msg.contains("twice"), "{msg}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.last_position(), None);
}

#[test]
fn a_read_only_open_with_repair_is_an_exact_dry_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    for n in 0..700u64 {
        store.append(&format!("agg-{}", n % 5), ExpectedVersion::Any, vec![event(n % 5, n)]).unwrap();
    }
    let (path, offset) = store.locate(100).unwrap();
    store.close().unwrap();
    flip_body_byte(&path, offset);
    let snapshot_of_files = |d: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
            .collect();
        v.sort();
        v
    };
    let before = snapshot_of_files(dir.path());
    let dry = Store::open_read_only(dir.path(), small_options().repair(true)).unwrap();
    let planned = dry.recovery_report().repaired.clone().expect("dry run reports the repair");
    assert_eq!(dry.read_all_owned(0, usize::MAX).unwrap().len() as u64, planned.lost_from_position);
    drop(dry);
    assert_eq!(snapshot_of_files(dir.path()), before, "a dry run changes no byte");

    let store = Store::open(dir.path(), small_options().repair(true)).unwrap();
    let done = store.recovery_report().repaired.clone().unwrap();
    assert_eq!(
        (done.lost_from_position, done.events_lost, done.removed_files.clone()),
        (planned.lost_from_position, planned.events_lost, planned.removed_files.clone())
    );
}
