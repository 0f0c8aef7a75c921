//! C values to engine values and back, on values `boundary` has already
//! checked: options, the `FACTLOG_*` constants, events, results. Safe code;
//! a view it makes holds raw pointers into the event it was made from, and
//! the handle that owns that event decides how long they live.

use std::time::Duration;

use factlog::{
    AppendResult, AsOf, Direction, Durability, EventId, EventRef, ExpectedVersion, Loaded, Options, RecordedEvent,
    SnapshotInfo, StartFrom, Stats, VerifyReport,
};

use crate::status::factlog_status::FACTLOG_OUT_OF_RANGE;
use crate::status::Failure;
use crate::types::*;

/// A `FACTLOG_*` constant argument that names nothing.
fn unknown(what: &str, value: u32) -> Failure {
    Failure::new(FACTLOG_OUT_OF_RANGE, format!("{what} {value} is not one of the FACTLOG_* values for it"))
}

/// The C options with the engine's defaults (the one place defaults live).
pub(crate) fn default_options() -> factlog_options {
    let o = Options::default();
    let (durability, flush_interval_ms) = match o.durability {
        Durability::Sync => (FACTLOG_DURABILITY_SYNC, 0),
        Durability::Buffered { flush_interval_ms } => (FACTLOG_DURABILITY_BUFFERED, flush_interval_ms),
    };
    factlog_options {
        read_only: false,
        durability,
        // What `Buffered` needs if the caller switches to it and sets nothing else.
        flush_interval_ms: if flush_interval_ms == 0 { 1 } else { flush_interval_ms },
        segment_bytes: o.segment_bytes,
        first_segment_bytes: o.first_segment_bytes,
        max_event_bytes: o.max_event_bytes,
        max_batch_events: o.max_batch_events,
        dedupe_window_events: o.dedupe_window_events,
        repair: o.repair,
        max_pending_appends: o.max_pending_appends,
        max_group_appends: o.max_group_appends,
        prepare_next_segment: o.prepare_next_segment,
        snapshot_every: o.snapshot_every.unwrap_or(0),
        snapshots_keep: o.snapshots_keep,
        snapshot_zstd_level: o.snapshot_zstd_level,
        snapshot_file_bytes: o.snapshot_file_bytes,
        max_snapshot_bytes: o.max_snapshot_bytes,
        lock_wait_ms: u64::try_from(o.lock_wait.as_millis()).unwrap_or(u64::MAX),
    }
}

/// The engine's options for C options (the engine validates them on open).
pub(crate) fn options(c: &factlog_options) -> Result<Options, Failure> {
    let durability = match c.durability {
        FACTLOG_DURABILITY_SYNC => Durability::Sync,
        FACTLOG_DURABILITY_BUFFERED => Durability::Buffered { flush_interval_ms: c.flush_interval_ms },
        other => return Err(unknown("durability", other)),
    };
    let mut o = Options::default()
        .durability(durability)
        .segment_bytes(c.segment_bytes)
        .first_segment_bytes(c.first_segment_bytes)
        .max_event_bytes(c.max_event_bytes)
        .max_batch_events(c.max_batch_events)
        .dedupe_window_events(c.dedupe_window_events)
        .repair(c.repair)
        .max_pending_appends(c.max_pending_appends)
        .max_group_appends(c.max_group_appends)
        .prepare_next_segment(c.prepare_next_segment)
        .snapshots_keep(c.snapshots_keep)
        .snapshot_zstd_level(c.snapshot_zstd_level)
        .snapshot_file_bytes(c.snapshot_file_bytes)
        .max_snapshot_bytes(c.max_snapshot_bytes)
        .lock_wait(Duration::from_millis(c.lock_wait_ms));
    if c.snapshot_every > 0 {
        o = o.snapshot_every(c.snapshot_every);
    }
    Ok(o)
}

/// The expectation a `FACTLOG_EXPECTED_*` kind and a version name.
pub(crate) fn expected(kind: factlog_expected, version: u64) -> Result<ExpectedVersion, Failure> {
    match kind {
        FACTLOG_EXPECTED_ANY => Ok(ExpectedVersion::Any),
        FACTLOG_EXPECTED_NO_STREAM => Ok(ExpectedVersion::NoStream),
        FACTLOG_EXPECTED_STREAM_EXISTS => Ok(ExpectedVersion::StreamExists),
        FACTLOG_EXPECTED_EXACT => Ok(ExpectedVersion::Exact(version)),
        other => Err(unknown("expected-version kind", other)),
    }
}

/// The direction a `FACTLOG_DIRECTION_*` value names.
pub(crate) fn direction(value: factlog_direction) -> Result<Direction, Failure> {
    match value {
        FACTLOG_DIRECTION_FORWARD => Ok(Direction::Forward),
        FACTLOG_DIRECTION_BACKWARD => Ok(Direction::Backward),
        other => Err(unknown("direction", other)),
    }
}

/// The point a `FACTLOG_AS_OF_*` kind and a value name (a position or a
/// version must not be negative).
pub(crate) fn as_of(kind: factlog_as_of, value: i64) -> Result<AsOf, Failure> {
    let unsigned = || {
        u64::try_from(value)
            .map_err(|_| Failure::new(FACTLOG_OUT_OF_RANGE, format!("as-of position or version {value} is negative")))
    };
    match kind {
        FACTLOG_AS_OF_POSITION => Ok(AsOf::Position(unsigned()?)),
        FACTLOG_AS_OF_RECORDED_AT => Ok(AsOf::RecordedAt(value)),
        FACTLOG_AS_OF_VERSION => Ok(AsOf::Version(unsigned()?)),
        other => Err(unknown("as-of kind", other)),
    }
}

/// Where a `FACTLOG_START_*` value and a position (or version) start.
pub(crate) fn start(kind: factlog_start, at: u64) -> Result<StartFrom, Failure> {
    match kind {
        FACTLOG_START_BEGINNING => Ok(StartFrom::Start),
        FACTLOG_START_AT => Ok(StartFrom::Position(at)),
        FACTLOG_START_END => Ok(StartFrom::End),
        other => Err(unknown("start", other)),
    }
}

/// An optional id as a flag and 16 bytes (zeros when absent).
fn id_parts(id: Option<EventId>) -> (bool, [u8; FACTLOG_ID_BYTES]) {
    id.map_or((false, [0; FACTLOG_ID_BYTES]), |id| (true, id.0))
}

/// Where a view's bytes start: NULL when there are none, so that C never
/// sees the dangling address Rust gives an empty slice.
fn bytes_ptr(bytes: &[u8]) -> *const u8 {
    if bytes.is_empty() {
        std::ptr::null()
    } else {
        bytes.as_ptr()
    }
}

/// A view of an event in a memory map: pointers into the map, no copy.
pub(crate) fn ref_view(e: &EventRef<'_>) -> factlog_event_view {
    let (has_causation_id, causation_id) = id_parts(e.causation_id());
    let (has_correlation_id, correlation_id) = id_parts(e.correlation_id());
    factlog_event_view {
        position: e.position(),
        version: e.version(),
        event_id: e.event_id().0,
        aggregate_id: e.aggregate_id().as_ptr().cast(),
        aggregate_id_len: e.aggregate_id().len(),
        event_type: e.event_type().as_ptr().cast(),
        event_type_len: e.event_type().len(),
        event_version: e.event_version(),
        occurred_at: e.occurred_at(),
        recorded_at: e.recorded_at(),
        has_causation_id,
        causation_id,
        has_correlation_id,
        correlation_id,
        metadata: bytes_ptr(e.metadata()),
        metadata_len: e.metadata().len(),
        data: bytes_ptr(e.data()),
        data_len: e.data().len(),
    }
}

/// A view of an owned event: pointers into `e`, which must outlive them.
pub(crate) fn recorded_view(e: &RecordedEvent) -> factlog_event_view {
    let (has_causation_id, causation_id) = id_parts(e.causation_id);
    let (has_correlation_id, correlation_id) = id_parts(e.correlation_id);
    let (aggregate_id, event_type) = (e.aggregate_id.as_str(), e.event_type.as_str());
    let strings = (aggregate_id.as_ptr().cast(), aggregate_id.len(), event_type.as_ptr().cast(), event_type.len());
    factlog_event_view {
        position: e.position,
        version: e.version,
        event_id: e.event_id.0,
        aggregate_id: strings.0,
        aggregate_id_len: strings.1,
        event_type: strings.2,
        event_type_len: strings.3,
        event_version: e.event_version,
        occurred_at: e.occurred_at,
        recorded_at: e.recorded_at,
        has_causation_id,
        causation_id,
        has_correlation_id,
        correlation_id,
        metadata: bytes_ptr(&e.metadata),
        metadata_len: e.metadata.len(),
        data: bytes_ptr(&e.data),
        data_len: e.data.len(),
    }
}

/// An append's result for C.
pub(crate) fn append_result(r: &AppendResult) -> factlog_append_result {
    factlog_append_result {
        first_version: r.first_version,
        last_version: r.last_version,
        first_position: r.first_position,
        last_position: r.last_position,
        deduplicated: r.deduplicated,
        snapshot_due: r.snapshot_due,
    }
}

/// A snapshot save's result for C.
pub(crate) fn snapshot_info(i: &SnapshotInfo) -> factlog_snapshot_info {
    factlog_snapshot_info { raw_bytes: i.raw_bytes, stored_bytes: i.stored_bytes, payload_bytes: i.payload_bytes }
}

/// A loaded aggregate's snapshot and version for C: pointers into `l`.
pub(crate) fn loaded(l: &Loaded) -> factlog_loaded {
    let snapshot = l.snapshot.as_ref();
    let state = snapshot.map_or(&[][..], |s| s.data.as_slice());
    factlog_loaded {
        has_snapshot: snapshot.is_some(),
        snapshot_version: snapshot.map_or(0, |s| s.version),
        snapshot_schema_version: snapshot.map_or(0, |s| s.schema_version),
        snapshot_taken_at: snapshot.map_or(0, |s| s.taken_at),
        state: bytes_ptr(state),
        state_len: state.len(),
        has_version: l.version().is_some(),
        version: l.version().unwrap_or(0),
    }
}

/// A store's counters for C.
pub(crate) fn stats(s: &Stats) -> factlog_store_stats {
    factlog_store_stats {
        events: s.events,
        aggregates: s.aggregates,
        segments: s.segments,
        segment_file_bytes: s.segment_file_bytes,
        log_bytes: s.log_bytes,
        index_bytes: s.index_bytes,
        index_file_bytes: s.index_file_bytes,
        fsyncs: s.fsyncs,
        group_commits: s.group_commits,
        snapshot_files: s.snapshot_files,
        snapshots: s.snapshots,
        snapshot_bytes: s.snapshot_bytes,
        snapshot_dictionaries: s.snapshot_dictionaries,
    }
}

/// A verify report's counts for C.
pub(crate) fn verify_report(r: &VerifyReport) -> factlog_verify_report {
    factlog_verify_report {
        events: r.events,
        aggregates: r.aggregates,
        segments: r.segments,
        checkpoints: r.checkpoints,
        snapshots: r.snapshots,
        problems: r.problems.len() as u64,
    }
}

/// The message of a `FACTLOG_CORRUPT` verify: each problem's file, offset
/// and reason (the first 20; then how many more).
pub(crate) fn verify_problems(r: &VerifyReport) -> String {
    const SHOWN: usize = 20;
    let mut text = format!("verify found {} problem(s):", r.problems.len());
    for p in r.problems.iter().take(SHOWN) {
        text.push_str(&format!(" {} at offset {}: {};", p.path.display(), p.offset, p.reason));
    }
    if r.problems.len() > SHOWN {
        text.push_str(&format!(" and {} more", r.problems.len() - SHOWN));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_options_round_trip_to_the_engine_defaults() {
        let c = default_options();
        let o = options(&c).unwrap();
        let d = Options::default();
        assert_eq!(format!("{o:?}"), format!("{d:?}"));
        let buffered = factlog_options { durability: FACTLOG_DURABILITY_BUFFERED, flush_interval_ms: 7, ..c };
        assert_eq!(options(&buffered).unwrap().durability, Durability::Buffered { flush_interval_ms: 7 });
        assert_eq!(options(&factlog_options { durability: 9, ..c }).unwrap_err().status, FACTLOG_OUT_OF_RANGE);
        assert_eq!(options(&factlog_options { snapshot_every: 5, ..c }).unwrap().snapshot_every, Some(5));
    }

    #[test]
    fn constants_map_to_engine_values_and_unknown_ones_are_out_of_range() {
        assert_eq!(expected(FACTLOG_EXPECTED_EXACT, 4).unwrap(), ExpectedVersion::Exact(4));
        assert_eq!(direction(FACTLOG_DIRECTION_BACKWARD).unwrap(), Direction::Backward);
        assert_eq!(as_of(FACTLOG_AS_OF_RECORDED_AT, -5).unwrap(), AsOf::RecordedAt(-5));
        assert_eq!(start(FACTLOG_START_AT, 3).unwrap(), StartFrom::Position(3));
        assert_eq!(expected(4, 0).unwrap_err().status, FACTLOG_OUT_OF_RANGE);
        assert_eq!(direction(2).unwrap_err().status, FACTLOG_OUT_OF_RANGE);
        assert_eq!(as_of(3, 0).unwrap_err().status, FACTLOG_OUT_OF_RANGE);
        assert_eq!(as_of(FACTLOG_AS_OF_POSITION, -1).unwrap_err().status, FACTLOG_OUT_OF_RANGE);
        assert_eq!(start(3, 0).unwrap_err().status, FACTLOG_OUT_OF_RANGE);
    }
}
