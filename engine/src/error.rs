//! The engine's one error type. Every variant names what a caller needs to act
//! on it: the file and offset of a corruption, the aggregate and versions of a
//! conflict. This module must never hide an I/O error behind a generic message.

use std::path::PathBuf;

use crate::event::{EventId, ExpectedVersion, SchemaVersion};

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in factlog, as variants a caller can match on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The aggregate's current version did not match the expectation. Nothing was written.
    #[error("wrong expected version for aggregate {aggregate_id:?}: expected {expected}, actual {}", fmt_version(*actual))]
    WrongExpectedVersion {
        /// The aggregate appended to.
        aggregate_id: String,
        /// What the caller expected.
        expected: ExpectedVersion,
        /// The aggregate's current version (`None`: the aggregate has no events).
        actual: Option<u64>,
    },
    /// An event id in the batch is already stored somewhere other than
    /// exactly where this batch would put it (a retry of a stored batch is not
    /// an error: it returns the original result, `deduplicated`). Nothing was
    /// written. A batch that repeats an id within itself is
    /// [`Error::InvalidInput`] instead: there is no stored event to name.
    #[error("event id {} already stored at position {existing_position} (aggregate {existing_aggregate:?}); append to {aggregate_id:?} refused", fmt_id(event_id))]
    DuplicateEventId {
        /// The duplicated id.
        event_id: EventId,
        /// The aggregate the refused append targeted.
        aggregate_id: String,
        /// The aggregate the stored event belongs to.
        existing_aggregate: String,
        /// The global position of the stored event.
        existing_position: u64,
    },
    /// An argument is not acceptable (empty id, oversized type, ...). Nothing was written.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// One event is larger than `Options::max_event_bytes`.
    #[error("event {index} of the batch for aggregate {aggregate_id:?} encodes to {size} bytes, over the limit of {max} bytes")]
    EventTooLarge {
        /// Aggregate of the batch.
        aggregate_id: String,
        /// Index of the event inside the batch.
        index: usize,
        /// Encoded size in bytes.
        size: u64,
        /// The configured limit.
        max: u64,
    },
    /// A snapshot was offered for a version the aggregate has not reached.
    #[error("snapshot of aggregate {aggregate_id:?} at version {version} refused: the aggregate is at {}", fmt_version(*actual))]
    SnapshotAhead {
        /// The aggregate.
        aggregate_id: String,
        /// The version offered.
        version: u64,
        /// The aggregate's current version.
        actual: Option<u64>,
    },
    /// The options given to [`crate::Store::open`] are inconsistent.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// A file failed its checksum or structural validation.
    #[error("corrupt data in {} at offset {offset}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset of the bad frame or header.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// A file carries a magic number factlog knows but a format version it does not.
    #[error("{} has format version {found}, this build reads version {supported}", path.display())]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// Version found in the header.
        found: u32,
        /// Version this build supports.
        supported: u32,
    },
    /// The directory exists, is not empty, and is not a factlog store.
    #[error("{} is not a factlog store ({reason})", path.display())]
    NotAStore {
        /// The directory.
        path: PathBuf,
        /// Why it was rejected.
        reason: String,
    },
    /// Another process, or another `Store` in this one, holds the store's
    /// lock (for longer than [`crate::Options::lock_wait`]).
    #[error("store {} is locked by {holder}", path.display())]
    Locked {
        /// The directory.
        path: PathBuf,
        /// Who holds it.
        holder: LockHolder,
    },
    /// The file system is full. Nothing of the failed appends was acknowledged;
    /// the store keeps working once space is freed.
    #[error("no space left while writing {}", path.display())]
    NoSpace {
        /// The file being written.
        path: PathBuf,
    },
    /// An I/O operation failed.
    #[error("I/O error during {op} on {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An earlier write or fsync failed; the store refuses writes until it is
    /// reopened (which recovers to the last durable state).
    #[error("store is poisoned by an earlier I/O failure ({cause}); reopen it to recover")]
    Poisoned {
        /// The failure that poisoned the store.
        cause: String,
    },
    /// The store was opened with `Store::open_read_only`.
    #[error("store {} is open read-only", path.display())]
    ReadOnly {
        /// The directory.
        path: PathBuf,
    },
    /// The store was closed.
    #[error("store is closed")]
    Closed,
    /// No durable consumer of this name exists in the store.
    #[error("no consumer named {name:?} in store {}", dir.display())]
    UnknownConsumer {
        /// The name asked for.
        name: String,
        /// The store's directory.
        dir: PathBuf,
    },
    /// Another handle (in this process or another) has the consumer open,
    /// or runs it: one consumer, one owner at a time.
    #[error("consumer {name:?} is in use by {holder} (lock file {})", path.display())]
    ConsumerLocked {
        /// The consumer.
        name: String,
        /// Its lock file.
        path: PathBuf,
        /// Who holds it.
        holder: LockHolder,
    },
    /// A position beyond the store's durable end was given (a consumer reset
    /// or commit past the events that exist).
    #[error("position {position} is past the end of the log (next position {end})")]
    PastEnd {
        /// The position given.
        position: u64,
        /// One past the last durable position.
        end: u64,
    },
    /// The consumer's dead-letter list holds no parked event at this position.
    #[error("consumer {consumer:?} has no parked event at position {position}")]
    NotParked {
        /// The consumer.
        consumer: String,
        /// The position given.
        position: u64,
    },
    /// An upcaster cannot be registered (see [`crate::Upcasters::register`]):
    /// one already starts at the same point, its target is not later, a name
    /// is out of bounds, or it would close a loop. Nothing was registered.
    #[error("upcaster from {event_type:?} version {event_version} refused: {reason}")]
    InvalidUpcaster {
        /// The type name it would start from.
        event_type: String,
        /// The version it would start from.
        event_version: u32,
        /// Why it was refused.
        reason: String,
    },
    /// An upcaster returned an error (or panicked) on a stored event. The
    /// event is unchanged in the log; the read stopped at it.
    #[error("upcaster from {event_type:?} version {event_version} failed on the event at position {position} (aggregate {aggregate_id:?}, version {version}): {reason}")]
    UpcastFailed {
        /// The event's global position.
        position: u64,
        /// Its aggregate.
        aggregate_id: String,
        /// Its version within the aggregate.
        version: u64,
        /// The type name the failing step started from.
        event_type: String,
        /// The schema version the failing step started from.
        event_version: u32,
        /// The upcaster's message.
        reason: String,
    },
    /// A load found a snapshot whose schema version is not the one the
    /// caller asked for, and was told to refuse such a snapshot
    /// ([`crate::StaleSnapshot::Refuse`]).
    #[error("snapshot of aggregate {aggregate_id:?} at version {version} has schema version {}, expected {}", found.0, expected.0)]
    StaleSnapshot {
        /// The aggregate.
        aggregate_id: String,
        /// The version the snapshot was taken at.
        version: u64,
        /// The snapshot's schema version.
        found: SchemaVersion,
        /// The schema version the caller accepts.
        expected: SchemaVersion,
    },
    /// The aggregate was hard-deleted or erased: appends to it, and changes
    /// of its metadata, are refused forever. Nothing was written.
    #[error("aggregate {aggregate_id:?} is deleted (hard delete or erasure): appends to it are refused")]
    AggregateDeleted {
        /// The aggregate.
        aggregate_id: String,
    },
    /// The aggregate has no events, so there is nothing to delete.
    #[error("aggregate {aggregate_id:?} has no events")]
    UnknownAggregate {
        /// The aggregate.
        aggregate_id: String,
    },
    /// A read or subscription started below the first position the log still
    /// holds: retention removed the segments before it. Nothing was read;
    /// start again at `first_retained` (or set
    /// `Retention::clamp_reads_below_start`).
    #[error("position {position} is below the log's first retained position {first_retained} (retention removed the events before it)")]
    BelowRetainedStart {
        /// The position asked for.
        position: u64,
        /// Where the log now starts.
        first_retained: u64,
    },
    /// Loading the aggregate would fold from a version retention removed:
    /// its events before `first_version` are gone and no snapshot covers them.
    #[error("aggregate {aggregate_id:?} starts at version {first_version} in the log (retention removed the versions before it) and no snapshot covers them")]
    AggregateTruncated {
        /// The aggregate.
        aggregate_id: String,
        /// Its first version still in the log.
        first_version: u64,
    },
    /// The event at this position was removed (its aggregate deleted,
    /// truncated or expired), or hidden by the aggregate's rules.
    #[error("the event at position {position} was removed or is hidden by its aggregate's retention rules")]
    EventRemoved {
        /// The position asked for.
        position: u64,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::StorageFull {
            return Error::NoSpace { path };
        }
        Error::Io { op, path, source }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Error {
        Error::Corrupt { path: path.into(), offset, reason: reason.into() }
    }

    /// A copy of this error for fanning one failure out to several waiters:
    /// the same variant with the same fields. I/O sources are not `Clone`, so
    /// they are re-created from their kind and message.
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::WrongExpectedVersion { aggregate_id, expected, actual } => {
                Error::WrongExpectedVersion { aggregate_id: aggregate_id.clone(), expected: *expected, actual: *actual }
            }
            Error::DuplicateEventId { event_id, aggregate_id, existing_aggregate, existing_position } => {
                Error::DuplicateEventId {
                    event_id: *event_id,
                    aggregate_id: aggregate_id.clone(),
                    existing_aggregate: existing_aggregate.clone(),
                    existing_position: *existing_position,
                }
            }
            Error::InvalidInput(m) => Error::InvalidInput(m.clone()),
            Error::EventTooLarge { aggregate_id, index, size, max } => {
                Error::EventTooLarge { aggregate_id: aggregate_id.clone(), index: *index, size: *size, max: *max }
            }
            Error::SnapshotAhead { aggregate_id, version, actual } => {
                Error::SnapshotAhead { aggregate_id: aggregate_id.clone(), version: *version, actual: *actual }
            }
            Error::InvalidOptions(m) => Error::InvalidOptions(m.clone()),
            Error::Corrupt { path, offset, reason } => Error::corrupt(path.clone(), *offset, reason.clone()),
            Error::UnsupportedFormat { path, found, supported } => {
                Error::UnsupportedFormat { path: path.clone(), found: *found, supported: *supported }
            }
            Error::NotAStore { path, reason } => Error::NotAStore { path: path.clone(), reason: reason.clone() },
            Error::Locked { path, holder } => Error::Locked { path: path.clone(), holder: *holder },
            Error::NoSpace { path } => Error::NoSpace { path: path.clone() },
            Error::Io { op, path, source } => {
                Error::Io { op, path: path.clone(), source: std::io::Error::new(source.kind(), source.to_string()) }
            }
            Error::Poisoned { cause } => Error::Poisoned { cause: cause.clone() },
            Error::ReadOnly { path } => Error::ReadOnly { path: path.clone() },
            Error::Closed => Error::Closed,
            Error::UnknownConsumer { name, dir } => Error::UnknownConsumer { name: name.clone(), dir: dir.clone() },
            Error::ConsumerLocked { name, path, holder } => {
                Error::ConsumerLocked { name: name.clone(), path: path.clone(), holder: *holder }
            }
            Error::PastEnd { position, end } => Error::PastEnd { position: *position, end: *end },
            Error::NotParked { consumer, position } => {
                Error::NotParked { consumer: consumer.clone(), position: *position }
            }
            Error::InvalidUpcaster { event_type, event_version, reason } => Error::InvalidUpcaster {
                event_type: event_type.clone(),
                event_version: *event_version,
                reason: reason.clone(),
            },
            Error::UpcastFailed { position, aggregate_id, version, event_type, event_version, reason } => {
                Error::UpcastFailed {
                    position: *position,
                    aggregate_id: aggregate_id.clone(),
                    version: *version,
                    event_type: event_type.clone(),
                    event_version: *event_version,
                    reason: reason.clone(),
                }
            }
            Error::StaleSnapshot { aggregate_id, version, found, expected } => Error::StaleSnapshot {
                aggregate_id: aggregate_id.clone(),
                version: *version,
                found: *found,
                expected: *expected,
            },
            Error::AggregateDeleted { aggregate_id } => Error::AggregateDeleted { aggregate_id: aggregate_id.clone() },
            Error::UnknownAggregate { aggregate_id } => Error::UnknownAggregate { aggregate_id: aggregate_id.clone() },
            Error::BelowRetainedStart { position, first_retained } => {
                Error::BelowRetainedStart { position: *position, first_retained: *first_retained }
            }
            Error::EventRemoved { position } => Error::EventRemoved { position: *position },
            Error::AggregateTruncated { aggregate_id, first_version } => {
                Error::AggregateTruncated { aggregate_id: aggregate_id.clone(), first_version: *first_version }
            }
        }
    }
}

/// Who holds a store's lock, as far as the opener can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockHolder {
    /// Another handle in this process: clone that [`crate::Store`] instead of
    /// opening the store a second time.
    ThisProcess,
    /// The process with this id.
    Process(u32),
    /// The lock is held, but the holder could not be named.
    Unknown,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockHolder::ThisProcess => {
                f.write_str("another Store in this process (clone that handle instead of opening the store twice)")
            }
            LockHolder::Process(pid) => write!(f, "process {pid}"),
            LockHolder::Unknown => f.write_str("another opener"),
        }
    }
}

fn fmt_version(v: Option<u64>) -> String {
    match v {
        Some(v) => v.to_string(),
        None => "no stream".to_string(),
    }
}

/// Formats a 16-byte id as a hyphenated UUID.
pub fn fmt_id(id: &EventId) -> String {
    id.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keeps_the_variant_and_the_message() {
        let path = PathBuf::from("/store/x.seg");
        let all = [
            Error::WrongExpectedVersion { aggregate_id: "a".into(), expected: ExpectedVersion::Exact(3), actual: None },
            Error::DuplicateEventId {
                event_id: EventId([7; 16]),
                aggregate_id: "a".into(),
                existing_aggregate: "b".into(),
                existing_position: 9,
            },
            Error::InvalidInput("bad".into()),
            Error::EventTooLarge { aggregate_id: "a".into(), index: 1, size: 10, max: 5 },
            Error::SnapshotAhead { aggregate_id: "a".into(), version: 4, actual: Some(2) },
            Error::InvalidOptions("opt".into()),
            Error::corrupt(path.clone(), 64, "flip"),
            Error::UnsupportedFormat { path: path.clone(), found: 9, supported: 1 },
            Error::NotAStore { path: path.clone(), reason: "r".into() },
            Error::Locked { path: path.clone(), holder: LockHolder::Process(7) },
            Error::NoSpace { path: path.clone() },
            Error::io("write frames", path.clone(), std::io::Error::other("boom")),
            Error::Poisoned { cause: "c".into() },
            Error::ReadOnly { path: path.clone() },
            Error::Closed,
            Error::UnknownConsumer { name: "c".into(), dir: path.clone() },
            Error::ConsumerLocked { name: "c".into(), path, holder: LockHolder::ThisProcess },
            Error::PastEnd { position: 9, end: 3 },
            Error::NotParked { consumer: "c".into(), position: 4 },
            Error::InvalidUpcaster { event_type: "T".into(), event_version: 1, reason: "r".into() },
            Error::UpcastFailed {
                position: 5,
                aggregate_id: "a".into(),
                version: 2,
                event_type: "T".into(),
                event_version: 1,
                reason: "r".into(),
            },
            Error::StaleSnapshot {
                aggregate_id: "a".into(),
                version: 3,
                found: SchemaVersion(1),
                expected: SchemaVersion(2),
            },
        ];
        for e in &all {
            let d = e.duplicate();
            assert_eq!(std::mem::discriminant(e), std::mem::discriminant(&d), "{e}");
            assert_eq!(e.to_string(), d.to_string());
        }
    }
}
