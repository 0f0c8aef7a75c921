//! Property test of the event lifecycle: random appends, soft and hard
//! deletes, stream metadata changes, scavenges, retention and reopens,
//! checked after every step against a plain in-memory model of what every
//! read must show. Positions never change; versions never restart. Public
//! API only; every case uses its own temporary directory.

use std::collections::HashMap;

use bytes::Bytes;
use factlog::{DeleteMode, Direction, Error, ExpectedVersion, NewEvent, Options, Retention, Store, StreamMeta};
use factlog_tests::{event, small_options};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append { agg: u8, len: u8, no_stream: bool },
    SoftDelete { agg: u8 },
    HardDelete { agg: u8 },
    MaxCount { agg: u8, n: u8 },
    TruncateBefore { agg: u8, v: u8 },
    ClearMeta { agg: u8 },
    Scavenge,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (0u8..5, 1u8..8, any::<bool>()).prop_map(|(agg, len, no_stream)| Op::Append { agg, len, no_stream }),
        2 => (0u8..5).prop_map(|agg| Op::SoftDelete { agg }),
        1 => (0u8..5).prop_map(|agg| Op::HardDelete { agg }),
        2 => (0u8..5, 1u8..6).prop_map(|(agg, n)| Op::MaxCount { agg, n }),
        2 => (0u8..5, 0u8..20).prop_map(|(agg, v)| Op::TruncateBefore { agg, v }),
        1 => (0u8..5).prop_map(|agg| Op::ClearMeta { agg }),
        3 => Just(Op::Scavenge),
        2 => Just(Op::Reopen),
    ]
}

/// One aggregate as the model knows it.
#[derive(Debug, Default, Clone)]
struct Agg {
    /// Positions of its events, by version (removed ones included).
    positions: Vec<u64>,
    truncate_before: u64,
    max_count: Option<u64>,
    soft_deleted: bool,
    hard: bool,
}

impl Agg {
    /// The first version reads show.
    fn first_visible(&self) -> u64 {
        if self.hard {
            return u64::MAX;
        }
        let by_count = self.max_count.map_or(0, |m| (self.positions.len() as u64).saturating_sub(m));
        self.truncate_before.max(by_count)
    }
}

fn options(retention: bool) -> Options {
    let o = small_options().max_event_bytes(16 * 1024);
    if retention {
        return o.retention(Retention { max_bytes: Some(6 * 64 * 1024), ..Default::default() });
    }
    o
}

/// An event with a ~1.5 KiB payload, so that segments fill and roll.
fn big(serial: u64) -> NewEvent {
    NewEvent { data: Bytes::from(format!("{serial:08}-").repeat(170)), ..event(serial, serial * 3) }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
    #[test]
    fn lifecycle_matches_model(ops in proptest::collection::vec(op(), 1..70), retention in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), options(retention)).unwrap();
        let mut aggs: HashMap<String, Agg> = HashMap::new();
        // Every event ever appended: (aggregate, version, event id).
        let mut log: Vec<(String, u64, factlog::EventId)> = Vec::new();
        let mut serial = 0u64;
        // Positions a scavenge removed: gone for good, whatever the rules say later.
        let mut removed: std::collections::HashSet<u64> = std::collections::HashSet::new();
        for op in ops {
            match op {
                Op::Append { agg, len, no_stream } => {
                    let id = format!("agg-{agg}");
                    let a = aggs.entry(id.clone()).or_default();
                    let evs: Vec<NewEvent> = (0..len).map(|_| { serial += 1; big(serial) }).collect();
                    // With retention, an aggregate whose events all left the log may
                    // start again at version 0 after a reopen (README): NoStream's
                    // answer then depends on that, so only Any is used.
                    let no_stream = no_stream && !retention;
                    let expected = if no_stream { ExpectedVersion::NoStream } else { ExpectedVersion::Any };
                    let first = store.first_position().unwrap_or(0);
                    let all_gone = a.positions.last().is_some_and(|p| *p < first);
                    let r = store.append(&id, expected, evs.clone());
                    // NoStream matches an aggregate without events, or a
                    // soft-deleted one with none since its deletion.
                    let restart = a.soft_deleted && a.positions.len() as u64 <= a.truncate_before;
                    if a.hard {
                        prop_assert!(matches!(r, Err(Error::AggregateDeleted { .. })), "{:?}", r);
                    } else if no_stream && !a.positions.is_empty() && !restart {
                        prop_assert!(matches!(r, Err(Error::WrongExpectedVersion { .. })), "{:?}", r);
                    } else {
                        let r = r.unwrap();
                        prop_assert_eq!(r.first_position, log.len() as u64);
                        let restarted = retention && all_gone && !a.soft_deleted && r.first_version == 0;
                        if restarted {
                            a.positions.clear();
                        }
                        prop_assert_eq!(r.first_version, a.positions.len() as u64, "versions never restart");
                        for e in evs {
                            a.positions.push(log.len() as u64);
                            log.push((id.clone(), a.positions.len() as u64 - 1, e.event_id));
                        }
                    }
                }
                Op::SoftDelete { agg } | Op::HardDelete { agg } => {
                    let hard = matches!(op, Op::HardDelete { .. });
                    let id = format!("agg-{agg}");
                    let mode = if hard { DeleteMode::Hard } else { DeleteMode::Soft };
                    let r = store.delete_aggregate(&id, mode);
                    let first = store.first_position().unwrap_or(0);
                    match aggs.get_mut(&id) {
                        Some(a) if a.hard => prop_assert!(matches!(r, Err(Error::AggregateDeleted { .. })), "{:?}", r),
                        // Retention removed all of it; after a reopen the store no longer knows it.
                        Some(a) if retention
                            && a.positions.last().is_some_and(|p| *p < first)
                            && matches!(r, Err(Error::UnknownAggregate { .. })) => {}
                        Some(a) if !a.positions.is_empty() => {
                            r.unwrap();
                            a.truncate_before = a.truncate_before.max(a.positions.len() as u64);
                            a.soft_deleted |= !hard;
                            a.hard = hard;
                        }
                        _ => prop_assert!(matches!(r, Err(Error::UnknownAggregate { .. })), "{:?}", r),
                    }
                }
                Op::MaxCount { agg, .. } | Op::TruncateBefore { agg, .. } | Op::ClearMeta { agg } => {
                    let id = format!("agg-{agg}");
                    let a = aggs.entry(id.clone()).or_default();
                    let mut meta = StreamMeta { max_count: a.max_count, ..Default::default() };
                    let mut tb = None;
                    match op {
                        Op::MaxCount { n, .. } => meta.max_count = Some(u64::from(n)),
                        Op::TruncateBefore { v, .. } => tb = Some(u64::from(v)),
                        _ => meta.max_count = None,
                    }
                    // The store keeps one truncate_before: the caller's, never below a soft delete's cut.
                    meta.truncate_before = tb.or((a.truncate_before > 0).then_some(a.truncate_before));
                    let r = store.set_stream_meta(&id, meta);
                    if a.hard {
                        prop_assert!(matches!(r, Err(Error::AggregateDeleted { .. })), "{:?}", r);
                    } else {
                        r.unwrap();
                        a.max_count = meta.max_count;
                        if let Some(tb) = meta.truncate_before {
                            // A soft delete's cut stays.
                            let floor = if a.soft_deleted { a.truncate_before } else { 0 };
                            a.truncate_before = tb.max(floor);
                        } else if !a.soft_deleted {
                            a.truncate_before = 0;
                        }
                    }
                }
                Op::Scavenge => {
                    store.scavenge(&mut |_, _| {}).unwrap();
                    // What was hidden in the sealed segments is gone (the active
                    // segment, the one with the highest first position, stays).
                    let active_first = factlog_tests::segment_files(dir.path())
                        .iter()
                        .filter_map(|p| p.file_stem()?.to_str()?.parse::<u64>().ok())
                        .max()
                        .unwrap_or(0);
                    for (p, (agg, v, _)) in log.iter().enumerate() {
                        if (p as u64) < active_first && *v < aggs.get(agg).map_or(0, Agg::first_visible) {
                            removed.insert(p as u64);
                        }
                    }
                }
                Op::Reopen => {
                    store.close().unwrap();
                    store = Store::open(dir.path(), options(retention)).unwrap();
                    prop_assert!(store.recovery_report().torn_tail.is_none());
                }
            }
            // Every read shows exactly what the model says.
            let first = store.first_position().unwrap_or(log.len() as u64);
            prop_assert!(retention || first == 0 || log.is_empty());
            let visible = |p: u64, (agg, v, _): &(String, u64, factlog::EventId)| {
                p >= first && !removed.contains(&p) && *v >= aggs.get(agg).map_or(0, Agg::first_visible)
            };
            let want: Vec<(u64, factlog::EventId)> = log
                .iter()
                .enumerate()
                .filter(|(p, e)| visible(*p as u64, e))
                .map(|(p, e)| (p as u64, e.2))
                .collect();
            let got: Vec<(u64, factlog::EventId)> = if log.is_empty() {
                Vec::new()
            } else {
                store.read_all_owned(first, usize::MAX).unwrap().iter().map(|e| (e.position, e.event_id)).collect()
            };
            prop_assert_eq!(got, want);
            for (id, a) in &aggs {
                // Retention removed its first versions: told where it now starts.
                let from = match store.read_aggregate_owned(id, 0, Direction::Forward, usize::MAX) {
                    Err(Error::AggregateTruncated { first_version, .. }) => {
                        // Below it: removed by retention, or by a scavenge of what the rules hid then.
                        let gone = a.positions.iter().take(first_version as usize).all(|p| *p < first || removed.contains(p));
                        prop_assert!(retention && gone, "{} truncated at {} without retention", id, first_version);
                        first_version
                    }
                    _ => 0,
                };
                let got: Vec<u64> = store
                    .read_aggregate_owned(id, from, Direction::Forward, usize::MAX)
                    .unwrap()
                    .iter()
                    .map(|e| e.version)
                    .collect();
                let want: Vec<u64> = (from..a.positions.len() as u64)
                    .filter(|v| {
                        let p = a.positions[*v as usize];
                        p >= first && !removed.contains(&p) && *v >= a.first_visible()
                    })
                    .collect();
                prop_assert_eq!(got, want, "aggregate {}", id);
            }
            prop_assert_eq!(store.last_position(), (log.len() as u64).checked_sub(1));
        }
        let verify = store.verify(&mut |_, _| {}).unwrap();
        prop_assert!(verify.problems.is_empty(), "{:?}", verify.problems);
    }
}
