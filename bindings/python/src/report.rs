//! Plain read-only records the store hands back: `Stats`, `VerifyReport`
//! with its `Problem`s, and `ConsumerInfo`.

use pyo3::prelude::*;

/// Formats an optional int the way Python prints it.
pub fn py_opt(v: Option<u64>) -> String {
    v.map_or_else(|| "None".to_string(), |v| v.to_string())
}

/// Counters and sizes of a store, from `Store.stats()`.
#[pyclass(module = "factlog", name = "Stats", frozen, get_all)]
#[derive(Debug, Clone, Copy)]
pub struct PyStats {
    /// Visible events.
    events: u64,
    /// Aggregates with at least one event.
    aggregates: u64,
    /// Segment files.
    segments: u64,
    /// Bytes of segment files on disk (preallocated size).
    segment_file_bytes: u64,
    /// Bytes of those files holding frames (headers included).
    log_bytes: u64,
    /// Approximate heap bytes of the in-memory index.
    index_bytes: u64,
    /// Bytes of index checkpoint files.
    index_file_bytes: u64,
    /// `fdatasync` calls made by the writer since the store was opened.
    fsyncs: u64,
    /// Group commits made by the writer since the store was opened.
    group_commits: u64,
    /// Snapshot files.
    snapshot_files: u64,
    /// Snapshots kept.
    snapshots: u64,
    /// Bytes of snapshot files.
    snapshot_bytes: u64,
    /// Trained snapshot dictionaries.
    snapshot_dictionaries: u64,
}

impl From<factlog::Stats> for PyStats {
    fn from(s: factlog::Stats) -> Self {
        PyStats {
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
}

#[pymethods]
impl PyStats {
    fn __repr__(&self) -> String {
        format!(
            "factlog.Stats(events={}, aggregates={}, segments={}, log_bytes={}, fsyncs={}, group_commits={}, snapshots={})",
            self.events,
            self.aggregates,
            self.segments,
            self.log_bytes,
            self.fsyncs,
            self.group_commits,
            self.snapshots
        )
    }
}

/// One thing `verify` found wrong: the file, the byte offset, and what.
#[pyclass(module = "factlog", name = "Problem", frozen, get_all)]
#[derive(Debug, Clone)]
pub struct PyProblem {
    /// The file.
    path: String,
    /// Byte offset in it.
    offset: u64,
    /// What is wrong.
    reason: String,
}

#[pymethods]
impl PyProblem {
    fn __repr__(&self) -> String {
        format!("factlog.Problem(path={:?}, offset={}, reason={:?})", self.path, self.offset, self.reason)
    }
}

/// What `Store.verify()` checked and found; `ok` is true when `problems` is empty.
#[pyclass(module = "factlog", name = "VerifyReport", frozen, get_all)]
#[derive(Debug, Clone)]
pub struct PyVerifyReport {
    /// Events whose frames were checked.
    events: u64,
    /// Aggregates in the index.
    aggregates: u64,
    /// Segment files.
    segments: u64,
    /// Index checkpoint files compared with their segment.
    checkpoints: u64,
    /// Snapshot records decoded.
    snapshots: u64,
    /// Everything wrong, in log order (empty when the store is sound).
    problems: Vec<PyProblem>,
}

impl From<factlog::VerifyReport> for PyVerifyReport {
    fn from(r: factlog::VerifyReport) -> Self {
        let problems = r
            .problems
            .into_iter()
            .map(|p| PyProblem { path: p.path.to_string_lossy().into_owned(), offset: p.offset, reason: p.reason })
            .collect();
        PyVerifyReport {
            events: r.events,
            aggregates: r.aggregates,
            segments: r.segments,
            checkpoints: r.checkpoints,
            snapshots: r.snapshots,
            problems,
        }
    }
}

#[pymethods]
impl PyVerifyReport {
    /// True when nothing is wrong.
    #[getter]
    fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn __repr__(&self) -> String {
        format!(
            "factlog.VerifyReport(events={}, aggregates={}, segments={}, checkpoints={}, snapshots={}, problems={})",
            self.events,
            self.aggregates,
            self.segments,
            self.checkpoints,
            self.snapshots,
            self.problems.len()
        )
    }
}

/// A durable consumer as `Store.consumers()` lists it.
#[pyclass(module = "factlog", name = "ConsumerInfo", frozen, get_all)]
#[derive(Debug, Clone)]
pub struct PyConsumerInfo {
    /// Its name.
    name: String,
    /// The next position it will handle: every position below is handled.
    next_position: u64,
    /// The last position whose handling is committed (None: none yet).
    checkpoint: Option<u64>,
    /// When the checkpoint was committed, unix nanoseconds.
    committed_at: i64,
    /// Durable events after its checkpoint (filtered-out ones included).
    lag_events: u64,
    /// Bytes of log after its checkpoint.
    lag_bytes: u64,
    /// Events in its dead-letter list.
    parked: usize,
    /// Whether a handle (in any process) has it open now.
    active: bool,
}

impl From<factlog::ConsumerInfo> for PyConsumerInfo {
    fn from(c: factlog::ConsumerInfo) -> Self {
        PyConsumerInfo {
            name: c.name,
            next_position: c.next_position,
            checkpoint: c.checkpoint,
            committed_at: c.committed_at,
            lag_events: c.lag_events,
            lag_bytes: c.lag_bytes,
            parked: c.parked,
            active: c.active,
        }
    }
}

#[pymethods]
impl PyConsumerInfo {
    fn __repr__(&self) -> String {
        format!(
            "factlog.ConsumerInfo(name={:?}, next_position={}, checkpoint={}, lag_events={}, parked={}, active={})",
            self.name,
            self.next_position,
            py_opt(self.checkpoint),
            self.lag_events,
            self.parked,
            if self.active { "True" } else { "False" }
        )
    }
}
