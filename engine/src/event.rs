//! The event envelope as callers see it: what goes into an append
//! ([`NewEvent`]), what comes back from reads (the zero-copy [`EventRef`] and
//! the owned [`RecordedEvent`]), and the append contract types. Nothing here
//! touches files.

use bytes::Bytes;

use crate::record::ArchivedRecordBody;

pub use crate::id::EventId;

/// What the caller believes the aggregate's current version is. A mismatch
/// fails the append with [`crate::Error::WrongExpectedVersion`] and writes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The aggregate must have no events yet.
    NoStream,
    /// The aggregate must have at least one event.
    StreamExists,
    /// The aggregate's last event must have exactly this version (versions start at 0).
    Exact(u64),
}

impl std::fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::StreamExists => f.write_str("stream exists"),
            ExpectedVersion::Exact(v) => write!(f, "{v}"),
        }
    }
}

impl ExpectedVersion {
    /// Whether an aggregate whose current version is `actual` satisfies this expectation.
    pub fn matches(self, actual: Option<u64>) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual.is_none(),
            ExpectedVersion::StreamExists => actual.is_some(),
            ExpectedVersion::Exact(v) => actual == Some(v),
        }
    }
}

/// Read direction within one aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Ascending versions, starting at `from_version`.
    Forward,
    /// Descending versions, starting at `from_version` (use `u64::MAX` for "from the end").
    Backward,
}

/// An event to append. The engine assigns `version`, `position` and `recorded_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Unique id, used for idempotent retries.
    pub event_id: EventId,
    /// Past-tense type name, 1..=255 bytes.
    pub event_type: String,
    /// Schema version of `data`.
    pub event_version: u32,
    /// When it happened, unix nanoseconds, as told by the caller.
    pub occurred_at: i64,
    /// The event or command that caused this one.
    pub causation_id: Option<EventId>,
    /// The conversation this event belongs to.
    pub correlation_id: Option<EventId>,
    /// Free-form metadata bytes.
    pub metadata: Bytes,
    /// The payload.
    pub data: Bytes,
}

impl NewEvent {
    /// An event with `event_version` 1, `occurred_at` now, no causation,
    /// correlation or metadata. `data` may be borrowed (`&[u8]`, `&str`: copied
    /// once) or owned (`Vec<u8>`, `String`, [`Bytes`]: not copied).
    pub fn new(event_id: impl Into<EventId>, event_type: impl Into<String>, data: impl IntoPayload) -> NewEvent {
        NewEvent {
            event_id: event_id.into(),
            event_type: event_type.into(),
            event_version: 1,
            occurred_at: now_nanos(),
            causation_id: None,
            correlation_id: None,
            metadata: Bytes::new(),
            data: data.into_payload(),
        }
    }

    /// Sets the schema version of `data`.
    pub fn with_event_version(mut self, event_version: u32) -> NewEvent {
        self.event_version = event_version;
        self
    }

    /// Sets when it happened (unix nanoseconds).
    pub fn with_occurred_at(mut self, occurred_at: i64) -> NewEvent {
        self.occurred_at = occurred_at;
        self
    }

    /// Sets the id of the event or command that caused this one.
    pub fn with_causation_id(mut self, id: impl Into<EventId>) -> NewEvent {
        self.causation_id = Some(id.into());
        self
    }

    /// Sets the id of the conversation this event belongs to.
    pub fn with_correlation_id(mut self, id: impl Into<EventId>) -> NewEvent {
        self.correlation_id = Some(id.into());
        self
    }

    /// Sets the free-form metadata bytes.
    pub fn with_metadata(mut self, metadata: impl IntoPayload) -> NewEvent {
        self.metadata = metadata.into_payload();
        self
    }
}

/// Bytes an event's `data` or `metadata` can be made from: owned buffers
/// move in without a copy, borrowed ones are copied once.
pub trait IntoPayload {
    /// The bytes, as a [`Bytes`].
    fn into_payload(self) -> Bytes;
}

impl IntoPayload for Bytes {
    fn into_payload(self) -> Bytes {
        self
    }
}

impl IntoPayload for Vec<u8> {
    fn into_payload(self) -> Bytes {
        Bytes::from(self)
    }
}

impl IntoPayload for String {
    fn into_payload(self) -> Bytes {
        Bytes::from(self)
    }
}

impl IntoPayload for &[u8] {
    fn into_payload(self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
}

impl<const N: usize> IntoPayload for &[u8; N] {
    fn into_payload(self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
}

impl IntoPayload for &str {
    fn into_payload(self) -> Bytes {
        Bytes::copy_from_slice(self.as_bytes())
    }
}

impl IntoPayload for &Vec<u8> {
    fn into_payload(self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
}

impl IntoPayload for &String {
    fn into_payload(self) -> Bytes {
        Bytes::copy_from_slice(self.as_bytes())
    }
}

/// Current time as unix nanoseconds (saturating; 0 before 1970).
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// What an append wrote (or, for an idempotent retry, had written before).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppendResult {
    /// Version of the first event of the batch.
    pub first_version: u64,
    /// Version of the last event of the batch (the aggregate's version after the append).
    pub last_version: u64,
    /// Global position of the first event.
    pub first_position: u64,
    /// Global position of the last event.
    pub last_position: u64,
    /// `true` when every event was already stored at exactly this place and
    /// nothing was written.
    pub deduplicated: bool,
    /// `true` when `Options::snapshot_every` is set and the aggregate is now
    /// that many events or more past its newest snapshot: time to save one.
    pub snapshot_due: bool,
}

/// The caller's schema version of a snapshot's state bytes, saved with it and
/// handed back on load (a type of its own, so that it cannot be swapped with
/// the aggregate version in [`crate::Store::save_snapshot`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SchemaVersion(pub u32);

/// A point in the log's history, for time travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// Everything up to and including this global position.
    Position(u64),
    /// Everything the engine recorded at or before this time (`recorded_at`,
    /// unix nanos). `recorded_at` never decreases along the log, so this is a
    /// binary search. (`occurred_at` is the caller's clock and may be out of
    /// order; filter on it yourself.)
    RecordedAt(i64),
    /// An aggregate as of this version of it (events `0..=version`); only for
    /// loads of one aggregate ([`crate::Store::load_as_of`]). Log-wide calls
    /// ([`crate::Reader::position_of`], [`crate::Reader::read_all_until`]) refuse it
    /// with [`crate::Error::InvalidInput`].
    Version(u64),
}

/// The envelope of a stored event: every field but the payload, borrowed
/// straight out of the segment's memory map. What a [`crate::Filter`]'s
/// predicate sees: a filtered read checks an envelope's checksum, not the
/// payload's, for the events it skips, so the payload is not offered here.
/// An [`EventRef`] derefs to its envelope.
#[derive(Clone, Copy)]
pub struct Envelope<'a> {
    body: &'a ArchivedRecordBody<'static>,
}

/// A stored event, borrowed straight out of the segment's memory map: no
/// copy, no allocation. Valid while the [`crate::Reader`] it came from lives.
/// Its envelope's fields are [`Envelope`]'s methods (it derefs to it); its
/// payload's checksum was verified before it was handed out.
#[derive(Clone, Copy)]
pub struct EventRef<'a> {
    envelope: Envelope<'a>,
    data: &'a [u8],
}

impl<'a> Envelope<'a> {
    /// The envelope of a body whose envelope checksum was verified (its
    /// payload's may not have been: see [`EventRef::new`]).
    #[inline(always)]
    pub(crate) fn new(body: &'a ArchivedRecordBody<'static>) -> Envelope<'a> {
        Envelope { body }
    }

    /// The event, once its payload's checksum was verified too: `payload`
    /// is the frame's payload (format 2), or `None` when it is inside the
    /// archive (format 1).
    #[inline(always)]
    pub(crate) fn payload_checked(self, payload: Option<&'a [u8]>) -> EventRef<'a> {
        let data = match payload {
            Some(p) => p,
            None => &self.body.data,
        };
        EventRef { envelope: self, data }
    }

    /// The event's unique id.
    pub fn event_id(&self) -> EventId {
        EventId(self.body.event_id)
    }
    /// The aggregate the event belongs to.
    pub fn aggregate_id(&self) -> &'a str {
        &self.body.aggregate_id
    }
    /// Version within the aggregate (dense, from 0).
    pub fn version(&self) -> u64 {
        self.body.version.to_native()
    }
    /// Global position in the log (dense, from 0, never renumbered).
    pub fn position(&self) -> u64 {
        self.body.position.to_native()
    }
    /// The event type name.
    #[inline]
    pub fn event_type(&self) -> &'a str {
        &self.body.event_type
    }
    /// Schema version of `data`.
    #[inline]
    pub fn event_version(&self) -> u32 {
        self.body.event_version.to_native()
    }
    /// When it happened (caller's clock), unix nanoseconds.
    pub fn occurred_at(&self) -> i64 {
        self.body.occurred_at.to_native()
    }
    /// When the engine wrote it, unix nanoseconds.
    pub fn recorded_at(&self) -> i64 {
        self.body.recorded_at.to_native()
    }
    /// The causing event or command, if given.
    pub fn causation_id(&self) -> Option<EventId> {
        self.body.causation_id.as_ref().copied().map(EventId)
    }
    /// The correlation id, if given.
    pub fn correlation_id(&self) -> Option<EventId> {
        self.body.correlation_id.as_ref().copied().map(EventId)
    }
    /// Metadata bytes.
    pub fn metadata(&self) -> &'a [u8] {
        &self.body.metadata
    }
}

impl<'a> std::ops::Deref for EventRef<'a> {
    type Target = Envelope<'a>;
    fn deref(&self) -> &Envelope<'a> {
        &self.envelope
    }
}

impl<'a> EventRef<'a> {
    /// The envelope: every field but the payload.
    pub fn envelope(&self) -> Envelope<'a> {
        self.envelope
    }

    /// Payload bytes.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// An owned copy of the event.
    pub fn to_recorded(&self) -> RecordedEvent {
        RecordedEvent {
            event_id: self.event_id(),
            aggregate_id: self.aggregate_id().to_owned(),
            version: self.version(),
            position: self.position(),
            event_type: self.event_type().to_owned(),
            event_version: self.event_version(),
            occurred_at: self.occurred_at(),
            recorded_at: self.recorded_at(),
            causation_id: self.causation_id(),
            correlation_id: self.correlation_id(),
            metadata: Bytes::copy_from_slice(self.metadata()),
            data: Bytes::copy_from_slice(self.data()),
        }
    }
}

impl std::fmt::Debug for EventRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRef")
            .field("position", &self.position())
            .field("aggregate_id", &self.aggregate_id())
            .field("version", &self.version())
            .field("event_type", &self.event_type())
            .field("data_len", &self.data().len())
            .finish()
    }
}

/// An owned copy of a stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// The event's unique id.
    pub event_id: EventId,
    /// The aggregate it belongs to.
    pub aggregate_id: String,
    /// Version within the aggregate.
    pub version: u64,
    /// Global position.
    pub position: u64,
    /// Type name.
    pub event_type: String,
    /// Schema version of `data`.
    pub event_version: u32,
    /// Caller's timestamp, unix nanoseconds.
    pub occurred_at: i64,
    /// Engine's timestamp, unix nanoseconds.
    pub recorded_at: i64,
    /// Causing event or command.
    pub causation_id: Option<EventId>,
    /// Correlation id.
    pub correlation_id: Option<EventId>,
    /// Metadata bytes.
    pub metadata: Bytes,
    /// Payload bytes.
    pub data: Bytes,
}
