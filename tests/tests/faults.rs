//! Injected I/O failures: a full disk while rolling to a new segment fails
//! only the appends that needed it and the store keeps working; a failed
//! write or fsync poisons the store (no acknowledgement, no further writes)
//! until it is reopened, which recovers the last durable state.

use std::sync::Arc;

use factlog::{Error, ExpectedVersion, Faults, Options, Store};
use factlog_tests::{event, small_options};

fn opts(f: &Arc<Faults>) -> Options {
    Options { faults: Some(Arc::clone(f)), prepare_next_segment: false, ..small_options() }
}

#[test]
fn no_space_at_roll_fails_cleanly_and_store_recovers_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let store = Store::open(dir.path(), opts(&faults)).unwrap();
    faults.fail_creates(libc::ENOSPC);
    let mut ok = 0u64;
    let mut failed = 0u64;
    for n in 0..600u64 {
        match store.append("a", ExpectedVersion::Any, vec![event(1, n)]) {
            Ok(_) => ok += 1,
            Err(Error::NoSpace { path }) => {
                assert!(path.to_string_lossy().contains("next-segment"), "{path:?}");
                failed += 1;
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(ok > 0 && failed > 0, "ok {ok} failed {failed}");
    assert_eq!(store.stats().events, ok);
    faults.clear();
    store.append("a", ExpectedVersion::Exact(ok - 1), vec![event(2, 0)]).unwrap();
    let all = store.read_all(0, usize::MAX).unwrap();
    assert_eq!(all.len() as u64, ok + 1);
    store.close().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    assert_eq!(store.read_all(0, usize::MAX).unwrap(), all);
}

#[test]
fn failed_fsync_poisons_until_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let store = Store::open(dir.path(), opts(&faults)).unwrap();
    store.append("a", ExpectedVersion::NoStream, vec![event(1, 0)]).unwrap();
    faults.fail_syncs(libc::EIO);
    let err = store.append("a", ExpectedVersion::Exact(0), vec![event(1, 1)]).unwrap_err();
    assert!(matches!(err, Error::Io { .. } | Error::Poisoned { .. }), "{err}");
    faults.clear();
    // Even with the fault gone, the store does not pretend: it stays poisoned.
    let err = store.append("a", ExpectedVersion::Any, vec![event(1, 2)]).unwrap_err();
    assert!(matches!(err, Error::Poisoned { .. }), "{err}");
    assert!(store.sync().is_err());
    // The unacknowledged event is not visible to readers.
    assert_eq!(store.read_all(0, 10).unwrap().len(), 1);
    drop(store);
    let store = Store::open(dir.path(), small_options()).unwrap();
    // The acknowledged event is there; the unacknowledged one may or may not be (whole).
    let all = store.read_all(0, 10).unwrap();
    assert!(all.len() == 1 || all.len() == 2);
    assert_eq!(all[0].event_id, event(1, 0).event_id);
    store.append("a", ExpectedVersion::Any, vec![event(1, 3)]).unwrap();
}

#[test]
fn failed_write_poisons_and_nothing_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let store = Store::open(dir.path(), opts(&faults)).unwrap();
    store.append("a", ExpectedVersion::NoStream, vec![event(1, 0)]).unwrap();
    faults.fail_writes(libc::EIO);
    assert!(store.append("a", ExpectedVersion::Exact(0), vec![event(1, 1)]).is_err());
    faults.clear();
    assert!(matches!(store.append("a", ExpectedVersion::Any, vec![event(1, 2)]), Err(Error::Poisoned { .. })));
    drop(store);
    let store = Store::open(dir.path(), small_options()).unwrap();
    assert_eq!(store.read_all(0, 10).unwrap().len(), 1);
    assert_eq!(store.aggregate_version("a"), Some(0));
}
