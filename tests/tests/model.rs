//! Property test: random appends (with every kind of expectation, retries of
//! earlier batches), multi-aggregate appends (`append_many`, all or nothing,
//! and their retries), reads and reopens, checked against a plain in-memory
//! model of what the store must contain. Public API only; every case uses
//! its own temporary directory.

use std::collections::HashMap;

use factlog::{Direction, Error, ExpectedVersion, NewEvent, Store};
use factlog_tests::{event, small_options};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append {
        agg: u8,
        expect: u8,
        len: u8,
    },
    Retry {
        back: u8,
    },
    /// `append_many` over distinct aggregates: (aggregate, expectation, length) each.
    AppendMany {
        parts: Vec<(u8, u8, u8)>,
    },
    RetryMany {
        back: u8,
    },
    ReadAgg {
        agg: u8,
        from: u8,
        backward: bool,
    },
    ReadAll {
        from: u16,
        limit: u8,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..4, 0u8..4, 1u8..6).prop_map(|(agg, expect, len)| Op::Append { agg, expect, len }),
        1 => (0u8..8).prop_map(|back| Op::Retry { back }),
        3 => proptest::collection::vec((0u8..5, 0u8..5, 1u8..4), 1..4).prop_map(|mut parts| {
            parts.sort_by_key(|p| p.0);
            parts.dedup_by_key(|p| p.0);
            parts.reverse();
            Op::AppendMany { parts }
        }),
        1 => (0u8..4).prop_map(|back| Op::RetryMany { back }),
        2 => (0u8..4, 0u8..10, any::<bool>()).prop_map(|(agg, from, backward)| Op::ReadAgg { agg, from, backward }),
        2 => (0u16..200, 1u8..50).prop_map(|(from, limit)| Op::ReadAll { from, limit }),
        1 => Just(Op::Reopen),
    ]
}

struct Model {
    all: Vec<(String, NewEvent, u64)>,
    by_agg: HashMap<String, Vec<u64>>,
    batches: Vec<(String, Vec<NewEvent>, u64, u64)>,
    /// Each successful `append_many`: its batches and the results it returned.
    many: Vec<ManyCall>,
}

/// One `append_many` call: its (aggregate, events) batches and its results.
type ManyCall = (Vec<(String, Vec<NewEvent>)>, Vec<factlog::AppendResult>);

/// The expectation an op's `expect` byte stands for, given the aggregate's
/// version (`4` is a wrong exact version).
fn expectation(expect: u8, current: Option<u64>) -> ExpectedVersion {
    match expect {
        0 => ExpectedVersion::Any,
        1 => ExpectedVersion::NoStream,
        2 => ExpectedVersion::StreamExists,
        3 => ExpectedVersion::Exact(current.unwrap_or(0)),
        _ => ExpectedVersion::Exact(current.map_or(7, |v| v + 1)),
    }
}

impl Model {
    fn current(&self, agg: &str) -> Option<u64> {
        self.by_agg.get(agg).map(|v| v.len() as u64 - 1)
    }

    fn push(&mut self, agg: &str, evs: &[NewEvent]) {
        for e in evs {
            self.by_agg.entry(agg.to_string()).or_default().push(self.all.len() as u64);
            let v = self.by_agg[agg].len() as u64 - 1;
            self.all.push((agg.to_string(), e.clone(), v));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), small_options()).unwrap();
        let mut m = Model { all: Vec::new(), by_agg: HashMap::new(), batches: Vec::new(), many: Vec::new() };
        let mut serial = 0u64;
        for op in ops {
            match op {
                Op::Append { agg, expect, len } => {
                    let agg = format!("agg-{agg}");
                    let current = m.by_agg.get(&agg).map(|v| v.len() as u64 - 1);
                    let expected = match expect {
                        0 => ExpectedVersion::Any,
                        1 => ExpectedVersion::NoStream,
                        2 => ExpectedVersion::StreamExists,
                        _ => ExpectedVersion::Exact(current.unwrap_or(0)),
                    };
                    let evs: Vec<NewEvent> = (0..len).map(|_| { serial += 1; event(serial, serial * 7) }).collect();
                    let r = store.append(&agg, expected, evs.clone());
                    if expected.matches(current) {
                        let r = r.unwrap();
                        prop_assert_eq!(r.first_position, m.all.len() as u64);
                        prop_assert_eq!(r.first_version, current.map_or(0, |v| v + 1));
                        for e in &evs {
                            m.by_agg.entry(agg.clone()).or_default().push(m.all.len() as u64);
                            let v = m.by_agg[&agg].len() as u64 - 1;
                            m.all.push((agg.clone(), e.clone(), v));
                        }
                        m.batches.push((agg, evs, r.first_position, r.first_version));
                    } else {
                        let is_conflict = matches!(r, Err(Error::WrongExpectedVersion { .. }));
                        prop_assert!(is_conflict, "{:?}", r);
                    }
                }
                Op::AppendMany { parts } => {
                    let mut batches = Vec::new();
                    let mut all_match = true;
                    for (agg, expect, len) in parts {
                        let agg = format!("agg-{agg}");
                        let current = m.current(&agg);
                        let expected = expectation(expect, current);
                        all_match &= expected.matches(current);
                        let evs: Vec<NewEvent> = (0..len).map(|_| { serial += 1; event(serial, serial * 7) }).collect();
                        batches.push((agg, expected, evs));
                    }
                    let before = m.all.len() as u64;
                    let r = store.append_many(batches.iter().map(|(a, x, e)| (a.as_str(), *x, e.clone())));
                    if all_match {
                        let results = r.unwrap();
                        let mut position = before;
                        for ((agg, _, evs), res) in batches.iter().zip(&results) {
                            prop_assert_eq!((res.first_position, res.first_version), (position, m.current(agg).map_or(0, |v| v + 1)));
                            m.push(agg, evs);
                            position += evs.len() as u64;
                        }
                        m.many.push((batches.into_iter().map(|(a, _, e)| (a, e)).collect(), results));
                    } else {
                        // One failed expectation: nothing of any batch is written.
                        let is_conflict = matches!(r, Err(Error::WrongExpectedVersion { .. }));
                        prop_assert!(is_conflict, "{:?}", r);
                    }
                }
                Op::RetryMany { back } => {
                    if let Some((batches, results)) = m.many.iter().rev().nth(back as usize).cloned() {
                        let again = store.append_many(batches.into_iter().map(|(a, e)| (a, ExpectedVersion::Any, e))).unwrap();
                        prop_assert_eq!(again.len(), results.len());
                        for (a, r) in again.iter().zip(&results) {
                            prop_assert!(a.deduplicated);
                            prop_assert_eq!((a.first_position, a.first_version, a.last_version), (r.first_position, r.first_version, r.last_version));
                        }
                    }
                }
                Op::Retry { back } => {
                    if let Some((agg, evs, pos, ver)) = m.batches.iter().rev().nth(back as usize).cloned() {
                        let r = store.append(&agg, ExpectedVersion::Any, evs).unwrap();
                        prop_assert!(r.deduplicated);
                        prop_assert_eq!((r.first_position, r.first_version), (pos, ver));
                    }
                }
                Op::ReadAgg { agg, from, backward } => {
                    let agg = format!("agg-{agg}");
                    let dir = if backward { Direction::Backward } else { Direction::Forward };
                    let got = store.read_aggregate_owned(&agg, from as u64, dir, usize::MAX).unwrap();
                    let positions = m.by_agg.get(&agg).cloned().unwrap_or_default();
                    let want: Vec<u64> = if backward {
                        positions.iter().take(from as usize + 1).rev().copied().collect()
                    } else {
                        positions.iter().skip(from as usize).copied().collect()
                    };
                    prop_assert_eq!(got.iter().map(|e| e.position).collect::<Vec<_>>(), want);
                    for e in &got {
                        let (a, ev, v) = &m.all[e.position as usize];
                        prop_assert_eq!(&e.aggregate_id, a);
                        prop_assert_eq!(e.version, *v);
                        prop_assert_eq!(&e.data, &ev.data);
                        prop_assert_eq!(e.event_id, ev.event_id);
                    }
                }
                Op::ReadAll { from, limit } => {
                    let got = store.read_all_owned(from as u64, limit as usize).unwrap();
                    let want = m.all.len().saturating_sub(from as usize).min(limit as usize);
                    prop_assert_eq!(got.len(), want);
                    for (i, e) in got.iter().enumerate() {
                        let p = from as usize + i;
                        prop_assert_eq!(e.position, p as u64);
                        prop_assert_eq!(&e.metadata, &m.all[p].1.metadata);
                    }
                }
                Op::Reopen => {
                    store.close().unwrap();
                    store = Store::open(dir.path(), small_options()).unwrap();
                    prop_assert!(store.recovery_report().torn_tail.is_none());
                }
            }
            prop_assert_eq!(store.last_position(), (m.all.len() as u64).checked_sub(1));
        }
    }
}
