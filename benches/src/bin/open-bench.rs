//! `open-bench`: what opening a store costs, and what its index keeps in
//! memory, after a clean close (issue 18). Two phases, run as separate
//! processes so that the open's memory is not mixed with the load's:
//!
//! - `open-bench load --dir D`: loads `--events` W4-like events (JSON-ish
//!   `--payload-bytes` payloads, `--aggregates` aggregates visited
//!   round-robin in appends of `--batch` events, 100 appends per
//!   `append_many`, buffered durability, then a sync; default store options,
//!   64 MiB segments) and closes the store cleanly;
//! - `open-bench open --dir D`: opens it (timed), then reports the index's
//!   heap bytes per event (`Stats::index_bytes`), the process's resident
//!   anonymous and file-backed memory (`RssAnon`, `RssFile`), and a W5-like
//!   replay of `--replays` random aggregates (p50 and p99 µs, after 10 %
//!   untimed warm-up). One JSON line on stdout.
//!
//! It uses only the public API, so the same file builds against an older
//! factlog for an A/B run (README, "Limits").

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use factlog::{Direction, Durability, ExpectedVersion, NewEvent, Options, Store};
use factlog_benches::engines::factlog::to_new_event;
use factlog_benches::event::{aggregate_id, EventGen};
use rand::Rng;

/// Appends (each of one aggregate) per `append_many` call of the load.
const APPENDS_PER_CALL: usize = 100;

#[derive(Parser, Debug)]
#[command(name = "open-bench", about = "Open time and resident index memory after a clean close")]
struct Args {
    #[command(subcommand)]
    phase: Phase,
    /// The store's directory.
    #[arg(long, global = true, default_value = "target/open-bench")]
    dir: PathBuf,
}

#[derive(Subcommand, Debug)]
enum Phase {
    /// Loads the store and closes it.
    Load {
        /// Events to load.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Aggregates, visited round-robin.
        #[arg(long, default_value_t = 100_000)]
        aggregates: u64,
        /// Events per append.
        #[arg(long, default_value_t = 10)]
        batch: u64,
        /// Payload bytes per event.
        #[arg(long, default_value_t = 200)]
        payload_bytes: u64,
    },
    /// Opens the store, measures, replays.
    Open {
        /// Aggregates the load used.
        #[arg(long, default_value_t = 100_000)]
        aggregates: u64,
        /// Aggregate replays timed.
        #[arg(long, default_value_t = 5_000)]
        replays: u64,
    },
}

fn options() -> Options {
    Options::default().durability(Durability::Buffered { flush_interval_ms: 100 })
}

fn load(dir: &PathBuf, events: u64, aggregates: u64, batch: u64, payload_bytes: u64) -> Result<()> {
    let store = Store::open(dir, options()).context("opening the store")?;
    let ids: Vec<String> = (0..aggregates).map(aggregate_id).collect();
    let per_call = APPENDS_PER_CALL.min(ids.len());
    let mut gen = EventGen::new(payload_bytes as usize, 18);
    let started = Instant::now();
    let (mut done, mut next) = (0u64, 0usize);
    while done < events {
        let mut parts = Vec::with_capacity(per_call);
        while parts.len() < per_call && done < events {
            let n = batch.min(events - done);
            let evs: Vec<NewEvent> = gen.events(n as usize).iter().map(to_new_event).collect();
            parts.push((ids[next % ids.len()].as_str(), ExpectedVersion::Any, evs));
            next += 1;
            done += n;
        }
        store.append_many(parts).context("appending")?;
    }
    store.sync().context("syncing the load")?;
    let secs = started.elapsed().as_secs_f64();
    let index_bytes = store.stats().index_bytes;
    drop(store);
    println!(
        "{{\"phase\":\"load\",\"events\":{events},\"aggregates\":{aggregates},\"events_per_sec\":{:.0},\"index_bytes_per_event\":{:.3}}}",
        events as f64 / secs,
        index_bytes as f64 / events.max(1) as f64
    );
    Ok(())
}

fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn open(dir: &PathBuf, aggregates: u64, replays: u64) -> Result<()> {
    let anon_before = status_kb("RssAnon:");
    let started = Instant::now();
    let store = Store::open(dir, options()).context("opening the store")?;
    let open_ms = started.elapsed().as_secs_f64() * 1000.0;
    let stats = store.stats();
    let (anon, file) = (status_kb("RssAnon:"), status_kb("RssFile:"));
    let events = stats.events.max(1);
    let mut rng = rand::thread_rng();
    let warm = replays / 10;
    let mut micros = Vec::with_capacity(replays as usize);
    let mut read = 0u64;
    for i in 0..warm + replays {
        let id = aggregate_id(rng.gen_range(0..aggregates));
        let t = Instant::now();
        let reader = store.reader();
        for e in reader.read_aggregate(&id, 0, Direction::Forward) {
            e.context("reading")?;
            read += 1;
        }
        if i >= warm {
            micros.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    micros.sort_by(|a, b| a.total_cmp(b));
    let q = |f: f64| micros.get(((micros.len() as f64 - 1.0) * f) as usize).copied().unwrap_or(0.0);
    println!(
        "{{\"phase\":\"open\",\"events\":{events},\"open_ms\":{open_ms:.1},\"checkpoints_loaded\":{},\"checkpoints_rebuilt\":{},\"index_bytes_per_event\":{:.3},\"rss_anon_mib_open\":{:.1},\"rss_anon_mib_before\":{:.1},\"rss_file_mib\":{:.1},\"w5_p50_us\":{:.1},\"w5_p99_us\":{:.1},\"w5_events_read\":{read}}}",
        store.recovery_report().checkpoints_loaded,
        store.recovery_report().checkpoints_rebuilt.len(),
        stats.index_bytes as f64 / events as f64,
        anon as f64 / 1024.0,
        anon_before as f64 / 1024.0,
        file as f64 / 1024.0,
        q(0.5),
        q(0.99)
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let r = match args.phase {
        Phase::Load { events, aggregates, batch, payload_bytes } => {
            load(&args.dir, events, aggregates, batch, payload_bytes)
        }
        Phase::Open { aggregates, replays } => open(&args.dir, aggregates, replays),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("open-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
