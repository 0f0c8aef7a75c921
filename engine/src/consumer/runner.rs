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
use crate::subscription::{StartFrom, Subscription};

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
    /// Parked before, handed out again after a crash: left parked.
    AlreadyParked,
}

impl RunSummary {
    fn count(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Handled => self.handled += 1,
            Outcome::Parked => self.parked += 1,
            Outcome::AlreadyParked => {}
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
        let end = super::durable_end(&self.store)?;
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
        let end = super::durable_end(&self.store)?;
        self.workers_loop(workers, handler, Some(end))
    }

    fn run_loop<E: Display>(
        &mut self,
        mut handler: impl FnMut(&EventRef<'_>) -> Result<(), E>,
        until: Option<u64>,
    ) -> Result<RunSummary> {
        let mut summary = RunSummary::default();
        self.replay_requested(&mut handler, &mut summary)?;
        let mut marks = self.parked_marks();
        loop {
            let next = self.sub.position();
            if self.stop.requested() || until.is_some_and(|u| next >= u) {
                break;
            }
            // Between batches every position below the cursor is handled or parked.
            self.committer.auto_commit(next, false)?;
            let mut batch = match self.sub.batch(BATCH_EVENTS, IDLE_WAIT) {
                Ok(b) => b,
                Err(Error::Closed) => return self.closed(summary),
                Err(e) => return Err(e),
            };
            let (parked, options, stop, committer) = (&self.parked, &self.options, &self.stop, &mut self.committer);
            let mut events = batch.events();
            let mut failure = None;
            while !stop.requested() {
                // A read error leaves the cursor at the bad event.
                let Some(event) = events.next() else { break };
                let event = match event {
                    Ok(e) => e,
                    Err(e) => {
                        failure = Some((e, None));
                        break;
                    }
                };
                match handle(parked, options, &mut marks, &mut handler, &event) {
                    Ok(outcome) => summary.count(outcome),
                    Err(e) => {
                        // Neither handled nor parked: the cursor must come back to it.
                        failure = Some((e, Some(event.position())));
                        break;
                    }
                }
                // Every position up to this event is handled (or filtered out):
                // a batch can be thousands of events, so commit within it too.
                if let Err(e) = committer.after_event(event.position() + 1) {
                    failure = Some((e, None));
                    break;
                }
            }
            drop(events);
            drop(batch);
            if let Some((e, at)) = failure {
                if let Some(position) = at {
                    self.rewind(position);
                }
                return Err(e);
            }
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

    /// The run's end when the store closed: a normal end, unless it closed
    /// because following a writer failed (then that error).
    fn closed(&mut self, mut summary: RunSummary) -> Result<RunSummary> {
        if let Some(e) = self.store.poison_error() {
            return Err(e);
        }
        let next = self.sub.position();
        self.committer.auto_commit(next, true)?;
        summary.next_position = next;
        Ok(summary)
    }

    /// Moves the subscription back to `position`, which was handed out but
    /// not handled: the next run delivers it again.
    fn rewind(&mut self, position: u64) {
        if position < self.sub.position() {
            self.sub = self.store.subscribe(StartFrom::Position(position), self.options.filter.clone());
        }
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
        let marks = self.parked_marks();
        let (done_tx, done_rx) = crossbeam_channel::unbounded::<Result<(u64, Outcome)>>();
        let Consumer { sub, committer, parked, options, stop, .. } = self;
        let (parked, options, handler) = (&*parked, &*options, &handler);
        let mut in_flight = BTreeSet::new();
        let mut failure = None;
        let mut closed = false;
        std::thread::scope(|scope| {
            let mut queues = Vec::with_capacity(workers);
            for w in 0..workers {
                let (tx, rx) = crossbeam_channel::bounded::<RecordedEvent>(WORKER_QUEUE);
                queues.push(tx);
                let done = done_tx.clone();
                let mut mine = marks.shard(w, workers);
                scope.spawn(move || {
                    let mut call = |e: &RecordedEvent| handler(e);
                    for event in rx {
                        let outcome = handle(parked, options, &mut mine, &mut call, &event);
                        let failed = outcome.is_err();
                        // After a failure this worker stops: its aggregates' later
                        // events must not be handled before the failed one.
                        if done.send(outcome.map(|o| (event.position, o))).is_err() || failed {
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
                        Err(Error::Closed) => {
                            closed = true;
                            return Ok(());
                        }
                        Err(e) => return Err(e),
                    };
                    for event in batch.events() {
                        let event = event?;
                        in_flight.insert(event.position());
                        let w = shard(event.aggregate_id(), workers);
                        if queues[w].send(event.to_recorded()).is_err() {
                            // That worker stopped on an error: it reports it below.
                            return Ok(());
                        }
                        // A batch can be thousands of events: commit within it too.
                        drain(&done_rx, &mut in_flight, &mut summary, None)?;
                        if let Some(&low) = in_flight.first() {
                            committer.after_event(low)?;
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
        // Every worker has ended: collect what they reported last. A worker's
        // error is the cause of any failure the dispatcher saw after it.
        if let Err(e) = drain(&done_rx, &mut in_flight, &mut summary, None) {
            failure = Some(e);
        }
        // Nothing at or after the oldest event in flight is known handled.
        let low = in_flight.first().copied().unwrap_or(self.sub.position());
        self.rewind(low);
        if let Some(e) = failure {
            return Err(e);
        }
        if closed {
            return self.closed(summary);
        }
        self.committer.auto_commit(low, true)?;
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

    /// What the dead-letter list says about the events a run will see.
    fn parked_marks(&mut self) -> Marks {
        let from = self.sub.position();
        let park_behind = self.options.park_aggregate_behind;
        let mut marks = Marks::default();
        for e in self.parked.get_mut().unwrap_or_else(|p| p.into_inner()).live().values() {
            if park_behind {
                marks.blocked.entry(e.aggregate_id.clone()).or_insert(e.position);
            }
            if e.position >= from {
                marks.parked.insert(e.position, e.aggregate_id.clone());
            }
        }
        marks
    }
}

/// What a runner (or one worker) knows of the dead-letter list.
#[derive(Default, Clone)]
struct Marks {
    /// Aggregates with a parked event, and their first parked position:
    /// later events of these are parked behind it (when the option is on).
    blocked: HashMap<String, u64>,
    /// Parked events at or after the run's start: delivered again because
    /// a crash came before the checkpoint passed them. They stay parked.
    parked: HashMap<u64, String>,
}

impl Marks {
    /// The marks of the aggregates worker `w` of `n` handles.
    fn shard(&self, w: usize, n: usize) -> Marks {
        Marks {
            blocked: self.blocked.iter().filter(|(a, _)| shard(a, n) == w).map(|(a, p)| (a.clone(), *p)).collect(),
            parked: self.parked.iter().filter(|(_, a)| shard(a, n) == w).map(|(p, a)| (*p, a.clone())).collect(),
        }
    }
}

/// The envelope fields the runner needs, from a borrowed or an owned event.
trait Envelope {
    fn position(&self) -> u64;
    fn aggregate_id(&self) -> &str;
}

impl Envelope for EventRef<'_> {
    fn position(&self) -> u64 {
        crate::event::Envelope::position(self)
    }
    fn aggregate_id(&self) -> &str {
        crate::event::Envelope::aggregate_id(self)
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
/// for good or if an earlier event of its aggregate is parked. An event that
/// is parked already (delivered again after a crash) is left as it is.
fn handle<T: Envelope, E: Display>(
    parked: &Mutex<ParkedLog>,
    options: &ConsumerOptions,
    marks: &mut Marks,
    handler: &mut impl FnMut(&T) -> Result<(), E>,
    event: &T,
) -> Result<Outcome> {
    let position = event.position();
    if !marks.parked.is_empty() && marks.parked.contains_key(&position) {
        return Ok(Outcome::AlreadyParked);
    }
    let aggregate_id = event.aggregate_id();
    let blocked = if marks.blocked.is_empty() { None } else { marks.blocked.get(aggregate_id) };
    let (attempts, error, behind) = match blocked {
        // Only later events wait behind it (earlier ones come again after a crash).
        Some(&head) if head < position => {
            (0, format!("parked behind the parked event at position {head} of its aggregate"), Some(head))
        }
        _ => match attempt(handler, event, &options.retry) {
            Ok(()) => return Ok(Outcome::Handled),
            Err((attempts, error)) => (attempts, error, None),
        },
    };
    let entry = ParkedEvent {
        position,
        aggregate_id: aggregate_id.to_string(),
        attempts,
        error,
        parked_at: crate::event::now_nanos(),
        behind,
        replay_requested: false,
    };
    parked.lock().unwrap_or_else(|p| p.into_inner()).park(entry)?;
    if options.park_aggregate_behind {
        marks.blocked.entry(aggregate_id.to_string()).or_insert(position);
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
                wait = wait.saturating_mul(2).min(policy.max_backoff);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConsumerOptions, ExpectedVersion, NewEvent, Options, Store};

    fn store_with(n: u64) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Options::default()).unwrap();
        for i in 0..n {
            let ev = NewEvent::new(crate::EventId::new_v7(), "Happened", format!("{i}"));
            store.append(&format!("agg-{}", i % 3), ExpectedVersion::Any, vec![ev]).unwrap();
        }
        (dir, store)
    }

    fn options() -> ConsumerOptions {
        ConsumerOptions::default()
            .retry(RetryPolicy::new(1, Duration::ZERO, Duration::ZERO))
            .commit_every_events(1)
            .commit_every(Duration::ZERO)
    }

    #[test]
    fn a_failed_park_leaves_the_event_to_the_next_run_never_skips_it() {
        let (_dir, store) = store_with(12);
        let mut c = store.consumer("c", options()).unwrap();
        c.parked.get_mut().unwrap().break_writes();
        let fail_at_5 = |e: &EventRef<'_>| if e.position() == 5 { Err("no") } else { Ok(()) };
        assert!(matches!(c.run_until_caught_up(fail_at_5), Err(Error::Io { .. })));
        assert_eq!(c.position(), 5, "the cursor is back at the event that was neither handled nor parked");
        assert!(c.committed() <= 5);
        // Running again on the same handle does not commit past it either.
        assert!(c.run_until_caught_up(fail_at_5).is_err());
        assert!(c.committed() <= 5);
        drop(c);
        let mut c = store.consumer("c", options()).unwrap();
        let s = c.run_until_caught_up(fail_at_5).unwrap();
        assert_eq!((s.parked, c.parked()[0].position, c.committed()), (3, 5, 12), "5, and 8 and 11 behind it");
    }

    #[test]
    fn with_workers_a_failed_park_stops_its_worker_and_the_checkpoint_stays_below_it() {
        let (_dir, store) = store_with(300);
        let mut c = store.consumer("w", options()).unwrap();
        c.parked.get_mut().unwrap().break_writes();
        let handled = Mutex::new(Vec::new());
        let r = c.run_workers_until_caught_up(3, |e: &RecordedEvent| {
            if e.position == 40 {
                return Err("no");
            }
            handled.lock().unwrap().push((e.aggregate_id.clone(), e.position));
            Ok(())
        });
        assert!(matches!(r, Err(Error::Io { .. })), "{r:?}");
        assert!(c.position() <= 40 && c.committed() <= 40, "{} {}", c.position(), c.committed());
        // Nothing of position 40's aggregate after it was handled.
        let agg = format!("agg-{}", 40 % 3);
        assert!(handled.lock().unwrap().iter().all(|(a, p)| *a != agg || *p < 40));
    }

    #[test]
    fn a_parked_event_delivered_again_after_a_crash_stays_parked_as_it_was() {
        let (_dir, store) = store_with(9);
        let manual = options().auto_commit(false);
        let mut c = store.consumer("p", manual.clone()).unwrap();
        let s = c.run_until_caught_up(|e: &EventRef<'_>| if e.position() == 3 { Err("bad data") } else { Ok(()) });
        // position 3 (agg-0) parked, and 6 behind it; nothing committed: as after a crash.
        assert_eq!(s.unwrap().parked, 2);
        drop(c);
        let mut c = store.consumer("p", manual).unwrap();
        let mut seen = Vec::new();
        let s = c
            .run_until_caught_up(|e: &EventRef<'_>| -> Result<(), String> {
                seen.push(e.position());
                Ok(())
            })
            .unwrap();
        assert_eq!((s.handled, s.parked), (7, 0));
        assert!(!seen.contains(&3) && !seen.contains(&6));
        let parked = c.parked();
        assert_eq!((parked[0].position, parked[0].attempts, parked[0].error.as_str()), (3, 1, "bad data"));
        assert_eq!(parked[1].behind, Some(3));
    }
}
