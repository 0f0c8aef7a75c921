//! The handler runner of a durable consumer: hands each event to the
//! caller's handler, retries a failing one per the [`RetryPolicy`], parks it
//! after the last attempt (and, optionally, the later events of its
//! aggregate behind it), replays parked events on request, and moves the
//! checkpoint only past events that are handled or parked. With N workers
//! (competing consumers) each aggregate's events go to one worker, in order,
//! and the checkpoint stays below the oldest event still in flight. It never
//! touches the checkpoint or dead-letter bytes itself (modules `checkpoint`,
//! `parked`).

use std::collections::{BTreeSet, HashMap};
use std::fmt::Display;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::Duration;

use crossbeam_channel::RecvTimeoutError;

use super::parked::{ParkedEvent, ParkedLog};
use super::{Consumer, ConsumerOptions};
use crate::error::{Error, Result};
use crate::event::{EventRef, RecordedEvent};
use crate::subscription::Subscription;

/// Events (positions) a runner takes from the log per batch.
const BATCH_EVENTS: usize = 4096;
/// How long a caught-up runner waits for news before it checks for a stop.
const IDLE_WAIT: Duration = Duration::from_millis(50);
/// Events queued per worker before the dispatcher waits for it.
const WORKER_QUEUE: usize = 1024;

/// How often a failing event is retried before it is parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Times the handler is given the event in all (at least 1; default 3).
    pub attempts: u32,
    /// Wait before the first retry (default 10 ms); doubled for each next one.
    pub backoff: Duration,
    /// The longest wait between two attempts (default 1 s).
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { attempts: 3, backoff: Duration::from_millis(10), max_backoff: Duration::from_secs(1) }
    }
}

impl RetryPolicy {
    /// `attempts` tries in all (0 counts as 1), waiting `backoff`, doubling
    /// up to `max_backoff`, between them.
    pub fn new(attempts: u32, backoff: Duration, max_backoff: Duration) -> RetryPolicy {
        RetryPolicy { attempts: attempts.max(1), backoff, max_backoff }
    }
}

/// What a run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RunSummary {
    /// Events the handler accepted (replays included).
    pub handled: u64,
    /// Events parked (after their last attempt, or behind an earlier parked
    /// event of their aggregate).
    pub parked: u64,
    /// Parked events handled successfully on replay (and so removed from the list).
    pub replayed: u64,
    /// The consumer's next position when the run returned.
    pub next_position: u64,
}

/// What became of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Handled,
    Parked,
}

impl RunSummary {
    fn count(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Handled => self.handled += 1,
            Outcome::Parked => self.parked += 1,
        }
    }
}

impl Consumer {
    /// Hands every matching event to `handler`, in order, until
    /// [`StopHandle::stop`](super::StopHandle::stop) is called or the store
    /// closes; commits automatically (see [`ConsumerOptions`]). An event whose
    /// handler fails is retried per [`ConsumerOptions::retry`], then parked.
    /// Parked events whose replay was requested are replayed first. Fails
    /// only for a storage error (an I/O error writing the checkpoint or the
    /// dead-letter list, a corrupt log).
    pub fn run<E: Display>(&mut self, handler: impl FnMut(&EventRef<'_>) -> Result<(), E>) -> Result<RunSummary> {
        self.run_loop(handler, None)
    }

    /// Like [`Consumer::run`], but returns once every event that was durable
    /// when it was called is handled (or parked), and commits.
    pub fn run_until_caught_up<E: Display>(
        &mut self,
        handler: impl FnMut(&EventRef<'_>) -> Result<(), E>,
    ) -> Result<RunSummary> {
        let end = super::durable_end(&self.store);
        self.run_loop(handler, Some(end))
    }

    /// Hands parked events to `handler` again: the one at `position`, or
    /// every parked one (`None`), in order. One that succeeds leaves the
    /// dead-letter list; one that fails again stays, with its attempts and
    /// error updated. With [`ConsumerOptions::park_aggregate_behind`], an
    /// event stays parked untried while an earlier one of its aggregate does.
    pub fn replay_parked<E: Display>(
        &mut self,
        position: Option<u64>,
        mut handler: impl FnMut(&EventRef<'_>) -> Result<(), E>,
    ) -> Result<RunSummary> {
        let targets: Vec<u64> = match position {
            Some(p) => {
                let parked = self.parked.get_mut().unwrap_or_else(|p| p.into_inner());
                if !parked.live().contains_key(&p) {
                    return Err(Error::NotParked { consumer: self.name.clone(), position: p });
                }
                vec![p]
            }
            None => self.parked.get_mut().unwrap_or_else(|p| p.into_inner()).live().keys().copied().collect(),
        };
        let mut summary = RunSummary::default();
        self.replay(&targets, &mut handler, &mut summary)?;
        summary.next_position = self.sub.position();
        Ok(summary)
    }

    /// Like [`Consumer::run`] with `workers` threads (competing consumers):
    /// each event goes to exactly one worker, chosen by its aggregate id, so
    /// an aggregate's events are handled in order by one worker. The
    /// checkpoint only moves past a position once every event at or before it
    /// is handled or parked. The handler gets owned copies (they cross threads).
    pub fn run_workers<E, H>(&mut self, workers: usize, handler: H) -> Result<RunSummary>
    where
        E: Display,
        H: Fn(&RecordedEvent) -> Result<(), E> + Send + Sync,
    {
        self.workers_loop(workers, handler, None)
    }

    /// Like [`Consumer::run_workers`], but returns once every event durable
    /// when it was called is handled (or parked), and commits.
    pub fn run_workers_until_caught_up<E, H>(&mut self, workers: usize, handler: H) -> Result<RunSummary>
    where
        E: Display,
        H: Fn(&RecordedEvent) -> Result<(), E> + Send + Sync,
    {
        let end = super::durable_end(&self.store);
        self.workers_loop(workers, handler, Some(end))
    }

    fn run_loop<E: Display>(
        &mut self,
        mut handler: impl FnMut(&EventRef<'_>) -> Result<(), E>,
        until: Option<u64>,
    ) -> Result<RunSummary> {
        let mut summary = RunSummary::default();
        self.replay_requested(&mut handler, &mut summary)?;
        let mut blocked = self.blocked_aggregates();
        loop {
            let next = self.sub.position();
            if self.stop.requested() || until.is_some_and(|u| next >= u) {
                break;
            }
            self.committer.auto_commit(next, false)?;
            let mut batch = match self.sub.batch(BATCH_EVENTS, IDLE_WAIT) {
                Ok(b) => b,
                Err(Error::Closed) => break,
                Err(e) => return Err(e),
            };
            let parked = &self.parked;
            for event in batch.events() {
                let event = event?;
                let outcome = handle(parked, &self.options, &mut blocked, &mut handler, &event)?;
                summary.count(outcome);
            }
            drop(batch);
            if self.sub.position() == next {
                // Caught up: make the progress durable while waiting.
                self.committer.auto_commit(next, true)?;
            }
        }
        let next = self.sub.position();
        self.committer.auto_commit(next, true)?;
        summary.next_position = next;
        Ok(summary)
    }

    fn workers_loop<E, H>(&mut self, workers: usize, handler: H, until: Option<u64>) -> Result<RunSummary>
    where
        E: Display,
        H: Fn(&RecordedEvent) -> Result<(), E> + Send + Sync,
    {
        if workers == 0 {
            return Err(Error::InvalidInput(format!("consumer {:?}: 0 workers", self.name)));
        }
        let mut summary = RunSummary::default();
        self.replay_requested(&mut |e: &EventRef<'_>| handler(&e.to_recorded()), &mut summary)?;
        let blocked = self.blocked_aggregates();
        let (done_tx, done_rx) = crossbeam_channel::unbounded::<Result<(u64, Outcome)>>();
        let Consumer { sub, committer, parked, options, stop, .. } = self;
        let (parked, options, handler) = (&*parked, &*options, &handler);
        let mut in_flight = BTreeSet::new();
        let mut failure = None;
        std::thread::scope(|scope| {
            let mut queues = Vec::with_capacity(workers);
            for w in 0..workers {
                let (tx, rx) = crossbeam_channel::bounded::<RecordedEvent>(WORKER_QUEUE);
                queues.push(tx);
                let done = done_tx.clone();
                let mut mine: HashMap<String, u64> =
                    blocked.iter().filter(|(a, _)| shard(a, workers) == w).map(|(a, p)| (a.clone(), *p)).collect();
                scope.spawn(move || {
                    let mut call = |e: &RecordedEvent| handler(e);
                    for event in rx {
                        let outcome = handle(parked, options, &mut mine, &mut call, &event);
                        if done.send(outcome.map(|o| (event.position, o))).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(done_tx);
            let result = (|| -> Result<()> {
                loop {
                    drain(&done_rx, &mut in_flight, &mut summary, None)?;
                    let low = in_flight.first().copied().unwrap_or(Subscription::position(sub));
                    let caught_up = until.is_some_and(|u| Subscription::position(sub) >= u);
                    if stop.requested() || (caught_up && in_flight.is_empty()) {
                        return Ok(());
                    }
                    committer.auto_commit(low, false)?;
                    if caught_up {
                        drain(&done_rx, &mut in_flight, &mut summary, Some(IDLE_WAIT))?;
                        continue;
                    }
                    let before = Subscription::position(sub);
                    let mut batch = match sub.batch(BATCH_EVENTS, IDLE_WAIT) {
                        Ok(b) => b,
                        Err(Error::Closed) => return Ok(()),
                        Err(e) => return Err(e),
                    };
                    for event in batch.events() {
                        let event = event?;
                        in_flight.insert(event.position());
                        let w = shard(event.aggregate_id(), workers);
                        if queues[w].send(event.to_recorded()).is_err() {
                            return Err(Error::InvalidInput("a consumer worker stopped unexpectedly".into()));
                        }
                    }
                    drop(batch);
                    if Subscription::position(sub) == before && in_flight.is_empty() {
                        committer.auto_commit(before, true)?;
                    }
                }
            })();
            // The workers finish what was queued, then stop.
            drop(queues);
            if let Err(e) = result {
                failure = Some(e);
            }
        });
        // Every worker has ended: collect what they reported last.
        if let Err(e) = drain(&done_rx, &mut in_flight, &mut summary, None) {
            failure.get_or_insert(e);
        }
        let low = in_flight.first().copied().unwrap_or(self.sub.position());
        self.committer.auto_commit(low, true)?;
        if let Some(e) = failure {
            return Err(e);
        }
        summary.next_position = low;
        Ok(summary)
    }

    /// Replays the parked events whose replay was requested.
    fn replay_requested<E: Display>(
        &mut self,
        handler: &mut impl FnMut(&EventRef<'_>) -> Result<(), E>,
        summary: &mut RunSummary,
    ) -> Result<()> {
        let parked = self.parked.get_mut().unwrap_or_else(|p| p.into_inner());
        let targets: Vec<u64> = parked.live().values().filter(|e| e.replay_requested).map(|e| e.position).collect();
        self.replay(&targets, handler, summary)
    }

    fn replay<E: Display>(
        &mut self,
        targets: &[u64],
        handler: &mut impl FnMut(&EventRef<'_>) -> Result<(), E>,
        summary: &mut RunSummary,
    ) -> Result<()> {
        let reader = self.store.reader();
        let parked = self.parked.get_mut().unwrap_or_else(|p| p.into_inner());
        for &position in targets {
            let Some(entry) = parked.live().get(&position).cloned() else { continue };
            let earlier_parked = parked.live().range(..position).any(|(_, e)| e.aggregate_id == entry.aggregate_id);
            if self.options.park_aggregate_behind && earlier_parked {
                continue;
            }
            let event = reader.event_at_position(position)?;
            match attempt(handler, &event, &self.options.retry) {
                Ok(()) => {
                    parked.remove(position, false)?;
                    summary.handled += 1;
                    summary.replayed += 1;
                }
                Err((attempts, error)) => {
                    let again = ParkedEvent {
                        attempts: entry.attempts.saturating_add(attempts),
                        error,
                        parked_at: crate::event::now_nanos(),
                        ..entry
                    };
                    parked.park(again)?;
                }
            }
        }
        Ok(())
    }

    /// The aggregates with a parked event, and the first such position:
    /// later events of these are parked behind it (when the option is on).
    fn blocked_aggregates(&mut self) -> HashMap<String, u64> {
        let mut blocked = HashMap::new();
        if self.options.park_aggregate_behind {
            for e in self.parked.get_mut().unwrap_or_else(|p| p.into_inner()).live().values() {
                blocked.entry(e.aggregate_id.clone()).or_insert(e.position);
            }
        }
        blocked
    }
}

/// The envelope fields the runner needs, from a borrowed or an owned event.
trait Envelope {
    fn position(&self) -> u64;
    fn aggregate_id(&self) -> &str;
}

impl Envelope for EventRef<'_> {
    fn position(&self) -> u64 {
        EventRef::position(self)
    }
    fn aggregate_id(&self) -> &str {
        EventRef::aggregate_id(self)
    }
}

impl Envelope for RecordedEvent {
    fn position(&self) -> u64 {
        self.position
    }
    fn aggregate_id(&self) -> &str {
        &self.aggregate_id
    }
}

/// Hands one event to the handler (with retries), parking it if it fails
/// for good or if an earlier event of its aggregate is parked.
fn handle<T: Envelope, E: Display>(
    parked: &Mutex<ParkedLog>,
    options: &ConsumerOptions,
    blocked: &mut HashMap<String, u64>,
    handler: &mut impl FnMut(&T) -> Result<(), E>,
    event: &T,
) -> Result<Outcome> {
    let aggregate_id = event.aggregate_id();
    let (attempts, error, behind) = match blocked.get(aggregate_id) {
        Some(&head) => (0, format!("parked behind the parked event at position {head} of its aggregate"), Some(head)),
        None => match attempt(handler, event, &options.retry) {
            Ok(()) => return Ok(Outcome::Handled),
            Err((attempts, error)) => (attempts, error, None),
        },
    };
    let entry = ParkedEvent {
        position: event.position(),
        aggregate_id: aggregate_id.to_string(),
        attempts,
        error,
        parked_at: crate::event::now_nanos(),
        behind,
        replay_requested: false,
    };
    parked.lock().unwrap_or_else(|p| p.into_inner()).park(entry)?;
    if options.park_aggregate_behind {
        blocked.entry(aggregate_id.to_string()).or_insert(event.position());
    }
    Ok(Outcome::Parked)
}

/// Calls the handler up to `policy.attempts` times; on failure, the number of
/// attempts made and the last error's text.
fn attempt<T: ?Sized, E: Display>(
    handler: &mut impl FnMut(&T) -> Result<(), E>,
    event: &T,
    policy: &RetryPolicy,
) -> std::result::Result<(), (u32, String)> {
    let mut wait = policy.backoff;
    let attempts = policy.attempts.max(1);
    let mut n = 0;
    loop {
        n += 1;
        match handler(event) {
            Ok(()) => return Ok(()),
            Err(e) if n >= attempts => return Err((n, e.to_string())),
            Err(_) => {
                std::thread::sleep(wait);
                wait = (wait * 2).min(policy.max_backoff);
            }
        }
    }
}

/// The worker that handles `aggregate_id`'s events.
fn shard(aggregate_id: &str, workers: usize) -> usize {
    let mut h = std::hash::DefaultHasher::new();
    aggregate_id.hash(&mut h);
    (h.finish() % workers as u64) as usize
}

/// Takes the workers' reports: every one waiting now, or (with `wait`) at
/// least one if it comes in time. A worker's storage error ends the run.
fn drain(
    done: &crossbeam_channel::Receiver<Result<(u64, Outcome)>>,
    in_flight: &mut BTreeSet<u64>,
    summary: &mut RunSummary,
    wait: Option<Duration>,
) -> Result<()> {
    if let Some(wait) = wait {
        match done.recv_timeout(wait) {
            Ok(report) => note(report?, in_flight, summary),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return Ok(()),
        }
    }
    while let Ok(report) = done.try_recv() {
        note(report?, in_flight, summary);
    }
    Ok(())
}

fn note((position, outcome): (u64, Outcome), in_flight: &mut BTreeSet<u64>, summary: &mut RunSummary) {
    in_flight.remove(&position);
    summary.count(outcome);
}
