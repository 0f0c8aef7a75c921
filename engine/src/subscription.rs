//! In-process subscriptions: [`Subscription`] delivers the log's durable
//! events in global order (or one aggregate's, in version order), first
//! catching up from the mapped segments and then following the writer live,
//! sleeping on the durable watermark's condition variable in between. Which
//! events it delivers is a [`Filter`] (module `filter`).
//!
//! A subscription holds no queue: it remembers the next position and reads
//! the log, so a slow subscriber costs the writer nothing and holds no
//! memory that grows. It never delivers an event past `durable_end` (in
//! `Sync` mode every acknowledged event; in `Buffered` mode the flushed
//! ones), so it never shows an event a crash could take back. It never
//! writes anything.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::event::RecordedEvent;
use crate::filter::Filter;
use crate::reader::Reader;
use crate::shared::Shared;

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// The first event of the log.
    Start,
    /// This global position (for [`crate::Store::subscribe_aggregate`]: this version).
    Position(u64),
    /// After the last durable event: only events appended from now on.
    End,
}

/// What a subscription follows.
#[derive(Debug, Clone)]
enum Scope {
    /// The whole log; the cursor is the next global position.
    All,
    /// One aggregate; the cursor is the next version.
    Aggregate(String),
}

/// A live, ordered feed of the store's durable events; see
/// [`crate::Store::subscribe`]. `Send`: move it to the thread that consumes it.
pub struct Subscription {
    shared: Arc<Shared>,
    scope: Scope,
    filter: Filter,
    /// The next global position (whole log) or version (one aggregate) to look at.
    next: u64,
    /// The durable end the last read went up to (exclusive).
    seen_end: u64,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").field("scope", &self.scope).field("next", &self.next).finish()
    }
}

impl Subscription {
    pub(crate) fn all(shared: Arc<Shared>, from: StartFrom, filter: Filter) -> Subscription {
        let next = match from {
            StartFrom::Start => 0,
            StartFrom::Position(p) => p,
            StartFrom::End => shared.durable_end.load(std::sync::atomic::Ordering::SeqCst),
        };
        Subscription { shared, scope: Scope::All, filter, next, seen_end: 0 }
    }

    pub(crate) fn aggregate(shared: Arc<Shared>, aggregate_id: &str, from: StartFrom) -> Subscription {
        let next = match from {
            StartFrom::Start => 0,
            StartFrom::Position(v) => v,
            StartFrom::End => {
                let end = shared.durable_end.load(std::sync::atomic::Ordering::SeqCst);
                shared.index().version_below(aggregate_id, end).map_or(0, |v| v + 1)
            }
        };
        Subscription {
            shared,
            scope: Scope::Aggregate(aggregate_id.to_string()),
            filter: Filter::all(),
            next,
            seen_end: 0,
        }
    }

    /// The next global position (or, for one aggregate, version) this
    /// subscription will look at: what to store as a checkpoint.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// The next matching event, waiting as long as it takes. Fails with
    /// [`Error::Closed`] once the store is closed. (As an [`Iterator`], a
    /// subscription yields the same events and ends when the store closes.)
    pub fn recv(&mut self) -> Result<RecordedEvent> {
        loop {
            if let Some(e) = self.next_timeout(Duration::from_secs(3600))? {
                return Ok(e);
            }
        }
    }

    /// The next matching event, waiting at most `timeout` (`None` if none came).
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<RecordedEvent>> {
        Ok(self.next_batch(1, timeout)?.pop())
    }

    /// The next matching event if one is durable now, without waiting.
    pub fn try_next(&mut self) -> Result<Option<RecordedEvent>> {
        Ok(self.take(1)?.pop())
    }

    /// Every matching event durable now, up to `max`, waiting at most
    /// `timeout` for the first one (an empty batch: none came in time).
    pub fn next_batch(&mut self, max: usize, timeout: Duration) -> Result<Vec<RecordedEvent>> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let batch = self.take(max)?;
            if !batch.is_empty() || max == 0 {
                return Ok(batch);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(batch);
            }
            // Everything below `seen_end` was looked at: sleep until more is durable.
            self.shared.wait_durable_past(self.seen_end, deadline);
        }
    }

    /// Reads up to `max` matching durable events from the cursor on and moves it.
    fn take(&mut self, max: usize) -> Result<Vec<RecordedEvent>> {
        if self.shared.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        let durable = self.shared.durable_end.load(std::sync::atomic::Ordering::SeqCst);
        let reader = Reader::new(&self.shared);
        let end = durable.min(reader.end_position());
        self.seen_end = end;
        let mut out = Vec::new();
        match &self.scope {
            Scope::All => {
                let start = self.next.max(reader.first_position());
                self.next = start;
                for event in reader.read_all(start) {
                    let event = event?;
                    if event.position() >= end || out.len() == max {
                        break;
                    }
                    self.next = event.position() + 1;
                    if self.filter.matches(&event) {
                        out.push(event.to_recorded());
                    }
                }
            }
            Scope::Aggregate(id) => {
                for event in reader.read_aggregate(id, self.next, crate::Direction::Forward) {
                    let event = event?;
                    if event.position() >= end || out.len() == max {
                        break;
                    }
                    self.next = event.version() + 1;
                    out.push(event.to_recorded());
                }
            }
        }
        Ok(out)
    }
}

impl Iterator for Subscription {
    type Item = Result<RecordedEvent>;

    /// Blocks until the next matching event; `None` once the store is closed.
    fn next(&mut self) -> Option<Result<RecordedEvent>> {
        match self.recv() {
            Ok(e) => Some(Ok(e)),
            Err(Error::Closed) => None,
            Err(e) => Some(Err(e)),
        }
    }
}
