//! Catching up over the W4 store: W9, a subscription; W10, a durable consumer.
//!
//! W9: a subscription catching up from the start of the W4 store, through
//! the zero-copy [`factlog::Subscription::batch`], touching one payload byte
//! per delivered event as W6 does (factlog only: the peers have no
//! subscriptions, so their columns stay empty).
//!
//! Two variants: unfiltered, and with a type filter matching the 1% of the
//! load's events that have [`RARE_EVENT_TYPE`]. The filtered rate counts the
//! events examined (the whole log), not the ones delivered. Each variant runs
//! once as warm-up and is timed the second time, and must deliver exactly the
//! events it should. The harness adds each row's ratio to W6's scan in the
//! same run (`ratio_to_w6`) and the filtered row's ratio to the unfiltered
//! one (`ratio_to_unfiltered`).
//!
//! W10: a durable consumer (`Store::consumer`) from the start of the same
//! store, its handler doing nothing but touch one payload byte, committing
//! its checkpoint every [`CHECKPOINT_EVERY_EVENTS`] events, run until caught
//! up. A first consumer runs as warm-up; a second one, under another name so
//! that it too starts from position 0, is timed. It must handle every event;
//! the harness adds its ratio to W6 (`ratio_to_w6`).

use crate::engines::{Durability, EngineKind};
use crate::event::{RARE_EVENT_TYPE, RARE_TYPE_EVERY};
use crate::machine;
use crate::workloads::{logical_event_bytes, rate, Params, Row, Workload};
use anyhow::{bail, Context, Result};
use factlog::{ConsumerOptions, Filter, StartFrom, Store};
use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// W10's checkpoint interval, in events.
pub const CHECKPOINT_EVERY_EVENTS: u64 = 1_000;

/// Most events one `batch` call examines during the catch-up.
pub const BATCH_EVENTS_MAX: usize = 4_096;

/// W9 over `store`, which holds the W4 load of `events` events; `filtered`
/// picks the 1% type filter.
pub fn catch_up(store: &Store, events: u64, filtered: bool, params: &Params) -> Result<Row> {
    let label = format!("factlog W9 {}", if filtered { "filtered" } else { "catch-up" });
    let filter = if filtered { Filter::all().event_types([RARE_EVENT_TYPE]) } else { Filter::all() };
    let expected = if filtered { events / RARE_TYPE_EVERY } else { events };
    let start_rss = machine::reset_peak_rss();
    let pb = params.progress.counter(&label, 2, "passes");
    let mut secs = 0.0;
    for pass in 0..2 {
        let t = Instant::now();
        let delivered = one_pass(store, &filter, events).context(label.clone())?;
        secs = t.elapsed().as_secs_f64();
        if delivered != expected {
            bail!("{label}: delivered {delivered} events, expected {expected}");
        }
        pb.set_position(pass + 1);
    }
    pb.finish_and_clear();

    let mut row = Row::new(Workload::W9, EngineKind::Factlog, 1, 1, Durability::Buffered);
    row.events = events;
    row.secs = secs;
    row.logical_bytes = expected * logical_event_bytes(params.payload_bytes);
    row.extra.insert("filtered".into(), filtered.into());
    row.set_u64("delivered_events", expected);
    row.set("delivered_per_sec", rate(expected as f64, secs));
    row.record_peak_rss(start_rss);
    Ok(row)
}

/// One catch-up from position 0 to `end`; returns the events delivered.
fn one_pass(store: &Store, filter: &Filter, end: u64) -> Result<u64> {
    let mut sub = store.subscribe(StartFrom::Start, filter.clone());
    let mut delivered = 0u64;
    let mut checksum = 0u64;
    while sub.position() < end {
        let before = sub.position();
        let mut batch = sub.batch(BATCH_EVENTS_MAX, Duration::ZERO)?;
        for event in batch.events() {
            let event = event?;
            checksum = checksum.wrapping_add(u64::from(event.data().first().copied().unwrap_or(0)));
            delivered += 1;
        }
        drop(batch);
        if sub.position() == before {
            bail!("the catch-up stalled at position {before} of {end}");
        }
    }
    black_box(checksum);
    Ok(delivered)
}

/// W10 over `store`, which holds the W4 load of `events` events.
pub fn durable_consumer(store: &Store, events: u64, params: &Params) -> Result<Row> {
    let label = "factlog W10 consumer".to_owned();
    let start_rss = machine::reset_peak_rss();
    let pb = params.progress.counter(&label, 2, "passes");
    let mut secs = 0.0;
    let mut checksum = 0u64;
    for (pass, name) in ["w10-warm-up", "w10"].into_iter().enumerate() {
        let options = ConsumerOptions::default().start(StartFrom::Start).commit_every_events(CHECKPOINT_EVERY_EVENTS);
        let mut consumer = store.consumer(name, options).with_context(|| format!("{label}: opening {name}"))?;
        let t = Instant::now();
        let summary = consumer
            .run_until_caught_up(|event| {
                checksum = checksum.wrapping_add(u64::from(event.data().first().copied().unwrap_or(0)));
                Ok::<(), Infallible>(())
            })
            .context(label.clone())?;
        secs = t.elapsed().as_secs_f64();
        if summary.handled != events || summary.parked != 0 {
            bail!("{label}: handled {} and parked {} of {events} events", summary.handled, summary.parked);
        }
        pb.set_position(pass as u64 + 1);
    }
    black_box(checksum);
    pb.finish_and_clear();

    let mut row = Row::new(Workload::W10, EngineKind::Factlog, 1, 1, Durability::Buffered);
    row.events = events;
    row.secs = secs;
    row.logical_bytes = events * logical_event_bytes(params.payload_bytes);
    row.set_u64("checkpoint_every_events", CHECKPOINT_EVERY_EVENTS);
    row.record_peak_rss(start_rss);
    Ok(row)
}
