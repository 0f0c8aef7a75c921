//! `Store::append_many`: one atomic batch over several aggregates. All or
//! nothing on a failed expectation, idempotent retries, bad input as typed
//! errors, no lost update under concurrent transfers, and crash atomicity: a
//! cut at every byte of the batch leaves all of it or none. Uses its own
//! temporary stores only.

use std::sync::Arc;

use factlog::{Error, EventId, ExpectedVersion, NewEvent, Store};
use factlog_tests::{event, small_options};

#[test]
fn batches_get_consecutive_positions_and_their_own_versions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    store.append("a", ExpectedVersion::NoStream, vec![event(1, 0), event(1, 1)]).unwrap();
    let results = store
        .append_many([
            ("b", ExpectedVersion::NoStream, vec![event(2, 0)]),
            ("a", ExpectedVersion::Exact(1), vec![event(1, 2), event(1, 3), event(1, 4)]),
            ("c", ExpectedVersion::Any, vec![event(3, 0), event(3, 1)]),
        ])
        .unwrap();
    let summary: Vec<_> =
        results.iter().map(|r| (r.first_position, r.last_position, r.first_version, r.last_version)).collect();
    assert_eq!(summary, vec![(2, 2, 0, 0), (3, 5, 2, 4), (6, 7, 0, 1)]);
    assert!(results.iter().all(|r| !r.deduplicated));
    let all = store.read_all_owned(0, usize::MAX).unwrap();
    let got: Vec<_> = all.iter().map(|e| (e.aggregate_id.as_str(), e.version)).collect();
    assert_eq!(got, vec![("a", 0), ("a", 1), ("b", 0), ("a", 2), ("a", 3), ("a", 4), ("c", 0), ("c", 1)]);
    // All of it was one group commit with one recorded_at.
    assert!(all[2..].iter().all(|e| e.recorded_at == all[2].recorded_at));
    store.close().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    assert_eq!(store.read_all_owned(0, usize::MAX).unwrap(), all);
    assert_eq!(store.aggregate_version("a"), Some(4));
}

#[test]
fn one_failed_expectation_writes_nothing_and_names_its_aggregate() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    store.append("a", ExpectedVersion::Any, vec![event(1, 0)]).unwrap();
    store.append("b", ExpectedVersion::Any, vec![event(2, 0), event(2, 1)]).unwrap();
    let r = store.append_many([
        ("a", ExpectedVersion::Exact(0), vec![event(1, 1)]),
        ("b", ExpectedVersion::Exact(0), vec![event(2, 2)]),
        ("c", ExpectedVersion::NoStream, vec![event(3, 0)]),
    ]);
    match r {
        Err(Error::WrongExpectedVersion { aggregate_id, expected, actual }) => {
            assert_eq!((aggregate_id.as_str(), expected, actual), ("b", ExpectedVersion::Exact(0), Some(1)));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(store.last_position(), Some(2));
    assert_eq!((store.aggregate_version("a"), store.aggregate_version("c")), (Some(0), None));
    // The same ids go through once the expectation is right: nothing of them was stored.
    let ok = store
        .append_many([
            ("a", ExpectedVersion::Exact(0), vec![event(1, 1)]),
            ("b", ExpectedVersion::Exact(1), vec![event(2, 2)]),
            ("c", ExpectedVersion::NoStream, vec![event(3, 0)]),
        ])
        .unwrap();
    assert_eq!(ok.iter().map(|r| r.first_position).collect::<Vec<_>>(), vec![3, 4, 5]);
}

#[test]
fn a_retry_is_deduplicated_and_a_partial_reuse_of_its_ids_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    let call = || {
        vec![
            ("x", ExpectedVersion::NoStream, vec![event(1, 0), event(1, 1)]),
            ("y", ExpectedVersion::NoStream, vec![event(2, 0)]),
        ]
    };
    let first = store.append_many(call()).unwrap();
    let again = store.append_many(call()).unwrap();
    assert!(again.iter().all(|r| r.deduplicated));
    let span = |rs: &[factlog::AppendResult]| {
        rs.iter().map(|r| (r.first_position, r.last_position, r.first_version, r.last_version)).collect::<Vec<_>>()
    };
    assert_eq!(span(&again), span(&first));
    assert_eq!(store.last_position(), Some(2));
    // y's stored batch with a new batch for z: part stored, part not.
    let r = store
        .append_many([("y", ExpectedVersion::Any, vec![event(2, 0)]), ("z", ExpectedVersion::Any, vec![event(3, 0)])]);
    assert!(
        matches!(r, Err(Error::DuplicateEventId { ref aggregate_id, existing_position: 2, .. }) if aggregate_id == "y"),
        "{r:?}"
    );
    assert_eq!(store.last_position(), Some(2));
}

#[test]
fn bad_input_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    let none: Vec<(&str, ExpectedVersion, Vec<NewEvent>)> = Vec::new();
    assert!(matches!(store.append_many(none), Err(Error::InvalidInput(_))));
    let twice = store
        .append_many([("a", ExpectedVersion::Any, vec![event(1, 0)]), ("a", ExpectedVersion::Any, vec![event(1, 1)])]);
    assert!(matches!(twice, Err(Error::InvalidInput(ref m)) if m.contains("\"a\" appears twice")), "{twice:?}");
    let empty =
        store.append_many([("a", ExpectedVersion::Any, vec![event(1, 0)]), ("b", ExpectedVersion::Any, vec![])]);
    assert!(matches!(empty, Err(Error::InvalidInput(ref m)) if m.contains("\"b\"")), "{empty:?}");
    let long = "n".repeat(300);
    let bad_name = store.append_many([(long.as_str(), ExpectedVersion::Any, vec![event(1, 0)])]);
    assert!(matches!(bad_name, Err(Error::InvalidInput(_))), "{bad_name:?}");
    let same_id = store
        .append_many([("a", ExpectedVersion::Any, vec![event(1, 0)]), ("b", ExpectedVersion::Any, vec![event(1, 0)])]);
    assert!(matches!(same_id, Err(Error::InvalidInput(ref m)) if m.contains("appears twice")), "{same_id:?}");
    assert_eq!(store.last_position(), None, "nothing was written");
    let ro = {
        store.close().unwrap();
        Store::open_read_only(dir.path(), small_options()).unwrap()
    };
    assert!(matches!(ro.append_many([("a", ExpectedVersion::Any, vec![event(1, 0)])]), Err(Error::ReadOnly { .. })));
}

/// Transfers between accounts from several threads, each an `append_many`
/// of a withdrawal and a deposit with exact expected versions, retried on
/// conflict: no update is lost, every account's versions are dense, and the
/// money is conserved (every withdrawal has its deposit in the same batch).
#[test]
fn concurrent_transfers_lose_no_update_and_conserve_money() {
    const ACCOUNTS: u64 = 5;
    const THREADS: u64 = 6;
    const TRANSFERS: u64 = 60;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), small_options()).unwrap());
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut conflicts = 0u64;
                for n in 0..TRANSFERS {
                    let from = format!("acct-{}", (t + n) % ACCOUNTS);
                    let to = format!("acct-{}", (t + n + 1 + n % 3) % ACCOUNTS);
                    loop {
                        let (vf, vt) = (store.aggregate_version(&from), store.aggregate_version(&to));
                        let exp = |v: Option<u64>| v.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                        let amount = (n % 7 + 1).to_string();
                        let out = NewEvent::new(EventId::new_v4(), "FundsWithdrawn", amount.clone());
                        let inc = NewEvent::new(EventId::new_v4(), "FundsDeposited", amount);
                        match store.append_many([(&from, exp(vf), vec![out]), (&to, exp(vt), vec![inc])]) {
                            Ok(_) => break,
                            Err(Error::WrongExpectedVersion { .. }) => conflicts += 1,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                conflicts
            })
        })
        .collect();
    let conflicts: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let all = store.read_all_owned(0, usize::MAX).unwrap();
    assert_eq!(all.len() as u64, THREADS * TRANSFERS * 2, "{conflicts} conflicts retried");
    let mut balance = 0i64;
    for pair in all.chunks(2) {
        // The two halves of a transfer are adjacent: one batch.
        assert_eq!((pair[0].event_type.as_str(), pair[1].event_type.as_str()), ("FundsWithdrawn", "FundsDeposited"));
        assert_eq!(pair[0].data, pair[1].data);
        assert_eq!(pair[0].recorded_at, pair[1].recorded_at);
    }
    for e in &all {
        let amount: i64 = std::str::from_utf8(&e.data).unwrap().parse().unwrap();
        balance += if e.event_type == "FundsDeposited" { amount } else { -amount };
    }
    assert_eq!(balance, 0);
    for a in 0..ACCOUNTS {
        let agg = format!("acct-{a}");
        let versions: Vec<u64> = all.iter().filter(|e| e.aggregate_id == agg).map(|e| e.version).collect();
        assert_eq!(versions, (0..versions.len() as u64).collect::<Vec<_>>(), "{agg}");
    }
}

/// A cut (zeroed or truncated file) at every byte of an `append_many`'s
/// frames: reopening shows all of its three aggregates' events or none.
#[test]
fn cutting_a_multi_aggregate_batch_at_every_byte_leaves_all_or_nothing() {
    let pristine = tempfile::tempdir().unwrap();
    let store = Store::open(pristine.path(), small_options()).unwrap();
    store.append("a", ExpectedVersion::Any, vec![event(1, 0)]).unwrap();
    store.append("b", ExpectedVersion::Any, vec![event(2, 0)]).unwrap();
    let start = store.stats().log_bytes;
    store
        .append_many([
            ("a", ExpectedVersion::Exact(0), vec![event(1, 1), event(1, 2)]),
            ("b", ExpectedVersion::Exact(0), vec![event(2, 1)]),
            ("c", ExpectedVersion::NoStream, vec![event(3, 0), event(3, 1)]),
        ])
        .unwrap();
    let end = store.stats().log_bytes;
    let full = store.read_all_owned(0, 100).unwrap();
    store.close().unwrap();
    let cuts = factlog_tests::for_each_cut(pristine.path(), start, end, |cut| {
        let store = Store::open(cut.dir.path(), small_options()).unwrap();
        let got = store.read_all_owned(0, 100).unwrap();
        let expect = if cut.intact { &full[..] } else { &full[..2] };
        let at = (cut.at, cut.truncated);
        assert_eq!(got, expect, "cut at {at:?} (offset, truncated) left part of the batch");
        let versions = (store.aggregate_version("a"), store.aggregate_version("c"));
        assert_eq!(versions, if cut.intact { (Some(2), Some(1)) } else { (Some(0), None) }, "cut at {at:?}");
        // The store goes on right after what survived.
        let r = store.append("d", ExpectedVersion::NoStream, vec![event(4, 0)]).unwrap();
        assert_eq!(r.first_position, expect.len() as u64);
        store.close().unwrap();
    });
    assert!(cuts > 500, "only {cuts} cuts tried");
}

/// A retry of an `append_many` one of whose batches' ids all left the dedupe
/// window while another's have not is still recognised: the log is read for
/// the first, as for one aggregate's batch that straddles the window.
#[test]
fn a_retry_straddling_the_dedupe_window_is_still_a_retry() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options().dedupe_window_events(2)).unwrap();
    let a: Vec<NewEvent> = (0..3).map(|n| event(1, n)).collect();
    let b: Vec<NewEvent> = (0..2).map(|n| event(2, n)).collect();
    let first = store
        .append_many([("A", ExpectedVersion::NoStream, a.clone()), ("B", ExpectedVersion::NoStream, b.clone())])
        .unwrap();
    let again = store.append_many([("A", ExpectedVersion::Any, a), ("B", ExpectedVersion::Any, b)]).unwrap();
    assert!(again.iter().all(|r| r.deduplicated), "{again:?}");
    let span = |r: &factlog::AppendResult| (r.first_position, r.last_position, r.first_version, r.last_version);
    assert_eq!(again.iter().map(span).collect::<Vec<_>>(), first.iter().map(span).collect::<Vec<_>>());
    assert_eq!(store.last_position(), Some(4));
}
