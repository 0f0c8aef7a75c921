//! Snapshots and time travel: loading through a snapshot plus the tail folds
//! to the same state as replaying everything, at random points, across
//! reopens and compactions; torn snapshot tails and bit flips are detected.
//! It damages only stores it created in its own temporary directories.

use factlog::{AsOf, Direction, Error, ExpectedVersion, Options, Store};
use factlog_tests::{event, random, small_options};
use proptest::prelude::*;
use rand::Rng;

/// The application's fold: a running digest over (version, data) of every event.
fn fold(state: &[u8], events: impl Iterator<Item = (u64, Vec<u8>)>) -> Vec<u8> {
    let mut acc = u64::from_le_bytes(state.try_into().unwrap_or([0; 8]));
    for (v, data) in events {
        acc = acc.rotate_left(7) ^ v.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(crc32fast::hash(&data));
    }
    acc.to_le_bytes().to_vec()
}

fn full_fold(store: &Store, agg: &str, until: u64) -> Vec<u8> {
    let r = store.reader();
    let evs = r.read_aggregate_until(agg, 0, until, Direction::Forward).map(|e| {
        let e = e.unwrap();
        (e.version(), e.data().to_vec())
    });
    fold(&[], evs.collect::<Vec<_>>().into_iter())
}

fn load_fold(store: &Store, agg: &str, as_of: Option<AsOf>) -> Vec<u8> {
    let loaded = match as_of {
        None => store.load(agg).unwrap(),
        Some(a) => store.load_as_of(agg, a).unwrap(),
    };
    let start = loaded.snapshot.as_ref().map(|s| s.data.clone()).unwrap_or_default();
    let evs: Vec<_> = loaded
        .events()
        .map(|e| {
            let e = e.unwrap();
            (e.version(), e.data().to_vec())
        })
        .collect();
    fold(&start, evs.into_iter())
}

fn snap_options(keep: usize) -> Options {
    small_options().snapshots_keep(keep).snapshot_file_bytes(4096).snapshot_every(10)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn snapshot_plus_tail_equals_full_replay(
        steps in proptest::collection::vec((0u8..3, 1u8..8, any::<bool>(), 0u8..10), 5..40),
        keep in 1usize..4,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), snap_options(keep)).unwrap();
        let mut serial = 0u64;
        for (agg, n, snap, action) in steps {
            let agg = format!("acct-{agg}");
            let evs = (0..n).map(|_| { serial += 1; event(serial, serial) }).collect();
            let r = store.append(&agg, ExpectedVersion::Any, evs).unwrap();
            if snap {
                // Snapshot at a random version the aggregate has reached.
                let v = r.last_version - u64::from(action) % (r.last_version + 1);
                let state = full_fold(&store, &agg, v);
                store.save_snapshot(&agg, v, factlog::SchemaVersion(1), &state).unwrap();
            }
            if action == 0 {
                store.close().unwrap();
                store = Store::open(dir.path(), snap_options(keep)).unwrap();
            }
            if action == 1 {
                store.compact_snapshots().unwrap();
            }
            for a in 0..3 {
                let agg = format!("acct-{a}");
                let Some(last) = store.aggregate_version(&agg) else { continue };
                prop_assert_eq!(load_fold(&store, &agg, None), full_fold(&store, &agg, last));
                // As of a random earlier position.
                let pos = store.last_position().unwrap() * u64::from(action) / 10;
                let r = store.reader();
                let v = r.version_at(&agg, pos);
                let expect = match v { Some(v) => full_fold(&store, &agg, v), None => fold(&[], std::iter::empty()) };
                prop_assert_eq!(load_fold(&store, &agg, Some(AsOf::Position(pos))), expect);
            }
        }
    }
}

#[test]
fn snapshot_api_rules_and_policy() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), snap_options(2)).unwrap();
    assert!(matches!(
        store.save_snapshot("a", 0, factlog::SchemaVersion(1), b"s"),
        Err(Error::SnapshotAhead { actual: None, .. })
    ));
    let r = store.append("a", ExpectedVersion::NoStream, (0..9).map(|n| event(1, n)).collect()).unwrap();
    assert!(!r.snapshot_due);
    let r = store.append("a", ExpectedVersion::Exact(8), vec![event(1, 9)]).unwrap();
    assert!(r.snapshot_due, "10 events and no snapshot");
    assert!(matches!(
        store.save_snapshot("a", 10, factlog::SchemaVersion(1), b"s"),
        Err(Error::SnapshotAhead { actual: Some(9), .. })
    ));
    store.save_snapshot("a", 9, factlog::SchemaVersion(7), b"state-at-9").unwrap();
    let r = store.append("a", ExpectedVersion::Exact(9), vec![event(1, 10)]).unwrap();
    assert!(!r.snapshot_due);
    let s = store.latest_snapshot("a").unwrap().unwrap();
    assert_eq!((s.version, s.schema_version, s.data.as_slice()), (9, 7, &b"state-at-9"[..]));
    assert!(store.snapshot_at_or_before("a", 8).unwrap().is_none());
    let loaded = store.load("a").unwrap();
    assert_eq!(loaded.events().map(|e| e.unwrap().version()).collect::<Vec<_>>(), vec![10]);
    assert_eq!(loaded.version(), Some(10));
    // A large, compressible state round-trips and is stored compressed.
    let unit = br#"{"balance":12345,"owner":"x"}"#;
    let big: Vec<u8> = (0..200_000).map(|i| unit[i % unit.len()]).collect();
    let info = store.save_snapshot("a", 10, factlog::SchemaVersion(1), &big).unwrap();
    assert!(info.stored_bytes * 5 < info.raw_bytes, "{info:?}");
    assert_eq!(store.latest_snapshot("a").unwrap().unwrap().data, big);
}

#[test]
fn time_travel_by_recorded_at_and_read_all_until() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    let mut cut_times = Vec::new();
    for n in 0..20u64 {
        store.append("a", ExpectedVersion::Any, vec![event(1, n)]).unwrap();
        cut_times.push(store.read_all_owned(n, 1).unwrap()[0].recorded_at);
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let r = store.reader();
    assert_eq!(r.position_of(AsOf::RecordedAt(cut_times[7])).unwrap(), Some(7));
    assert_eq!(r.position_of(AsOf::RecordedAt(cut_times[0] - 1)).unwrap(), None);
    assert_eq!(r.position_of(AsOf::RecordedAt(i64::MAX)).unwrap(), Some(19));
    let upto: Vec<u64> =
        r.read_all_until(3, AsOf::RecordedAt(cut_times[9])).unwrap().map(|e| e.unwrap().position()).collect();
    assert_eq!(upto, (3..=9).collect::<Vec<_>>());
    let loaded = store.load_as_of("a", AsOf::RecordedAt(cut_times[4])).unwrap();
    assert_eq!(loaded.events().count(), 5);
    let until: Vec<u64> = r.read_aggregate_until("a", 0, 2, Direction::Forward).map(|e| e.unwrap().version()).collect();
    assert_eq!(until, vec![0, 1, 2]);
}

fn snap_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .collect();
    v.sort();
    v
}

#[test]
fn torn_snapshot_tail_at_every_byte_falls_back_to_the_previous_snapshot() {
    let pristine = tempfile::tempdir().unwrap();
    let store = Store::open(pristine.path(), snap_options(3)).unwrap();
    store.append("a", ExpectedVersion::Any, (0..5).map(|n| event(1, n)).collect()).unwrap();
    store.save_snapshot("a", 2, factlog::SchemaVersion(1), b"two").unwrap();
    let before = std::fs::metadata(snap_files(pristine.path()).pop().unwrap()).unwrap().len();
    store.save_snapshot("a", 4, factlog::SchemaVersion(1), b"four").unwrap();
    store.close().unwrap();
    let file = snap_files(pristine.path()).pop().unwrap();
    let after = std::fs::metadata(&file).unwrap().len();
    for cut in before..after {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("snapshots")).unwrap();
        for e in std::fs::read_dir(pristine.path()).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
            }
        }
        for p in snap_files(pristine.path()) {
            std::fs::copy(&p, dir.path().join("snapshots").join(p.file_name().unwrap())).unwrap();
        }
        let target = dir.path().join("snapshots").join(file.file_name().unwrap());
        std::fs::OpenOptions::new().write(true).open(&target).unwrap().set_len(cut).unwrap();
        let store = Store::open(dir.path(), snap_options(3)).unwrap();
        let s = store.latest_snapshot("a").unwrap().unwrap();
        assert_eq!((s.version, s.data.as_slice()), (2, &b"two"[..]), "cut at {cut}");
        assert_eq!(store.recovery_report().snapshots.torn_bytes, cut - before, "cut at {cut}");
    }
}

#[test]
fn bit_flip_in_snapshot_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), snap_options(1)).unwrap();
    store.append("a", ExpectedVersion::Any, (0..5).map(|n| event(1, n)).collect()).unwrap();
    // Incompressible states, so that the first file fills up and is sealed.
    let noise = |seed: u64| random::noise(&[seed], 3000);
    store.save_snapshot("a", 4, factlog::SchemaVersion(1), &noise(1)).unwrap();
    store.append("b", ExpectedVersion::Any, vec![event(2, 0)]).unwrap();
    store.save_snapshot("b", 0, factlog::SchemaVersion(1), &noise(2)).unwrap();
    store.save_snapshot("b", 0, factlog::SchemaVersion(1), &noise(3)).unwrap();
    assert!(snap_files(dir.path()).len() >= 2, "{:?} {:?}", snap_files(dir.path()), store.stats());
    store.close().unwrap();
    let first = snap_files(dir.path()).remove(0);
    let mut b = std::fs::read(&first).unwrap();
    b[64 + 60] ^= 0x20;
    std::fs::write(&first, &b).unwrap();
    match Store::open(dir.path(), snap_options(1)).and_then(|s| s.latest_snapshot("a")) {
        Err(Error::Corrupt { path, .. }) => assert_eq!(path, first),
        other => panic!("flip not detected: {other:?}"),
    }
    // In the active file too: a bad frame with a good one after it is corruption, not a torn tail.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), snap_options(3)).unwrap();
    store.append("a", ExpectedVersion::Any, (0..5).map(|n| event(1, n)).collect()).unwrap();
    store.save_snapshot("a", 1, factlog::SchemaVersion(1), b"one").unwrap();
    store.save_snapshot("a", 2, factlog::SchemaVersion(1), b"two").unwrap();
    store.close().unwrap();
    let file = snap_files(dir.path()).remove(0);
    let mut b = std::fs::read(&file).unwrap();
    b[64 + 33] ^= 1;
    std::fs::write(&file, &b).unwrap();
    assert!(matches!(Store::open(dir.path(), snap_options(3)), Err(Error::Corrupt { .. })));
}

#[test]
fn compaction_drops_superseded_snapshots_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), snap_options(1)).unwrap();
    for round in 0..40u64 {
        for a in 0..3u64 {
            let agg = format!("acct-{a}");
            let r = store.append(&agg, ExpectedVersion::Any, vec![event(a, round)]).unwrap();
            store
                .save_snapshot(
                    &agg,
                    r.last_version,
                    factlog::SchemaVersion(1),
                    format!("{agg}@{}", r.last_version).repeat(40).as_bytes(),
                )
                .unwrap();
        }
    }
    store.compact_snapshots().unwrap();
    let stats = store.stats();
    assert_eq!(stats.snapshots, 3);
    // 120 snapshots of ~400 bytes in 4 KiB files: without compaction ~15 files.
    assert!(stats.snapshot_files <= 4, "{stats:?}");
    store.close().unwrap();
    let store = Store::open(dir.path(), snap_options(1)).unwrap();
    for a in 0..3u64 {
        let agg = format!("acct-{a}");
        let s = store.latest_snapshot(&agg).unwrap().unwrap();
        assert_eq!(s.version, 39);
        assert_eq!(s.data, format!("{agg}@39").repeat(40).into_bytes());
    }
}

/// A small JSON account state, alike across accounts but not identical.
fn account_state(n: u64) -> Vec<u8> {
    let mut rng = random::rng(&[n]);
    let mut next = || rng.gen_range(0..100_000u64);
    format!(
        r#"{{"account":"acct-{n:06}","balance":{},"currency":"EUR","status":"open","overdraft_limit":50000,"last_posting":{{"type":"FundsDeposited","amount":{},"reference":"INV-{:08}"}}}}"#,
        next(),
        next(),
        next()
    )
    .into_bytes()
}

#[test]
fn trained_dictionary_shrinks_small_snapshots_and_survives_reopen_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || snap_options(1).snapshot_file_bytes(64 * 1024);
    let store = Store::open(dir.path(), opts()).unwrap();
    for a in 0..40u64 {
        store.append(&format!("acct-{a}"), ExpectedVersion::Any, vec![event(a, 0)]).unwrap();
        store.append(&format!("other-{a}"), ExpectedVersion::Any, vec![event(a + 100, 0)]).unwrap();
    }
    let size =
        |agg: &str, state: &[u8]| store.save_snapshot(agg, 0, factlog::SchemaVersion(1), state).unwrap().stored_bytes;
    let plain: u64 = (0..40).map(|a| size(&format!("acct-{a}"), &account_state(a))).sum();

    // Bad training input is a typed error and installs nothing.
    let few: Vec<Vec<u8>> = (0..3).map(account_state).collect();
    let few: Vec<&[u8]> = few.iter().map(|s| &s[..]).collect();
    assert!(matches!(store.train_snapshot_dictionary("acct-", &few, 4096), Err(Error::InvalidInput(_))));
    let samples: Vec<Vec<u8>> = (1000..1400).map(account_state).collect();
    let samples: Vec<&[u8]> = samples.iter().map(|s| &s[..]).collect();
    assert!(matches!(store.train_snapshot_dictionary("acct-", &samples, 10), Err(Error::InvalidInput(_))));
    assert_eq!(store.stats().snapshot_dictionaries, 0);

    let info = store.train_snapshot_dictionary("acct-", &samples, 4096).unwrap();
    assert_eq!((info.id, info.prefix.as_str()), (1, "acct-"));
    assert!(info.bytes > 0 && info.bytes <= 4096, "{info:?}");
    let with_dict: u64 = (0..40).map(|a| size(&format!("acct-{a}"), &account_state(a))).sum();
    // Frames carry ~80 bytes of header each; the payloads must shrink a lot.
    assert!(with_dict * 10 < plain * 8, "dictionary did not pay: {with_dict} vs {plain} bytes");
    // Aggregates outside the prefix are compressed without it.
    let other = size("other-0", &account_state(0));
    assert!(other > size("acct-0", &account_state(0)), "other- used the dictionary");

    let check = |store: &Store| {
        for a in 0..40u64 {
            let s = store.latest_snapshot(&format!("acct-{a}")).unwrap().unwrap();
            assert_eq!(s.data, account_state(a), "acct-{a}");
        }
        assert_eq!(store.latest_snapshot("other-0").unwrap().unwrap().data, account_state(0));
        assert!(store.verify(&mut |_, _| {}).unwrap().problems.is_empty());
    };
    check(&store);
    // Supersede most records so compaction rewrites the older files, then reopen.
    for _ in 0..3 {
        for a in 0..40u64 {
            store.save_snapshot(&format!("acct-{a}"), 0, factlog::SchemaVersion(1), &account_state(a)).unwrap();
        }
    }
    store.compact_snapshots().unwrap();
    check(&store);
    store.close().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    assert_eq!(store.stats().snapshot_dictionaries, 1);
    check(&store);
    store.close().unwrap();

    // A damaged dictionary fails the open, naming it; a missing one makes
    // the snapshots that need it a clear error.
    let dict = std::fs::read_dir(dir.path().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "zdict"))
        .unwrap();
    let good = std::fs::read(&dict).unwrap();
    let mut bad = good.clone();
    bad[100] ^= 1;
    std::fs::write(&dict, &bad).unwrap();
    match Store::open(dir.path(), opts()) {
        Err(Error::Corrupt { path, .. }) => assert_eq!(path, dict),
        other => panic!("damaged dictionary not detected: {other:?}"),
    }
    std::fs::remove_file(&dict).unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    match store.latest_snapshot("acct-1") {
        Err(Error::Corrupt { reason, .. }) => assert!(reason.contains("dictionary 1"), "{reason}"),
        other => panic!("missing dictionary not reported: {other:?}"),
    }
    assert_eq!(store.latest_snapshot("other-0").unwrap().unwrap().data, account_state(0));
    assert!(!store.verify(&mut |_, _| {}).unwrap().problems.is_empty());
}
