//! The relay's one error type. Every variant names the stream, and the
//! position or sequence involved, so that the message alone says what to
//! look at; the doc of each variant says what to do about it.

use std::time::Duration;

/// Result alias of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that stops a relay, as variants a caller can match on. A broker
/// that is down or slow is not among them: the relay waits for it (unless
/// [`crate::RelayOptions::give_up_after`] is set, then [`Error::BrokerUnavailable`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed (I/O, corruption, a consumer held by another
    /// process, ...): the engine's error, unchanged.
    #[error(transparent)]
    Store(#[from] factlog::Error),
    /// An option is not acceptable (an empty stream name, a subject prefix
    /// with a wildcard, ...). Nothing was done.
    #[error("invalid relay options: {0}")]
    InvalidOptions(String),
    /// The stream exists with a configuration the relay cannot use. Change the
    /// stream (`nats stream edit`), or the relay's options, so that they agree.
    #[error("stream {stream:?} exists with {field} {found}, but the relay needs {wanted}; change the stream or the relay's options so that they agree")]
    StreamConfigConflict {
        /// The stream.
        stream: String,
        /// The setting that disagrees (`subjects`, `storage`, `replicas`, ...).
        field: &'static str,
        /// What the relay needs.
        wanted: String,
        /// What the stream has.
        found: String,
    },
    /// The broker refused a request about the stream (creating it, reading
    /// its state): its JetStream error, as the server gave it.
    #[error("broker refused {action} on stream {stream:?}: {description} (JetStream error {code})")]
    StreamRefused {
        /// The stream.
        stream: String,
        /// What the relay asked for.
        action: &'static str,
        /// The JetStream error code (10065: subjects overlap another stream, ...).
        code: u64,
        /// The server's text.
        description: String,
    },
    /// The broker refused to store an event, for a reason a retry does not
    /// change (the message is over the stream's `max_msg_size`, the stream is
    /// sealed or full with `discard: new`, ...). Nothing after `position` was
    /// published; fix the stream and start the relay again.
    #[error(
        "broker refused event at position {position} into stream {stream:?}: {description} (JetStream error {code})"
    )]
    PublishRefused {
        /// The stream.
        stream: String,
        /// The refused event's position in the store.
        position: u64,
        /// The JetStream error code.
        code: u64,
        /// The server's text.
        description: String,
    },
    /// An event is larger than the server's `max_payload` (1 MiB by default):
    /// no stream can take it. Raise `max_payload` in the server's configuration.
    #[error("event at position {position} is about {bytes} bytes with its headers, over the server's max_payload of {max_payload} bytes (stream {stream:?}); raise max_payload in the server's configuration")]
    EventTooLarge {
        /// The stream.
        stream: String,
        /// The event's position.
        position: u64,
        /// Its size with headers, about.
        bytes: usize,
        /// The server's limit.
        max_payload: usize,
    },
    /// The stream's last message was not written by a factlog relay (it has
    /// no `Factlog-Position` header, or a malformed one), so the relay cannot
    /// tell where to resume. The stream must hold only this store's events:
    /// use a stream of its own.
    #[error("stream {stream:?} ends with a message the relay did not write (sequence {sequence}: {reason}); give the relay a stream of its own")]
    ForeignMessage {
        /// The stream.
        stream: String,
        /// The message's stream sequence.
        sequence: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The stream's last message carries a position whose event in this store
    /// has another id: the stream was filled from another store. Give each
    /// store a stream of its own (or delete the stream to ship this store anew).
    #[error("stream {stream:?} holds event {stream_event_id} at position {position} (sequence {sequence}), but this store has {store_event_id} there: the stream was filled from another store")]
    StoreMismatch {
        /// The stream.
        stream: String,
        /// The message's stream sequence.
        sequence: u64,
        /// The position it carries.
        position: u64,
        /// The event id in the stream.
        stream_event_id: String,
        /// The event id in the store.
        store_event_id: String,
    },
    /// The stream holds a position the store does not have: the store was
    /// cut back (a repair) or replaced, or the relay reads a follower that
    /// is behind. Resuming would skip the events written at those positions
    /// from now on; ship the store into a new stream.
    #[error("stream {stream:?} already holds position {position} (sequence {sequence}), but the store ends before it (next position {store_end}); ship this store into a new stream")]
    StreamAhead {
        /// The stream.
        stream: String,
        /// The message's stream sequence.
        sequence: u64,
        /// The position it carries.
        position: u64,
        /// One past the store's last durable position.
        store_end: u64,
    },
    /// The relay must resume at a position the store no longer keeps:
    /// retention removed the log below `first_retained` before the relay
    /// shipped the events from `next` on (it was down, or too far behind), so
    /// they can never be shipped. Nothing was skipped. Ship the store into a
    /// new stream (from `first_retained`), or accept the gap with
    /// [`crate::RelayOptions::accept_retention_gap`] (`factlog relay
    /// --accept-retention-gap`); keep the relay within the retention limits.
    #[error("stream {stream:?} needs the store's events from position {next}, but retention removed the log below position {first_retained}: events {next}..{first_retained} can never be shipped. Nothing was skipped; ship the store into a new stream, or accept the gap (RelayOptions::accept_retention_gap, factlog relay --accept-retention-gap)")]
    BelowRetainedStart {
        /// The stream.
        stream: String,
        /// The position the relay must resume at.
        next: u64,
        /// The store's first retained position.
        first_retained: u64,
    },
    /// The stream has had messages but holds none now (purged, or every
    /// message expired by `max_age`), and the relay has no consumer
    /// checkpoint to fall back on: it cannot tell which events the stream
    /// held. Delete the stream to ship the whole store again, or set
    /// [`crate::RelayOptions::consumer`]'s checkpoint with `factlog consumers DIR reset`.
    #[error("stream {stream:?} holds no message but had {last_sequence}, and the relay has no checkpoint: it cannot tell where to resume")]
    StreamHistoryGone {
        /// The stream.
        stream: String,
        /// Its last sequence.
        last_sequence: u64,
    },
    /// The broker could not be reached, or did not answer, for longer than
    /// [`crate::RelayOptions::give_up_after`].
    #[error("broker at {url} unavailable for {waited:?} (stream {stream:?}): {last_error}")]
    BrokerUnavailable {
        /// The server URL.
        url: String,
        /// The stream.
        stream: String,
        /// How long the relay waited.
        waited: Duration,
        /// The last failure.
        last_error: String,
    },
    /// A message that should carry a relayed event does not: a header is
    /// missing or malformed ([`crate::decode`]).
    #[error("not a relayed event: header {header} {reason}")]
    Malformed {
        /// The header.
        header: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}
