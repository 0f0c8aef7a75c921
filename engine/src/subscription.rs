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
//! ones), so it never shows an event a crash could take back, unless the
//! caller asks for unflushed events too ([`Subscription::include_unflushed`]:
//! it then follows `visible_end`). It never writes anything.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::event::{Direction, EventRef, RecordedEvent};
use crate::filter::Filter;
use crate::reader::{AggregateEvents, AllEvents, Place, Reader};
use crate::shared::Shared;
use crate::upcast::{Upcasted, Upcasters};

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
    /// The end (durable, or visible with `unflushed`) the last read went up to (exclusive).
    seen_end: u64,
    /// Deliver events that are visible but not yet flushed (`Buffered` mode).
    unflushed: bool,
    /// Where the last walk of the whole log stopped, so the next batch goes
    /// on from there without an index lookup (only valid while it names `next`).
    place: Option<Place>,
    /// Made with `StartFrom::End`: `include_unflushed` moves the start to the visible end.
    from_end: bool,
    /// Upcasters for the owned deliveries and [`Batch::upcast_events`] (none by default).
    upcasters: Upcasters,
    /// A durable consumer's: below the retained start it is always told,
    /// whatever `Retention::clamp_reads_below_start` says.
    never_clamp: bool,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").field("scope", &self.scope).field("next", &self.next).finish()
    }
}

impl Subscription {
    pub(crate) fn all(shared: Arc<Shared>, from: StartFrom, filter: Filter) -> Subscription {
        let next = match from {
            StartFrom::Start => shared.segments().first().map_or(0, |s| s.first_position),
            StartFrom::Position(p) => p,
            StartFrom::End => shared.durable_end.load(std::sync::atomic::Ordering::SeqCst),
        };
        let from_end = from == StartFrom::End;
        Subscription {
            shared,
            scope: Scope::All,
            filter,
            next,
            seen_end: 0,
            unflushed: false,
            place: None,
            from_end,
            upcasters: Upcasters::default(),
            never_clamp: false,
        }
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
            unflushed: false,
            place: None,
            from_end: from == StartFrom::End,
            upcasters: Upcasters::default(),
            never_clamp: false,
        }
    }

    /// A durable consumer's subscription: below the retained start it is
    /// always told (`Error::BelowRetainedStart`), never moved on silently.
    pub(crate) fn never_clamp(mut self) -> Subscription {
        self.never_clamp = true;
        self
    }

    /// In `Buffered` mode, also deliver the events written but not flushed
    /// yet: what readers see, as soon as they see it, at the price that a
    /// machine crash (not a process crash) can take back an event this
    /// subscription already delivered. Off by default: only flushed events.
    /// No effect in `Sync` mode, where every visible event is durable.
    pub fn include_unflushed(mut self, on: bool) -> Subscription {
        self.unflushed = on;
        if self.from_end {
            // "The end" now means after the last visible event.
            let end = self.end();
            self.next = match &self.scope {
                Scope::All => end,
                Scope::Aggregate(id) => self.shared.index().version_below(id, end).map_or(0, |v| v + 1),
            };
        }
        self
    }

    /// Delivers events upcast by `upcasters` (the store's are
    /// [`crate::Store::upcasters`]): [`Subscription::recv`],
    /// [`Subscription::next_batch`] and the others that hand out owned
    /// events upcast each one, and [`Batch::upcast_events`] does it
    /// zero-copy where none applies ([`Batch::events`] stays as stored). The
    /// filter sees each event as stored, before upcasting: filter by the
    /// stored type names. An upcaster that fails stops delivery at that
    /// event with [`Error::UpcastFailed`]; the cursor stays on it, so every
    /// later call reports it again.
    pub fn upcast(mut self, upcasters: &Upcasters) -> Subscription {
        self.upcasters = upcasters.clone();
        self
    }

    /// Why the subscription ended: [`Error::Closed`], or, when the store
    /// was closed because it was poisoned (a read-only store that could not
    /// follow its writer), [`Error::Poisoned`] with the cause.
    fn closed_error(&self) -> Error {
        match self.shared.poison_cause() {
            Some(cause) => Error::Poisoned { cause },
            None => Error::Closed,
        }
    }

    /// The watermark this subscription delivers up to.
    fn end(&self) -> u64 {
        let watermark = if self.unflushed { &self.shared.visible_end } else { &self.shared.durable_end };
        watermark.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Sleeps until the watermark this subscription follows passes `position`.
    fn wait_past(&self, position: u64, deadline: Option<Instant>) {
        if self.unflushed {
            self.shared.wait_visible_past(position, deadline);
        } else {
            self.shared.wait_durable_past(position, deadline);
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
            self.wait_past(self.seen_end, deadline);
        }
    }

    /// Reads up to `max` matching durable events from the cursor on and moves it.
    /// A read error after some events were taken returns those (the cursor
    /// stops at the bad event, so the next call reports the error).
    fn take(&mut self, max: usize) -> Result<Vec<RecordedEvent>> {
        // A read-only store first looks at what the writer published (`batch` does too).
        let _ = self.shared.follow();
        let mut batch = self.open_batch(usize::MAX)?;
        let mut out = Vec::new();
        let mut events = batch.upcast_events();
        while out.len() < max {
            match events.next() {
                Some(Ok(event)) => out.push(event.into_recorded()),
                Some(Err(e)) if out.is_empty() => return Err(e),
                Some(Err(_)) | None => break,
            }
        }
        Ok(out)
    }

    /// The durable events from the cursor on, at most `max` positions (or
    /// versions, for one aggregate) of them, waiting at most `timeout` for
    /// the first one: the zero-copy form of [`Subscription::next_batch`],
    /// for catching up fast. Iterate [`Batch::events`] to get the matching
    /// ones; the cursor moves past each event examined as the iteration goes,
    /// so an event the iteration did not reach is delivered by the next call.
    /// A batch may hold no matching event (the filter skipped every event it
    /// covers), and is empty when nothing came in time.
    pub fn batch(&mut self, max: usize, timeout: Duration) -> Result<Batch<'_>> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if self.shared.closed.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(self.closed_error());
            }
            // A read-only store first looks at what the writer published (a
            // failure poisons and closes it: the check above then ends this).
            let _ = self.shared.follow();
            let end = self.end();
            let ready = match &self.scope {
                Scope::All => end > self.next,
                Scope::Aggregate(id) => self.shared.index().version_below(id, end).is_some_and(|v| v >= self.next),
            };
            if ready || max == 0 || deadline.is_some_and(|d| Instant::now() >= d) {
                return self.open_batch(max);
            }
            self.wait_past(end, deadline);
        }
    }

    /// A batch over what is durable now, from the cursor on, `max` events at most.
    fn open_batch(&mut self, max: usize) -> Result<Batch<'_>> {
        if self.shared.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(self.closed_error());
        }
        let watermark = self.end();
        let reader = Reader::new(&self.shared);
        let end = watermark.min(reader.end_position());
        self.seen_end = end;
        if let Scope::All = self.scope {
            let first = reader.first_position();
            if self.next < first {
                // Retention removed events this subscription has not seen: it is
                // told, unless the store clamps such reads.
                if self.never_clamp || !self.shared.clamp_below_start.load(std::sync::atomic::Ordering::Relaxed) {
                    return Err(Error::BelowRetainedStart { position: self.next, first_retained: first });
                }
                self.next = first;
            }
        }
        Ok(Batch {
            reader,
            scope: &self.scope,
            filter: &self.filter,
            upcasters: &self.upcasters,
            next: &mut self.next,
            place: &mut self.place,
            end,
            left: max,
        })
    }
}

/// Durable events a subscription handed out, zero-copy; see
/// [`Subscription::batch`]. Holds the segment maps the events live in.
pub struct Batch<'s> {
    reader: Reader,
    scope: &'s Scope,
    filter: &'s Filter,
    upcasters: &'s Upcasters,
    next: &'s mut u64,
    place: &'s mut Option<Place>,
    /// The durable end when the batch was made (exclusive).
    end: u64,
    /// How many more events (positions or versions) the batch may examine.
    left: usize,
}

impl Batch<'_> {
    /// The matching events of the batch, in order, borrowed from the maps.
    /// Each one examined (matching or not) moves the subscription's cursor
    /// (written back when the iterator is dropped).
    pub fn events(&mut self) -> BatchEvents<'_> {
        let next = *self.next;
        let walk = match self.scope {
            Scope::All => {
                let all = match *self.place {
                    Some(place) if place.position == next => self.reader.read_all_from(place),
                    _ => self.reader.read_all(next),
                };
                // Stop at the batch's end without stepping over the frame there.
                Walk::All(all.stop_at(self.end))
            }
            Scope::Aggregate(id) => Walk::Aggregate(self.reader.read_aggregate(id, next, Direction::Forward)),
        };
        BatchEvents {
            walk,
            // Events the lifecycle rules hide are skipped like filtered ones.
            match_all: self.filter.is_all() && !self.reader.hides_any(),
            filter: self.filter,
            cursor: self.next,
            place: self.place,
            left: &mut self.left,
            next,
            end: self.end,
        }
    }

    /// [`Batch::events`], each upcast by the subscription's upcasters
    /// ([`Subscription::upcast`]): borrowed where none applies, owned where
    /// one did. An upcaster's failure ends the batch with
    /// [`Error::UpcastFailed`] and leaves the cursor on that event.
    pub fn upcast_events(&mut self) -> UpcastBatchEvents<'_> {
        let upcasters = self.upcasters;
        UpcastBatchEvents { events: self.events(), upcasters }
    }

    /// One past the last durable position this batch can deliver.
    pub fn end_position(&self) -> u64 {
        self.end
    }
}

/// The walk under a batch: the global log or one aggregate.
enum Walk<'r> {
    All(AllEvents<'r>),
    Aggregate(AggregateEvents<'r>),
}

/// Iterator over a [`Batch`]'s matching events.
pub struct BatchEvents<'b> {
    walk: Walk<'b>,
    match_all: bool,
    filter: &'b Filter,
    /// The subscription's cursor, written back on drop.
    cursor: &'b mut u64,
    place: &'b mut Option<Place>,
    left: &'b mut usize,
    /// The next position (whole log) or version (one aggregate) to examine.
    next: u64,
    end: u64,
}

impl<'b> Iterator for BatchEvents<'b> {
    type Item = Result<EventRef<'b>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        while *self.left > 0 {
            let (event, next) = match &mut self.walk {
                Walk::All(it) if self.match_all => match it.next()? {
                    Ok(e) => (Some(e), e.position() + 1),
                    Err(e) => return Some(Err(self.stop(e))),
                },
                // The filter runs on envelopes: a skipped event's payload is never read.
                Walk::All(it) => match it.next_filtered(self.filter)? {
                    Ok(found) => (found, it.next_position().unwrap_or(self.next)),
                    Err(e) => return Some(Err(self.stop(e))),
                },
                Walk::Aggregate(it) => match it.next()? {
                    Ok(e) if e.position() >= self.end => return None,
                    Ok(e) => (Some(e).filter(|e| self.match_all || self.filter.matches(e)), e.version() + 1),
                    Err(e) => return Some(Err(self.stop(e))),
                },
            };
            *self.left -= 1;
            self.next = next;
            if let Some(event) = event {
                return Some(Ok(event));
            }
        }
        None
    }
}

impl BatchEvents<'_> {
    /// Ends the batch on a read error; the cursor stays at the bad event.
    fn stop(&mut self, e: Error) -> Error {
        *self.left = 0;
        e
    }

    /// Ends the batch on an error about `event`, which it already
    /// delivered: the cursor goes back to it.
    fn stop_at(&mut self, event: &EventRef<'_>, e: Error) -> Error {
        self.next = match self.walk {
            Walk::All(_) => event.position(),
            Walk::Aggregate(_) => event.version(),
        };
        self.stop(e)
    }
}

/// Iterator over a [`Batch`]'s matching events, upcast; see
/// [`Batch::upcast_events`].
pub struct UpcastBatchEvents<'b> {
    events: BatchEvents<'b>,
    upcasters: &'b Upcasters,
}

impl<'b> Iterator for UpcastBatchEvents<'b> {
    type Item = Result<Upcasted<'b>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let event = match self.events.next()? {
            Ok(event) => event,
            Err(e) => return Some(Err(e)),
        };
        match self.upcasters.upcast(event) {
            Ok(event) => Some(Ok(event)),
            Err(e) => Some(Err(self.events.stop_at(&event, e))),
        }
    }
}

impl Drop for BatchEvents<'_> {
    fn drop(&mut self) {
        *self.cursor = self.next;
        if let Walk::All(it) = &self.walk {
            // Only a place that names the cursor is kept (`events` checks).
            *self.place = it.place();
        }
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
