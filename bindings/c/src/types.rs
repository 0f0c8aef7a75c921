//! The plain `#[repr(C)]` structs and the constants of `factlog.h`. Names are
//! the C names. A value a C caller passes in that Rust would read as an enum
//! (a durability, a direction, an expected-version kind) is a `uint32_t`
//! with `#define`d values instead, so that an unknown value is a
//! `FACTLOG_OUT_OF_RANGE` status rather than undefined behaviour.

#![allow(non_camel_case_types)]

use std::os::raw::c_char;

/// An expected-version kind for `factlog_append` (a `FACTLOG_EXPECTED_*` value).
pub type factlog_expected = u32;
/// No check.
pub const FACTLOG_EXPECTED_ANY: factlog_expected = 0;
/// The aggregate must have no events yet.
pub const FACTLOG_EXPECTED_NO_STREAM: factlog_expected = 1;
/// The aggregate must have at least one event.
pub const FACTLOG_EXPECTED_STREAM_EXISTS: factlog_expected = 2;
/// The aggregate's last event must have exactly `expected_version` (versions start at 0).
pub const FACTLOG_EXPECTED_EXACT: factlog_expected = 3;

/// A read direction within one aggregate (a `FACTLOG_DIRECTION_*` value).
pub type factlog_direction = u32;
/// Ascending versions from `from_version`.
pub const FACTLOG_DIRECTION_FORWARD: factlog_direction = 0;
/// Descending versions from `from_version` (`UINT64_MAX`: from the last one).
pub const FACTLOG_DIRECTION_BACKWARD: factlog_direction = 1;

/// When an append is acknowledged (a `FACTLOG_DURABILITY_*` value).
pub type factlog_durability = u32;
/// After the batch is on disk (`fdatasync`); concurrent appends share one sync. The default.
pub const FACTLOG_DURABILITY_SYNC: factlog_durability = 0;
/// Once the batch is in the OS page cache; synced at least every `flush_interval_ms`.
pub const FACTLOG_DURABILITY_BUFFERED: factlog_durability = 1;

/// A point in the log's history for `factlog_load_as_of` (a `FACTLOG_AS_OF_*` value).
pub type factlog_as_of = u32;
/// Everything up to and including this global position.
pub const FACTLOG_AS_OF_POSITION: factlog_as_of = 0;
/// Everything the engine recorded at or before this time (unix nanoseconds).
pub const FACTLOG_AS_OF_RECORDED_AT: factlog_as_of = 1;
/// The aggregate as of this version of it.
pub const FACTLOG_AS_OF_VERSION: factlog_as_of = 2;

/// Where a subscription starts (a `FACTLOG_START_*` value).
pub type factlog_start = u32;
/// The first event of the log (of the aggregate).
pub const FACTLOG_START_BEGINNING: factlog_start = 0;
/// The given global position (for one aggregate: the given version).
pub const FACTLOG_START_AT: factlog_start = 1;
/// After the last durable event: only events appended from now on.
pub const FACTLOG_START_END: factlog_start = 2;

/// Bytes of an event, causation or correlation id (the bytes of a UUID).
pub const FACTLOG_ID_BYTES: usize = 16;

/// Options for `factlog_open`. Fill it with `factlog_options_default` and
/// change what you need; the fields are the engine's `Options` (README,
/// "Limits", gives the ranges; a bad combination is `FACTLOG_INVALID_OPTIONS`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct factlog_options {
    /// Open an existing store for reading only (beside a writer in another
    /// process, too): appends, snapshot saves and `factlog_sync` fail with
    /// `FACTLOG_READ_ONLY`.
    pub read_only: bool,
    /// `FACTLOG_DURABILITY_SYNC` (default) or `FACTLOG_DURABILITY_BUFFERED`.
    pub durability: factlog_durability,
    /// With `FACTLOG_DURABILITY_BUFFERED`: the longest time between two syncs, in ms (positive).
    pub flush_interval_ms: u64,
    /// Largest segment file, in bytes (64 KiB..=2 GiB, a multiple of 4096). Default 64 MiB.
    pub segment_bytes: u64,
    /// A new store's first segment, in bytes; later ones double up to `segment_bytes`. Default 1 MiB.
    pub first_segment_bytes: u64,
    /// Largest encoded event, in bytes (at least 1024, and it must fit in a segment). Default 4 MiB.
    pub max_event_bytes: u32,
    /// Largest number of events in one append. Default 10,000.
    pub max_batch_events: usize,
    /// How many recent events are remembered for idempotent retries. Default 100,000.
    pub dedupe_window_events: u64,
    /// On open, cut the log at the first corrupt record instead of failing
    /// (with `read_only`: a dry run that changes nothing).
    pub repair: bool,
    /// Bound on appends queued for the writer thread. Default 4,096.
    pub max_pending_appends: usize,
    /// Largest number of appends in one group commit. Default 1,024.
    pub max_group_appends: usize,
    /// Create and zero-fill the next segment in the background. Default true.
    pub prepare_next_segment: bool,
    /// Set `snapshot_due` in append results once an aggregate is this many
    /// events past its newest snapshot; 0 (the default) never does.
    pub snapshot_every: u64,
    /// Snapshots kept per aggregate (at least 1). Default 1.
    pub snapshots_keep: usize,
    /// zstd level of snapshot payloads (-7..=22). Default 1.
    pub snapshot_zstd_level: i32,
    /// Size at which a snapshot file is sealed, in bytes. Default 16 MiB.
    pub snapshot_file_bytes: u64,
    /// Largest snapshot state accepted, in bytes. Default 64 MiB.
    pub max_snapshot_bytes: u32,
    /// How long `factlog_open` waits for a lock another opener holds, in ms
    /// (0, the default: fail at once with `FACTLOG_LOCKED`).
    pub lock_wait_ms: u64,
}

/// One event to append. The engine assigns its version, position and `recorded_at`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct factlog_new_event {
    /// Unique id (the bytes of a UUID; `factlog_event_id_new` makes a time-ordered one).
    /// Re-appending a batch with the same ids at the same place is an idempotent retry.
    pub event_id: [u8; FACTLOG_ID_BYTES],
    /// Type name: NUL-terminated UTF-8, 1..=255 bytes.
    pub event_type: *const c_char,
    /// Schema version of `data` (1 if you have none).
    pub event_version: u32,
    /// When it happened, unix nanoseconds, as the caller tells it (`factlog_now_nanos()`).
    pub occurred_at: i64,
    /// Whether `causation_id` is set.
    pub has_causation_id: bool,
    /// The event or command that caused this one.
    pub causation_id: [u8; FACTLOG_ID_BYTES],
    /// Whether `correlation_id` is set.
    pub has_correlation_id: bool,
    /// The conversation this event belongs to.
    pub correlation_id: [u8; FACTLOG_ID_BYTES],
    /// Free-form metadata bytes (may be NULL when `metadata_len` is 0).
    pub metadata: *const u8,
    /// Bytes at `metadata`.
    pub metadata_len: usize,
    /// The payload (may be NULL when `data_len` is 0).
    pub data: *const u8,
    /// Bytes at `data`.
    pub data_len: usize,
}

/// One aggregate's batch in `factlog_append_many`: what `factlog_append`
/// takes for one aggregate, as a struct.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct factlog_append_part {
    /// The aggregate: NUL-terminated UTF-8, 1..=255 bytes; at most once per call.
    pub aggregate_id: *const c_char,
    /// A `FACTLOG_EXPECTED_*` value.
    pub expected_kind: factlog_expected,
    /// The version `FACTLOG_EXPECTED_EXACT` expects (ignored for the other kinds).
    pub expected_version: u64,
    /// The events, at least one.
    pub events: *const factlog_new_event,
    /// Events at `events`.
    pub events_len: usize,
}

/// What an append wrote (or, for an idempotent retry, had written before).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct factlog_append_result {
    /// Version of the batch's first event.
    pub first_version: u64,
    /// Version of its last event: the aggregate's version after the append.
    pub last_version: u64,
    /// Global position of the first event.
    pub first_position: u64,
    /// Global position of the last event.
    pub last_position: u64,
    /// Every event was already stored at exactly this place; nothing was written.
    pub deduplicated: bool,
    /// `snapshot_every` is set and the aggregate is that far past its newest snapshot.
    pub snapshot_due: bool,
}

/// A stored event, borrowed: the pointers point into the store's memory-mapped
/// segment files (or, for a subscription, into the handle). They stay valid
/// until the next call on the same iterator or subscription, or its free.
/// Strings are UTF-8 and NOT NUL-terminated: use the `_len` fields.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct factlog_event_view {
    /// Global position in the log (dense, from 0).
    pub position: u64,
    /// Version within the aggregate (dense, from 0).
    pub version: u64,
    /// The event's id.
    pub event_id: [u8; FACTLOG_ID_BYTES],
    /// The aggregate's id (`aggregate_id_len` bytes).
    pub aggregate_id: *const c_char,
    /// Bytes at `aggregate_id`.
    pub aggregate_id_len: usize,
    /// The type name (`event_type_len` bytes).
    pub event_type: *const c_char,
    /// Bytes at `event_type`.
    pub event_type_len: usize,
    /// Schema version of `data`.
    pub event_version: u32,
    /// The caller's timestamp, unix nanoseconds.
    pub occurred_at: i64,
    /// When the engine wrote it, unix nanoseconds (never decreases along the log).
    pub recorded_at: i64,
    /// Whether `causation_id` is set.
    pub has_causation_id: bool,
    /// The causing event or command.
    pub causation_id: [u8; FACTLOG_ID_BYTES],
    /// Whether `correlation_id` is set.
    pub has_correlation_id: bool,
    /// The correlation id.
    pub correlation_id: [u8; FACTLOG_ID_BYTES],
    /// Metadata bytes (NULL when `metadata_len` is 0).
    pub metadata: *const u8,
    /// Bytes at `metadata`.
    pub metadata_len: usize,
    /// Payload bytes (NULL when `data_len` is 0).
    pub data: *const u8,
    /// Bytes at `data`.
    pub data_len: usize,
}

/// What a snapshot save wrote.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct factlog_snapshot_info {
    /// Bytes of the state as given.
    pub raw_bytes: u64,
    /// Bytes on disk, frame included.
    pub stored_bytes: u64,
    /// Bytes of the stored payload (compressed, or raw when that is smaller).
    pub payload_bytes: u64,
}

/// An aggregate ready to rehydrate (`factlog_load`, `factlog_load_as_of`):
/// fold the snapshot state, if any, then the events of the iterator returned
/// with it. `state` points into that iterator and stays valid until its free.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct factlog_loaded {
    /// Whether a snapshot was found; the `snapshot_*` fields and `state` are 0 otherwise.
    pub has_snapshot: bool,
    /// The aggregate version the state reflects (events `0..=snapshot_version` folded).
    pub snapshot_version: u64,
    /// The caller's schema version of the state, as saved.
    pub snapshot_schema_version: u32,
    /// When the snapshot was saved, unix nanoseconds.
    pub snapshot_taken_at: i64,
    /// The state bytes, decompressed (NULL when `state_len` is 0).
    pub state: *const u8,
    /// Bytes at `state`.
    pub state_len: usize,
    /// Whether the aggregate had events at the point loaded.
    pub has_version: bool,
    /// Its version at the point loaded (the last event the iterator yields).
    pub version: u64,
}

/// Counters and sizes of a store (the engine's `Stats`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct factlog_store_stats {
    /// Visible events.
    pub events: u64,
    /// Aggregates with at least one event.
    pub aggregates: u64,
    /// Segment files.
    pub segments: u64,
    /// Bytes of segment files on disk (preallocated size).
    pub segment_file_bytes: u64,
    /// Bytes of those files holding frames.
    pub log_bytes: u64,
    /// Approximate heap bytes of the in-memory index.
    pub index_bytes: u64,
    /// Bytes of index checkpoint files.
    pub index_file_bytes: u64,
    /// `fdatasync` calls made by the writer since open.
    pub fsyncs: u64,
    /// Group commits made by the writer since open.
    pub group_commits: u64,
    /// Snapshot files.
    pub snapshot_files: u64,
    /// Snapshots indexed.
    pub snapshots: u64,
    /// Bytes of snapshot files.
    pub snapshot_bytes: u64,
    /// Trained snapshot dictionaries.
    pub snapshot_dictionaries: u64,
}

/// What `factlog_verify` checked and found.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct factlog_verify_report {
    /// Events whose frames were checked.
    pub events: u64,
    /// Aggregates in the index.
    pub aggregates: u64,
    /// Segment files.
    pub segments: u64,
    /// Index checkpoint files compared with their segment.
    pub checkpoints: u64,
    /// Snapshot records decoded.
    pub snapshots: u64,
    /// Problems found (0: the store is sound). Each names its file and offset
    /// in the error message of the `FACTLOG_CORRUPT` status returned with them.
    pub problems: u64,
}
