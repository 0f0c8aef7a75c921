//! Segment sizes: a new store starts with a small first segment and each
//! later one doubles up to `segment_bytes`, and a batch larger than the next
//! size gets a segment that holds it. Uses its own temp stores only.

use std::path::Path;

use factlog::{EventId, ExpectedVersion, NewEvent, Options, Store};

fn segment_sizes(dir: &Path) -> Vec<u64> {
    factlog_tests::segment_files(dir).iter().map(|p| std::fs::metadata(p).unwrap().len()).collect()
}

#[test]
fn a_small_store_is_small_and_segments_double_up_to_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default()
        .segment_bytes(1 << 20)
        .max_event_bytes(64 << 10)
        .first_segment_bytes(128 << 10)
        .prepare_next_segment(false);
    let store = Store::open(dir.path(), opts.clone()).unwrap();
    store.append("a", ExpectedVersion::Any, vec![NewEvent::new(EventId::new_v7(), "Happened", "{}")]).unwrap();
    assert_eq!(segment_sizes(dir.path()), [128 << 10]);
    let payload = vec![b'x'; 8000];
    for _ in 0..400 {
        store.append("a", ExpectedVersion::Any, vec![NewEvent::new(EventId::new_v7(), "Happened", &payload)]).unwrap();
    }
    let sizes = segment_sizes(dir.path());
    assert_eq!(sizes[..4], [128 << 10, 256 << 10, 512 << 10, 1 << 20], "{sizes:?}");
    assert!(sizes[4..].iter().all(|s| *s == 1 << 20), "{sizes:?}");
    let events = store.read_all_owned(0, usize::MAX).unwrap();
    drop(store);
    let store = Store::open(dir.path(), opts).unwrap();
    assert_eq!(store.read_all_owned(0, usize::MAX).unwrap(), events);
}

#[test]
fn a_batch_larger_than_the_next_size_gets_a_segment_that_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    store.append("a", ExpectedVersion::Any, vec![NewEvent::new(EventId::new_v7(), "Small", "{}")]).unwrap();
    assert_eq!(segment_sizes(dir.path()), [1 << 20]);
    let big = vec![7u8; 3 << 20];
    store.append("a", ExpectedVersion::Exact(0), vec![NewEvent::new(EventId::new_v7(), "Big", &big)]).unwrap();
    let sizes = segment_sizes(dir.path());
    assert_eq!(sizes.len(), 2);
    assert!(sizes[1] >= (3 << 20) && sizes[1].is_multiple_of(4096), "{sizes:?}");
    assert_eq!(store.read_all_owned(1, 1).unwrap()[0].data.len(), 3 << 20);
}
