//! Listing what a store holds: aggregates (with a prefix filter, as a reader
//! sees them) and kept snapshots. Uses its own temp stores only.

use factlog::{ExpectedVersion, SchemaVersion, Store};
use factlog_tests::{event, small_options};

#[test]
fn aggregates_and_snapshots_are_listed_by_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options().snapshots_keep(2)).unwrap();
    for (i, agg) in ["acct-2", "acct-1", "user-1"].iter().enumerate() {
        let events = (0..=i as u64).map(|n| event(i as u64, n)).collect();
        store.append(agg, ExpectedVersion::NoStream, events).unwrap();
    }
    let reader = store.reader();
    store.append("acct-3", ExpectedVersion::NoStream, vec![event(9, 0)]).unwrap();
    let listed: Vec<_> = reader.aggregates("acct-").into_iter().map(|a| (a.aggregate_id, a.version)).collect();
    // acct-3 was appended after the reader was made: not listed.
    assert_eq!(listed, [("acct-1".to_string(), 1), ("acct-2".to_string(), 0)]);
    assert_eq!(store.reader().aggregates("").len(), 4);
    assert!(store.reader().aggregates("nobody").is_empty());

    store.save_snapshot("acct-1", 0, SchemaVersion(1), b"v0").unwrap();
    store.save_snapshot("acct-1", 1, SchemaVersion(1), b"v1").unwrap();
    store.save_snapshot("user-1", 2, SchemaVersion(1), b"u2").unwrap();
    let snaps: Vec<_> = store.snapshots("acct").into_iter().map(|s| (s.aggregate_id, s.version)).collect();
    assert_eq!(snaps, [("acct-1".to_string(), 0), ("acct-1".to_string(), 1)]);
    assert_eq!(store.snapshots("").len(), 3);
    assert!(store.snapshots("").iter().all(|s| s.path.exists() && s.stored_bytes > 0));
}
