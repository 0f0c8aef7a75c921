//! Snapshots as Python sees them: `Snapshot` (a decompressed state),
//! `SnapshotInfo` (what a save wrote) and `Loaded` (what `load` and
//! `load_as_of` return: the newest snapshot at or before the point, and the
//! events after it).

use std::sync::Arc;

use factlog::Reader;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::event::json_loads;
use crate::handle::Handle;
use crate::iter::{PyEventIterator, Walk};
use crate::report::py_opt;

/// A saved aggregate state, decompressed.
#[pyclass(module = "factlog", name = "Snapshot", frozen, eq)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PySnapshot {
    snapshot: factlog::Snapshot,
}

impl From<factlog::Snapshot> for PySnapshot {
    fn from(snapshot: factlog::Snapshot) -> Self {
        PySnapshot { snapshot }
    }
}

#[pymethods]
impl PySnapshot {
    /// The aggregate.
    #[getter]
    fn aggregate_id(&self) -> &str {
        &self.snapshot.aggregate_id
    }

    /// The aggregate version the state reflects (its events `0..=version` folded).
    #[getter]
    fn version(&self) -> u64 {
        self.snapshot.version
    }

    /// The caller's schema version of the state, as given to `save_snapshot`.
    #[getter]
    fn schema_version(&self) -> u32 {
        self.snapshot.schema_version
    }

    /// When it was saved, unix nanoseconds.
    #[getter]
    fn taken_at(&self) -> i64 {
        self.snapshot.taken_at
    }

    /// The state bytes.
    #[getter]
    fn data<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.snapshot.data)
    }

    /// `data` decoded with `json.loads`.
    fn json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_loads(py, &self.snapshot.data)
    }

    fn __repr__(&self) -> String {
        format!(
            "factlog.Snapshot(aggregate_id={:?}, version={}, schema_version={}, data=<{} bytes>)",
            self.snapshot.aggregate_id,
            self.snapshot.version,
            self.snapshot.schema_version,
            self.snapshot.data.len()
        )
    }
}

/// What `save_snapshot` wrote.
#[pyclass(module = "factlog", name = "SnapshotInfo", frozen, get_all)]
#[derive(Debug, Clone, Copy)]
pub struct PySnapshotInfo {
    /// Bytes of the state, uncompressed.
    raw_bytes: u64,
    /// Bytes on disk, frame included.
    stored_bytes: u64,
    /// Bytes of the stored payload (compressed, or raw when that is smaller).
    payload_bytes: u64,
}

impl From<factlog::SnapshotInfo> for PySnapshotInfo {
    fn from(i: factlog::SnapshotInfo) -> Self {
        PySnapshotInfo { raw_bytes: i.raw_bytes, stored_bytes: i.stored_bytes, payload_bytes: i.payload_bytes }
    }
}

#[pymethods]
impl PySnapshotInfo {
    fn __repr__(&self) -> String {
        format!(
            "factlog.SnapshotInfo(raw_bytes={}, stored_bytes={}, payload_bytes={})",
            self.raw_bytes, self.stored_bytes, self.payload_bytes
        )
    }
}

/// An aggregate ready to rehydrate: fold `snapshot` (when not None), then
/// `events()`. `version` is the aggregate's version at the point loaded
/// (None: it had no events then).
#[pyclass(module = "factlog", name = "Loaded", frozen)]
pub struct PyLoaded {
    snapshot: Option<Py<PySnapshot>>,
    version: Option<u64>,
    handle: Arc<Handle>,
    reader: Arc<Reader>,
    aggregate_id: String,
}

impl PyLoaded {
    /// The engine's load result, with `reader` (made after it, so it sees at
    /// least every event up to the point loaded) to read the events from.
    pub fn new(
        py: Python<'_>,
        loaded: factlog::Loaded,
        handle: Arc<Handle>,
        reader: Reader,
        aggregate_id: String,
    ) -> PyResult<PyLoaded> {
        let version = loaded.version();
        let snapshot = match loaded.snapshot {
            Some(s) => Some(Py::new(py, PySnapshot::from(s))?),
            None => None,
        };
        Ok(PyLoaded { snapshot, version, handle, reader: Arc::new(reader), aggregate_id })
    }
}

#[pymethods]
impl PyLoaded {
    /// The newest kept snapshot at or before the point loaded, or None.
    #[getter]
    fn snapshot(&self, py: Python<'_>) -> Option<Py<PySnapshot>> {
        self.snapshot.as_ref().map(|s| s.clone_ref(py))
    }

    /// The aggregate's version at the point loaded, or None when it had no events.
    #[getter]
    fn version(&self) -> Option<u64> {
        self.version
    }

    /// The events after the snapshot (every event when there is none) up to
    /// the point loaded, in version order: a new iterator on each call.
    fn events(&self) -> PyEventIterator {
        let from = self.snapshot.as_ref().map_or(0, |s| s.get().snapshot.version + 1);
        let walk = match self.version {
            Some(until) => Walk::forward(&self.reader, self.aggregate_id.clone(), from, Some(until)),
            None => Walk::Done,
        };
        PyEventIterator::new(Arc::clone(&self.handle), Arc::clone(&self.reader), walk)
    }

    fn __repr__(&self) -> String {
        let snap = self.snapshot.as_ref().map(|s| s.get().snapshot.version);
        format!(
            "factlog.Loaded(aggregate_id={:?}, version={}, snapshot_version={})",
            self.aggregate_id,
            py_opt(self.version),
            py_opt(snap)
        )
    }
}
