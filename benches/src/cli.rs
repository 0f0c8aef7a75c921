//! Command-line interface of `factlog-bench`: the clap definitions, their
//! range checks, and the [`Params`] they describe.

use crate::engines::{Durability, EngineKind};
use crate::progress::Progress;
use crate::workloads::{Params, Workload};
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

/// Compares factlog with SQLite and fjall on nine event-store workloads and
/// against this machine's physical limits.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "factlog-bench",
    version,
    about = "Benchmark factlog against SQLite and fjall (W1–W10, W2m) and against the machine's physical limits",
    long_about = "Benchmark factlog against SQLite (WAL) and fjall on eleven workloads:\n\
  W1 durable single-event appends, 1 writer (exact expected version)\n\
  W2 the same with N concurrent writers (--writers); factlog also with --w2-subscribers live subscribers\n\
  W2m the largest --writers count, each append_many writing 1 event to each of --w2m-aggregates \
aggregates (the peers: one transaction / one write batch)\n\
  W3 durable batched appends of --batch events, 1 writer\n\
  W4 buffered bulk load of --events over --aggregates\n\
  W5 replay of random aggregates from the W4 store\n\
  W6 full scan of the W4 store in global order\n\
  W7 load of one aggregate of --w7-events events, with a snapshot (factlog) and without\n\
  W8 live delivery latency, append acknowledged -> subscriber has it, 1 writer at --w8-rate appends/s, \
--w8-subscribers subscribers (the peers' subscribers poll every 1 ms)\n\
  W9 catch-up of a subscription over the W4 store, unfiltered and with a 1% type filter (factlog)\n\
  W10 a durable consumer over the W4 store, handler doing nothing, checkpoint every 1,000 events (factlog)\n\
The machine's fsync rate, sequential write bandwidth and memcpy bandwidth are measured in the same run.\n\
Defaults (W4: 1,000,000 events over 10,000 aggregates of 100 events) finish in about two minutes on a \
2-core machine, W8 and the subscribed W2 about 20 s more."
)]
pub struct Args {
    /// Events loaded by W4 and read back by W5/W6.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,

    /// Aggregates the W4 events are spread over [default: events / 100, i.e. 100 events each,
    /// 10,000 with the default --events].
    #[arg(long)]
    pub aggregates: Option<u64>,

    /// Payload size of every event, bytes (JSON-ish text).
    #[arg(long, default_value_t = 200)]
    pub payload_bytes: usize,

    /// Concurrent writer counts for W2, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [4usize, 16, 64])]
    pub writers: Vec<usize>,

    /// Aggregates each W2m `append_many` writes one event to (W2m runs with the largest
    /// --writers count).
    #[arg(long, default_value_t = 8)]
    pub w2m_aggregates: usize,

    /// Events per append in W3 (also the largest per-aggregate append in the W4 load).
    #[arg(long, default_value_t = 100)]
    pub batch: usize,

    /// Durability of the W1–W3 appends (W4 is always buffered).
    #[arg(long, value_enum, default_value_t = Durability::Sync)]
    pub durability: Durability,

    /// Engines to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [EngineKind::Factlog, EngineKind::Sqlite, EngineKind::Fjall])]
    pub engines: Vec<EngineKind>,

    /// Workloads to run, comma-separated (W5, W6, W9 and W10 load the W4 store even when W4 is
    /// not listed; W9 and W10 also time W6's scan, for their ratios, even when W6 is not listed).
    #[arg(long, value_enum, value_delimiter = ',', ignore_case = true, default_values_t = Workload::ALL)]
    pub workloads: Vec<Workload>,

    /// Directory under which the temporary stores are created [default: ./target/bench-tmp].
    #[arg(long)]
    pub dir: Option<PathBuf>,

    /// Keep the stores instead of deleting them at the end.
    #[arg(long)]
    pub keep: bool,

    /// Print one JSON document instead of the table.
    #[arg(long)]
    pub json: bool,

    /// Seconds each time-bound phase runs (W1, each W2 writer count, W3), per engine.
    #[arg(long, default_value_t = 3.0)]
    pub duration_secs: f64,

    /// Aggregate replays timed in W5 (plus 10 % untimed warm-up).
    #[arg(long, default_value_t = 5_000)]
    pub replays: u64,

    /// Events of the one aggregate W7 loads.
    #[arg(long, default_value_t = 100_000)]
    pub w7_events: u64,

    /// W7 loads timed per engine without a snapshot (factlog's snapshot loads: 20 times as many).
    #[arg(long, default_value_t = 30)]
    pub w7_loads: u64,

    /// Live subscribers attached to factlog's extra W2 run (with the --writers count closest
    /// to 16); 0 skips that run.
    #[arg(long, default_value_t = 16)]
    pub w2_subscribers: usize,

    /// Appends per second of W8's writer (one event per append, Sync).
    #[arg(long, default_value_t = 2_000)]
    pub w8_rate: u64,

    /// Seconds W8 measures per engine and subscriber count (after a quarter of that as warm-up).
    #[arg(long, default_value_t = 2.0)]
    pub w8_secs: f64,

    /// Subscriber counts W8 runs with, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16])]
    pub w8_subscribers: Vec<usize>,

    /// factlog's W6 scan again through this many upcasters, none matching, timed in
    /// alternation with the plain scan (best of 9 passes each); 0 skips that run.
    #[arg(long, default_value_t = 0)]
    pub w6_upcasters: usize,

    /// Threads that spin for the whole run, to measure with cores kept busy
    /// (an application shares its machine with its own work); 0 for none.
    /// Reported in the JSON's params and in the table's header. The physical
    /// limits are measured before the threads start.
    #[arg(long, default_value_t = 0)]
    pub cpu_load: usize,

    /// factlog stores only: `Retention::max_bytes` (segments beyond it are
    /// removed from the log's head); `factlog` then also turns segment
    /// recycling on (`Options::recycle_segments`), `factlog-zero-fill` not:
    /// compare `--engines factlog,factlog-zero-fill --workloads W3,W4`
    /// (W5/W6 read from the start, which retention removed).
    #[arg(long)]
    pub retention_bytes: Option<u64>,

    /// Seconds spent measuring the physical fsync rate.
    #[arg(long, default_value_t = 2.0)]
    pub fsync_secs: f64,

    /// MiB written for the physical sequential-write bandwidth.
    #[arg(long, default_value_t = 256)]
    pub seq_write_mib: u64,

    /// Skip the physical-limit measurements.
    #[arg(long)]
    pub skip_physical: bool,

    /// No progress on stderr. Otherwise progress bars when stderr is a
    /// terminal, and one line per finished workload and engine when it is not.
    #[arg(long)]
    pub quiet: bool,
}

impl Args {
    /// Checks value ranges; returns a message for the user on failure.
    pub fn validate(&self) -> Result<(), String> {
        if self.events == 0 {
            return Err("--events must be at least 1".into());
        }
        if self.aggregates == Some(0) {
            return Err("--aggregates must be at least 1".into());
        }
        if self.w7_events < 2 || self.w7_loads == 0 {
            return Err("--w7-events must be at least 2 and --w7-loads at least 1".into());
        }
        if self.batch == 0 {
            return Err("--batch must be at least 1".into());
        }
        if self.writers.contains(&0) {
            return Err("--writers counts must be at least 1".into());
        }
        if self.w2m_aggregates < 2 || self.w2m_aggregates as u64 > crate::workloads::AGGS_PER_WRITER {
            return Err(format!(
                "--w2m-aggregates must be 2 to {} (the aggregates each writer owns)",
                crate::workloads::AGGS_PER_WRITER
            ));
        }
        if !(self.duration_secs > 0.0 && self.duration_secs.is_finite()) {
            return Err("--duration-secs must be a positive number".into());
        }
        if !(self.fsync_secs > 0.0 && self.fsync_secs.is_finite()) {
            return Err("--fsync-secs must be a positive number".into());
        }
        if self.w8_rate == 0 || self.w8_subscribers.is_empty() || self.w8_subscribers.contains(&0) {
            return Err("--w8-rate and every --w8-subscribers count must be at least 1".into());
        }
        if !(self.w8_secs > 0.0 && self.w8_secs.is_finite()) {
            return Err("--w8-secs must be a positive number".into());
        }
        if self.engines.is_empty() || self.workloads.is_empty() {
            return Err("--engines and --workloads need at least one entry".into());
        }
        Ok(())
    }

    /// The workload parameters these arguments describe.
    pub fn params(&self) -> Params {
        let aggregates = self.aggregates.unwrap_or((self.events / 100).max(1)).min(self.events);
        Params {
            events: self.events,
            aggregates,
            payload_bytes: self.payload_bytes,
            writers: self.writers.clone(),
            w2m_aggregates: self.w2m_aggregates,
            batch: self.batch,
            durability: self.durability,
            duration: Duration::from_secs_f64(self.duration_secs),
            replays: self.replays.max(1),
            w7_events: self.w7_events,
            w7_loads: self.w7_loads,
            w2_subscribers: self.w2_subscribers,
            w8_rate: self.w8_rate,
            w8_duration: Duration::from_secs_f64(self.w8_secs),
            w8_subscribers: self.w8_subscribers.clone(),
            cpu_load: self.cpu_load,
            w6_upcasters: self.w6_upcasters,
            progress: Progress::detect(self.quiet),
        }
    }

    /// The selected engines, deduplicated, factlog first.
    pub fn engines(&self) -> Vec<EngineKind> {
        let mut e = self.engines.clone();
        e.sort();
        e.dedup();
        e
    }

    /// The selected workloads, deduplicated, in order.
    pub fn workloads(&self) -> Vec<Workload> {
        let mut w = self.workloads.clone();
        w.sort();
        w.dedup();
        w
    }
}
