//! `relay-bench`: the relay's throughput and latency next to the broker's own
//! ceiling, all measured in one run against one `nats-server` it starts on
//! loopback (file storage, temp directory, stopped at the end).
//!
//! 1. Ceiling: pre-made messages published with acknowledgements,
//!    pipelined (`--window` in flight, the oldest awaited first), into a
//!    fresh stream: (a) bare messages of the relay's size (body = data +
//!    headers), as `nats bench` would, and (b) the relay's own messages
//!    (same subjects and headers, `Nats-Msg-Id` and
//!    `Nats-Expected-Last-Sequence` included), built before the clock starts.
//! 2. Relay throughput: a store of `--events` events, shipped by
//!    `Relay::run_until_caught_up` into a fresh stream: events per second
//!    from the store to acknowledged.
//! 3. Latency: a relay running beside an application that appends one
//!    event at a time (`Sync`: acknowledged = on disk), a millisecond apart;
//!    a JetStream pull consumer receives them; the time from `append`
//!    returning to receipt, p50 and p99.
//!
//! `cargo run --release -p factlog-relay --bin relay-bench [-- --events N --payload BYTES --window W --latency-events N]`

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: panicking is how it fails

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::Config;
use async_nats::jetstream::Context;
use factlog::{Durability, EventId, ExpectedVersion, NewEvent, Options, Store};
use factlog_relay::test_server::NatsServer;
use factlog_relay::{envelope, Relay, RelayOptions, RelayState};
use futures_util::StreamExt;

struct Args {
    events: u64,
    payload: usize,
    window: usize,
    latency_events: u64,
    /// Only the relay's throughput (for `perf record`): no ceiling, no latency.
    relay_only: bool,
}

fn args() -> Args {
    let mut a = Args { events: 100_000, payload: 200, window: 4096, latency_events: 2000, relay_only: false };
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = argv.iter().position(|s| s == "--relay-only") {
        argv.remove(i);
        a.relay_only = true;
    }
    for pair in argv.chunks(2) {
        let value = pair.get(1).and_then(|v| v.parse::<u64>().ok());
        match (pair[0].as_str(), value) {
            ("--events", Some(v)) => a.events = v,
            ("--payload", Some(v)) => a.payload = v as usize,
            ("--window", Some(v)) => a.window = v as usize,
            ("--latency-events", Some(v)) => a.latency_events = v,
            _ => {
                eprintln!(
                    "usage: relay-bench [--events N] [--payload BYTES] [--window W] [--latency-events N] [--relay-only]"
                );
                std::process::exit(2);
            }
        }
    }
    a
}

/// The bench's directory, removed when dropped (a panic included).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn event(n: u64, payload: usize) -> NewEvent {
    let mut data = format!(r#"{{"n":{n},"pad":""#).into_bytes();
    data.resize(payload.saturating_sub(2).max(data.len()), b'x');
    data.extend_from_slice(b"\"}");
    NewEvent::new(EventId::new_v7(), "FundsDeposited", data)
        .with_causation_id(EventId::new_v7())
        .with_correlation_id(EventId::new_v7())
}

fn aggregate(n: u64) -> String {
    format!("account-{}", n % 64)
}

/// A store with `events` events, 100 per append.
fn fill(dir: &std::path::Path, events: u64, payload: usize) -> Store {
    let store = Store::open(dir, Options::default()).unwrap();
    for chunk in (0..events).step_by(100) {
        let batch: Vec<_> = (chunk..(chunk + 100).min(events)).map(|n| event(n, payload)).collect();
        store.append(&aggregate(chunk / 100), ExpectedVersion::Any, batch).unwrap();
    }
    store
}

fn stream_config(name: &str) -> Config {
    Config { name: name.into(), subjects: vec![format!("{name}.>")], ..Default::default() }
}

/// CPU time this process's threads have used so far (the broker is another
/// process): the sum of `/proc/self/task/*/schedstat`'s first field, in
/// nanoseconds. Unlike a rate, a machine shared with other work barely moves it.
fn cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0 };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Microseconds of this process's CPU per event since `since` (a `cpu_ns()`).
fn cpu_us_per_event(since: u64, events: u64) -> f64 {
    cpu_ns().saturating_sub(since) as f64 / 1e3 / events.max(1) as f64
}

/// Publishes `messages` with acknowledgements, `window` in flight; events per
/// second, and this process's CPU microseconds per event.
async fn publish_pipelined(js: &Context, messages: Vec<(String, PublishMessage)>, window: usize) -> (f64, f64) {
    let n = messages.len();
    let cpu = cpu_ns();
    let start = Instant::now();
    let mut in_flight = VecDeque::with_capacity(window);
    for (subject, message) in messages {
        if in_flight.len() >= window {
            let ack: async_nats::jetstream::context::PublishAckFuture = in_flight.pop_front().unwrap();
            ack.await.unwrap();
        }
        in_flight.push_back(js.send_publish(subject, message).await.unwrap());
    }
    for ack in in_flight {
        ack.await.unwrap();
    }
    (n as f64 / start.elapsed().as_secs_f64(), cpu_us_per_event(cpu, n as u64))
}

/// The relay's messages for the store's events, as it would build them.
fn relay_messages(store: &Store, prefix: &str) -> (Vec<(String, PublishMessage)>, usize) {
    let reader = store.reader();
    let mut out = Vec::new();
    let mut header_bytes = 0;
    for (i, e) in reader.read_all(0).enumerate() {
        let e = e.unwrap();
        let headers = envelope::headers(&e, i as u64);
        if i == 0 {
            header_bytes = headers
                .iter()
                .map(|(k, v)| v.iter().map(|v| k.to_string().len() + v.as_str().len() + 4).sum::<usize>())
                .sum::<usize>()
                + 12;
        }
        let m = PublishMessage::build().headers(headers).payload(factlog::Bytes::copy_from_slice(e.data()));
        out.push((envelope::subject(prefix, e.aggregate_id()), m));
    }
    (out, header_bytes)
}

/// Ships the whole store into a fresh `stream`: events per second, this
/// process's CPU microseconds per event, and how many events.
fn relay_throughput(store: &Store, url: &str, stream: &str, window: usize) -> (f64, f64, u64) {
    let options = RelayOptions::new(url, stream).max_in_flight(window);
    let mut relay = Relay::new(store, options).unwrap();
    let cpu = cpu_ns();
    let start = Instant::now();
    let run = relay.run_until_caught_up().unwrap();
    let rate = run.published as f64 / start.elapsed().as_secs_f64();
    (rate, cpu_us_per_event(cpu, run.published), run.published)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn main() {
    let a = args();
    NatsServer::binary().unwrap_or_else(|why| panic!("relay-bench needs nats-server: {why}"));
    let scratch = Scratch(std::env::temp_dir().join(format!("factlog-relay-bench-{}", std::process::id())));
    let server = NatsServer::start(&scratch.0.join("nats")).unwrap();
    let version = std::process::Command::new("nats-server").arg("--version").output().unwrap();
    println!(
        "relay-bench: {} events of {} data bytes, window {}, {} ({} CPUs), file storage",
        a.events,
        a.payload,
        a.window,
        String::from_utf8_lossy(&version.stdout).trim(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let client = rt.block_on(async_nats::connect(server.url())).unwrap();
    let _runtime = rt.enter(); // the context spawns its acknowledgement task
    let js = async_nats::jetstream::ContextBuilder::new()
        .max_ack_inflight(a.window + 1)
        .backpressure_on_inflight(true)
        .build(client.clone());

    let store = fill(&scratch.0.join("store"), a.events, a.payload);
    if a.relay_only {
        eprintln!("relay-bench: store filled, shipping");
        let (rate, cpu, _) = relay_throughput(&store, &server.url(), "RELAY", a.window);
        println!("relay: store -> acknowledged in JetStream: {rate:.0} events/s, {cpu:.2} us CPU/event");
        return;
    }

    // 1. The broker's ceiling, (a) bare and (b) the relay's messages.
    let building = Instant::now();
    let (messages, header_bytes) = relay_messages(&store, "CEILB");
    let build_rate = a.events as f64 / building.elapsed().as_secs_f64();
    let body = vec![b'x'; a.payload + header_bytes];
    let bare: Vec<_> = (0..a.events)
        .map(|n| (format!("CEILA.{}", aggregate(n)), PublishMessage::build().payload(body.clone().into())))
        .collect();
    let ((ceiling_bare, cpu_bare), (ceiling_same, cpu_same)) = rt.block_on(async {
        js.create_stream(stream_config("CEILA")).await.unwrap();
        js.create_stream(stream_config("CEILB")).await.unwrap();
        let bare = publish_pipelined(&js, bare, a.window).await;
        let same = publish_pipelined(&js, messages, a.window).await;
        (bare, same)
    });

    // 2. The relay, store to acknowledged.
    let (relay_rate, relay_cpu, published) = relay_throughput(&store, &server.url(), "RELAY", a.window);
    assert_eq!(published, a.events);
    store.close().unwrap();

    // 3. Latency: append acknowledged -> JetStream consumer's receipt.
    let latencies = latency(&rt, &js, &server.url(), &scratch.0.join("live"), &a);

    println!();
    println!("| what | figure | this process's CPU per event |");
    println!("|---|---|---|");
    println!(
        "| broker ceiling (a): bare {}-byte messages, acked, pipelined | {:.0} msg/s | {:.2} µs |",
        a.payload + header_bytes,
        ceiling_bare,
        cpu_bare
    );
    println!(
        "| broker ceiling (b): the relay's own messages, pre-made, acked, pipelined | {:.0} msg/s | {:.2} µs |",
        ceiling_same, cpu_same
    );
    println!("| building the relay's messages from the store alone (one thread) | {build_rate:.0} msg/s | |");
    println!(
        "| relay: store -> acknowledged in JetStream | **{:.0} events/s** ({:.2}x of (a), {:.2}x of (b)) | {:.2} µs |",
        relay_rate,
        relay_rate / ceiling_bare,
        relay_rate / ceiling_same,
        relay_cpu
    );
    println!(
        "| latency, append acked -> JetStream consumer receipt ({} events, 1 ms apart) | p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms | |",
        latencies.len(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
}

/// Sorted latencies from `append` returning to the consumer's receipt.
fn latency(rt: &tokio::runtime::Runtime, js: &Context, url: &str, dir: &std::path::Path, a: &Args) -> Vec<Duration> {
    let store = Store::open(dir, Options::default().durability(Durability::Sync)).unwrap();
    let mut relay = Relay::new(&store, RelayOptions::new(url, "LIVE")).unwrap();
    let (stop, status) = (relay.stop_handle(), relay.status_handle());
    let running = std::thread::spawn(move || relay.run());
    while status.get().state != RelayState::CaughtUp {
        std::thread::sleep(Duration::from_millis(5));
    }
    let n = a.latency_events as usize;
    let acked: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; n]));
    let received = rt.spawn({
        let js = js.clone();
        async move {
            let stream = js.get_stream("LIVE").await.unwrap();
            let config =
                pull::Config { deliver_policy: DeliverPolicy::All, ack_policy: AckPolicy::None, ..Default::default() };
            let consumer = stream.create_consumer(config).await.unwrap();
            let mut messages = consumer.messages().await.unwrap();
            let mut at = vec![None; n];
            for _ in 0..n {
                let m = messages.next().await.unwrap().unwrap();
                let now = Instant::now();
                let position = envelope::position(m.headers.as_ref().unwrap()).unwrap() as usize;
                at[position] = Some(now);
            }
            at
        }
    });
    std::thread::sleep(Duration::from_millis(200)); // the consumer's first pull is waiting
    for i in 0..n as u64 {
        store.append(&aggregate(i), ExpectedVersion::Any, vec![event(i, a.payload)]).unwrap();
        let now = Instant::now();
        acked.lock().unwrap()[i as usize] = Some(now);
        std::thread::sleep(Duration::from_millis(1));
    }
    let at = rt.block_on(received).unwrap();
    stop.stop();
    running.join().unwrap().unwrap();
    store.close().unwrap();
    let acked = acked.lock().unwrap();
    let mut out: Vec<Duration> =
        acked.iter().zip(&at).map(|(a, r)| r.unwrap().saturating_duration_since(a.unwrap())).collect();
    out.sort();
    out
}
