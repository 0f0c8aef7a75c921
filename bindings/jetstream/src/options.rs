//! What a relay ships where, and its limits: [`RelayOptions`] (the broker,
//! the stream and its settings, the filter, the pipeline's bounds, the retry
//! schedule). Every bound has a unit in its name and a default here.

use std::time::Duration;

use factlog::Filter;

use crate::error::{Error, Result};

/// Where the stream keeps its messages (JetStream's `storage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// On disk (the default): the stream survives a broker restart.
    File,
    /// In the broker's memory: lost when it stops.
    Memory,
}

/// How the relay ships a store into a stream; [`RelayOptions::new`] sets the
/// defaults, the setters change them.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RelayOptions {
    /// The NATS server URL (`nats://127.0.0.1:4222`).
    pub url: String,
    /// The JetStream stream's name: the relay creates it, or checks it.
    pub stream: String,
    /// Subjects are `<subject_prefix>.<aggregate id>`, and the stream's one
    /// subject is `<subject_prefix>.>` (default: the stream name).
    pub subject_prefix: String,
    /// The store consumer that keeps the relay's checkpoint (default
    /// `relay-<stream>`). Its lock keeps a second relay of the same name off
    /// the store.
    pub consumer: String,
    /// Which events are shipped (default: all). Event types and aggregate-id
    /// prefixes, as `factlog tail` takes them.
    pub filter: Filter,
    /// The stream's storage, set when the relay creates it and checked when it exists.
    pub storage: Storage,
    /// The stream's replicas (default 1), set or checked likewise.
    pub replicas: usize,
    /// The stream's duplicate window (default 2 minutes), set or checked
    /// likewise. Exactly-once does not rest on it: the relay resumes after
    /// the stream's last message, whatever the window.
    pub duplicate_window: Duration,
    /// Most messages published and not yet acknowledged (default 4,096).
    pub max_in_flight: usize,
    /// Most bytes (headers and data) published and not yet acknowledged
    /// (default 32 MiB): with `max_in_flight`, the bound on the relay's memory.
    pub max_in_flight_bytes: usize,
    /// Most events taken from the store per read (default 1,024).
    pub batch_events: usize,
    /// How long a publish's acknowledgement (or a request to the broker) may
    /// take before the relay counts the broker as down (default 5 s).
    pub ack_timeout: Duration,
    /// The first wait after the broker failed (default 100 ms); each further
    /// failure doubles it up to `retry_max`.
    pub retry_min: Duration,
    /// The longest wait between attempts (default 5 s).
    pub retry_max: Duration,
    /// Give up with [`Error::BrokerUnavailable`] after failing this long in a
    /// row (default: never, the relay waits for the broker).
    pub give_up_after: Option<Duration>,
    /// The checkpoint is committed at most this often while events flow
    /// (default 1 s), and when the relay stops.
    pub commit_every: Duration,
    /// When the position the relay must resume at is below the store's first
    /// retained position (retention removed events before they were shipped),
    /// resume at that first position instead of failing with
    /// [`Error::BelowRetainedStart`] (default `false`). The stream then has a
    /// gap in `Factlog-Position`; [`crate::RelayStatus::last_gap`] says which.
    pub accept_retention_gap: bool,
}

impl RelayOptions {
    /// Ships every event to `stream` on the server at `url`, with the defaults above.
    pub fn new(url: impl Into<String>, stream: impl Into<String>) -> RelayOptions {
        let stream = stream.into();
        RelayOptions {
            url: url.into(),
            subject_prefix: stream.clone(),
            consumer: format!("relay-{stream}"),
            stream,
            filter: Filter::all(),
            storage: Storage::File,
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            max_in_flight: 4096,
            max_in_flight_bytes: 32 << 20,
            batch_events: 1024,
            ack_timeout: Duration::from_secs(5),
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
            give_up_after: None,
            commit_every: Duration::from_secs(1),
            accept_retention_gap: false,
        }
    }

    /// Sets [`RelayOptions::subject_prefix`].
    pub fn subject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.subject_prefix = prefix.into();
        self
    }
    /// Sets [`RelayOptions::consumer`].
    pub fn consumer(mut self, name: impl Into<String>) -> Self {
        self.consumer = name.into();
        self
    }
    /// Sets [`RelayOptions::filter`].
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }
    /// Sets [`RelayOptions::storage`].
    pub fn storage(mut self, storage: Storage) -> Self {
        self.storage = storage;
        self
    }
    /// Sets [`RelayOptions::replicas`].
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }
    /// Sets [`RelayOptions::duplicate_window`].
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window;
        self
    }
    /// Sets [`RelayOptions::max_in_flight`].
    pub fn max_in_flight(mut self, messages: usize) -> Self {
        self.max_in_flight = messages;
        self
    }
    /// Sets [`RelayOptions::max_in_flight_bytes`].
    pub fn max_in_flight_bytes(mut self, bytes: usize) -> Self {
        self.max_in_flight_bytes = bytes;
        self
    }
    /// Sets [`RelayOptions::batch_events`].
    pub fn batch_events(mut self, events: usize) -> Self {
        self.batch_events = events;
        self
    }
    /// Sets [`RelayOptions::ack_timeout`].
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.ack_timeout = timeout;
        self
    }
    /// Sets [`RelayOptions::retry_min`] and [`RelayOptions::retry_max`].
    pub fn retry(mut self, min: Duration, max: Duration) -> Self {
        self.retry_min = min;
        self.retry_max = max;
        self
    }
    /// Sets [`RelayOptions::give_up_after`].
    pub fn give_up_after(mut self, after: Option<Duration>) -> Self {
        self.give_up_after = after;
        self
    }
    /// Sets [`RelayOptions::commit_every`].
    pub fn commit_every(mut self, every: Duration) -> Self {
        self.commit_every = every;
        self
    }

    /// Sets [`RelayOptions::accept_retention_gap`].
    pub fn accept_retention_gap(mut self, accept: bool) -> Self {
        self.accept_retention_gap = accept;
        self
    }

    /// The stream's one subject: `<prefix>.>`.
    pub fn stream_subject(&self) -> String {
        format!("{}.>", self.subject_prefix)
    }

    /// Checks what the broker would refuse later, or the relay could not keep.
    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidOptions(what));
        // What JetStream refuses in a stream name, and in a subject token.
        let plain = |s: &str, extra: &[u8]| {
            !s.is_empty() && !s.bytes().any(|b| b.is_ascii_whitespace() || b"*>".contains(&b) || extra.contains(&b))
        };
        if !plain(&self.stream, b"./\\") {
            return bad(format!(
                "stream name {:?} must be non-empty, without spaces, '.', '*', '>', '/' or '\\'",
                self.stream
            ));
        }
        if !self.subject_prefix.split('.').all(|token| plain(token, b"")) {
            return bad(format!(
                "subject prefix {:?} must be dot-separated non-empty tokens without spaces, '*' or '>'",
                self.subject_prefix
            ));
        }
        if self.max_in_flight == 0 || self.max_in_flight_bytes == 0 || self.batch_events == 0 {
            return bad("max_in_flight, max_in_flight_bytes and batch_events must be at least 1".into());
        }
        if self.replicas == 0 {
            return bad("replicas must be at least 1".into());
        }
        if self.ack_timeout.is_zero() || self.retry_min.is_zero() || self.retry_max < self.retry_min {
            return bad("ack_timeout and retry_min must be above zero, retry_max at least retry_min".into());
        }
        Ok(())
    }
}
