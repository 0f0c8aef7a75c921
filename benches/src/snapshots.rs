//! W7: loading one long-lived aggregate (an account with `--w7-events`
//! postings, 100,000 by default) with and without a snapshot.
//!
//! Every engine gets the same aggregate, loaded with buffered durability and
//! synced. A load folds the aggregate into an [`Account`] (count, total
//! bytes, a checksum of one payload byte per event): without a snapshot by
//! replaying every event; with one (factlog only: snapshots are factlog's
//! feature) through `Store::load`, which returns the newest snapshot and the
//! events after it, then parsing the snapshot's JSON state and folding the
//! tail. The snapshot is taken [`TAIL_EVENTS`] events before the end, as an
//! application snapshotting every N events would leave it, and its state is
//! realistic JSON: the counters plus the account's last 20 postings. Both
//! paths must give the same counters, so the numbers cannot come from a
//! load that skipped work.
//!
//! Also measured for factlog: snapshot save and load throughput (saves of
//! that state, buffered store: no fsync per save), the zstd compression
//! ratio on it, and what a trained dictionary gains on small, alike states
//! ([`SMALL_ACCOUNTS`] accounts of ~200-byte JSON, saved without and then
//! with a dictionary trained on other accounts' states; ratios of JSON bytes
//! to payload bytes, and to bytes on disk with the ~90-byte frame).

use crate::engines::factlog::FactlogEngine;
use crate::engines::{self, BenchEngine, Durability, EngineKind};
use crate::event::EventGen;
use crate::latency::Samples;
use crate::machine;
use crate::workloads::{logical_event_bytes, Params, Row, Workload};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

/// Events after the snapshot that a snapshot load still replays.
pub const TAIL_EVENTS: u64 = 100;
/// The aggregate W7 loads.
pub const ACCOUNT: &str = "account-000001";
/// Postings kept in the snapshot state.
const RECENT: usize = 20;
/// Snapshot saves (and loads) timed for the throughput figures.
const SNAPSHOT_OPS: u64 = 2_000;
/// Accounts whose small states measure the dictionary's gain.
pub const SMALL_ACCOUNTS: u64 = 1_000;
/// Size bound of the trained dictionary, bytes.
const DICT_BYTES: usize = 16 * 1024;
/// Events per append while building the aggregate.
const LOAD_CHUNK: usize = 1_000;

/// The folded state: what both load paths must agree on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Account {
    /// Events folded.
    pub count: u64,
    /// Payload bytes folded.
    pub bytes: u64,
    /// Sum of the first payload byte of every event.
    pub checksum: u64,
}

impl Account {
    /// Folds one event's payload.
    pub fn apply(&mut self, data: &[u8]) {
        self.count += 1;
        self.bytes += data.len() as u64;
        self.checksum = self.checksum.wrapping_add(u64::from(data.first().copied().unwrap_or(0)));
    }

    /// The JSON snapshot state: the counters and the last postings.
    pub fn state_json(self, version: u64, recent: &[Vec<u8>]) -> Result<Vec<u8>> {
        let state = AccountState {
            account: ACCOUNT.into(),
            version,
            postings: self.count,
            posted_bytes: self.bytes,
            checksum: self.checksum,
            currency: "EUR".into(),
            status: "open".into(),
            recent_postings: recent.iter().map(|p| String::from_utf8_lossy(p)).collect(),
        };
        serde_json::to_vec(&state).context("W7 state")
    }

    /// Parses [`Account::state_json`] output back.
    pub fn from_state_json(bytes: &[u8]) -> Result<Account> {
        let state: AccountState<'_> = serde_json::from_slice(bytes).context("W7 state")?;
        Ok(Account { count: state.postings, bytes: state.posted_bytes, checksum: state.checksum })
    }
}

/// The snapshot state of the W7 account, as an application would store it.
#[derive(Serialize, Deserialize)]
struct AccountState<'a> {
    #[serde(borrow)]
    account: Cow<'a, str>,
    version: u64,
    postings: u64,
    posted_bytes: u64,
    checksum: u64,
    #[serde(borrow)]
    currency: Cow<'a, str>,
    #[serde(borrow)]
    status: Cow<'a, str>,
    #[serde(borrow)]
    recent_postings: Vec<Cow<'a, str>>,
}

/// Runs W7 on `kind` in `dir`, appending its rows.
pub fn run(kind: EngineKind, dir: &Path, params: &Params, rows: &mut Vec<Row>) -> Result<()> {
    if kind == EngineKind::Factlog {
        let engine = FactlogEngine::open(dir, Durability::Buffered)?;
        let want = build(&engine, params)?;
        rows.push(full_loads(&engine, params, want)?);
        rows.push(snapshot_loads(&engine, params, want)?);
        Box::new(engine).close()
    } else {
        let engine = engines::open(kind, dir, Durability::Buffered)?;
        let want = build(engine.as_ref(), params)?;
        rows.push(full_loads(engine.as_ref(), params, want)?);
        engine.close()
    }
}

/// Appends the account's events (exact expected versions) and syncs;
/// returns the fold of all of them.
fn build(engine: &dyn BenchEngine, params: &Params) -> Result<Account> {
    let label = format!("{} W7 build", engine.kind());
    let mut session = engine.session()?;
    let mut gen = EventGen::new(params.payload_bytes, 7);
    let pb = params.progress.counter(&label, params.w7_events, "events");
    let mut want = Account::default();
    let mut last: Option<u64> = None;
    let mut written = 0u64;
    while written < params.w7_events {
        let n = (params.w7_events - written).min(LOAD_CHUNK as u64) as usize;
        let events = gen.events(n);
        for e in &events {
            want.apply(&e.payload);
        }
        last = Some(session.append(ACCOUNT, last, &events)?);
        written += n as u64;
        pb.set_position(written);
    }
    engine.sync()?;
    pb.finish_and_clear();
    Ok(want)
}

/// Times loads that replay every event.
fn full_loads(engine: &dyn BenchEngine, params: &Params, want: Account) -> Result<Row> {
    let label = format!("{} W7 load, no snapshot", engine.kind());
    let start_rss = machine::reset_peak_rss();
    let mut session = engine.session()?;
    let loads = params.w7_loads.max(1);
    let pb = params.progress.counter(&label, loads + 1, "loads");
    let mut lat = Samples::with_capacity(loads as usize);
    let mut timed = Duration::ZERO;
    for i in 0..=loads {
        let t = Instant::now();
        let mut acc = Account::default();
        session.replay(ACCOUNT, &mut |d: &[u8]| acc.apply(d))?;
        let took = t.elapsed();
        if acc != want {
            bail!("{label}: folded {acc:?}, expected {want:?}");
        }
        if i > 0 {
            // The first load is a warm-up.
            lat.record(took);
            timed += took;
        }
        pb.set_position(i + 1);
    }
    pb.finish_and_clear();
    let mut row = Row::new(Workload::W7, engine.kind(), 1, 1, Durability::Buffered);
    row.events = loads * params.w7_events;
    row.secs = timed.as_secs_f64();
    row.logical_bytes = row.events * logical_event_bytes(params.payload_bytes);
    row.latency = Some(lat.summarize());
    row.extra.insert("snapshot".into(), Value::Bool(false));
    row.set_u64("aggregate_events", params.w7_events);
    row.record_peak_rss(start_rss);
    Ok(row)
}

/// A small JSON account state: alike across accounts, not identical.
fn small_state(n: u64) -> Vec<u8> {
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    let kind = ["FundsDeposited", "FundsWithdrawn", "FeeCharged"][next(3) as usize];
    format!(
        r#"{{"account":"small-{n:06}","version":{},"balance":{},"currency":"EUR","status":"open","last_posting":{{"type":"{kind}","amount":{},"reference":"INV-{:08}"}}}}"#,
        next(100_000),
        next(100_000_000),
        next(100_000),
        next(100_000_000)
    )
    .into_bytes()
}

/// Saves [`SMALL_ACCOUNTS`] small states without, then with, a trained
/// dictionary, and records both on-disk ratios in `row`.
fn dictionary_gain(store: &factlog::Store, row: &mut Row) -> Result<()> {
    let ids: Vec<String> = (0..SMALL_ACCOUNTS).map(|n| format!("small-{n:06}")).collect();
    for (n, id) in ids.iter().enumerate() {
        let ev = factlog::NewEvent::new(*uuid::Uuid::from_u128(n as u128 + 1).as_bytes(), "AccountOpened", &b"{}"[..]);
        store.append(id, factlog::ExpectedVersion::Any, vec![ev]).context("factlog: append small account")?;
    }
    // (bytes on disk, frames included; payload bytes)
    let save_all = |store: &factlog::Store| -> Result<(u64, u64)> {
        let (mut stored, mut payload) = (0, 0);
        for (n, id) in ids.iter().enumerate() {
            let info = store
                .save_snapshot(id, 0, factlog::SchemaVersion(1), &small_state(n as u64))
                .context("factlog: save small")?;
            stored += info.stored_bytes;
            payload += info.payload_bytes;
        }
        Ok((stored, payload))
    };
    let raw: u64 = (0..SMALL_ACCOUNTS).map(|n| small_state(n).len() as u64).sum();
    let plain = save_all(store)?;
    // Trained on other accounts' states, as an application would from a sample.
    let samples: Vec<Vec<u8>> = (SMALL_ACCOUNTS..2 * SMALL_ACCOUNTS).map(small_state).collect();
    let samples: Vec<&[u8]> = samples.iter().map(|s| &s[..]).collect();
    let t = Instant::now();
    let info = store.train_snapshot_dictionary("small-", &samples, DICT_BYTES).context("factlog: train dictionary")?;
    let train_secs = t.elapsed().as_secs_f64();
    let with_dict = save_all(store)?;
    for (n, id) in ids.iter().enumerate().step_by(97) {
        let s = store.latest_snapshot(id).context("factlog: read small")?;
        if s.map(|s| s.data) != Some(small_state(n as u64)) {
            bail!("W7: small snapshot of {id} did not read back");
        }
    }
    row.set("small_snapshot_json_bytes", raw as f64 / SMALL_ACCOUNTS as f64);
    row.set("small_snapshot_ratio_plain", raw as f64 / plain.0.max(1) as f64);
    row.set("small_snapshot_ratio_dict", raw as f64 / with_dict.0.max(1) as f64);
    row.set("small_snapshot_payload_ratio_plain", raw as f64 / plain.1.max(1) as f64);
    row.set("small_snapshot_payload_ratio_dict", raw as f64 / with_dict.1.max(1) as f64);
    row.set_u64("dictionary_bytes", info.bytes as u64);
    row.set("dictionary_train_ms", train_secs * 1000.0);
    Ok(())
}

/// Saves a snapshot [`TAIL_EVENTS`] before the end, measures save/load
/// throughput and the compression ratio, then times snapshot + tail loads.
fn snapshot_loads(engine: &FactlogEngine, params: &Params, want: Account) -> Result<Row> {
    let store = engine.store();
    let label = "factlog W7 load, snapshot";
    let total = params.w7_events;
    let tail = TAIL_EVENTS.min(total.saturating_sub(1));
    let snap_version = total - 1 - tail;

    // The state at `snap_version`, built once, untimed.
    let reader = store.reader();
    let mut acc = Account::default();
    let mut recent: Vec<Vec<u8>> = Vec::new();
    for ev in reader.read_aggregate_until(ACCOUNT, 0, snap_version, factlog::Direction::Forward) {
        let ev = ev.context("factlog: read_aggregate_until")?;
        acc.apply(ev.data());
        if ev.version() + RECENT as u64 > snap_version {
            recent.push(ev.data().to_vec());
        }
    }
    drop(reader);
    let state = acc.state_json(snap_version, &recent)?;

    // Save throughput (the same version saved again: files roll and compact).
    let pb = params.progress.counter("factlog W7 snapshot saves", SNAPSHOT_OPS, "saves");
    let t = Instant::now();
    let mut stored = 0u64;
    for i in 0..SNAPSHOT_OPS {
        let info = store
            .save_snapshot(ACCOUNT, snap_version, factlog::SchemaVersion(1), &state)
            .context("factlog: save_snapshot")?;
        stored = info.stored_bytes;
        if i % 64 == 0 {
            pb.set_position(i);
        }
    }
    let save_secs = t.elapsed().as_secs_f64();
    pb.finish_and_clear();

    // Snapshot read throughput (decompress only).
    let pb = params.progress.counter("factlog W7 snapshot reads", SNAPSHOT_OPS, "reads");
    let t = Instant::now();
    for i in 0..SNAPSHOT_OPS {
        let s = store.latest_snapshot(ACCOUNT).context("factlog: latest_snapshot")?;
        let s = s.ok_or_else(|| anyhow!("W7: the snapshot just saved is missing"))?;
        black_box(&s.data);
        if i % 64 == 0 {
            pb.set_position(i);
        }
    }
    let read_secs = t.elapsed().as_secs_f64();
    pb.finish_and_clear();

    // Loads: snapshot + tail, folded (more of them: they are short).
    let loads = params.w7_loads.max(1) * 20;
    let start_rss = machine::reset_peak_rss();
    let pb = params.progress.counter(label, loads + 1, "loads");
    let mut lat = Samples::with_capacity(loads as usize);
    let mut timed = Duration::ZERO;
    for i in 0..=loads {
        let t = Instant::now();
        let loaded = store.load(ACCOUNT).context("factlog: load")?;
        let mut acc = match &loaded.snapshot {
            Some(s) => Account::from_state_json(&s.data)?,
            None => Account::default(),
        };
        for ev in loaded.events() {
            acc.apply(ev.context("factlog: load events")?.data());
        }
        let took = t.elapsed();
        if acc != want || loaded.snapshot.as_ref().map(|s| s.version) != Some(snap_version) {
            bail!("{label}: folded {acc:?}, expected {want:?}");
        }
        if i > 0 {
            lat.record(took);
            timed += took;
        }
        if i % 64 == 0 {
            pb.set_position(i + 1);
        }
    }
    pb.finish_and_clear();

    let mut row = Row::new(Workload::W7, EngineKind::Factlog, 1, 1, Durability::Buffered);
    row.events = loads * tail;
    row.secs = timed.as_secs_f64();
    row.logical_bytes = row.events * logical_event_bytes(params.payload_bytes);
    row.latency = Some(lat.summarize());
    row.extra.insert("snapshot".into(), Value::Bool(true));
    row.set_u64("aggregate_events", total);
    row.set_u64("tail_events", tail);
    row.set_u64("snapshot_raw_bytes", state.len() as u64);
    row.set_u64("snapshot_stored_bytes", stored);
    row.set("compression_ratio", state.len() as f64 / stored.max(1) as f64);
    row.set("snapshot_saves_per_sec", SNAPSHOT_OPS as f64 / save_secs.max(1e-9));
    row.set("snapshot_save_mb_per_sec", SNAPSHOT_OPS as f64 * state.len() as f64 / 1e6 / save_secs.max(1e-9));
    row.set("snapshot_reads_per_sec", SNAPSHOT_OPS as f64 / read_secs.max(1e-9));
    row.set("snapshot_read_mb_per_sec", SNAPSHOT_OPS as f64 * state.len() as f64 / 1e6 / read_secs.max(1e-9));
    row.record_peak_rss(start_rss);
    dictionary_gain(store, &mut row)?;
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_json_round_trips_the_counters() {
        let acc = Account { count: 7, bytes: 1400, checksum: 99 };
        let recent = vec![br#"{"seq":1,"note":"a \"quoted\" word"}"#.to_vec(), b"plain".to_vec()];
        let json = acc.state_json(6, &recent).expect("serializes");
        assert_eq!(Account::from_state_json(&json).expect("parses"), acc);
        let v: Value = serde_json::from_slice(&json).expect("JSON");
        assert_eq!(v["account"], ACCOUNT);
        assert_eq!(v["version"], 6);
        assert_eq!(v["recent_postings"][0], r#"{"seq":1,"note":"a \"quoted\" word"}"#);
        assert!(Account::from_state_json(b"{}").is_err());
    }
}
