//! Regression tests for the lifecycle (issue 16), one per defect a review
//! found: time travel over removed positions, loads after scavenges and
//! retention, version floors across reopens, read-only followers of a
//! writer that deletes and scavenges, hostile sparse headers, erasure of
//! dead-letter records, a scavenge that cannot reach a segment, a follower
//! that falls behind retention, retention by age of scavenged segments, and
//! a repair inside a sparse segment. Uses its own temporary stores only.

use std::time::Duration;

use factlog::{AsOf, DeleteMode, Direction, ExpectedVersion, SchemaVersion, Store, StreamMeta};
use factlog_tests::{event, small_options};

fn fill_rounds(store: &Store, aggs: &[&str], rounds: u64) {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    for _ in 0..rounds {
        for a in aggs.iter() {
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            store.append(a, ExpectedVersion::Any, vec![event(4242, n)]).unwrap();
        }
    }
}

/// Time travel by recorded_at: a binary-search midpoint on a hidden position fails the whole lookup.
#[test]
fn position_of_recorded_at_over_hidden_positions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    fill_rounds(&store, &["a", "b"], 50);
    let last = store.read_all_owned(0, usize::MAX).unwrap().last().unwrap().recorded_at;
    // Before any rule: fine.
    assert_eq!(store.reader().position_of(AsOf::RecordedAt(last)).unwrap(), Some(99));
    store.delete_aggregate("a", DeleteMode::Soft).unwrap();
    let r = store.reader().position_of(AsOf::RecordedAt(last));
    assert_eq!(r.as_ref().ok(), Some(&Some(99)), "position_of(RecordedAt) after a soft delete: {r:?}");
}

/// Same after a scavenge (removed positions), with nothing hidden any more.
#[test]
fn position_of_recorded_at_over_scavenged_positions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    fill_rounds(&store, &["a", "b"], 300);
    store.delete_aggregate("a", DeleteMode::Hard).unwrap();
    let rep = store.scavenge(&mut |_, _| {}).unwrap();
    assert!(rep.events_removed > 0);
    let last = store.read_all_owned(store.first_position().unwrap(), usize::MAX).unwrap().last().unwrap().clone();
    let r = store.reader().position_of(AsOf::RecordedAt(last.recorded_at));
    assert_eq!(r.as_ref().ok(), Some(&Some(599)), "position_of(RecordedAt) after a scavenge: {r:?}");
    let r = store.reader().read_all_until(0, AsOf::RecordedAt(last.recorded_at)).map(|it| it.count());
    assert!(r.is_ok(), "read_all_until: {r:?}");
}

/// max_age partially expired: load works before the scavenge, fails after it.
#[test]
fn load_after_scavenge_of_max_age_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    fill_rounds(&store, &["old", "filler"], 200);
    std::thread::sleep(Duration::from_millis(300));
    fill_rounds(&store, &["old", "filler"], 300); // rolls several segments
    store
        .set_stream_meta("old", StreamMeta { max_age: Some(Duration::from_millis(200)), ..Default::default() })
        .unwrap();
    let rep = store.scavenge(&mut |_, _| {}).unwrap();
    assert!(rep.events_removed > 0, "{rep:?}");
    // Expired events were removed: a load folds what is left, it is not refused.
    let loaded = store.load("old").unwrap();
    let versions: Vec<u64> = loaded.events().map(|e| e.unwrap().version()).collect();
    assert!(versions.windows(2).all(|w| w[1] == w[0] + 1), "{versions:?}");
    assert!(versions.first().is_none_or(|v| *v >= 200), "{versions:?}");
}

/// The version floor a scavenge records survives a later `set_stream_meta`:
/// versions go on after a reopen, whether or not an event of the aggregate
/// was appended before it (then the log holds none of its events).
#[test]
fn a_scavenges_version_floor_survives_a_metadata_change_and_a_reopen() {
    for append_before_reopen in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), small_options()).unwrap();
            fill_rounds(&store, &["x", "filler"], 300);
            fill_rounds(&store, &["filler"], 300);
            store.set_stream_meta("x", StreamMeta { truncate_before: Some(300), ..Default::default() }).unwrap();
            let rep = store.scavenge(&mut |_, _| {}).unwrap();
            assert!(rep.events_removed >= 300, "{rep:?}");
            assert_eq!(store.stream_state("x").unwrap().meta.truncate_before, Some(300));
            // The user changes the rules: keep at most 10.
            store.set_stream_meta("x", StreamMeta { max_count: Some(10), ..Default::default() }).unwrap();
            if append_before_reopen {
                let r = store.append("x", ExpectedVersion::Any, vec![event(9, 1)]).unwrap();
                assert_eq!(r.first_version, 300, "in-process versions go on");
            }
            store.close().unwrap();
        }
        let store = Store::open(dir.path(), small_options()).unwrap();
        let r = store.append("x", ExpectedVersion::Any, vec![event(9, 2)]).unwrap();
        let want = if append_before_reopen { 301 } else { 300 };
        assert_eq!(r.first_version, want, "versions go on after a reopen (appended before: {append_before_reopen})");
    }
}

/// Retention removes all of an aggregate's events; after a reopen its versions restart at 0 and
/// `load` folds an old life's snapshot into the new one.
#[test]
fn retention_then_reopen_restarts_versions_and_reuses_old_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let opts =
        || small_options().retention(factlog::Retention { max_bytes: Some(3 * 64 * 1024), ..Default::default() });
    {
        let store = Store::open(dir.path(), opts()).unwrap();
        for v in 0..10u64 {
            store.append("acct", ExpectedVersion::Any, vec![event(1, v)]).unwrap();
        }
        store.save_snapshot("acct", 3, SchemaVersion(1), b"balance-at-v3-of-old-life").unwrap();
        fill_rounds(&store, &["filler"], 3000);
        assert!(store.first_position().unwrap() > 10, "retention removed acct's events");
        // In process: versions go on.
        assert_eq!(store.aggregate_version("acct"), Some(9));
        store.close().unwrap();
    }
    let store = Store::open(dir.path(), opts()).unwrap();
    assert_eq!(store.aggregate_version("acct"), Some(9), "the version count survives the reopen");
    let r = store.append("acct", ExpectedVersion::Any, (0..5).map(|n| event(2, n)).collect()).unwrap();
    assert_eq!(r.first_version, 10, "versions never restart");
    // The snapshot at v3 cannot be completed (v4..9 are gone): told, never folded wrong.
    assert!(matches!(store.load("acct"), Err(factlog::Error::AggregateTruncated { first_version: 10, .. })));
}

/// A read-only store following a live writer never sees rule changes made after it opened.
#[test]
fn follower_ignores_later_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    fill_rounds(&store, &["a", "b"], 5);
    store.sync().unwrap();
    let ro = Store::open_read_only(dir.path(), small_options()).unwrap();
    assert_eq!(ro.read_aggregate_owned("a", 0, Direction::Forward, 100).unwrap().len(), 5);
    store.delete_aggregate("a", DeleteMode::Hard).unwrap();
    fill_rounds(&store, &["b"], 1);
    store.sync().unwrap();
    ro.refresh().unwrap();
    assert_eq!(store.read_aggregate_owned("a", 0, Direction::Forward, 100).unwrap().len(), 0);
    let n = ro.read_aggregate_owned("a", 0, Direction::Forward, 100).unwrap().len();
    assert_eq!(n, 0, "the follower still shows the hard-deleted aggregate");
}

/// A follower lagging more than one segment behind a writer that scavenges.
#[test]
fn follower_lagging_behind_a_scavenge() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    fill_rounds(&store, &["a", "b"], 2);
    store.sync().unwrap();
    let ro = Store::open_read_only(dir.path(), small_options()).unwrap();
    fill_rounds(&store, &["a", "b"], 600);
    store.delete_aggregate("a", DeleteMode::Soft).unwrap();
    let rep = store.scavenge(&mut |_, _| {}).unwrap();
    assert!(rep.segments_rewritten >= 2, "{rep:?}");
    store.sync().unwrap();
    let r = ro.refresh();
    assert!(r.is_ok(), "follower refresh after the writer scavenged: {r:?}");
}

/// A crafted active segment header (format 3, valid CRC, huge end position) must be a typed error.
#[test]
fn hostile_sparse_header_on_the_last_segment() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), small_options()).unwrap();
        fill_rounds(&store, &["a"], 3);
        store.close().unwrap();
    }
    let seg = factlog_tests::segment_files(dir.path()).into_iter().next().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[8..12].copy_from_slice(&3u32.to_le_bytes());
    bytes[40..48].copy_from_slice(&(1u64 << 61).to_le_bytes());
    let crc = crc32fast::hash(&bytes[..60]);
    bytes[60..64].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&seg, &bytes).unwrap();
    let r = std::panic::catch_unwind(|| Store::open(dir.path(), small_options()).map(|_| ()));
    assert!(matches!(r, Ok(Err(_))), "open of a crafted sparse active segment: {:?}", r.map_err(|_| "panic"));
}

/// Erasure promise: no file holds the erased aggregate's id after the scavenge. A consumer's
/// dead-letter list (consumers/NAME.parked) records the aggregate id and the handler's error text.
#[test]
fn erasure_leaves_the_id_in_a_parked_list() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    let secret = "customer-SECRET-42";
    fill_rounds(&store, &["other"], 5);
    fill_rounds(&store, &[secret], 1);
    fill_rounds(&store, &["other"], 5);
    let retry = factlog::RetryPolicy::new(1, Duration::from_millis(1), Duration::from_millis(1));
    {
        let mut c = store.consumer("proj", factlog::ConsumerOptions::default().retry(retry)).unwrap();
        let s = c
            .run_until_caught_up(|e: &factlog::EventRef<'_>| {
                if e.aggregate_id() == secret {
                    return Err(format!("cannot handle {}", e.aggregate_id()));
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(s.parked, 1);
    }
    store.erase(secret).unwrap();
    let rep = store.scavenge(&mut |_, _| {}).unwrap();
    assert_eq!(rep.erasures_completed, 1, "{rep:?}");
    let mut holders = Vec::new();
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p).unwrap().windows(secret.len()).any(|w| w == secret.as_bytes()) {
                holders.push(p);
            }
        }
    }
    assert!(holders.is_empty(), "files still holding the erased id: {holders:?}");
}

/// A Reader is documented as a consistent snapshot; `load` returns one inside `Loaded`. Retention
/// running after `load` (it runs at every roll) makes `events()` silently skip the removed
/// versions, though the reader still maps their segments.
#[test]
fn loaded_events_after_retention_are_silently_short() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_options().retention(factlog::Retention { max_bytes: Some(3 * 64 * 1024), ..Default::default() });
    let store = Store::open(dir.path(), opts).unwrap();
    for v in 0..10u64 {
        store.append("acct", ExpectedVersion::Any, vec![event(1, v)]).unwrap();
    }
    let loaded = store.load("acct").unwrap();
    let reader = store.reader();
    fill_rounds(&store, &["filler"], 3000);
    assert!(store.first_position().unwrap() > 10, "retention removed acct's events");
    // A reader (or Loaded) made before retention removed the segments is told, never silently short.
    assert!(matches!(reader.read_all(0).next(), Some(Err(factlog::Error::BelowRetainedStart { position: 0, .. }))));
    let first = reader.read_aggregate("acct", 0, Direction::Forward).next();
    assert!(matches!(first, Some(Err(factlog::Error::AggregateTruncated { .. }))), "{first:?}");
    assert!(matches!(loaded.events().next(), Some(Err(factlog::Error::AggregateTruncated { .. }))));
}

/// A sealed segment without its checkpoint (a failed background checkpoint write, or the
/// scavenge's own best-effort `write_checkpoint` after ENOSPC; simulated here by removing the
/// file) is skipped by the scavenge, which then rewrites the *next* segment: the removed events
/// are no longer a prefix of the aggregate, `replace_sealed` fails after the rename, the store is
/// poisoned, and the files left on disk no longer open.
#[test]
fn skipped_segment_then_non_prefix_removal_poisons_and_breaks_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), small_options()).unwrap();
        fill_rounds(&store, &["a", "b"], 900);
        let segs = factlog_tests::segment_files(dir.path());
        assert!(segs.len() >= 4, "{segs:?}");
        store.set_stream_meta("a", StreamMeta { truncate_before: Some(600), ..Default::default() }).unwrap();
        // The first segment's checkpoint is missing.
        let idx = segs[0].with_extension("idx");
        assert!(idx.exists(), "{idx:?}");
        std::fs::remove_file(&idx).unwrap();
        let r = store.scavenge(&mut |_, _| {});
        let after = store.append("b", ExpectedVersion::Any, vec![event(1, 1)]).map(|_| ());
        eprintln!("scavenge: {r:?}; append after: {after:?}");
    }
    let reopen = Store::open(dir.path(), small_options()).map(|_| ());
    eprintln!("reopen: {reopen:?}");
    let repaired = Store::open(dir.path(), small_options().repair(true)).map(|s| s.recovery_report().clone());
    eprintln!("repair: {repaired:?}");
    assert!(reopen.is_ok(), "reopen: {reopen:?}");
}

#[test]
fn age_retention_stalls_on_a_sparse_segment() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || {
        small_options().retention(factlog::Retention { max_age: Some(Duration::from_secs(3600)), ..Default::default() })
    };
    let store = Store::open(dir.path(), opts()).unwrap();
    fill_rounds(&store, &["a", "b"], 600);
    store.delete_aggregate("a", DeleteMode::Hard).unwrap();
    store.delete_aggregate("b", DeleteMode::Hard).unwrap();
    let rep = store.scavenge(&mut |_, _| {}).unwrap();
    assert!(rep.segments_rewritten >= 2, "{rep:?}");
    let sealed = factlog_tests::segment_files(dir.path()).len() - 1;
    store.close().unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let opts = small_options()
        .retention(factlog::Retention { max_age: Some(Duration::from_millis(300)), ..Default::default() });
    let store = Store::open(dir.path(), opts).unwrap();
    let removed = store.apply_retention().unwrap();
    assert_eq!(removed, sealed, "sealed segments older than max_age left in place");
}

/// After a scavenge removed every event of an aggregate hidden by truncate_before (a Floor) and a
/// reopen, `aggregate_version` says the aggregate does not exist, but `NoStream` is refused.
#[test]
fn aggregate_version_disagrees_with_appends_after_floor_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), small_options()).unwrap();
        fill_rounds(&store, &["x", "filler"], 300);
        fill_rounds(&store, &["filler"], 300);
        store.set_stream_meta("x", StreamMeta { truncate_before: Some(300), ..Default::default() }).unwrap();
        store.scavenge(&mut |_, _| {}).unwrap();
        assert_eq!(store.aggregate_version("x"), Some(299), "in process");
        store.close().unwrap();
    }
    let store = Store::open(dir.path(), small_options()).unwrap();
    let v = store.aggregate_version("x");
    let r = store.append("x", ExpectedVersion::NoStream, vec![event(9, 2)]).map(|r| r.first_version);
    assert!(v.is_none() == r.is_ok(), "aggregate_version {v:?} but append(NoStream) {r:?}");
}

/// Repair of a damaged *sparse* sealed segment makes it the active segment; the writer then
/// appends dense frames into a format-3 file whose header still says where it ends.
#[test]
fn appends_after_repairing_a_sparse_segment_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), small_options()).unwrap();
        fill_rounds(&store, &["a", "b"], 900);
        store.delete_aggregate("a", DeleteMode::Soft).unwrap();
        let rep = store.scavenge(&mut |_, _| {}).unwrap();
        assert!(rep.segments_rewritten >= 3, "{rep:?}");
        store.close().unwrap();
    }
    let segs = factlog_tests::segment_files(dir.path());
    let victim = &segs[1];
    let mut bytes = std::fs::read(victim).unwrap();
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 3, "sparse");
    bytes[3000] ^= 0x40;
    std::fs::write(victim, &bytes).unwrap();
    let acked: Vec<u64> = {
        let store = Store::open(dir.path(), small_options().repair(true)).unwrap();
        eprintln!("repair: {:?}", store.recovery_report().repaired);
        let acked = (0..5)
            .map(|n| store.append("b", ExpectedVersion::Any, vec![event(777, n)]).unwrap().first_position)
            .collect();
        store.close().unwrap();
        acked
    };
    let store = Store::open(dir.path(), small_options());
    let store = match store {
        Ok(s) => s,
        Err(e) => panic!("reopen after repair + appends {acked:?}: {e:?}"),
    };
    eprintln!("torn: {:?}", store.recovery_report().torn_tail);
    let first = store.first_position().unwrap_or(0);
    let got: Vec<u64> = store
        .read_all_owned(first, usize::MAX)
        .unwrap()
        .iter()
        .map(|e| e.position)
        .filter(|p| acked.contains(p))
        .collect();
    assert_eq!(got, acked, "acknowledged appends after the repair");
}

/// Retention records the log's new start before it removes segments: a
/// segment left below it (a retention killed part way) is removed at open,
/// and a head segment missing without retention is corruption, never taken
/// for retention.
#[test]
fn a_missing_head_segment_is_corruption_but_an_unfinished_retention_completes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    fill_rounds(&store, &["a", "b"], 600);
    store.close().unwrap();
    let segs = factlog_tests::segment_files(dir.path());
    assert!(segs.len() >= 3);
    // Lose the first segment behind the store's back.
    let lost = dir.path().join("lost.seg.bak");
    std::fs::rename(&segs[0], &lost).unwrap();
    match Store::open(dir.path(), small_options()) {
        Err(factlog::Error::Corrupt { reason, .. }) => assert!(reason.contains("missing"), "{reason}"),
        other => panic!("a store without its head opened: {:?}", other.map(|s| s.first_position())),
    }
    std::fs::rename(&lost, &segs[0]).unwrap();
    // Retention that recorded its start but was killed before removing the files.
    let opts = small_options().retention(factlog::Retention { max_bytes: Some(2 * 64 * 1024), ..Default::default() });
    let store = Store::open(dir.path(), opts.clone()).unwrap();
    let head = std::fs::read(&segs[0]).unwrap();
    store.apply_retention().unwrap();
    let first = store.first_position().unwrap();
    assert!(first > 0 && !segs[0].exists(), "retention removed the first segment");
    store.close().unwrap();
    // Put it back, as if its unlink had not reached the disk before a crash.
    std::fs::write(&segs[0], &head).unwrap();
    let reopened = Store::open(dir.path(), opts).unwrap();
    assert_eq!(reopened.first_position(), Some(first));
    assert!(!segs[0].exists(), "recovery completed the retention");
    let report = reopened.verify(&mut |_, _| {}).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

/// A read-only follower that falls behind the writer's retention (the
/// segments it had still to read are removed) goes on from the log's new
/// start instead of failing for good; a subscription of it that was below
/// the new start is told `BelowRetainedStart`.
#[test]
fn a_follower_behind_retention_goes_on_from_the_new_start() {
    let dir = tempfile::tempdir().unwrap();
    let options =
        small_options().retention(factlog::Retention { max_bytes: Some(3 * 64 * 1024), ..Default::default() });
    let writer = Store::open(dir.path(), options.clone()).unwrap();
    fill_rounds(&writer, &["a", "b"], 5);
    let follower = Store::open_read_only(dir.path(), options).unwrap();
    let mut sub = follower.subscribe(factlog::StartFrom::Start, factlog::Filter::all());
    assert_eq!(sub.try_next().unwrap().map(|e| e.position), Some(0));
    for n in 0..150u64 {
        let agg = ["a", "b", "c"][n as usize % 3];
        writer.append(agg, ExpectedVersion::Any, (0..20).map(|i| event(4343, n * 20 + i)).collect()).unwrap();
    }
    let first = writer.first_position().unwrap();
    assert!(first > 10, "retention removed the head the follower had not read");
    follower.refresh().unwrap();
    assert_eq!(follower.first_position(), Some(first));
    let want = writer.read_all_owned(first, usize::MAX).unwrap();
    assert_eq!(follower.read_all_owned(first, usize::MAX).unwrap(), want);
    let aggregate =
        |s: &Store| s.read_aggregate_owned("c", 0, Direction::Forward, usize::MAX).map_err(|e| e.to_string());
    assert_eq!(aggregate(&follower), aggregate(&writer));
    // The subscription gets what it can of the old head, then is told.
    let told = loop {
        match sub.try_next() {
            Ok(Some(e)) => assert!(e.position < first || want.iter().any(|w| w.position == e.position)),
            Ok(None) => panic!("the subscription below the new start was not told"),
            Err(e) => break e,
        }
    };
    assert!(matches!(told, factlog::Error::BelowRetainedStart { .. }), "{told}");
    // It keeps following.
    fill_rounds(&writer, &["a"], 3);
    follower.refresh().unwrap();
    assert_eq!(follower.last_position(), writer.last_position());
}
