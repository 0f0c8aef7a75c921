//! What the relay's tests share: a broker of their own (or a skip, with the
//! reason, when `nats-server` is missing; a failure under `CI=true`), stores
//! filled with events that use every envelope field, and a JetStream
//! consumer that reads the whole stream back.

// Test helpers: a panic is how a test fails (clippy.toml allows unwrap only
// inside #[test] functions themselves).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use factlog::{EventId, ExpectedVersion, NewEvent, RecordedEvent, Store};
use factlog_relay::test_server::NatsServer;
use futures_util::StreamExt;

/// A broker with its store directory, both removed at the end of the test.
pub struct Broker {
    pub server: NatsServer,
    pub dir: tempfile::TempDir,
}

impl Broker {
    /// Starts a broker for `test`, or `None` (after printing why) when
    /// `nats-server` is not installed. Under `CI=true` a missing server fails
    /// the test: CI installs it (`bindings/jetstream/ci.sh`).
    pub fn start(test: &str) -> Option<Broker> {
        if let Err(why) = NatsServer::binary() {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{test}: {why}; CI must install it (bindings/jetstream/ci.sh)");
            }
            eprintln!("SKIPPED {test}: {why}");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let server = NatsServer::start(&dir.path().join("nats")).unwrap();
        Some(Broker { server, dir })
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Starts the stopped server again, on its port, with its store.
    pub fn restart(&mut self) {
        let port = self.server.port();
        self.server = NatsServer::start_on(port, &self.dir.path().join("nats")).unwrap();
    }
}

/// A runtime for the tests' own broker calls.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap()
}

/// One message of the stream, decoded.
#[derive(Debug, Clone)]
pub struct Shipped {
    pub sequence: u64,
    pub subject: String,
    pub event: RecordedEvent,
}

/// Every message of `stream`, in stream order, read by a JetStream pull
/// consumer (what an application on another machine would use) and decoded.
pub fn read_stream(url: &str, stream: &str) -> Vec<Shipped> {
    runtime().block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let mut st = js.get_stream(stream).await.unwrap();
        let count = st.info().await.unwrap().state.messages as usize;
        let consumer = st
            .create_consumer(pull::Config {
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::None,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut out = Vec::with_capacity(count);
        let deadline = Instant::now() + Duration::from_secs(60);
        while out.len() < count {
            assert!(Instant::now() < deadline, "read {} of {count} messages of {stream}", out.len());
            let mut batch =
                consumer.fetch().max_messages(1000).expires(Duration::from_millis(500)).messages().await.unwrap();
            while let Some(m) = batch.next().await {
                let m = m.unwrap();
                let info = m.info().unwrap();
                let headers = m.headers.clone().unwrap_or_default();
                let event = factlog_relay::decode(&headers, &m.payload).unwrap();
                out.push(Shipped { sequence: info.stream_sequence, subject: m.subject.to_string(), event });
            }
        }
        out
    })
}

/// An event that sets every envelope field, with data `n`.
pub fn full_event(n: u64) -> NewEvent {
    let mut e = NewEvent::new(EventId::new_v7(), format!("Type{}", n % 3), format!(r#"{{"n":{n}}}"#))
        .with_event_version((n % 4) as u32 + 1)
        .with_occurred_at(1_700_000_000_000_000_000 + n as i64);
    if n.is_multiple_of(2) {
        e = e
            .with_causation_id(EventId::new_v7())
            .with_correlation_id(EventId::new_v7())
            .with_metadata(format!("m{n}"));
    }
    e
}

/// Appends events `from..to`, one per append, over `aggregates` aggregates.
pub fn fill(store: &Store, from: u64, to: u64, aggregates: u64) {
    for n in from..to {
        store.append(&format!("acct-{}", n % aggregates), ExpectedVersion::Any, vec![full_event(n)]).unwrap();
    }
}

/// Checks that the stream holds exactly the store's events `0..end`, once
/// each, in position order, at sequences 1, 2, ...
pub fn assert_exactly_once(store: &Store, shipped: &[Shipped], end: u64) {
    let local = store.read_all_owned(0, usize::MAX).unwrap();
    let local: Vec<_> = local.into_iter().take_while(|e| e.position < end).collect();
    assert_eq!(
        shipped.len(),
        local.len(),
        "the stream holds {} messages, the store {} events",
        shipped.len(),
        local.len()
    );
    for (i, (s, l)) in shipped.iter().zip(&local).enumerate() {
        assert_eq!(s.sequence, i as u64 + 1, "sequence of position {}", l.position);
        assert_eq!(&s.event, l, "message at sequence {}", s.sequence);
    }
}

/// Waits until `done` holds, checking every 20 ms; fails the test with
/// `what` (and what `state` says) after `seconds`. A generous bound, never a
/// timing assertion: a slow machine only waits longer.
pub fn wait_until(seconds: u64, what: &str, mut state: impl FnMut() -> String, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !done() {
        assert!(Instant::now() < deadline, "waited {seconds} s for {what}; now: {}", state());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Appends to `store` from a thread until the returned flag is set: batches
/// of 1 to 4 events over 9 aggregates, a millisecond apart. Returns the
/// flag and the thread, which returns how many events it appended.
pub fn keep_appending(
    store: &Store,
    first: u64,
) -> (std::sync::Arc<std::sync::atomic::AtomicBool>, std::thread::JoinHandle<u64>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let (store, flag) = (store.clone(), stop.clone());
    let writer = std::thread::spawn(move || {
        let mut n = first;
        while !flag.load(Ordering::SeqCst) {
            let size = 1 + n % 4;
            let batch = (n..n + size).map(full_event).collect();
            store.append(&format!("acct-{}", n % 9), ExpectedVersion::Any, batch).unwrap();
            n += size;
            std::thread::sleep(Duration::from_millis(1));
        }
        n - first
    });
    (stop, writer)
}
