//! `scavenge-bench`: the scavenge's throughput in MB/s of input on a store
//! where half the events are deleted, next to the sequential write
//! bandwidth of the same disk measured in the same run (issue 16's goal: the
//! scavenge at least half as fast as sequential writes).
//!
//! Each run, in a new temporary directory:
//! 1. loads `--events` W4-like events (`--payload-bytes` JSON-ish payloads,
//!    `--aggregates` aggregates visited round-robin in appends of `--batch`
//!    events, 100 such appends per `append_many`, buffered durability, then
//!    a sync) with default store options (64 MiB segments);
//! 2. soft-deletes every other aggregate (so half the events), closes the
//!    store and opens it again, so that every sealed segment has its index
//!    checkpoint and the scavenge can take it;
//! 3. times [`factlog::Store::scavenge`] (its own `duration`): the input is
//!    `bytes_read`, the sealed segments it read; the newest (active) segment
//!    is not scavenged. The segments were just written, so they are read
//!    from the page cache, as they are when a scavenge follows the writes;
//! 4. writes a file of `bytes_read` bytes in 1 MiB writes and one
//!    `fdatasync`, timed together (how `factlog-bench` measures sequential
//!    write bandwidth), in the same directory, then removes everything.
//!
//! The figures are medians over `--runs`; the ratio is the median of each
//! run's ratio. MB are 10^6 bytes. Needs about twice the store's size free
//! on disk (≈ 0.9 GB at the defaults).

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use factlog::{DeleteMode, Durability, ExpectedVersion, NewEvent, Options, ScavengeReport, Store};
use factlog_benches::engines::factlog::to_new_event;
use factlog_benches::event::{aggregate_id, EventGen};
use factlog_benches::machine::MachineInfo;
use factlog_benches::progress::Progress;
use serde::Serialize;

/// The goal: scavenge input MB/s ÷ sequential write MB/s.
const GOAL_RATIO: f64 = 0.5;

/// Size of each write of the sequential-write measurement.
const WRITE_CHUNK_BYTES: usize = 1 << 20;

/// Appends (each of one aggregate) per `append_many` call of the load.
const APPENDS_PER_CALL: usize = 100;

/// Flush interval of the load's buffered durability (as W4's).
const FLUSH_INTERVAL_MS: u64 = 100;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "scavenge-bench",
    about = "Scavenge throughput (MB/s of input) on a store where half the events are deleted, \
             against the same disk's sequential write bandwidth, measured in the same run"
)]
struct Args {
    /// Events loaded per run.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    events: u64,
    /// Aggregates the events are spread over; every other one is deleted.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(2..))]
    aggregates: u64,
    /// Payload bytes per event (W4's default).
    #[arg(long, default_value_t = 246, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    payload_bytes: u64,
    /// Events per append, all of one aggregate (so each segment holds
    /// events of every aggregate).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    batch: u64,
    /// Runs; the figures are their medians.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    runs: u64,
    /// Directory for the temporary stores [default: the system's temp dir].
    #[arg(long, value_name = "PATH")]
    dir: Option<PathBuf>,
    /// Print the results as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// No progress on stderr.
    #[arg(long)]
    quiet: bool,
}

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
struct Run {
    /// Events loaded.
    events: u64,
    /// Events the deletes hid.
    events_deleted: u64,
    /// Events the scavenge removed (those of the sealed segments).
    events_removed: u64,
    /// Sealed segments read.
    segments_scanned: usize,
    /// Segments rewritten.
    segments_rewritten: usize,
    /// Bytes of segments read: the input.
    bytes_read: u64,
    /// Bytes of the rewritten segments before.
    bytes_before: u64,
    /// Bytes of their replacements.
    bytes_after: u64,
    /// `bytes_before - bytes_after`.
    bytes_reclaimed: u64,
    /// Wall time of the scavenge, seconds.
    scavenge_secs: f64,
    /// `bytes_read` per second, MB/s (10^6).
    scavenge_mb_per_sec: f64,
    /// Bytes written by the sequential-write measurement (= `bytes_read`).
    seq_write_bytes: u64,
    /// Sequential write bandwidth, 1 MiB writes and one fdatasync, MB/s.
    seq_write_mb_per_sec: f64,
    /// `scavenge_mb_per_sec / seq_write_mb_per_sec`.
    ratio: f64,
    /// Wall time of the load (not part of any figure), seconds.
    load_secs: f64,
}

/// The medians over the runs.
#[derive(Debug, Clone, Serialize)]
struct Summary {
    /// Scavenge input MB/s.
    scavenge_mb_per_sec: f64,
    /// Sequential write MB/s.
    seq_write_mb_per_sec: f64,
    /// The median of the runs' ratios (not the ratio of the medians).
    ratio: f64,
    /// Bytes the scavenge read.
    bytes_read: u64,
    /// Bytes it reclaimed.
    bytes_reclaimed: u64,
    /// Events it removed.
    events_removed: u64,
    /// The goal, [`GOAL_RATIO`].
    goal_ratio: f64,
    /// Whether `ratio` reaches it.
    goal_met: bool,
}

/// The JSON output.
#[derive(Debug, Serialize)]
struct Output<'a> {
    /// The host.
    machine: &'a MachineInfo,
    /// The command line's parameters.
    params: Params,
    /// Every run.
    runs: &'a [Run],
    /// Their medians.
    median: &'a Summary,
}

/// The parameters, for the JSON output.
#[derive(Debug, Serialize)]
struct Params {
    /// `--events`.
    events: u64,
    /// `--aggregates`.
    aggregates: u64,
    /// `--payload-bytes`.
    payload_bytes: u64,
    /// `--batch`.
    batch: u64,
    /// `--runs`.
    runs: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scavenge-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<()> {
    let root = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let machine = MachineInfo::collect(&root);
    let progress = Progress::detect(args.quiet);
    let mut runs = Vec::new();
    for i in 0..args.runs {
        let tmp =
            tempfile::tempdir_in(&root).with_context(|| format!("a temporary directory in {}", root.display()))?;
        let run = one_run(args, tmp.path(), &progress).with_context(|| format!("run {}", i + 1))?;
        progress.line(&format!(
            "run {}: scavenge {:.1} MB/s, seq write {:.1} MB/s, ratio {:.2}",
            i + 1,
            run.scavenge_mb_per_sec,
            run.seq_write_mb_per_sec,
            run.ratio
        ));
        runs.push(run);
    }
    let summary = summarize(&runs)?;
    if args.json {
        let params = Params {
            events: args.events,
            aggregates: args.aggregates,
            payload_bytes: args.payload_bytes,
            batch: args.batch,
            runs: args.runs,
        };
        let out = Output { machine: &machine, params, runs: &runs, median: &summary };
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", render_text(args, &machine, &runs, &summary));
    }
    Ok(())
}

/// Load, delete half, reopen, scavenge (timed), then the sequential write.
fn one_run(args: &Args, dir: &Path, progress: &Progress) -> Result<Run> {
    let store_dir = dir.join("store");
    let options = Options::default().durability(Durability::Buffered { flush_interval_ms: FLUSH_INTERVAL_MS });
    let store = Store::open(&store_dir, options.clone()).context("opening the store")?;
    let load_secs = load(&store, args, progress)?;
    progress.line(&format!("loaded {} events in {load_secs:.1} s", args.events));
    let started = Instant::now();
    let events_deleted = delete_half(&store, args, progress)?;
    progress.line(&format!("deleted half the aggregates in {:.1} s", started.elapsed().as_secs_f64()));
    let started = Instant::now();
    store.close().context("closing the loaded store")?;
    let store = Store::open(&store_dir, options).context("reopening the store")?;
    progress.line(&format!("closed and reopened the store in {:.1} s", started.elapsed().as_secs_f64()));
    let pb = progress.counter("scavenge", 0, "bytes");
    let report = store
        .scavenge(&mut |read, total| {
            pb.set_length(total);
            pb.set_position(read);
        })
        .context("scavenge")?;
    pb.finish_and_clear();
    store.close().context("closing the scavenged store")?;
    check(&report, events_deleted)?;

    let seq_write_mb_per_sec = seq_write(&dir.join("seq-write.dat"), report.bytes_read, progress)?;
    let scavenge_secs = report.duration.as_secs_f64();
    let scavenge_mb_per_sec = mb_per_sec(report.bytes_read, report.duration);
    Ok(Run {
        events: args.events,
        events_deleted,
        events_removed: report.events_removed,
        segments_scanned: report.segments_scanned,
        segments_rewritten: report.segments_rewritten,
        bytes_read: report.bytes_read,
        bytes_before: report.bytes_before,
        bytes_after: report.bytes_after,
        bytes_reclaimed: report.bytes_reclaimed(),
        scavenge_secs,
        scavenge_mb_per_sec,
        seq_write_bytes: report.bytes_read,
        seq_write_mb_per_sec,
        ratio: scavenge_mb_per_sec / seq_write_mb_per_sec,
        load_secs,
    })
}

/// Appends `args.events` events, aggregates round-robin, `args.batch` per
/// aggregate and append, [`APPENDS_PER_CALL`] such appends (of different
/// aggregates) per `append_many`, then syncs. Returns the wall time.
fn load(store: &Store, args: &Args, progress: &Progress) -> Result<f64> {
    let ids: Vec<String> = (0..args.aggregates).map(aggregate_id).collect();
    let per_call = APPENDS_PER_CALL.min(ids.len());
    let mut gen = EventGen::new(args.payload_bytes as usize, 16);
    let pb = progress.counter("load", args.events, "events");
    let started = Instant::now();
    let mut done = 0u64;
    let mut next = 0usize;
    while done < args.events {
        let mut parts = Vec::with_capacity(per_call);
        while parts.len() < per_call && done < args.events {
            let n = args.batch.min(args.events - done);
            let events: Vec<NewEvent> = gen.events(n as usize).iter().map(to_new_event).collect();
            parts.push((ids[next % ids.len()].as_str(), ExpectedVersion::Any, events));
            next += 1;
            done += n;
        }
        store.append_many(parts).context("appending")?;
        pb.set_position(done);
    }
    store.sync().context("syncing the load")?;
    pb.finish_and_clear();
    Ok(started.elapsed().as_secs_f64())
}

/// Soft-deletes the even aggregates; returns how many events that hid.
fn delete_half(store: &Store, args: &Args, progress: &Progress) -> Result<u64> {
    let pb = progress.counter("delete half the aggregates", args.aggregates.div_ceil(2), "aggregates");
    let mut hidden = 0u64;
    for a in (0..args.aggregates).step_by(2) {
        let id = aggregate_id(a);
        // Aggregates with no event (fewer events than aggregates) are skipped.
        let Some(version) = store.aggregate_version(&id) else { continue };
        store.delete_aggregate(&id, DeleteMode::Soft).with_context(|| format!("deleting {id}"))?;
        hidden += version + 1;
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(hidden)
}

/// The run measured what it claims: something was read and removed, and no
/// more than was deleted.
fn check(report: &ScavengeReport, events_deleted: u64) -> Result<()> {
    if report.bytes_read == 0 || report.events_removed == 0 {
        bail!("the scavenge read or removed nothing ({report:?}): too few events for one sealed segment?");
    }
    if report.events_removed > events_deleted {
        bail!("the scavenge removed {} events, but only {events_deleted} were deleted", report.events_removed);
    }
    Ok(())
}

/// Writes `bytes` to a new file in 1 MiB writes plus one fdatasync, timed
/// together; removes the file. Returns MB/s (10^6).
fn seq_write(path: &Path, bytes: u64, progress: &Progress) -> Result<f64> {
    let buf: Vec<u8> = (0..WRITE_CHUNK_BYTES).map(|i| (i * 31 % 251) as u8).collect();
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    let pb = progress.counter("sequential write", bytes, "bytes");
    let started = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(WRITE_CHUNK_BYTES as u64) as usize;
        file.write_all(&buf[..n]).with_context(|| format!("writing {}", path.display()))?;
        left -= n as u64;
        pb.set_position(bytes - left);
    }
    file.sync_data().context("fdatasync")?;
    let elapsed = started.elapsed();
    pb.finish_and_clear();
    drop(file);
    std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
    Ok(mb_per_sec(bytes, elapsed))
}

/// MB/s (10^6 bytes).
fn mb_per_sec(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Medians over the runs.
fn summarize(runs: &[Run]) -> Result<Summary> {
    if runs.is_empty() {
        bail!("no run");
    }
    let med = |f: fn(&Run) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
    let ratio = med(|r| r.ratio);
    Ok(Summary {
        scavenge_mb_per_sec: med(|r| r.scavenge_mb_per_sec),
        seq_write_mb_per_sec: med(|r| r.seq_write_mb_per_sec),
        ratio,
        bytes_read: med(|r| r.bytes_read as f64) as u64,
        bytes_reclaimed: med(|r| r.bytes_reclaimed as f64) as u64,
        events_removed: med(|r| r.events_removed as f64) as u64,
        goal_ratio: GOAL_RATIO,
        goal_met: ratio >= GOAL_RATIO,
    })
}

/// The text report: parameters, one line per run, the medians, the verdict.
fn render_text(args: &Args, machine: &MachineInfo, runs: &[Run], s: &Summary) -> String {
    let mut out = format!(
        "scavenge-bench: {} events of {} payload bytes over {} aggregates ({} per append), every other \
         aggregate soft-deleted; {} run(s)\nmachine: {}\n\n",
        args.events,
        args.payload_bytes,
        args.aggregates,
        args.batch,
        args.runs,
        machine.one_line()
    );
    out.push_str("run  events removed  input MB  reclaimed MB  scavenge s  scavenge MB/s  seq write MB/s  ratio\n");
    for (i, r) in runs.iter().enumerate() {
        out.push_str(&format!(
            "{:>3}  {:>14}  {:>8.1}  {:>12.1}  {:>10.3}  {:>13.1}  {:>14.1}  {:>5.2}\n",
            i + 1,
            r.events_removed,
            r.bytes_read as f64 / 1e6,
            r.bytes_reclaimed as f64 / 1e6,
            r.scavenge_secs,
            r.scavenge_mb_per_sec,
            r.seq_write_mb_per_sec,
            r.ratio
        ));
    }
    out.push_str(&format!(
        "\nmedian: scavenge {:.1} MB/s of input, sequential write {:.1} MB/s, ratio {:.2} (goal ≥ {GOAL_RATIO}: {}); \
         {:.1} MB reclaimed of {:.1} MB read\n",
        s.scavenge_mb_per_sec,
        s.seq_write_mb_per_sec,
        s.ratio,
        if s.goal_met { "met" } else { "missed" },
        s.bytes_reclaimed as f64 / 1e6,
        s.bytes_read as f64 / 1e6,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }

    #[test]
    fn a_tiny_run_measures_something() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let args = Args::parse_from(["scavenge-bench", "--events", "20000", "--aggregates", "100", "--quiet"]);
        let run = one_run(&args, tmp.path(), &Progress::detect(true)).expect("run");
        assert!(run.events_removed > 0 && run.events_removed <= run.events_deleted, "{run:?}");
        assert!(run.bytes_reclaimed > 0 && run.scavenge_mb_per_sec > 0.0 && run.seq_write_mb_per_sec > 0.0);
        assert!(std::fs::read_dir(tmp.path()).expect("list").all(|e| e.expect("entry").file_name() == "store"));
    }
}
