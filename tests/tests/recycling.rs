//! Segment recycling (issue 16 §5): a segment file retention removes becomes
//! the next segment (format version 4) instead of a zero-filled new file.
//! Its old frames must never validate (they claim earlier positions), a
//! reopen must neither call them a torn tail nor zero them, a torn tail of
//! the segment's own life is still cut (and only that is zeroed), and no
//! file is recycled while anything may still read it or while an erasure is
//! pending. Recycling is off by default (`Options::recycle_segments`):
//! these stores turn it on. Uses its own temporary stores only.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use factlog::{ExpectedVersion, NewEvent, Options, Retention, Store};
use factlog_tests::{id, segment_files};

const SEGMENT: u64 = 64 * 1024;

fn options() -> Options {
    Options::default()
        .recycle_segments(true)
        .segment_bytes(SEGMENT)
        .max_event_bytes(16 * 1024)
        .retention(Retention { max_bytes: Some(3 * SEGMENT), ..Default::default() })
}

/// Event `n`, about 1.2 KiB, its payload naming it.
fn ev(n: u64) -> NewEvent {
    NewEvent::new(id(7, n), "ThingHappened", Bytes::from(format!("{n:010}|").repeat(100)))
}

/// Appends events `from..to`, one per append, to aggregate "a".
fn append(store: &Store, from: u64, to: u64) {
    for n in from..to {
        store.append("a", ExpectedVersion::Any, vec![ev(n)]).unwrap();
    }
}

fn version(path: &Path) -> u32 {
    let bytes = std::fs::read(path).unwrap();
    u32::from_le_bytes(bytes[8..12].try_into().unwrap())
}

fn recycled(dir: &Path) -> Vec<PathBuf> {
    segment_files(dir).into_iter().filter(|p| version(p) == 4).collect()
}

/// Every event from the first retained position on, as appended.
fn check_log(store: &Store, appended: u64) {
    let first = store.first_position().unwrap();
    let all = store.read_all_owned(first, usize::MAX).unwrap();
    assert_eq!(all.len() as u64, appended - first);
    for e in &all {
        assert_eq!((e.event_id, &e.data), (ev(e.position).event_id, &ev(e.position).data), "position {}", e.position);
    }
    let report = store.verify(&mut |_, _| {}).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn retention_recycles_files_and_their_old_frames_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    append(&store, 0, 600);
    let kept = recycled(dir.path());
    assert!(!kept.is_empty(), "no segment was recycled: {:?}", segment_files(dir.path()));
    check_log(&store, 600);
    store.close().unwrap();
    // The active segment is recycled: after its log, the old file's bytes.
    let active = segment_files(dir.path()).pop().unwrap();
    assert_eq!(version(&active), 4, "the active segment is a recycled one");
    let before = std::fs::read(&active).unwrap();
    assert!(before[before.len() - 4096..].iter().any(|b| *b != 0), "the old bytes are there");
    // A reopen takes them for the end of the log: no torn tail, nothing zeroed.
    let store = Store::open(dir.path(), options()).unwrap();
    assert!(store.recovery_report().torn_tail.is_none(), "{:?}", store.recovery_report().torn_tail);
    assert_eq!(std::fs::read(&active).unwrap(), before, "recovery left the old bytes alone");
    check_log(&store, 600);
    // Appends go on over the old bytes, and read back after another reopen.
    append(&store, 600, 700);
    store.close().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    assert!(store.recovery_report().torn_tail.is_none());
    check_log(&store, 700);
    store.close().unwrap();
}

/// A torn tail of the recycled segment's own life is cut as in a zero-filled
/// one, and exactly its bytes are zeroed: the old file's bytes after it stay.
#[test]
fn a_torn_tail_in_a_recycled_segment_is_cut_and_only_it_is_zeroed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    append(&store, 0, 600);
    let active = segment_files(dir.path()).pop().unwrap();
    assert_eq!(version(&active), 4);
    // One batch of two events: the first frame's header is then damaged, as
    // if the write had been torn; the second frame is intact.
    let two = store.append("a", ExpectedVersion::Any, vec![ev(600), ev(601)]).unwrap();
    store.close().unwrap();
    let mut bytes = std::fs::read(&active).unwrap();
    let payload_at = find(&bytes, &ev(600).data);
    let frame_at = (0..=payload_at / 16).rev().map(|k| k * 16).find(|o| bytes[*o + 4..*o + 8] == *b"FLRC").unwrap();
    let second_end = find(&bytes, &ev(601).data) + ev(601).data.len();
    bytes[frame_at + 8] ^= 0xff;
    let old_tail = bytes[second_end.next_multiple_of(4096)..].to_vec();
    std::fs::write(&active, &bytes).unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    let torn = store.recovery_report().torn_tail.clone().expect("the torn batch is reported");
    assert_eq!(torn.offset, frame_at as u64);
    assert!(torn.bytes_zeroed > 0, "{torn:?}");
    let after = std::fs::read(&active).unwrap();
    assert!(after[frame_at..second_end].iter().all(|b| *b == 0), "the batch's bytes are zeroed");
    assert_eq!(after[second_end.next_multiple_of(4096)..], old_tail[..], "the old file's bytes are not");
    assert_eq!(store.last_position(), Some(two.first_position - 1), "the torn batch is gone");
    check_log(&store, 600);
    store.close().unwrap();
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).unwrap()
}

/// A reader holding segment maps keeps reading them intact while retention
/// removes their files, also mid-walk: none of them is recycled under it.
#[test]
fn a_reader_holding_old_segments_keeps_reading_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    append(&store, 0, 200);
    let reader = store.reader();
    let first = reader.first_position();
    let mut walk = reader.read_all(first);
    assert_eq!(walk.next().unwrap().unwrap().position(), first);
    append(&store, 200, 1200);
    assert!(store.first_position().unwrap() > 200, "retention removed what the reader holds");
    assert!(!recycled(dir.path()).is_empty(), "files were recycled meanwhile");
    rest_reads_intact(&mut walk, first + 1..200);
    assert!(walk.next().is_none());
    drop(walk);
    drop(reader);
    store.close().unwrap();
}

/// The walk goes on with `positions`, each event as appended (its old
/// segment's map was not recycled under it).
fn rest_reads_intact<'r>(
    walk: &mut impl Iterator<Item = factlog::Result<factlog::EventRef<'r>>>,
    positions: std::ops::Range<u64>,
) {
    for n in positions {
        let e = walk.next().unwrap().unwrap();
        assert_eq!((e.position(), e.data()), (n, &ev(n).data[..]));
    }
}

/// No file is recycled while a read-only handle is open (another process's
/// could hold any map); an erasure is refused while recycling is on.
#[test]
fn nothing_is_recycled_beside_a_read_only_handle_and_erasure_needs_it_off() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    let follower = Store::open_read_only(dir.path(), options()).unwrap();
    append(&store, 0, 600);
    assert!(recycled(dir.path()).is_empty(), "recycled beside a read-only handle");
    drop(follower);
    append(&store, 600, 1200);
    assert!(!recycled(dir.path()).is_empty(), "recycled once the read-only handle is gone");
    store.append("gone", ExpectedVersion::Any, vec![ev(10_000)]).unwrap();
    let refused = store.erase("gone");
    assert!(
        matches!(refused, Err(factlog::Error::InvalidInput(ref m)) if m.contains("recycle_segments")),
        "{refused:?}"
    );
    check_a(&store);
    store.close().unwrap();
}

/// A reader of a writer store that outlives it keeps its maps: a later
/// writer session of the directory recycles only files it made itself.
#[test]
fn a_reader_outliving_its_store_is_not_recycled_under() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    append(&store, 0, 200);
    let reader = store.reader();
    let first = reader.first_position();
    let mut walk = reader.read_all(first);
    assert_eq!(walk.next().unwrap().unwrap().position(), first);
    store.close().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    append(&store, 200, 1200);
    assert!(store.first_position().unwrap() > 200, "retention removed what the reader holds");
    assert!(!recycled(dir.path()).is_empty(), "files were recycled meanwhile");
    rest_reads_intact(&mut walk, first + 1..200);
    drop(walk);
    drop(reader);
    store.close().unwrap();
}

/// An aggregate whose events retention removed from files that were then
/// recycled, erased later (with recycling off): when the scavenge completes
/// the erasure, no file holds its bytes, recycled segments' tails included.
#[test]
fn an_erasure_reaches_the_old_bytes_of_recycled_segments() {
    let dir = tempfile::tempdir().unwrap();
    let holds_secret = |dir: &Path| {
        factlog_tests::all_files(dir).iter().any(|p| std::fs::read(p).unwrap().windows(7).any(|w| w == b"SECRET-"))
    };
    let store = Store::open(dir.path(), options()).unwrap();
    for n in 0..100u64 {
        let e = NewEvent::new(id(9, n), "Secret", Bytes::from(format!("SECRET-{n:05}|").repeat(80)));
        store.append("x", ExpectedVersion::Any, vec![e]).unwrap();
    }
    let mut n = 0;
    // Until retention removed its events and a recycled file still holds their bytes.
    while !(store.first_position().unwrap() > 100 && !recycled(dir.path()).is_empty() && holds_secret(dir.path())) {
        append(&store, n, n + 1);
        n += 1;
        assert!(n < 3000, "no recycled file kept the removed events' bytes");
    }
    store.close().unwrap();
    let store = Store::open(dir.path(), options().recycle_segments(false)).unwrap();
    store.erase("x").unwrap();
    let report = store.scavenge(&mut |_, _| {}).unwrap();
    assert_eq!(report.erasures_completed, 1, "{report:?}");
    store.close().unwrap();
    assert!(!holds_secret(dir.path()), "an erased aggregate's bytes are in a file");
    let store = Store::open(dir.path(), options().recycle_segments(false)).unwrap();
    assert!(store.recovery_report().torn_tail.is_none());
    check_a(&store);
    store.close().unwrap();
}

/// Aggregate "a"'s events read back as appended (the log also holds another).
fn check_a(store: &Store) {
    let first = store.first_position().unwrap();
    for e in store.read_all_owned(first, usize::MAX).unwrap().into_iter().filter(|e| e.aggregate_id == "a") {
        let n: u64 = std::str::from_utf8(&e.data[..10]).unwrap().parse().unwrap();
        assert_eq!((e.event_id, &e.data), (ev(n).event_id, &ev(n).data), "position {}", e.position);
    }
    let report = store.verify(&mut |_, _| {}).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

/// Recycling is off by default: every new segment is zero-filled.
#[test]
fn recycling_is_off_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options().recycle_segments(Options::default().recycle_segments)).unwrap();
    append(&store, 0, 600);
    assert!(recycled(dir.path()).is_empty());
    check_log(&store, 600);
    store.close().unwrap();
}
