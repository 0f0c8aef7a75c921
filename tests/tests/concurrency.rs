//! Concurrent appenders on shared aggregates with exact expected versions:
//! no lost update, per-aggregate order kept, readers never see a partial batch.
//! Public API only; every thread is joined and every store lives in its own
//! temporary directory.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use factlog::{Direction, Error, ExpectedVersion, NewEvent, Store};
use factlog_tests::{id, small_options};

#[test]
fn eight_threads_on_shared_aggregates_lose_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    let threads = 8u64;
    let per_thread = 60u64;
    let aggregates = 3u64;
    let stop = Arc::new(AtomicBool::new(false));
    // A reader checking batch atomicity while writers run: every batch has 2
    // events, so an aggregate's visible event count is always even.
    let reader = {
        let store = store.clone();
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut checks = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let r = store.reader();
                for a in 0..aggregates {
                    let n = r.read_aggregate(&format!("shared-{a}"), 0, Direction::Forward).count();
                    assert_eq!(n % 2, 0, "reader saw a partial batch");
                }
                let all: Vec<u64> = r.read_all(0).map(|e| e.unwrap().position()).collect();
                assert!(all.iter().enumerate().all(|(i, p)| *p == i as u64), "positions not dense");
                checks += 1;
            }
            checks
        })
    };
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut conflicts = 0u64;
                for i in 0..per_thread {
                    let agg = format!("shared-{}", (t + i) % aggregates);
                    loop {
                        let expected = match store.aggregate_version(&agg) {
                            None => ExpectedVersion::NoStream,
                            Some(v) => ExpectedVersion::Exact(v),
                        };
                        let batch: Vec<_> = (0..2u64)
                            .map(|k| {
                                let mut e =
                                    NewEvent::new(id(t, i * 2 + k), "Incremented", Bytes::from(format!("{t}:{i}:{k}")));
                                e.occurred_at = 1;
                                e
                            })
                            .collect();
                        match store.append(&agg, expected, batch) {
                            Ok(r) => {
                                acked.push((agg.clone(), r, t, i));
                                break;
                            }
                            Err(Error::WrongExpectedVersion { .. }) => conflicts += 1,
                            Err(e) => panic!("append failed: {e}"),
                        }
                    }
                }
                (acked, conflicts)
            })
        })
        .collect();
    let mut acked = Vec::new();
    let mut conflicts = 0;
    for h in handles {
        let (a, c) = h.join().unwrap();
        acked.extend(a);
        conflicts += c;
    }
    stop.store(true, Ordering::Relaxed);
    let checks = reader.join().unwrap();
    assert_eq!(acked.len() as u64, threads * per_thread);
    let total: usize = (0..aggregates)
        .map(|a| {
            let evs = store.read_aggregate_owned(&format!("shared-{a}"), 0, Direction::Forward, usize::MAX).unwrap();
            assert!(evs.iter().enumerate().all(|(i, e)| e.version == i as u64), "versions not dense");
            assert!(evs.windows(2).all(|w| w[0].position < w[1].position), "order not kept");
            evs.len()
        })
        .sum();
    assert_eq!(total as u64, threads * per_thread * 2, "lost or extra updates");
    for (agg, r, t, i) in &acked {
        let evs = store.read_aggregate_owned(agg, r.first_version, Direction::Forward, 2).unwrap();
        assert_eq!(evs[0].position, r.first_position);
        assert_eq!(evs[0].data, Bytes::from(format!("{t}:{i}:0")));
        assert_eq!(evs[1].data, Bytes::from(format!("{t}:{i}:1")));
    }
    let stats = store.stats();
    eprintln!(
        "conflicts retried: {conflicts}, reader checks: {checks}, group commits: {}, fsyncs: {}",
        stats.group_commits, stats.fsyncs
    );
}

#[test]
fn group_commit_uses_fewer_fsyncs_than_appends_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), factlog::Options::default()).unwrap();
    let handles: Vec<_> = (0..16u64)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..50u64 {
                    let agg = format!("w{t}");
                    let exp = if i == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(i - 1) };
                    store.append(&agg, exp, vec![NewEvent::new(id(t, i), "Ticked", &b"{}"[..])]).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let s = store.stats();
    assert_eq!(s.events, 800);
    // 16 appenders that each wait for their own ack: groups must form.
    assert!(s.group_commits < 800, "no group formed: {s:?}");
    assert!(s.fsyncs <= s.group_commits + 2, "{s:?}");
}
