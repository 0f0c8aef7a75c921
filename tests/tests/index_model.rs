//! Property test of the on-disk index: random appends over many aggregates
//! and small segments (so most events live in sealed segments, looked up
//! through their memory-mapped index files), clean reopens, and reopens
//! after an index file was damaged (cut or bit-flipped: rebuilt, never
//! trusted) or removed. After every step each aggregate's lookups (forward
//! and backward reads, `position_of_version`, `version_at`, the aggregate
//! listing) are cross-checked against a full scan of the log.

use std::collections::BTreeMap;
use std::path::Path;

use factlog::{Direction, ExpectedVersion, Store};
use factlog_tests::{event, small_options};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append {
        agg: u8,
        len: u8,
    },
    Reopen,
    /// Damages the `file`th index file (mod their count) then reopens:
    /// cut at `at` (mod its length) or flip bit `bit` of byte `at`.
    Damage {
        file: u8,
        at: u32,
        bit: Option<u8>,
    },
    Remove {
        file: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        20 => (0u8..60, 1u8..8).prop_map(|(agg, len)| Op::Append { agg, len }),
        1 => Just(Op::Reopen),
        2 => (any::<u8>(), any::<u32>(), proptest::option::of(0u8..8)).prop_map(|(file, at, bit)| Op::Damage { file, at, bit }),
        1 => any::<u8>().prop_map(|file| Op::Remove { file }),
    ]
}

fn index_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "idx"))
        .collect();
    v.sort();
    v
}

/// Every lookup the index answers agrees with a full scan of the log.
fn cross_check(store: &Store) {
    let reader = store.reader();
    let mut scan: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for e in reader.read_all(0) {
        let e = e.unwrap();
        scan.entry(e.aggregate_id().to_string()).or_default().push((e.version(), e.position()));
    }
    for (agg, events) in &scan {
        for (i, (v, _)) in events.iter().enumerate() {
            assert_eq!(*v, i as u64, "{agg}: versions dense from 0");
        }
        let fwd: Vec<(u64, u64)> = reader
            .read_aggregate(agg, 0, Direction::Forward)
            .map(|e| e.map(|e| (e.version(), e.position())).unwrap())
            .collect();
        assert_eq!(&fwd, events, "{agg}: forward read");
        let from = events.len() as u64 / 2;
        let back: Vec<(u64, u64)> = reader
            .read_aggregate(agg, from, Direction::Backward)
            .map(|e| e.map(|e| (e.version(), e.position())).unwrap())
            .collect();
        let want: Vec<(u64, u64)> = events[..=from as usize].iter().rev().copied().collect();
        assert_eq!(back, want, "{agg}: backward read from {from}");
        for (v, p) in events {
            assert_eq!(reader.position_of_version(agg, *v), Some(*p), "{agg} v{v}");
            assert_eq!(reader.version_at(agg, *p), Some(*v), "{agg} at {p}");
        }
        if let Some(before) = events[0].1.checked_sub(1) {
            assert_eq!(reader.version_at(agg, before), None, "{agg} before its first event");
        }
        let (last_v, last_p) = *events.last().unwrap();
        assert_eq!(reader.position_of_version(agg, last_v + 5), Some(last_p), "{agg}: past its last version");
    }
    assert!(reader.read_aggregate("never-appended", 0, Direction::Forward).next().is_none());
    let listed: Vec<(String, u64, u64)> =
        reader.aggregates("").into_iter().map(|a| (a.aggregate_id, a.version, a.last_position)).collect();
    let want: Vec<(String, u64, u64)> = scan
        .iter()
        .map(|(agg, events)| {
            let (v, p) = *events.last().unwrap();
            (agg.clone(), v, p)
        })
        .collect();
    assert_eq!(listed, want, "aggregate listing");
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let opts = || small_options().first_segment_bytes(64 * 1024);
    let mut store = Some(Store::open(dir.path(), opts()).unwrap());
    let mut n = 0u64;
    for op in ops {
        match op {
            Op::Append { agg, len } => {
                let s = store.as_ref().unwrap();
                let events = (0..u64::from(len)).map(|i| event(u64::from(agg), n + i)).collect();
                n += u64::from(len);
                s.append(&format!("agg-{agg}"), ExpectedVersion::Any, events).unwrap();
            }
            Op::Reopen => {
                drop(store.take());
                store = Some(Store::open(dir.path(), opts()).unwrap());
            }
            Op::Damage { file, at, bit } => {
                drop(store.take());
                let files = index_files(dir.path());
                if !files.is_empty() {
                    let path = &files[file as usize % files.len()];
                    let mut b = std::fs::read(path).unwrap();
                    let at = at as usize % b.len().max(1);
                    match bit {
                        Some(bit) if !b.is_empty() => b[at] ^= 1 << bit,
                        _ => b.truncate(at),
                    }
                    std::fs::write(path, &b).unwrap();
                }
                let s = Store::open(dir.path(), opts()).unwrap();
                if !files.is_empty() {
                    assert!(!s.recovery_report().checkpoints_rebuilt.is_empty(), "a damaged index file is rebuilt");
                }
                store = Some(s);
            }
            Op::Remove { file } => {
                drop(store.take());
                let files = index_files(dir.path());
                if !files.is_empty() {
                    std::fs::remove_file(&files[file as usize % files.len()]).unwrap();
                }
                store = Some(Store::open(dir.path(), opts()).unwrap());
            }
        }
        cross_check(store.as_ref().unwrap());
    }
    drop(store.take());
    let s = Store::open(dir.path(), opts()).unwrap();
    cross_check(&s);
    assert!(s.recovery_report().checkpoints_rebuilt.is_empty(), "a clean reopen rebuilds nothing");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn index_lookups_agree_with_a_full_scan(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops);
    }
}

/// Many sealed segments, then every lookup, through the files only (a
/// fixed case, so that it always covers dozens of files).
#[test]
fn many_sealed_segments_answer_like_a_scan() {
    let mut ops: Vec<Op> =
        (0..600u32).map(|i| Op::Append { agg: (i * 7 % 53) as u8, len: (i % 5 + 1) as u8 }).collect();
    ops.insert(300, Op::Reopen);
    ops.push(Op::Damage { file: 3, at: 77, bit: Some(2) });
    ops.push(Op::Damage { file: 5, at: 100, bit: None });
    run(ops);
}
