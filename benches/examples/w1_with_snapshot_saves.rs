//! W1 (durable single-event appends, one writer) while another thread saves
//! snapshots of a 1 MiB state back to back, with `snapshot_every` set so the
//! writer consults the snapshot store on every append. Before the snapshot
//! store's lock split, each append could wait for a whole save (write,
//! fdatasync, compaction). Prints appends/s and latency percentiles with and
//! without the concurrent saves, measured in the same run.
//!
//! `cargo run --release -p factlog-benches --example w1_with_snapshot_saves [SECONDS]`

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use factlog::{EventId, ExpectedVersion, NewEvent, Options, SchemaVersion, Store};

fn run(seconds: f64, with_saves: bool) -> Result<(f64, Vec<Duration>, u64), factlog::Error> {
    let dir = tempfile::tempdir_in(".").map_err(|e| factlog::Error::InvalidInput(e.to_string()))?;
    let store = Store::open(dir.path(), Options::default().snapshot_every(1_000_000))?;
    store.append("snap", ExpectedVersion::NoStream, vec![NewEvent::new(EventId::new_v7(), "Opened", "{}")])?;
    let stop = Arc::new(AtomicBool::new(false));
    let saver = with_saves.then(|| {
        let (store, stop) = (store.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let state: Vec<u8> = (0..1 << 20).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
            let mut saves = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if store.save_snapshot("snap", 0, SchemaVersion(1), &state).is_ok() {
                    saves += 1;
                }
            }
            saves
        })
    });
    let mut latencies = Vec::new();
    let started = Instant::now();
    let mut version = None;
    while started.elapsed().as_secs_f64() < seconds {
        let expected = version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let ev = NewEvent::new(EventId::new_v7(), "FundsDeposited", r#"{"amount":100}"#);
        let t = Instant::now();
        let r = store.append("acct", expected, vec![ev])?;
        latencies.push(t.elapsed());
        version = Some(r.last_version);
    }
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let saves = saver.map_or(0, |s| s.join().unwrap_or(0));
    latencies.sort();
    Ok((latencies.len() as f64 / elapsed, latencies, saves))
}

fn pct(l: &[Duration], p: f64) -> f64 {
    l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1))).map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

fn main() -> Result<(), factlog::Error> {
    let seconds: f64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(5.0);
    for with_saves in [false, true, false, true] {
        let (rate, l, saves) = run(seconds, with_saves)?;
        println!(
            "saves concurrently: {with_saves:5}  appends/s {rate:8.0}  p50 {:7.0} µs  p99 {:7.0} µs  max {:8.0} µs  ({saves} saves of 1 MiB)",
            pct(&l, 0.5),
            pct(&l, 0.99),
            pct(&l, 1.0)
        );
    }
    Ok(())
}
