//! The workloads (W1–W6 here, the others in their own modules) and the
//! result record each produces.
//!
//! - W1: durable appends, one event per append, one writer, exact expected version.
//! - W2: the same with N concurrent writers, each on its own aggregates; for
//!   factlog also once with `--w2-subscribers` live subscriptions draining
//!   the log meanwhile (`live`), reported with its ratio to plain W2.
//! - W2m: the largest W2 writer count, each writer appending with
//!   `append_many` over `--w2m-aggregates` of its aggregates, one event
//!   each (the peers: one transaction, one write batch, the same checks).
//! - W3: durable batched appends (`--batch` events per append), one writer.
//! - W4: bulk load with buffered durability, `--events` over `--aggregates`;
//!   one event in 100 has the rare type W9 filters on.
//! - W5: replay of random aggregates from the W4 store.
//! - W6: full scan of the W4 store in global order.
//! - W7: load of one long aggregate with and without a snapshot (`snapshots`).
//! - W8: live delivery latency, from an append's acknowledgement to each
//!   subscriber's receipt, one writer at a fixed rate, 1 and 16 subscribers;
//!   the peers' subscribers poll every 1 ms (`live`).
//! - W9: catch-up of a subscription from the start of the W4 store, without
//!   and with a type filter matching 1%, against W6 in the same run (factlog
//!   only, `catchup`).
//! - W10: a durable consumer from the start of the W4 store, its handler
//!   doing nothing, a checkpoint every 1,000 events, against W6 (factlog
//!   only, `catchup`).
//!
//! Event generation happens outside every timed region; W1–W3 and W8 run for
//! a fixed time, W4–W6, W9 and W10 for a fixed amount of work.

use crate::engines::{BenchEngine, Durability, EngineKind, ManyPart};
use crate::event::{aggregate_id, Ev, EventGen, RARE_EVENT_TYPE, RARE_TYPE_EVERY};
use crate::latency::{Samples, Summary};
use crate::machine;
use crate::progress::Progress;
use anyhow::{anyhow, bail, Context, Result};
use rand::Rng;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// The workloads, as named on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum, Serialize)]
pub enum Workload {
    /// Durable single-event appends, one writer.
    #[value(name = "W1")]
    W1,
    /// Durable single-event appends, N concurrent writers.
    #[value(name = "W2")]
    W2,
    /// Durable multi-aggregate appends (`append_many`), N concurrent writers.
    #[value(name = "W2m")]
    W2m,
    /// Durable batched appends, one writer.
    #[value(name = "W3")]
    W3,
    /// Buffered bulk load.
    #[value(name = "W4")]
    W4,
    /// Replay of one 100-event aggregate.
    #[value(name = "W5")]
    W5,
    /// Full scan of the global log.
    #[value(name = "W6")]
    W6,
    /// Load of one long aggregate with and without a snapshot.
    #[value(name = "W7")]
    W7,
    /// Live delivery latency to subscribers, one writer at a fixed rate.
    #[value(name = "W8")]
    W8,
    /// Subscription catch-up over the W4 store, unfiltered and filtered.
    #[value(name = "W9")]
    W9,
    /// A durable consumer over the W4 store.
    #[value(name = "W10")]
    W10,
}

impl Workload {
    /// `W1` … `W10`, and `W2m`.
    pub fn name(self) -> &'static str {
        match self {
            Workload::W1 => "W1",
            Workload::W2 => "W2",
            Workload::W2m => "W2m",
            Workload::W3 => "W3",
            Workload::W4 => "W4",
            Workload::W5 => "W5",
            Workload::W6 => "W6",
            Workload::W7 => "W7",
            Workload::W8 => "W8",
            Workload::W9 => "W9",
            Workload::W10 => "W10",
        }
    }

    /// All workloads in order.
    pub const ALL: [Workload; 11] = [
        Workload::W1,
        Workload::W2,
        Workload::W2m,
        Workload::W3,
        Workload::W4,
        Workload::W5,
        Workload::W6,
        Workload::W7,
        Workload::W8,
        Workload::W9,
        Workload::W10,
    ];
}

/// Parameters shared by all workloads (the JSON report's `params`).
#[derive(Clone, Debug, Serialize)]
pub struct Params {
    /// Events loaded by W4 (and so read by W5/W6).
    pub events: u64,
    /// Aggregates the W4 events are spread over.
    pub aggregates: u64,
    /// Payload size of every event.
    pub payload_bytes: usize,
    /// Writer counts for W2.
    pub writers: Vec<usize>,
    /// Aggregates each W2m `append_many` writes one event to.
    pub w2m_aggregates: usize,
    /// Events per append in W3 (and the W4 chunk size).
    pub batch: usize,
    /// Durability of W1–W3.
    pub durability: Durability,
    /// How long W1, each W2 writer count, and W3 run.
    #[serde(rename = "duration_secs", serialize_with = "as_secs")]
    pub duration: Duration,
    /// Aggregate replays timed in W5.
    pub replays: u64,
    /// Events of the one aggregate W7 loads.
    pub w7_events: u64,
    /// W7 loads timed without a snapshot (20 times as many with one).
    pub w7_loads: u64,
    /// Live subscriptions attached to factlog's extra W2 run (0: no such run).
    pub w2_subscribers: usize,
    /// Appends per second of W8's writer.
    pub w8_rate: u64,
    /// How long W8 measures per subscriber count (after a quarter of it as warm-up).
    #[serde(rename = "w8_secs", serialize_with = "as_secs")]
    pub w8_duration: Duration,
    /// Subscriber counts W8 runs with.
    pub w8_subscribers: Vec<usize>,
    /// Threads spinning for the whole run (`--cpu-load`).
    pub cpu_load: usize,
    /// Upcasters of factlog's extra W6 run (`--w6-upcasters`; 0: no such run).
    pub w6_upcasters: usize,
    /// Where progress goes.
    #[serde(skip)]
    pub progress: Progress,
}

fn as_secs<S: Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// One measured (workload, engine, variant) result.
#[derive(Clone, Debug)]
pub struct Row {
    /// Which workload.
    pub workload: Workload,
    /// Which engine.
    pub engine: EngineKind,
    /// Concurrent writers (readers for W5/W6: 1).
    pub writers: usize,
    /// Events per append (1 for reads).
    pub batch: usize,
    /// Durability of the appends.
    pub durability: Durability,
    /// Events written or read.
    pub events: u64,
    /// Wall time of the measured region, seconds.
    pub secs: f64,
    /// Latency per operation (append for W1–W3, aggregate replay for W5).
    pub latency: Option<Summary>,
    /// Logical bytes written or read (see [`Ev::logical_bytes`]).
    pub logical_bytes: u64,
    /// Workload-specific figures (fsyncs_per_sec, bytes_per_event, peak_rss_bytes, …).
    pub extra: Map<String, Value>,
}

impl Row {
    pub(crate) fn new(
        workload: Workload,
        engine: EngineKind,
        writers: usize,
        batch: usize,
        durability: Durability,
    ) -> Self {
        Row {
            workload,
            engine,
            writers,
            batch,
            durability,
            events: 0,
            secs: 0.0,
            latency: None,
            logical_bytes: 0,
            extra: Map::new(),
        }
    }

    /// Events per second over the measured region.
    pub fn events_per_sec(&self) -> f64 {
        rate(self.events as f64, self.secs)
    }

    /// Logical MB (10^6 bytes) per second.
    pub fn mb_per_sec(&self) -> f64 {
        rate(self.logical_bytes as f64 / 1e6, self.secs)
    }

    /// An extra figure by name.
    pub fn extra_f64(&self, key: &str) -> Option<f64> {
        self.extra.get(key).and_then(Value::as_f64)
    }

    pub(crate) fn set(&mut self, key: &str, value: f64) {
        if let Some(n) = serde_json::Number::from_f64(value) {
            self.extra.insert(key.to_owned(), Value::Number(n));
        }
    }

    pub(crate) fn set_u64(&mut self, key: &str, value: u64) {
        self.extra.insert(key.to_owned(), Value::from(value));
    }

    pub(crate) fn record_peak_rss(&mut self, start_rss: Option<u64>) {
        if let Some(rss) = start_rss {
            self.set_u64("start_rss_bytes", rss);
        }
        if let Some(rss) = machine::peak_rss_bytes() {
            self.set_u64("peak_rss_bytes", rss);
        }
        if let Some((anon, file)) = machine::rss_anon_file_bytes() {
            self.set_u64("end_rss_anon_bytes", anon);
            self.set_u64("end_rss_file_bytes", file);
        }
    }
}

/// The JSON form of a [`Row`] (one element of `results`): its fields, the
/// derived rates, the latency summary and the extras, all at one level.
#[derive(Serialize)]
struct RowJson<'a> {
    workload: Workload,
    engine: EngineKind,
    writers: usize,
    batch: usize,
    durability: Durability,
    events: u64,
    secs: f64,
    events_per_sec: f64,
    mb_per_sec: f64,
    #[serde(flatten)]
    latency: Option<Summary>,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

impl Serialize for Row {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        RowJson {
            workload: self.workload,
            engine: self.engine,
            writers: self.writers,
            batch: self.batch,
            durability: self.durability,
            events: self.events,
            secs: self.secs,
            events_per_sec: self.events_per_sec(),
            mb_per_sec: self.mb_per_sec(),
            latency: self.latency,
            extra: &self.extra,
        }
        .serialize(s)
    }
}

pub(crate) fn rate(amount: f64, secs: f64) -> f64 {
    if secs > 0.0 {
        amount / secs
    } else {
        0.0
    }
}

/// Aggregates owned by each writer in W1–W3 (round-robin within them).
pub const AGGS_PER_WRITER: u64 = 100;

/// Runs `writers` threads appending `batch` events per append for
/// `params.duration`, each on its own aggregates numbered from `agg_base`.
pub fn run_writers(
    engine: &dyn BenchEngine,
    workload: Workload,
    writers: usize,
    batch: usize,
    agg_base: u64,
    params: &Params,
) -> Result<Row> {
    run_writers_many(engine, workload, writers, batch, 1, agg_base, params)
}

/// [`run_writers`] where each call appends `batch` events to each of
/// `aggregates` of the writer's aggregates at once (W2m): through
/// [`Session::append_many`](crate::engines::Session::append_many) when
/// `aggregates` > 1, taking the writer's aggregates round-robin.
pub fn run_writers_many(
    engine: &dyn BenchEngine,
    workload: Workload,
    writers: usize,
    batch: usize,
    aggregates: usize,
    agg_base: u64,
    params: &Params,
) -> Result<Row> {
    if aggregates == 0 || aggregates as u64 > AGGS_PER_WRITER {
        bail!("{workload:?}: {aggregates} aggregates per append, not 1 to {AGGS_PER_WRITER}");
    }
    let label = match workload {
        Workload::W2 => format!("{} {} n={writers}", engine.kind(), workload.name()),
        Workload::W2m => format!("{} {} n={writers}×{aggregates}", engine.kind(), workload.name()),
        _ => format!("{} {}", engine.kind(), workload.name()),
    };
    let per_call = batch * aggregates;
    let start_rss = machine::reset_peak_rss();
    let before = engine.stats();
    let stop = AtomicBool::new(false);
    let done_events = AtomicU64::new(0);
    let barrier = Barrier::new(writers + 1);
    let pb = params.progress.timed(&label, params.duration);

    let (results, secs) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let (stop, done_events, barrier) = (&stop, &done_events, &barrier);
                let first_agg = agg_base + w as u64 * AGGS_PER_WRITER;
                let session = engine.session();
                scope.spawn(move || -> Result<Samples> {
                    let mut session = session?;
                    let mut gen = EventGen::new(params.payload_bytes, first_agg ^ 0x5eed);
                    let aggs: Vec<String> = (0..AGGS_PER_WRITER).map(|k| aggregate_id(first_agg + k)).collect();
                    let mut versions: Vec<Option<u64>> = vec![None; aggs.len()];
                    let mut lat = Samples::with_capacity(1 << 14);
                    barrier.wait();
                    let mut i = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        let res = if aggregates == 1 {
                            let k = i % aggs.len();
                            let events = gen.events(batch);
                            let t = Instant::now();
                            let res = session.append(&aggs[k], versions[k], &events);
                            lat.record(t.elapsed());
                            res.map(|v| versions[k] = Some(v))
                        } else {
                            let picks: Vec<usize> =
                                (0..aggregates).map(|j| (i * aggregates + j) % aggs.len()).collect();
                            let events: Vec<Vec<Ev>> = picks.iter().map(|_| gen.events(batch)).collect();
                            let parts: Vec<ManyPart<'_>> = picks
                                .iter()
                                .zip(&events)
                                .map(|(&k, evs)| (aggs[k].as_str(), versions[k], &evs[..]))
                                .collect();
                            let t = Instant::now();
                            let res = session.append_many(&parts);
                            lat.record(t.elapsed());
                            res.and_then(|new| {
                                if new.len() != picks.len() {
                                    bail!("{} versions back for {} aggregates", new.len(), picks.len());
                                }
                                for (&k, v) in picks.iter().zip(new) {
                                    versions[k] = Some(v);
                                }
                                Ok(())
                            })
                        };
                        if let Err(e) = res {
                            stop.store(true, Ordering::Relaxed);
                            return Err(e);
                        }
                        done_events.fetch_add(per_call as u64, Ordering::Relaxed);
                        i += 1;
                    }
                    Ok(lat)
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        while start.elapsed() < params.duration && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
            pb.set_position(start.elapsed().as_millis() as u64);
            pb.set_message(format!("{} events", done_events.load(Ordering::Relaxed)));
        }
        stop.store(true, Ordering::Relaxed);
        let results: Vec<Result<Samples>> =
            handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("writer thread panicked")))).collect();
        (results, start.elapsed().as_secs_f64())
    });
    pb.finish_and_clear();

    let mut lat = Samples::default();
    for r in results {
        lat.merge(r.context(label.clone())?);
    }
    let appends = lat.len() as u64;
    let mut row = Row::new(workload, engine.kind(), writers, per_call, params.durability);
    row.events = appends * per_call as u64;
    row.secs = secs;
    row.logical_bytes = row.events * logical_event_bytes(params.payload_bytes);
    row.latency = Some(lat.summarize());
    row.set("appends_per_sec", rate(appends as f64, secs));
    if aggregates > 1 {
        row.set_u64("aggregates_per_append", aggregates as u64);
    }
    let after = engine.stats();
    if let (Some(b), Some(a)) = (before.fsyncs, after.fsyncs) {
        let fsyncs = a.saturating_sub(b);
        row.set("fsyncs_per_sec", rate(fsyncs as f64, secs));
        if fsyncs > 0 {
            row.set("events_per_fsync", row.events as f64 / fsyncs as f64);
        }
    }
    if let (Some(b), Some(a)) = (before.group_commits, after.group_commits) {
        let groups = a.saturating_sub(b);
        row.set("group_commits_per_sec", rate(groups as f64, secs));
        if groups > 0 {
            row.set("appends_per_group_commit", appends as f64 / groups as f64);
        }
    }
    row.record_peak_rss(start_rss);
    Ok(row)
}

/// Logical size of one benchmark event (10-byte aggregate id).
pub fn logical_event_bytes(payload_bytes: usize) -> u64 {
    (16 + 10 + crate::event::EVENT_TYPE.len() + 8 + payload_bytes) as u64
}

/// The W4 load plan: (aggregate index, events) per append, aggregates
/// visited round-robin, each append at most `batch` events of one aggregate.
/// The event at global position p has [`RARE_EVENT_TYPE`] when p + 1 is a
/// multiple of [`RARE_TYPE_EVERY`].
pub fn load_plan(params: &Params) -> Vec<(usize, Vec<Ev>)> {
    let aggs = params.aggregates.max(1);
    let per = params.events / aggs;
    let extra = params.events % aggs;
    let mut remaining: Vec<u64> = (0..aggs).map(|a| per + u64::from(a < extra)).collect();
    let batch = params.batch.max(1) as u64;
    let mut gen = EventGen::new(params.payload_bytes, 4);
    let mut plan = Vec::with_capacity((params.events / batch + aggs) as usize);
    let mut left = params.events;
    while left > 0 {
        for (a, rem) in remaining.iter_mut().enumerate() {
            let n = (*rem).min(batch);
            if n > 0 {
                let mut events = gen.events(n as usize);
                let first_position = params.events - left;
                for (i, ev) in events.iter_mut().enumerate() {
                    if (first_position + i as u64 + 1).is_multiple_of(RARE_TYPE_EVERY) {
                        ev.event_type = RARE_EVENT_TYPE;
                    }
                }
                plan.push((a, events));
                *rem -= n;
                left -= n;
            }
        }
    }
    plan
}

/// W4: loads `params.events` with buffered durability, then syncs (timed).
/// Returns the row and, per aggregate, how many events it holds.
pub fn bulk_load(engine: &dyn BenchEngine, params: &Params) -> Result<(Row, Vec<u64>)> {
    let label = format!("{} W4 load", engine.kind());
    let plan = load_plan(params);
    let agg_ids: Vec<String> = (0..params.aggregates.max(1)).map(aggregate_id).collect();
    let mut versions: Vec<Option<u64>> = vec![None; agg_ids.len()];
    let mut counts = vec![0u64; agg_ids.len()];
    let start_rss = machine::reset_peak_rss();
    let mut session = engine.session()?;
    let pb = params.progress.counter(&label, params.events, "events");
    let start = Instant::now();
    let mut done = 0u64;
    for (i, (a, events)) in plan.iter().enumerate() {
        let v = session.append(&agg_ids[*a], versions[*a], events).with_context(|| label.clone())?;
        versions[*a] = Some(v);
        counts[*a] += events.len() as u64;
        done += events.len() as u64;
        if i % 64 == 0 {
            pb.set_position(done);
        }
    }
    pb.set_message("final sync");
    engine.sync().with_context(|| label.clone())?;
    let secs = start.elapsed().as_secs_f64();
    pb.finish_and_clear();
    drop(session);

    let mut row = Row::new(Workload::W4, engine.kind(), 1, params.batch, Durability::Buffered);
    row.events = done;
    row.secs = secs;
    row.logical_bytes =
        plan.iter().map(|(a, evs)| evs.iter().map(|e| e.logical_bytes(agg_ids[*a].len())).sum::<u64>()).sum();
    row.record_peak_rss(start_rss);
    let stats = engine.stats();
    if let Some(idx) = stats.index_bytes {
        row.set_u64("index_bytes", idx);
        row.set("index_bytes_per_event", idx as f64 / done.max(1) as f64);
    }
    if let Some(used) = stats.used_bytes {
        row.set_u64("used_bytes", used);
        row.set("bytes_per_event", used as f64 / done.max(1) as f64);
        row.set("disk_mb_per_sec", rate(used as f64 / 1e6, secs));
    }
    if let Some(file) = stats.file_bytes {
        row.set_u64("engine_file_bytes", file);
    }
    if let Some(fsyncs) = stats.fsyncs {
        row.set_u64("fsyncs", fsyncs);
    }
    row.set_u64("aggregates", agg_ids.len() as u64);
    Ok((row, counts))
}

/// Adds on-disk sizes (walked after the store was synced) to the W4 row.
pub fn add_disk_usage(row: &mut Row, usage: crate::disk::DiskUsage) {
    let events = row.events.max(1) as f64;
    row.set_u64("raw_file_bytes", usage.apparent_bytes);
    row.set_u64("allocated_bytes", usage.allocated_bytes);
    row.set("raw_file_bytes_per_event", usage.apparent_bytes as f64 / events);
    row.set("allocated_bytes_per_event", usage.allocated_bytes as f64 / events);
    if row.extra_f64("bytes_per_event").is_none() {
        row.set("bytes_per_event", usage.apparent_bytes as f64 / events);
        row.set("disk_mb_per_sec", rate(usage.apparent_bytes as f64 / 1e6, row.secs));
    }
}

/// W5: replays `params.replays` random aggregates (after a 10 % warm-up),
/// touching every payload; checks each holds the events W4 put there.
pub fn replay(engine: &dyn BenchEngine, counts: &[u64], params: &Params) -> Result<Row> {
    let label = format!("{} W5 replay", engine.kind());
    let start_rss = machine::reset_peak_rss();
    let mut session = engine.session()?;
    let mut rng = EventGen::new(1, 5);
    let agg_ids: Vec<String> = (0..counts.len() as u64).map(aggregate_id).collect();
    let mut checksum = 0u64;
    let pb = params.progress.counter(&label, params.replays, "replays");
    let warmup = params.replays / 10;
    let mut lat = Samples::with_capacity(params.replays as usize);
    let mut events = 0u64;
    let mut timed = Duration::ZERO;
    for i in 0..warmup + params.replays {
        let a = rng.rng().gen_range(0..agg_ids.len());
        let t = Instant::now();
        let n = session.replay(&agg_ids[a], &mut |data: &[u8]| {
            checksum = checksum.wrapping_add(u64::from(data.first().copied().unwrap_or(0)));
        })?;
        let took = t.elapsed();
        if n != counts[a] {
            bail!("{label}: aggregate {} returned {n} events, expected {}", agg_ids[a], counts[a]);
        }
        if i >= warmup {
            lat.record(took);
            timed += took;
            events += n;
            if i % 256 == 0 {
                pb.set_position(i - warmup);
            }
        }
    }
    black_box(checksum);
    pb.finish_and_clear();
    let mut row = Row::new(Workload::W5, engine.kind(), 1, 1, Durability::Buffered);
    row.events = events;
    row.secs = timed.as_secs_f64();
    row.logical_bytes = events * logical_event_bytes(params.payload_bytes);
    row.latency = Some(lat.summarize());
    row.set("events_per_aggregate", events as f64 / params.replays.max(1) as f64);
    row.record_peak_rss(start_rss);
    Ok(row)
}

/// W6: scans the whole store in global order (after one warm-up scan),
/// summing one payload byte per event; checks the event count.
pub fn scan(engine: &dyn BenchEngine, expected_events: u64, params: &Params) -> Result<Row> {
    let label = format!("{} W6 scan", engine.kind());
    let start_rss = machine::reset_peak_rss();
    let mut session = engine.session()?;
    let pb = params.progress.counter(&label, 2, "scans");
    let mut checksum = 0u64;
    let mut secs = 0.0;
    for pass in 0..2 {
        let t = Instant::now();
        let n = session.scan(&mut |data: &[u8]| {
            checksum = checksum.wrapping_add(u64::from(data.first().copied().unwrap_or(0)));
        })?;
        secs = t.elapsed().as_secs_f64();
        if n != expected_events {
            bail!("{label}: scan returned {n} events, expected {expected_events}");
        }
        pb.set_position(pass + 1);
    }
    black_box(checksum);
    pb.finish_and_clear();
    let mut row = Row::new(Workload::W6, engine.kind(), 1, 1, Durability::Buffered);
    row.events = expected_events;
    row.secs = secs;
    row.logical_bytes = expected_events * logical_event_bytes(params.payload_bytes);
    row.set("gb_per_sec", rate(row.logical_bytes as f64 / 1e9, secs));
    row.record_peak_rss(start_rss);
    Ok(row)
}
