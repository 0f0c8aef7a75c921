//! W6 with upcasters (factlog only, `--w6-upcasters N`): the W6 full scan
//! of the W4 store through [`factlog::Upcasters::events`] with `N`
//! upcasters registered and none matching, against the plain zero-copy scan
//! timed in the same passes.
//!
//! The two scans alternate (plain, upcast, upcast, plain, plain, …: which
//! goes first swaps every pass) after one warm-up of each, and each keeps
//! its best pass, so that both see the same
//! machine and page cache; the row's ratio is upcast ÷ plain. The upcasters
//! are built to miss in the costly ways: the load's own type names at a
//! version it never wrote (v0), a name as long as the load's and starting
//! with the same letter, and unrelated names. Every event must come out
//! borrowed (not upcast), or the run fails.

use crate::engines::{Durability, EngineKind};
use crate::event::{EVENT_TYPE, RARE_EVENT_TYPE};
use crate::machine;
use crate::workloads::{logical_event_bytes, rate, Params, Row, Workload};
use anyhow::{bail, Context, Result};
use factlog::{Reader, Store, Upcast, UpcastError, Upcasters};
use std::hint::black_box;
use std::time::Instant;

/// Timed passes of each scan, after one warm-up of each.
pub const PASSES: u64 = 9;

/// `n` upcasters of which none applies to an event of the W4 load.
pub fn non_matching(n: usize) -> Result<Upcasters> {
    let mut up = Upcasters::new();
    let same_shape = "OrderPlacedX"; // as long as EVENT_TYPE, same first letter, same version
    let mut starts: Vec<(String, u32)> =
        vec![(EVENT_TYPE.into(), 0), (RARE_EVENT_TYPE.into(), 0), (same_shape.into(), 1)];
    starts.extend((0..n).map(|i| (format!("LegacyEvent{i}"), 1)));
    for (name, version) in starts.into_iter().take(n) {
        up.register((&name, version), (&name, version + 1), |_: &mut Upcast| Ok::<(), UpcastError>(()))
            .context("registering the W6 upcasters")?;
    }
    Ok(up)
}

/// One plain scan: events seen and a checksum of one payload byte each.
fn plain(reader: &Reader) -> Result<(u64, u64)> {
    let (mut n, mut sum) = (0u64, 0u64);
    for ev in reader.read_all(0) {
        let ev = ev.context("factlog: read_all")?;
        sum = sum.wrapping_add(u64::from(ev.data().first().copied().unwrap_or(0)));
        n += 1;
    }
    Ok((n, sum))
}

/// One scan through the upcasters; fails if any event was upcast.
fn upcast(reader: &Reader, upcasters: &Upcasters) -> Result<(u64, u64)> {
    let (mut n, mut sum) = (0u64, 0u64);
    for ev in upcasters.events(reader.read_all(0)) {
        let ev = ev.context("factlog: read_all, upcast")?;
        if ev.is_upcast() {
            bail!("event at position {} was upcast; none should match", ev.position());
        }
        sum = sum.wrapping_add(u64::from(ev.data().first().copied().unwrap_or(0)));
        n += 1;
    }
    Ok((n, sum))
}

/// W6 with `n` non-matching upcasters over `store`, which holds the W4 load
/// of `events` events; the row carries the plain scan's rate of the same
/// passes and the ratio.
pub fn scan_with_upcasters(store: &Store, events: u64, n: usize, params: &Params) -> Result<Row> {
    let label = format!("factlog W6 scan, {n} upcasters");
    let upcasters = non_matching(n)?;
    let start_rss = machine::reset_peak_rss();
    let pb = params.progress.counter(&label, PASSES + 1, "passes");
    let reader = store.reader();
    let (mut best_plain, mut best_upcast) = (f64::MAX, f64::MAX);
    let mut checksum = 0u64;
    for pass in 0..=PASSES {
        for upcasting in if pass % 2 == 0 { [false, true] } else { [true, false] } {
            let t = Instant::now();
            let (seen, sum) = if upcasting { upcast(&reader, &upcasters)? } else { plain(&reader)? };
            let secs = t.elapsed().as_secs_f64();
            if seen != events {
                bail!("{label}: scan returned {seen} events, expected {events}");
            }
            checksum = checksum.wrapping_add(sum);
            // Pass 0 is the warm-up of both.
            if pass > 0 {
                let best = if upcasting { &mut best_upcast } else { &mut best_plain };
                *best = best.min(secs);
            }
        }
        pb.set_position(pass + 1);
    }
    black_box(checksum);
    pb.finish_and_clear();
    let mut row = Row::new(Workload::W6, EngineKind::Factlog, 1, 1, Durability::Buffered);
    row.events = events;
    row.secs = best_upcast;
    row.logical_bytes = events * logical_event_bytes(params.payload_bytes);
    row.set("gb_per_sec", rate(row.logical_bytes as f64 / 1e9, best_upcast));
    row.set_u64("upcasters", n as u64);
    let plain_rate = rate(events as f64, best_plain);
    row.set("plain_events_per_sec", plain_rate);
    if plain_rate > 0.0 {
        row.set("ratio_to_plain", row.events_per_sec() / plain_rate);
    }
    row.record_peak_rss(start_rss);
    Ok(row)
}
