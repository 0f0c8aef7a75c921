//! The relay: a durable consumer of the store that publishes each event it
//! selects to JetStream, pipelined, and commits its checkpoint only after
//! the broker acknowledged.
//!
//! Exactly once into the broker rests on two rules, not on the dedupe window:
//!
//! 1. **The stream says where to resume.** Each session (the first, and each
//!    one after a failure) reads the stream's last sequence `S` and the
//!    position `P` its last message carries, checks that the store has the
//!    same event at `P`, and resumes at `P + 1` (resetting the consumer's
//!    checkpoint to agree).
//! 2. **Every message says where it must land.** The `k`-th message of a
//!    session carries `Nats-Expected-Last-Sequence: S + k`; the broker stores
//!    it only when the stream's last sequence is exactly that. So message
//!    `S + k + 1` of the stream is always the `k`-th selected event after `P`,
//!    whoever published it: a second relay, or a publish of a killed one that
//!    reaches the broker late, can only land where this relay's copy would
//!    have, and then this relay's is refused (`wrong last sequence`, or a
//!    duplicate by `Nats-Msg-Id`) and it reads the stream again.
//!
//! Where retention removed the log below the position to resume at, the
//! relay stops with [`Error::BelowRetainedStart`] rather than skip events,
//! unless its checkpoint shows the removed events were examined already (a
//! filtered relay) or [`RelayOptions::accept_retention_gap`] says to resume
//! at the log's new start. It checks the log's first position itself, at the
//! start of a session and after every read, so a store that clamps reads
//! below its start cannot make it skip silently.
//!
//! The first message into an empty stream expects sequence 0, which the
//! broker honours too (2.9.10 refuses it once the stream holds anything:
//! `tests/bad_days.rs` checks the server does).
//!
//! The pipeline: up to `batch_events` events are read zero-copy from the
//! consumer, turned into messages and published without waiting; their
//! acknowledgements are awaited oldest first, only when `max_in_flight`
//! messages or `max_in_flight_bytes` are out or nothing new is durable. The
//! broker answers one connection in order, so the oldest is the first to come.

use std::collections::VecDeque;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use async_nats::jetstream::context::{ContextBuilder, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::Context;
use factlog::{Bytes, Consumer, ConsumerOptions, EventRef, ResetTo, StartFrom, Store};

use crate::envelope;
use crate::error::{Error, Result};
use crate::options::RelayOptions;
use crate::status::{RelayState, RelayStatus, StatusHandle, StopHandle};
use crate::stream::{self, Failure, Tail};

/// How long an idle relay waits for new events before it looks at its stop
/// flag and commits (it wakes at once when an event becomes durable).
const IDLE_WAIT: Duration = Duration::from_millis(100);
/// Headers and subject of a message, about (their exact size is the
/// client's business; this only bounds memory).
const HEADER_BYTES_ABOUT: usize = 420;

/// What a run did; see [`Relay::run`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunSummary {
    /// Messages the broker acknowledged during the run.
    pub published: u64,
    /// Every position below this one is in the stream (or not selected).
    pub next_position: u64,
    /// The stream sequence of the last acknowledged message.
    pub stream_sequence: u64,
    /// Times the relay read where to resume again (see [`RelayStatus::resyncs`]).
    pub resyncs: u64,
    /// Times the broker failed and the relay waited.
    pub broker_failures: u64,
    /// Positions retention removed before they were shipped, skipped with
    /// [`RelayOptions::accept_retention_gap`] (see [`RelayStatus::last_gap`]).
    pub skipped_positions: u64,
}

/// Ships a store's log to a JetStream stream. Runs on the calling thread
/// (its network I/O on one thread of its own); see the crate doc.
pub struct Relay {
    store: Store,
    options: RelayOptions,
    runtime: tokio::runtime::Runtime,
    client: Option<async_nats::Client>,
    status: StatusHandle,
    stop: StopHandle,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("stream", &self.options.stream).field("url", &self.options.url).finish()
    }
}

impl Relay {
    /// A relay of `store` (read-write, or a read-only open beside its
    /// writer) into the stream of `options`. Checks the options; connects
    /// nothing yet.
    pub fn new(store: &Store, options: RelayOptions) -> Result<Relay> {
        options.validate()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("factlog-relay-io")
            .enable_all()
            .build()
            .map_err(|e| Error::InvalidOptions(format!("cannot start the relay's I/O thread: {e}")))?;
        Ok(Relay {
            store: store.clone(),
            options,
            runtime,
            client: None,
            status: StatusHandle::default(),
            stop: StopHandle::default(),
        })
    }

    /// Ships events until [`StopHandle::stop`] is called or the store is
    /// closed, waiting for the broker whenever it is down. Returns an error
    /// only for what waiting does not fix (see [`Error`]).
    pub fn run(&mut self) -> Result<RunSummary> {
        self.drive(false)
    }

    /// Ships every event durable when it is called (and any that come
    /// meanwhile), then returns once the broker acknowledged them all.
    pub fn run_until_caught_up(&mut self) -> Result<RunSummary> {
        self.drive(true)
    }

    /// A handle that stops [`Relay::run`] from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// A handle that reads the relay's status from another thread.
    pub fn status_handle(&self) -> StatusHandle {
        self.status.clone()
    }

    /// The relay's status now: position, lag, what it waits for.
    pub fn status(&self) -> RelayStatus {
        self.status.get()
    }

    fn summary(&self) -> RunSummary {
        let s = self.status.get();
        RunSummary {
            published: s.published,
            next_position: s.next_position,
            stream_sequence: s.stream_sequence,
            resyncs: s.resyncs,
            broker_failures: s.broker_failures,
            skipped_positions: s.skipped_positions,
        }
    }

    /// Runs sessions until one ends the run, waiting between failed ones.
    fn drive(&mut self, until_caught_up: bool) -> Result<RunSummary> {
        let mut backoff = self.options.retry_min;
        let mut failing_since: Option<Instant> = None;
        let mut attempt = 0u32;
        loop {
            if self.stop.requested() {
                break;
            }
            let published_before = self.status.get().published;
            let outcome = self.session(until_caught_up);
            if self.status.get().published > published_before {
                // It got somewhere: the next failure starts the schedule again.
                backoff = self.options.retry_min;
                failing_since = None;
                attempt = 0;
            }
            match outcome {
                Ok(()) => break,
                Err(Failure::Fatal(e)) => {
                    self.status.update(|s| s.state = RelayState::Stopped);
                    return Err(e);
                }
                Err(Failure::Resync(why)) => {
                    self.status.update(|s| {
                        s.resyncs += 1;
                        s.last_resync = Some(why);
                    });
                    // Two relays racing for one stream would take turns here: let the other one on.
                    self.pause(self.options.retry_min);
                }
                Err(Failure::Broker(last_error)) => {
                    attempt += 1;
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if let Some(limit) = self.options.give_up_after.filter(|l| since.elapsed() >= *l) {
                        self.status.update(|s| s.state = RelayState::Stopped);
                        return Err(Error::BrokerUnavailable {
                            url: self.options.url.clone(),
                            stream: self.options.stream.clone(),
                            waited: since.elapsed().max(limit),
                            last_error,
                        });
                    }
                    self.status.update(|s| {
                        s.broker_failures += 1;
                        s.in_flight = 0;
                        s.state = RelayState::WaitingForBroker { attempt, last_error };
                    });
                    self.pause(backoff);
                    backoff = backoff.saturating_mul(2).min(self.options.retry_max);
                }
            }
        }
        self.status.update(|s| s.state = RelayState::Stopped);
        Ok(self.summary())
    }

    /// Sleeps `d`, in slices, so that a stop request is seen soon.
    fn pause(&self, d: Duration) {
        let until = Instant::now() + d;
        while !self.stop.requested() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }

    /// One session: connect, find where the stream ends, resume after it.
    fn session(&mut self, until_caught_up: bool) -> Result<(), Failure> {
        self.status.update(|s| s.state = RelayState::Starting);
        let js = self.context()?;
        let tail = self.runtime.block_on(async {
            let stream = stream::ensure(&js, &self.options).await?;
            stream::tail(&stream, &self.options).await
        })?;
        let (last_sequence, resume) = self.resume_point(&tail)?;
        let mut consumer = self.open_consumer(resume)?;
        self.status.update(|s| {
            s.next_position = resume;
            s.stream_sequence = last_sequence;
        });
        let mut pipe = Pipeline::new(last_sequence, resume, &js, self);
        let result = pipe.pump(&mut consumer, until_caught_up);
        // What the broker acknowledged is committed whatever ended the session.
        let committed = pipe.commit(&mut consumer, true);
        result.and(committed.map_err(Failure::from))
    }

    /// A JetStream context on the relay's connection (made on first use; the
    /// client reconnects by itself afterwards). A new context each session:
    /// the acknowledgements a failed session left behind hold nothing of it.
    fn context(&mut self) -> Result<Context, Failure> {
        let o = &self.options;
        let client = match &self.client {
            Some(client) => client.clone(),
            None => {
                let (min, max) = (o.retry_min, o.retry_max);
                let connect = async_nats::ConnectOptions::new()
                    .connection_timeout(o.ack_timeout)
                    .request_timeout(Some(o.ack_timeout))
                    .reconnect_delay_callback(move |attempts| min.saturating_mul(1 << attempts.min(16)).min(max))
                    .connect(o.url.as_str());
                let client = self.runtime.block_on(connect).map_err(|e| match e.kind() {
                    async_nats::ConnectErrorKind::ServerParse => {
                        Failure::Fatal(Error::InvalidOptions(format!("NATS URL {:?}: {e}", o.url)))
                    }
                    _ => Failure::Broker(format!("connect to {}: {e}", o.url)),
                })?;
                self.client = Some(client.clone());
                client
            }
        };
        let _runtime = self.runtime.enter();
        Ok(ContextBuilder::new()
            .timeout(o.ack_timeout)
            .ack_timeout(o.ack_timeout)
            .max_ack_inflight(o.max_in_flight + 1)
            .backpressure_on_inflight(true)
            .build(client))
    }

    /// The stream's last sequence and the position to resume at, checked
    /// against the store.
    fn resume_point(&self, tail: &Tail) -> Result<(u64, u64), Failure> {
        let stream = &self.options.stream;
        let (last_sequence, next, checkpoint_vouches) = match *tail {
            Tail::Empty => (0, 0, false),
            Tail::Gone { last_sequence } => match self.store.consumer_info(&self.options.consumer) {
                // The checkpoint trails what the broker acknowledged by at most
                // `commit_every`: those events go again (and the dedupe window
                // takes them out while it still knows them).
                Ok(info) => (last_sequence, info.next_position, false),
                Err(factlog::Error::UnknownConsumer { .. }) => {
                    return Err(Error::StreamHistoryGone { stream: stream.clone(), last_sequence }.into())
                }
                Err(e) => return Err(e.into()),
            },
            Tail::At { last_sequence, sequence, position, event_id } => {
                let end = self.store.refresh()?.map_or(0, |p| p + 1);
                if position >= end {
                    return Err(
                        Error::StreamAhead { stream: stream.clone(), sequence, position, store_end: end }.into()
                    );
                }
                let reader = self.store.reader();
                // NOTE: an event retention or a scavenge removed since it was
                // shipped cannot be compared; the stream's message is all that is left of it.
                if position >= reader.first_position() {
                    match reader.event_at_position(position) {
                        Ok(stored) if stored.event_id() != event_id => {
                            return Err(Error::StoreMismatch {
                                stream: stream.clone(),
                                sequence,
                                position,
                                stream_event_id: event_id.to_string(),
                                store_event_id: stored.event_id().to_string(),
                            }
                            .into())
                        }
                        Ok(_) | Err(factlog::Error::EventRemoved { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                (last_sequence, position + 1, true)
            }
        };
        Ok((last_sequence, self.past_retention(next, checkpoint_vouches)?))
    }

    /// `next`, or where to resume instead when retention removed the log
    /// below it. The events in between can never be shipped: that is
    /// [`Error::BelowRetainedStart`], unless the relay's checkpoint shows
    /// they were all examined before they went (`checkpoint_vouches`: the
    /// stream's last message is older than the checkpoint when the events
    /// after it were not selected), or the options accept the gap.
    fn past_retention(&self, next: u64, checkpoint_vouches: bool) -> Result<u64, Failure> {
        // The reader's first position, not `Store::first_position`: the log may
        // hold no event at all after retention, and then it starts at its end.
        let first = self.store.reader().first_position();
        if next >= first {
            return Ok(next);
        }
        if checkpoint_vouches {
            match self.store.consumer_info(&self.options.consumer) {
                Ok(info) if info.next_position >= first => return Ok(first),
                Ok(_) | Err(factlog::Error::UnknownConsumer { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.below_retained_start(next, first)?;
        Ok(first)
    }

    /// Retention removed positions `next..first` before the relay shipped
    /// them: an error, or (with [`RelayOptions::accept_retention_gap`]) a gap
    /// the status records.
    fn below_retained_start(&self, next: u64, first: u64) -> Result<(), Failure> {
        if !self.options.accept_retention_gap {
            return Err(
                Error::BelowRetainedStart { stream: self.options.stream.clone(), next, first_retained: first }.into()
            );
        }
        self.status.update(|s| {
            s.skipped_positions += first - next;
            s.last_gap = Some(next..first);
        });
        Ok(())
    }

    /// The relay's consumer, its checkpoint made to agree with the stream.
    fn open_consumer(&self, resume: u64) -> Result<Consumer, Failure> {
        let name = &self.options.consumer;
        match self.store.consumer_info(name) {
            Ok(info) if info.next_position != resume => {
                self.store.reset_consumer(name, ResetTo::Position(resume))?;
            }
            Ok(_) | Err(factlog::Error::UnknownConsumer { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let options = ConsumerOptions::default()
            .auto_commit(false)
            .filter(self.options.filter.clone())
            .start(StartFrom::Position(resume));
        let consumer = self.store.consumer(name, options)?;
        if consumer.position() != resume {
            // Someone reset it between our reset and our open.
            return Err(Failure::Resync(format!("consumer {name:?} moved while the relay opened it")));
        }
        Ok(consumer)
    }
}

/// A message read from the store, ready to publish.
struct Outgoing {
    subject: String,
    message: PublishMessage,
    position: u64,
    bytes: usize,
}

/// A published message whose acknowledgement has not been looked at.
struct InFlight {
    ack: Pin<Box<dyn Future<Output = Result<PublishAck, async_nats::jetstream::context::PublishError>> + Send>>,
    position: u64,
    /// The stream sequence it must be stored at.
    sequence: u64,
    bytes: usize,
}

/// One session's publishing state.
struct Pipeline<'r> {
    relay: &'r Relay,
    js: &'r Context,
    in_flight: VecDeque<InFlight>,
    in_flight_bytes: usize,
    /// The sequence the next message must be stored at.
    next_sequence: u64,
    /// Every position below is acknowledged (or not selected).
    acked_next: u64,
    committed_next: u64,
    last_commit: Instant,
    max_payload: usize,
}

impl<'r> Pipeline<'r> {
    fn new(last_sequence: u64, resume: u64, js: &'r Context, relay: &'r Relay) -> Pipeline<'r> {
        let max_payload = relay.client.as_ref().map_or(usize::MAX, |c| c.server_info().max_payload);
        Pipeline {
            relay,
            js,
            in_flight: VecDeque::new(),
            in_flight_bytes: 0,
            next_sequence: last_sequence + 1,
            acked_next: resume,
            committed_next: resume,
            last_commit: Instant::now(),
            max_payload,
        }
    }

    fn options(&self) -> &RelayOptions {
        &self.relay.options
    }

    /// Reads, publishes and settles until stopped, caught up (if asked) or failed.
    fn pump(&mut self, consumer: &mut Consumer, until_caught_up: bool) -> Result<(), Failure> {
        loop {
            if self.relay.stop.requested() {
                return self.settle_all();
            }
            let room = self.options().max_in_flight.saturating_sub(self.in_flight.len());
            let byte_room = self.options().max_in_flight_bytes.saturating_sub(self.in_flight_bytes);
            // Read again only once a good batch fits: a full pipeline that read
            // one event per acknowledgement would make every batch one event.
            let low_water = self.options().batch_events.min(self.options().max_in_flight / 2).max(1);
            if room < low_water || byte_room < self.options().max_in_flight_bytes / 2 {
                self.settle_oldest()?;
                continue;
            }
            let wait = if self.in_flight.is_empty() && !until_caught_up { IDLE_WAIT } else { Duration::ZERO };
            let outgoing = match self.take(consumer, room.min(self.options().batch_events), byte_room, wait) {
                Err(Failure::Fatal(Error::Store(factlog::Error::Closed))) => return self.settle_all(),
                other => other?,
            };
            if outgoing.is_empty() {
                if !self.in_flight.is_empty() {
                    self.settle_oldest()?;
                    continue;
                }
                // Everything examined is acknowledged or not selected.
                self.acked_next = self.acked_next.max(consumer.position());
                self.relay.status.update(|s| {
                    s.next_position = self.acked_next;
                    s.state = RelayState::CaughtUp;
                });
                self.commit(consumer, false)?;
                if until_caught_up {
                    return Ok(());
                }
                continue;
            }
            self.publish(outgoing)?;
            if self.in_flight.is_empty() {
                self.acked_next = self.acked_next.max(consumer.position());
            }
            self.commit(consumer, false)?;
        }
    }

    /// Up to `max` events from the consumer (waiting at most `wait` for the
    /// first), as messages, stopping at `byte_room` bytes.
    fn take(
        &mut self,
        consumer: &mut Consumer,
        max: usize,
        byte_room: usize,
        wait: Duration,
    ) -> Result<Vec<Outgoing>, Failure> {
        let relay = self.relay;
        let o = &relay.options;
        // Sized once: growing it by doubling moves every message built so far.
        let mut out = Vec::with_capacity(max);
        let mut bytes = 0;
        let cursor = consumer.position();
        let mut batch = match consumer.poll(max, wait) {
            Err(factlog::Error::BelowRetainedStart { position, first_retained }) => {
                return Err(self.passed_by_retention(position, first_retained))
            }
            other => other?,
        };
        let end = batch.end_position();
        let mut events = batch.events();
        while bytes < byte_room {
            match events.next() {
                None => break,
                Some(Ok(event)) => {
                    let m = self.message(&event, o);
                    bytes += m.bytes;
                    out.push(m);
                }
                // The cursor stays at the bad event: the next read reports it.
                Some(Err(_)) if !out.is_empty() => break,
                Some(Err(e)) => return Err(e.into()),
            }
        }
        drop(events);
        drop(batch);
        // A store opened with `clamp_reads_below_start` moves the cursor past
        // what retention removed instead of failing: the relay must not.
        let first = relay.store.reader().first_position();
        if cursor < first && out.first().is_none_or(|m| m.position >= first) {
            return Err(self.passed_by_retention(cursor, first));
        }
        self.relay.status.update(|s| s.store_end = end);
        Ok(out)
    }

    /// Retention removed the events from `next` on while this session
    /// shipped: the session ends (what is in flight is still settled and
    /// committed), with the error, or to resume past the gap.
    fn passed_by_retention(&self, next: u64, first: u64) -> Failure {
        if self.options().accept_retention_gap {
            // The next session reads the stream's end, finds it below `first`
            // and records the gap as it resumes there.
            return Failure::Resync(format!("retention removed positions {next}..{first} before they were shipped"));
        }
        Failure::Fatal(Error::BelowRetainedStart { stream: self.options().stream.clone(), next, first_retained: first })
    }

    /// The message of one event, stamped with the sequence it must land at.
    fn message(&mut self, event: &EventRef<'_>, o: &RelayOptions) -> Outgoing {
        let headers = envelope::headers(event, self.next_sequence - 1);
        // The client refuses a message over the server's max_payload itself
        // (exactly); this estimate only bounds the relay's memory.
        let bytes =
            event.data().len() + event.metadata().len() * 4 / 3 + HEADER_BYTES_ABOUT + 2 * event.aggregate_id().len();
        self.next_sequence += 1;
        let message = PublishMessage::build().headers(headers).payload(Bytes::copy_from_slice(event.data()));
        Outgoing {
            subject: envelope::subject(&o.subject_prefix, event.aggregate_id()),
            message,
            position: event.position(),
            bytes,
        }
    }

    /// Publishes without waiting for acknowledgements, then settles those
    /// that have already arrived.
    fn publish(&mut self, outgoing: Vec<Outgoing>) -> Result<(), Failure> {
        let mut sequence = self.next_sequence - outgoing.len() as u64;
        let relay = self.relay;
        relay.runtime.block_on(async {
            for m in outgoing {
                let ack = self
                    .js
                    .send_publish(m.subject, m.message)
                    .await
                    .map_err(|e| self.failed(m.position, m.bytes, e))?;
                self.in_flight_bytes += m.bytes;
                self.in_flight.push_back(InFlight {
                    ack: ack.into_future(),
                    position: m.position,
                    sequence,
                    bytes: m.bytes,
                });
                sequence += 1;
            }
            self.settle_ready().await
        })?;
        let n = self.in_flight.len();
        self.relay.status.update(|s| {
            s.in_flight = n;
            s.state = RelayState::Shipping;
        });
        Ok(())
    }

    /// Waits for the oldest acknowledgement, then settles every one that
    /// has arrived after it, without waiting more: one trip into the runtime
    /// for a burst of acknowledgements, not one each.
    fn settle_oldest(&mut self) -> Result<(), Failure> {
        let relay = self.relay;
        relay.runtime.block_on(async {
            if let Some(front) = self.in_flight.front_mut() {
                let result = front.ack.as_mut().await;
                self.settle(result)?;
            }
            self.settle_ready().await
        })
    }

    /// Settles the acknowledgements that have arrived, oldest first, without
    /// waiting (in the runtime's context).
    async fn settle_ready(&mut self) -> Result<(), Failure> {
        while let Some(front) = self.in_flight.front_mut() {
            match std::future::poll_fn(|cx| Poll::Ready(front.ack.as_mut().poll(cx))).await {
                Poll::Ready(result) => self.settle(result)?,
                Poll::Pending => break,
            }
        }
        Ok(())
    }

    /// Waits for every acknowledgement in flight.
    fn settle_all(&mut self) -> Result<(), Failure> {
        while !self.in_flight.is_empty() {
            self.settle_oldest()?;
        }
        Ok(())
    }

    /// The front message's acknowledgement: it moves the acknowledged
    /// position, or ends the session.
    fn settle(
        &mut self,
        result: Result<PublishAck, async_nats::jetstream::context::PublishError>,
    ) -> Result<(), Failure> {
        let Some(sent) = self.in_flight.pop_front() else { return Ok(()) };
        self.in_flight_bytes -= sent.bytes;
        let ack = result.map_err(|e| self.failed(sent.position, sent.bytes, e))?;
        if ack.sequence != sent.sequence || ack.stream != self.options().stream {
            return Err(Failure::Resync(format!(
                "event at position {} was stored at sequence {} of {:?} (duplicate: {}), not {}",
                sent.position, ack.sequence, ack.stream, ack.duplicate, sent.sequence
            )));
        }
        self.acked_next = sent.position + 1;
        let (next, n) = (self.acked_next, self.in_flight.len());
        self.relay.status.update(|s| {
            s.next_position = next;
            s.stream_sequence = ack.sequence;
            s.published += 1;
            s.in_flight = n;
        });
        Ok(())
    }

    /// What a failed publish means for the session.
    fn failed(&self, position: u64, bytes: usize, e: async_nats::jetstream::context::PublishError) -> Failure {
        let stream = &self.options().stream;
        match e.kind() {
            PublishErrorKind::WrongLastSequence | PublishErrorKind::WrongLastMessageId => {
                Failure::Resync(format!("event at position {position}: {e}"))
            }
            PublishErrorKind::MaxPayloadExceeded => Failure::Fatal(Error::EventTooLarge {
                stream: stream.clone(),
                position,
                bytes,
                max_payload: self.max_payload,
            }),
            PublishErrorKind::Other => match jetstream_error(&e) {
                Some(api) if api.code() != 503 => Failure::Fatal(Error::PublishRefused {
                    stream: stream.clone(),
                    position,
                    code: api.error_code().0,
                    description: api.to_string(),
                }),
                _ => Failure::Broker(format!("publish of position {position} into {stream:?}: {e}")),
            },
            _ => Failure::Broker(format!("publish of position {position} into {stream:?}: {e}")),
        }
    }

    /// Commits the acknowledged position when `commit_every` has passed (or `now`).
    fn commit(&mut self, consumer: &mut Consumer, now: bool) -> factlog::Result<()> {
        let due = now || self.last_commit.elapsed() >= self.options().commit_every;
        if self.acked_next > self.committed_next && due {
            consumer.commit(self.acked_next - 1)?;
            self.committed_next = self.acked_next;
            self.last_commit = Instant::now();
        }
        Ok(())
    }
}

/// The broker's JetStream error inside a publish error, if it is one.
fn jetstream_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a async_nats::jetstream::Error> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(api) = s.downcast_ref::<async_nats::jetstream::Error>() {
            return Some(api);
        }
        source = s.source();
    }
    None
}
