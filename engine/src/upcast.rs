//! Schema evolution on the read path. [`Upcasters`] is a registry of
//! functions that turn a stored event at `(event_type, event_version)` into
//! the same event at a later version (maybe under a new type name, with new
//! data and metadata); they chain, v1 → v2 → v3. [`Upcasted`] is what an
//! upcasting read hands out: the zero-copy [`EventRef`] when no upcaster
//! applies, an owned [`RecordedEvent`] when one did.
//!
//! This module owns the registry, its checks (one upcaster per starting
//! point, no loops), the fast "does any upcaster apply?" test and the chain
//! walk. It must never touch a file or change what is stored, and never let
//! an upcaster change an event's identity: its id, aggregate, version,
//! position, timestamps, causation and correlation are not the upcaster's
//! to write ([`Upcast`] offers only `data` and `metadata` for writing; the
//! new type name and version are the ones the registration declared).

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::event::{EventId, EventRef, RecordedEvent};
use crate::record::NAME_BYTES_MAX;

/// A registered upcaster's function.
type UpcastFn = dyn Fn(&mut Upcast) -> Result<(), UpcastError> + Send + Sync;

/// Why an upcaster could not upcast an event: a message, reported as the
/// `reason` of [`Error::UpcastFailed`]. Any [`std::error::Error`] converts
/// into it, so `?` works inside an upcaster on a parse error, say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpcastError {
    message: String,
}

impl UpcastError {
    /// An error with this message.
    pub fn new(message: impl std::fmt::Display) -> UpcastError {
        UpcastError { message: message.to_string() }
    }
}

impl<E: std::error::Error> From<E> for UpcastError {
    fn from(e: E) -> UpcastError {
        UpcastError::new(e)
    }
}

impl std::fmt::Display for UpcastError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The event an upcaster works on: its payload and metadata to rewrite, and
/// the rest of the envelope to read. `event_type` and `event_version` are
/// those of this step of the chain (what the step was registered from); the
/// engine sets the ones the registration declared as its target after the
/// upcaster returns.
#[derive(Debug)]
pub struct Upcast {
    /// The payload: replace it with the payload at the target version.
    pub data: Bytes,
    /// The metadata: replace it, or leave it as it is.
    pub metadata: Bytes,
    /// The event, with empty `data` and `metadata` (they are the fields above).
    event: RecordedEvent,
}

impl Upcast {
    /// The type name at this step of the chain.
    pub fn event_type(&self) -> &str {
        &self.event.event_type
    }
    /// The schema version at this step of the chain.
    pub fn event_version(&self) -> u32 {
        self.event.event_version
    }
    /// The event's unique id.
    pub fn event_id(&self) -> EventId {
        self.event.event_id
    }
    /// The aggregate it belongs to.
    pub fn aggregate_id(&self) -> &str {
        &self.event.aggregate_id
    }
    /// Its version within the aggregate.
    pub fn version(&self) -> u64 {
        self.event.version
    }
    /// Its global position.
    pub fn position(&self) -> u64 {
        self.event.position
    }
    /// When it happened (caller's clock), unix nanoseconds.
    pub fn occurred_at(&self) -> i64 {
        self.event.occurred_at
    }
    /// When the engine wrote it, unix nanoseconds.
    pub fn recorded_at(&self) -> i64 {
        self.event.recorded_at
    }
    /// The causing event or command, if given.
    pub fn causation_id(&self) -> Option<EventId> {
        self.event.causation_id
    }
    /// The correlation id, if given.
    pub fn correlation_id(&self) -> Option<EventId> {
        self.event.correlation_id
    }
}

/// One registered step: from a `(type, version)` (the map key) to a target.
#[derive(Clone)]
struct Step {
    from_version: u32,
    to_type: Arc<str>,
    to_version: u32,
    f: Arc<UpcastFn>,
}

/// The registry behind [`Upcasters`].
#[derive(Clone, Default)]
struct Registry {
    /// Steps by the type name they start from (one per starting version).
    steps: HashMap<Box<str>, Vec<Step>, foldhash::fast::RandomState>,
    /// A 256-bit Bloom filter of the starting points, keyed by [`slot`]: a
    /// clear bit proves no upcaster starts there without hashing the name.
    maybe: [u64; 4],
    count: usize,
}

/// The filter slot of a starting point: a few instructions over the name's
/// length, first and last byte, and the version (multiplicative hashing:
/// the top byte of the product, which every input bit reaches).
#[inline(always)]
fn slot(event_type: &str, event_version: u32) -> usize {
    let bytes = event_type.as_bytes();
    let first = u64::from(bytes.first().copied().unwrap_or(0));
    let last = u64::from(bytes.last().copied().unwrap_or(0));
    let mut x = bytes.len() as u64 | (first << 8) | (last << 16) | (u64::from(event_version) << 32);
    x ^= x >> 29;
    (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as usize
}

impl Registry {
    #[inline(always)]
    fn may_start_at(&self, event_type: &str, event_version: u32) -> bool {
        let s = slot(event_type, event_version);
        self.maybe.get(s / 64).is_some_and(|word| word & (1 << (s % 64)) != 0)
    }

    fn step(&self, event_type: &str, event_version: u32) -> Option<&Step> {
        self.steps.get(event_type)?.iter().find(|s| s.from_version == event_version)
    }
}

/// Upcasters, registered per starting point `(event_type, event_version)`.
/// Cheap to clone (the registry is shared); registering on a clone does not
/// change the others. Give them to the store with
/// [`crate::Options::upcasters`], then ask for upcast events where you read:
/// [`crate::Store::read_all_upcast`], [`crate::Store::read_aggregate_upcast`],
/// [`crate::Loaded::upcast_events`], [`crate::Subscription::upcast`], or
/// [`Upcasters::events`] over any [`crate::Reader`] iterator. Plain reads
/// never upcast.
///
/// An event is upcast while an upcaster starts at its current
/// `(event_type, event_version)`: the chain v1 → v2 → v3 runs whole. With
/// none registered, or none starting at an event's type and version, the
/// event is handed out zero-copy, as it is stored; the test costs a few
/// instructions per event (see README, "Upcasting", for W6 with and
/// without).
///
/// An upcaster that returns an error, or panics, fails the read with
/// [`Error::UpcastFailed`] naming the event's position (a panic is caught;
/// the panic hook still prints it).
#[derive(Clone, Default)]
pub struct Upcasters {
    registry: Arc<Registry>,
}

impl std::fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut steps: Vec<String> = Vec::with_capacity(self.registry.count);
        for (from_type, list) in &self.registry.steps {
            for s in list {
                steps.push(format!("{from_type} v{} -> {} v{}", s.from_version, s.to_type, s.to_version));
            }
        }
        steps.sort();
        f.debug_struct("Upcasters").field("steps", &steps).finish()
    }
}

impl Upcasters {
    /// No upcasters.
    pub fn new() -> Upcasters {
        Upcasters::default()
    }

    /// Registers `f` as the upcaster of events stored at `from` =
    /// `(event_type, event_version)`, producing the event at `to` (the same
    /// type or a new name; a later version, or the same version under a new
    /// name). `f` rewrites [`Upcast::data`] and [`Upcast::metadata`]; the
    /// engine then gives the event `to`'s type and version.
    ///
    /// Fails with [`Error::InvalidUpcaster`], registering nothing, when an
    /// upcaster already starts at `from` (which one should run would be
    /// ambiguous), when `to` is not later than `from` (an earlier version, or
    /// `from` itself), when a name is empty or longer than
    /// [`crate::NAME_BYTES_MAX`] bytes, or when the chain from `to` leads back
    /// to `from` (a loop).
    pub fn register<F>(&mut self, from: (&str, u32), to: (&str, u32), f: F) -> Result<&mut Upcasters>
    where
        F: Fn(&mut Upcast) -> Result<(), UpcastError> + Send + Sync + 'static,
    {
        self.check(from, to)?;
        let registry = Arc::make_mut(&mut self.registry);
        let step = Step { from_version: from.1, to_type: Arc::from(to.0), to_version: to.1, f: Arc::new(f) };
        registry.steps.entry(Box::from(from.0)).or_default().push(step);
        let s = slot(from.0, from.1);
        if let Some(word) = registry.maybe.get_mut(s / 64) {
            *word |= 1 << (s % 64);
        }
        registry.count += 1;
        Ok(self)
    }

    /// Why `from → to` cannot be registered, if it cannot.
    fn check(&self, from: (&str, u32), to: (&str, u32)) -> Result<()> {
        let refuse =
            |reason: String| Error::InvalidUpcaster { event_type: from.0.to_string(), event_version: from.1, reason };
        for name in [from.0, to.0] {
            if name.is_empty() || name.len() > NAME_BYTES_MAX {
                return Err(refuse(format!("type name of {} bytes (1..={NAME_BYTES_MAX})", name.len())));
            }
        }
        if to.1 < from.1 || to == from {
            return Err(refuse(format!("target {:?} v{} is not later", to.0, to.1)));
        }
        if let Some(s) = self.registry.step(from.0, from.1) {
            return Err(refuse(format!("an upcaster to {:?} v{} starts there already", s.to_type, s.to_version)));
        }
        // The registry has no loop, so this walk ends within `count` steps.
        let mut at = (to.0, to.1);
        for _ in 0..=self.registry.count {
            if at == from {
                return Err(refuse(format!("the chain from {:?} v{} leads back to it: a loop", to.0, to.1)));
            }
            match self.registry.step(at.0, at.1) {
                Some(s) => at = (&s.to_type, s.to_version),
                None => return Ok(()),
            }
        }
        Err(refuse("the registry holds a loop".into()))
    }

    /// How many upcasters are registered.
    pub fn len(&self) -> usize {
        self.registry.count
    }

    /// Whether none is registered.
    pub fn is_empty(&self) -> bool {
        self.registry.count == 0
    }

    /// Whether an upcaster starts at `(event_type, event_version)`: whether
    /// an event stored so would be upcast.
    #[inline(always)]
    pub fn applies(&self, event_type: &str, event_version: u32) -> bool {
        let registry = &*self.registry;
        registry.count != 0
            && registry.may_start_at(event_type, event_version)
            && registry.step(event_type, event_version).is_some()
    }

    /// The event as the upcasters make it: borrowed, as stored, when none
    /// applies; owned and upcast through the whole chain when one does.
    #[inline]
    pub fn upcast<'a>(&self, event: EventRef<'a>) -> Result<Upcasted<'a>> {
        // Before the name is even looked at: with none registered, nothing more to do.
        if self.registry.count == 0 || !self.applies(event.event_type(), event.event_version()) {
            return Ok(Upcasted::Borrowed(event));
        }
        self.run_chain(event.to_recorded()).map(|e| Upcasted::Owned(Box::new(e)))
    }

    /// An owned event, upcast through the whole chain (returned as it is
    /// when no upcaster applies).
    pub fn upcast_recorded(&self, event: RecordedEvent) -> Result<RecordedEvent> {
        if !self.applies(&event.event_type, event.event_version) {
            return Ok(event);
        }
        self.run_chain(event)
    }

    /// `events` (any iterator a [`crate::Reader`] gives) with each event
    /// upcast. It ends after the first error, as the reader's iterators do.
    pub fn events<'u, 'a, I>(&'u self, events: I) -> UpcastEvents<'u, I::IntoIter>
    where
        I: IntoIterator<Item = Result<EventRef<'a>>>,
    {
        UpcastEvents { events: events.into_iter(), upcasters: self, done: false }
    }

    /// Runs every step that starts where `event` stands, in turn.
    fn run_chain(&self, mut event: RecordedEvent) -> Result<RecordedEvent> {
        // The registry has no loop: a chain is at most `count` steps long.
        for _ in 0..self.registry.count {
            let Some(step) = self.registry.step(&event.event_type, event.event_version) else {
                return Ok(event);
            };
            event = run_step(step, event)?;
        }
        Ok(event)
    }
}

/// One step of a chain: the upcaster runs on the event (a panic caught and
/// reported like an error), then the event takes the step's target type and
/// version.
fn run_step(step: &Step, mut event: RecordedEvent) -> Result<RecordedEvent> {
    let data = std::mem::take(&mut event.data);
    let metadata = std::mem::take(&mut event.metadata);
    let mut up = Upcast { data, metadata, event };
    let outcome = catch_unwind(AssertUnwindSafe(|| (step.f)(&mut up)));
    let Upcast { data, metadata, mut event } = up;
    let reason = match outcome {
        Ok(Ok(())) => {
            event.data = data;
            event.metadata = metadata;
            event.event_type = step.to_type.to_string();
            event.event_version = step.to_version;
            return Ok(event);
        }
        Ok(Err(e)) => e.message,
        Err(panic) => format!("the upcaster panicked: {}", panic_message(panic.as_ref())),
    };
    Err(Error::UpcastFailed {
        position: event.position,
        aggregate_id: event.aggregate_id,
        version: event.version,
        event_type: event.event_type,
        event_version: event.event_version,
        reason,
    })
}

/// The text a panic was raised with, when it was a string.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

/// An event from an upcasting read: the stored event, zero-copy, when no
/// upcaster applied (`Borrowed`), or the upcast copy (`Owned`). Like a
/// `Cow`; its accessors read either.
#[derive(Debug, Clone)]
pub enum Upcasted<'a> {
    /// As stored, borrowed from the segment's map.
    Borrowed(EventRef<'a>),
    /// Upcast: an owned copy at the chain's last version.
    Owned(Box<RecordedEvent>),
}

impl<'a> Upcasted<'a> {
    /// Whether an upcaster changed it (it is owned).
    pub fn is_upcast(&self) -> bool {
        matches!(self, Upcasted::Owned(_))
    }
    /// The type name (after upcasting).
    pub fn event_type(&self) -> &str {
        match self {
            Upcasted::Borrowed(e) => e.event_type(),
            Upcasted::Owned(e) => &e.event_type,
        }
    }
    /// The schema version of `data` (after upcasting).
    pub fn event_version(&self) -> u32 {
        match self {
            Upcasted::Borrowed(e) => e.event_version(),
            Upcasted::Owned(e) => e.event_version,
        }
    }
    /// The payload (after upcasting).
    pub fn data(&self) -> &[u8] {
        match self {
            Upcasted::Borrowed(e) => e.data(),
            Upcasted::Owned(e) => &e.data,
        }
    }
    /// The metadata (after upcasting).
    pub fn metadata(&self) -> &[u8] {
        match self {
            Upcasted::Borrowed(e) => e.metadata(),
            Upcasted::Owned(e) => &e.metadata,
        }
    }
    /// The event's unique id.
    pub fn event_id(&self) -> EventId {
        match self {
            Upcasted::Borrowed(e) => e.event_id(),
            Upcasted::Owned(e) => e.event_id,
        }
    }
    /// The aggregate it belongs to.
    pub fn aggregate_id(&self) -> &str {
        match self {
            Upcasted::Borrowed(e) => e.aggregate_id(),
            Upcasted::Owned(e) => &e.aggregate_id,
        }
    }
    /// Version within the aggregate.
    pub fn version(&self) -> u64 {
        match self {
            Upcasted::Borrowed(e) => e.version(),
            Upcasted::Owned(e) => e.version,
        }
    }
    /// Global position.
    pub fn position(&self) -> u64 {
        match self {
            Upcasted::Borrowed(e) => e.position(),
            Upcasted::Owned(e) => e.position,
        }
    }
    /// When it happened (caller's clock), unix nanoseconds.
    pub fn occurred_at(&self) -> i64 {
        match self {
            Upcasted::Borrowed(e) => e.occurred_at(),
            Upcasted::Owned(e) => e.occurred_at,
        }
    }
    /// When the engine wrote it, unix nanoseconds.
    pub fn recorded_at(&self) -> i64 {
        match self {
            Upcasted::Borrowed(e) => e.recorded_at(),
            Upcasted::Owned(e) => e.recorded_at,
        }
    }
    /// The causing event or command, if given.
    pub fn causation_id(&self) -> Option<EventId> {
        match self {
            Upcasted::Borrowed(e) => e.causation_id(),
            Upcasted::Owned(e) => e.causation_id,
        }
    }
    /// The correlation id, if given.
    pub fn correlation_id(&self) -> Option<EventId> {
        match self {
            Upcasted::Borrowed(e) => e.correlation_id(),
            Upcasted::Owned(e) => e.correlation_id,
        }
    }
    /// An owned copy (the borrowed event is copied once).
    pub fn to_recorded(&self) -> RecordedEvent {
        match self {
            Upcasted::Borrowed(e) => e.to_recorded(),
            Upcasted::Owned(e) => RecordedEvent::clone(e),
        }
    }
    /// The owned event (the borrowed one is copied; the upcast one moves out).
    pub fn into_recorded(self) -> RecordedEvent {
        match self {
            Upcasted::Borrowed(e) => e.to_recorded(),
            Upcasted::Owned(e) => *e,
        }
    }
}

/// A reader's iterator with each event upcast; see [`Upcasters::events`].
pub struct UpcastEvents<'u, I> {
    events: I,
    upcasters: &'u Upcasters,
    done: bool,
}

impl<'a, I> Iterator for UpcastEvents<'_, I>
where
    I: Iterator<Item = Result<EventRef<'a>>>,
{
    type Item = Result<Upcasted<'a>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let failed = match self.events.next()? {
            Ok(event) => match self.upcasters.upcast(event) {
                Ok(event) => return Some(Ok(event)),
                Err(e) => e,
            },
            Err(e) => e,
        };
        self.done = true;
        Some(Err(failed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event_type: &str, event_version: u32, data: &'static str) -> RecordedEvent {
        RecordedEvent {
            event_id: EventId([1; 16]),
            aggregate_id: "acct-1".into(),
            version: 3,
            position: 42,
            event_type: event_type.into(),
            event_version,
            occurred_at: 7,
            recorded_at: 8,
            causation_id: None,
            correlation_id: Some(EventId([2; 16])),
            metadata: Bytes::from_static(b"m"),
            data: Bytes::from_static(data.as_bytes()),
        }
    }

    fn append(suffix: &'static str) -> impl Fn(&mut Upcast) -> Result<(), UpcastError> + Send + Sync {
        move |e: &mut Upcast| {
            let mut data = e.data.to_vec();
            data.extend_from_slice(suffix.as_bytes());
            e.data = data.into();
            Ok(())
        }
    }

    #[test]
    fn a_chain_runs_whole_and_keeps_the_identity() {
        let mut up = Upcasters::new();
        up.register(("Placed", 2), ("Placed", 3), append("+3")).unwrap();
        up.register(("Placed", 1), ("Placed", 2), append("+2")).unwrap();
        let out = up.upcast_recorded(event("Placed", 1, "d")).unwrap();
        assert_eq!((out.event_type.as_str(), out.event_version, &out.data[..]), ("Placed", 3, &b"d+2+3"[..]));
        let before = event("Placed", 1, "d");
        assert_eq!(
            (out.event_id, out.aggregate_id.as_str(), out.version, out.position),
            (before.event_id, "acct-1", 3, 42)
        );
        assert_eq!(
            (out.occurred_at, out.recorded_at, out.correlation_id, &out.metadata[..]),
            (7, 8, before.correlation_id, &b"m"[..])
        );
        // Starting mid-chain runs the rest only; the end of the chain is left alone.
        assert_eq!(&up.upcast_recorded(event("Placed", 2, "d")).unwrap().data[..], b"d+3");
        assert_eq!(up.upcast_recorded(event("Placed", 3, "d")).unwrap(), event("Placed", 3, "d"));
    }

    #[test]
    fn ambiguous_backward_and_looping_registrations_are_refused() {
        let mut up = Upcasters::new();
        up.register(("A", 1), ("B", 1), append("")).unwrap();
        up.register(("B", 1), ("B", 2), append("")).unwrap();
        let refused = |r: Result<&mut Upcasters>| matches!(r, Err(Error::InvalidUpcaster { .. }));
        assert!(refused(up.register(("A", 1), ("A", 2), append(""))), "a second upcaster from A v1");
        assert!(refused(up.register(("B", 2), ("A", 1), append(""))), "an earlier version");
        assert!(refused(up.register(("C", 1), ("C", 1), append(""))), "itself");
        assert!(refused(up.register(("B", 2), ("A", 2), append("")).and_then(|u| u.register(
            ("A", 2),
            ("B", 2),
            append("")
        ))));
        assert!(refused(up.register(("", 1), ("X", 2), append(""))), "an empty name");
        assert!(refused(up.register(("X", 1), (&"x".repeat(NAME_BYTES_MAX + 1), 2), append(""))));
        // B v2 -> A v2 went in; A v2 -> B v2 (the loop) did not.
        assert_eq!(up.len(), 3);
        assert!(!up.applies("A", 2));
    }

    #[test]
    fn a_failure_or_a_panic_is_a_typed_error_naming_the_position() {
        let mut up = Upcasters::new();
        up.register(("Placed", 1), ("Placed", 2), append("+2")).unwrap();
        up.register(("Placed", 2), ("Placed", 3), |_e: &mut Upcast| Err(UpcastError::new("no amount"))).unwrap();
        up.register(("Boom", 1), ("Boom", 2), |_e: &mut Upcast| -> Result<(), UpcastError> { panic!("kaput") })
            .unwrap();
        match up.upcast_recorded(event("Placed", 1, "d")) {
            Err(Error::UpcastFailed { position: 42, event_type, event_version: 2, reason, .. }) => {
                assert_eq!((event_type.as_str(), reason.as_str()), ("Placed", "no amount"));
            }
            other => panic!("{other:?}"),
        }
        match up.upcast_recorded(event("Boom", 1, "d")) {
            Err(e @ Error::UpcastFailed { position: 42, .. }) => assert!(e.to_string().contains("kaput"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_parse_error_converts_with_the_question_mark() {
        let mut up = Upcasters::new();
        up.register(("N", 1), ("N", 2), |e: &mut Upcast| {
            let n: u32 = std::str::from_utf8(&e.data)?.parse()?;
            e.data = (n * 100).to_string().into();
            Ok(())
        })
        .unwrap();
        assert_eq!(&up.upcast_recorded(event("N", 1, "7")).unwrap().data[..], b"700");
        assert!(matches!(up.upcast_recorded(event("N", 1, "x")), Err(Error::UpcastFailed { .. })));
    }

    #[test]
    fn the_filter_never_hides_a_registered_starting_point() {
        let mut up = Upcasters::new();
        let names: Vec<String> = (0..300).map(|i| format!("Type{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            up.register((name, i as u32), (name, i as u32 + 1), append("")).unwrap();
        }
        for (i, name) in names.iter().enumerate() {
            assert!(up.applies(name, i as u32), "{name} v{i}");
            assert!(!up.applies(name, i as u32 + 1), "{name} v{}", i + 1);
        }
        assert!(!Upcasters::new().applies("Type0", 0));
    }

    #[test]
    fn the_filter_rejects_almost_every_other_starting_point_without_the_map() {
        // The same names at other versions and same-length names: the misses
        // a scan of a store with upcasters for old versions meets most.
        let mut up = Upcasters::new();
        for i in 0..8u32 {
            up.register((&format!("OrderPlaced{i}"), 0), (&format!("OrderPlaced{i}"), 1), append("")).unwrap();
        }
        let mut passed = 0;
        let mut tried = 0;
        for i in 0..100u32 {
            for version in 1..=100 {
                tried += 1;
                passed += usize::from(up.registry.may_start_at(&format!("OrderPlaced{i}"), version));
            }
        }
        // 8 of 256 bits set: about 3% of misses get through to the map.
        assert!(passed * 100 < tried * 8, "{passed} of {tried} misses passed the filter");
    }
}
