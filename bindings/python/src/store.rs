//! `factlog.Store`: the Python handle of one open store. Each method reads
//! its Python arguments with the GIL, then runs the engine call without it
//! (`Python::detach`), so Python threads appending at once meet in the
//! engine's group commit, and a reader never stalls the interpreter on a
//! page fault or an fsync.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use factlog::{AsOf, ConsumerOptions, Durability, Filter, Options, ResetTo, SchemaVersion, StartFrom};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::errors::IntoPyResult;
use crate::event::{events_from_py, payload_from_py, PyAppendResult};
use crate::expected::{expected_from_py, Expected};
use crate::handle::Handle;
use crate::iter::{PyEventIterator, Walk};
use crate::report::{PyConsumerInfo, PyStats, PyVerifyReport};
use crate::snapshot::{PyLoaded, PySnapshot, PySnapshotInfo};
use crate::subscription::{PyConsumer, PySubscription};

/// Flush interval of `durability="buffered"` unless `flush_interval_ms` says otherwise.
const BUFFERED_FLUSH_MS_DEFAULT: u64 = 100;

/// An open factlog store: `Store(path, durability="sync", *, read_only=False, ...)`.
///
/// Creates the store when `path` is missing or an empty directory (unless
/// `read_only`). `durability="sync"` (the default) acknowledges an append
/// once it is on disk; `"buffered"` once it is written, syncing at least
/// every `flush_interval_ms`. `read_only=True` opens an existing store for
/// reading only, beside a writer in another process, which it follows.
/// The other keywords are the engine's options of the same names
/// (`lock_wait` in seconds). Use it as a context manager, or call
/// `close()`; one `Store` per path per process (share it between threads:
/// every method may be called from any thread).
#[pyclass(module = "factlog", name = "Store", frozen)]
pub struct PyStore {
    handle: Arc<Handle>,
    path: PathBuf,
    read_only: bool,
}

/// The engine's durability from the constructor's `durability` and `flush_interval_ms`.
fn durability_option(durability: &str, flush_interval_ms: Option<u64>) -> PyResult<Durability> {
    match (durability, flush_interval_ms) {
        ("sync", None) => Ok(Durability::Sync),
        ("sync", Some(_)) => Err(PyValueError::new_err("flush_interval_ms goes with durability=\"buffered\" only")),
        ("buffered", ms) => Ok(Durability::Buffered { flush_interval_ms: ms.unwrap_or(BUFFERED_FLUSH_MS_DEFAULT) }),
        (other, _) => Err(PyValueError::new_err(format!("durability {other:?}: expected \"sync\" or \"buffered\""))),
    }
}

/// A keyword given in seconds, as a duration (0 or more).
pub fn seconds(name: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| PyValueError::new_err(format!("{name} {value} is not a number of seconds (0 or more)")))
}

/// The engine filter of `event_types` and `aggregate_prefixes` keywords.
fn filter(event_types: Option<Vec<String>>, aggregate_prefixes: Option<Vec<String>>) -> Filter {
    let mut f = Filter::all();
    if let Some(types) = event_types {
        f = f.event_types(types);
    }
    if let Some(prefixes) = aggregate_prefixes {
        f = f.aggregate_prefixes(prefixes);
    }
    f
}

/// Where a subscription or a new consumer starts.
fn start_from(from: u64, from_end: bool) -> StartFrom {
    if from_end {
        StartFrom::End
    } else {
        StartFrom::Position(from)
    }
}

/// One item of `append_many`'s `batches` (the `i`-th, for messages): an
/// `(aggregate_id, events)` or `(aggregate_id, events, expected_version)` tuple.
fn batch_from_py(
    i: usize,
    item: &Bound<'_, PyAny>,
) -> PyResult<(String, factlog::ExpectedVersion, Vec<factlog::NewEvent>)> {
    let shape = || {
        PyTypeError::new_err(format!(
            "append_many takes (aggregate_id, events) or (aggregate_id, events, expected_version) tuples; \
             batch {i} is not one"
        ))
    };
    let tuple = item.cast::<PyTuple>().map_err(|_| shape())?;
    let expected = match tuple.len() {
        2 => factlog::ExpectedVersion::Any,
        3 => expected_from_py(&tuple.get_item(2)?)?,
        _ => return Err(shape()),
    };
    let aggregate_id: String = tuple
        .get_item(0)?
        .extract()
        .map_err(|_| PyTypeError::new_err(format!("append_many: the aggregate_id of batch {i} is not a str")))?;
    let events = events_from_py(&tuple.get_item(1)?)?;
    Ok((aggregate_id, expected, events))
}

impl PyStore {
    /// Runs `f` on the engine store without the GIL.
    fn call<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&factlog::Store) -> factlog::Result<T> + Send,
    ) -> PyResult<T> {
        let store = self.handle.store()?;
        py.detach(|| f(&store)).py_err(py)
    }

    /// A reader of the store now, made without the GIL.
    fn reader(&self, py: Python<'_>) -> PyResult<Arc<factlog::Reader>> {
        let store = self.handle.store()?;
        Ok(Arc::new(py.detach(|| store.reader())))
    }
}

#[pymethods]
impl PyStore {
    #[new]
    #[pyo3(signature = (path, durability="sync", *, read_only=false, flush_interval_ms=None, segment_bytes=None, max_event_bytes=None, snapshot_every=None, snapshots_keep=None, lock_wait=0.0, repair=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        durability: &str,
        read_only: bool,
        flush_interval_ms: Option<u64>,
        segment_bytes: Option<u64>,
        max_event_bytes: Option<u32>,
        snapshot_every: Option<u64>,
        snapshots_keep: Option<usize>,
        lock_wait: f64,
        repair: bool,
    ) -> PyResult<PyStore> {
        let mut o = Options::default()
            .durability(durability_option(durability, flush_interval_ms)?)
            .lock_wait(seconds("lock_wait", lock_wait)?)
            .repair(repair);
        if let Some(b) = segment_bytes {
            let first = b.min(o.first_segment_bytes);
            o = o.segment_bytes(b).first_segment_bytes(first);
        }
        if let Some(b) = max_event_bytes {
            o = o.max_event_bytes(b);
        }
        if let Some(n) = snapshot_every {
            o = o.snapshot_every(n);
        }
        if let Some(n) = snapshots_keep {
            o = o.snapshots_keep(n);
        }
        let dir = path.clone();
        let store = py
            .detach(
                move || {
                    if read_only {
                        factlog::Store::open_read_only(&dir, o)
                    } else {
                        factlog::Store::open(&dir, o)
                    }
                },
            )
            .py_err(py)?;
        Ok(PyStore { handle: Handle::new(store), path, read_only })
    }

    /// The store's directory, as given.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// Whether it was opened with `read_only=True`.
    #[getter]
    fn read_only(&self) -> bool {
        self.read_only
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Syncs and closes the store, and every consumer open on it; iterators,
    /// subscriptions and consumers made from it raise `factlog.Closed` from
    /// then on. Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let handle = &self.handle;
        let result = py.detach(|| {
            let (store, consumers) = handle.take();
            drop(consumers);
            store.map_or(Ok(()), factlog::Store::close)
        });
        result.py_err(py)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        let state = if self.handle.is_closed() { ", closed" } else { "" };
        let mode = if self.read_only { ", read_only=True" } else { "" };
        format!("factlog.Store({:?}{mode}{state})", self.path.to_string_lossy())
    }

    /// Appends `events` (one `Event` or an iterable of them) to
    /// `aggregate_id` as one atomic batch, if the aggregate's version matches
    /// `expected_version`: `ANY` (the default), `NO_STREAM`,
    /// `STREAM_EXISTS` or an int, the exact version of its last event.
    /// Returns once the batch is durable (`"sync"`) or written
    /// (`"buffered"`). Appending again a batch whose event ids are stored at
    /// exactly this place returns the first result with `deduplicated=True`.
    /// Raises `WrongExpectedVersion`, `DuplicateEventId`, `InvalidInput`,
    /// `EventTooLarge`, `ReadOnly`, `NoSpace`, `Poisoned`, `Closed`.
    #[pyo3(signature = (aggregate_id, events, expected_version=Expected(factlog::ExpectedVersion::Any)))]
    fn append(
        &self,
        py: Python<'_>,
        aggregate_id: String,
        events: &Bound<'_, PyAny>,
        expected_version: Expected,
    ) -> PyResult<PyAppendResult> {
        let expected = expected_version.0;
        let events = events_from_py(events)?;
        self.call(py, move |s| s.append(&aggregate_id, expected, events)).map(Into::into)
    }

    /// Appends one batch to each of several aggregates as **one** atomic
    /// batch: all of them or none, in one group commit (a multi-aggregate
    /// transaction, as process managers and sagas need). `batches` is an
    /// iterable of `(aggregate_id, events)` or `(aggregate_id, events,
    /// expected_version)` tuples, each part as `append` takes it (the
    /// expectation defaults to `ANY`). If any expectation fails, nothing is
    /// written and `WrongExpectedVersion` names that aggregate. Returns one
    /// `AppendResult` per batch, in order; the batches get consecutive
    /// positions in that order. Each aggregate may appear once and every
    /// batch needs an event (else `InvalidInput`). Appending the same
    /// batches again returns the first results with `deduplicated=True`.
    /// Raises what `append` raises.
    fn append_many(&self, py: Python<'_>, batches: &Bound<'_, PyAny>) -> PyResult<Vec<PyAppendResult>> {
        let mut parts = Vec::new();
        for (i, item) in batches.try_iter()?.enumerate() {
            parts.push(batch_from_py(i, &item?)?);
        }
        let written = self.call(py, move |s| s.append_many(parts))?;
        Ok(written.into_iter().map(Into::into).collect())
    }

    /// The events of one aggregate from `from_version` on, in version order,
    /// as an iterator of `RecordedEvent` over the store as it is now.
    #[pyo3(signature = (aggregate_id, from_version=0))]
    fn read_aggregate(&self, py: Python<'_>, aggregate_id: String, from_version: u64) -> PyResult<PyEventIterator> {
        let reader = self.reader(py)?;
        let walk = Walk::forward(&reader, aggregate_id, from_version, None);
        Ok(PyEventIterator::new(Arc::clone(&self.handle), reader, walk))
    }

    /// The events of one aggregate from `from_version` (None: its last) down
    /// to version 0, as an iterator of `RecordedEvent`.
    #[pyo3(signature = (aggregate_id, from_version=None))]
    fn read_aggregate_backward(
        &self,
        py: Python<'_>,
        aggregate_id: String,
        from_version: Option<u64>,
    ) -> PyResult<PyEventIterator> {
        let reader = self.reader(py)?;
        let walk = Walk::backward(&reader, aggregate_id, from_version);
        Ok(PyEventIterator::new(Arc::clone(&self.handle), reader, walk))
    }

    /// Every event from `from_position` on, in global order, as an iterator
    /// of `RecordedEvent` over the store as it is now.
    #[pyo3(signature = (from_position=0))]
    fn read_all(&self, py: Python<'_>, from_position: u64) -> PyResult<PyEventIterator> {
        let reader = self.reader(py)?;
        Ok(PyEventIterator::new(Arc::clone(&self.handle), reader, Walk::All { next: from_position }))
    }

    /// The aggregate's current version, or None when it has no events.
    fn aggregate_version(&self, py: Python<'_>, aggregate_id: String) -> PyResult<Option<u64>> {
        // Without the GIL: the index lock may be held by the writer publishing a commit.
        self.call(py, move |s| Ok(s.aggregate_version(&aggregate_id)))
    }

    /// Position of the last visible event, or None for an empty store.
    #[getter]
    fn last_position(&self) -> PyResult<Option<u64>> {
        Ok(self.handle.store()?.last_position())
    }

    /// Position of the last event known to be on disk (every event at or
    /// below it survives a machine crash), or None.
    #[getter]
    fn durable_position(&self) -> PyResult<Option<u64>> {
        Ok(self.handle.store()?.durable_position())
    }

    /// A read-only store: catches up with the writer process now. Returns
    /// the durable position afterwards.
    fn refresh(&self, py: Python<'_>) -> PyResult<Option<u64>> {
        self.call(py, |s| s.refresh())
    }

    /// Saves `state` (bytes, or a value encoded as JSON) as the snapshot of
    /// `aggregate_id` at `version` (its events `0..=version` folded),
    /// compressed. Raises `SnapshotAhead` if the aggregate has not reached `version`.
    #[pyo3(signature = (aggregate_id, version, state, schema_version=1))]
    fn save_snapshot(
        &self,
        py: Python<'_>,
        aggregate_id: String,
        version: u64,
        state: &Bound<'_, PyAny>,
        schema_version: u32,
    ) -> PyResult<PySnapshotInfo> {
        let state = payload_from_py(state)?;
        self.call(py, move |s| s.save_snapshot(&aggregate_id, version, SchemaVersion(schema_version), &state))
            .map(Into::into)
    }

    /// The newest snapshot of the aggregate (at or before `version`, when
    /// given), or None.
    #[pyo3(signature = (aggregate_id, version=None))]
    fn latest_snapshot(
        &self,
        py: Python<'_>,
        aggregate_id: String,
        version: Option<u64>,
    ) -> PyResult<Option<PySnapshot>> {
        let snapshot = self.call(py, move |s| s.snapshot_at_or_before(&aggregate_id, version.unwrap_or(u64::MAX)))?;
        Ok(snapshot.map(Into::into))
    }

    /// Everything needed to rehydrate an aggregate now: its newest snapshot
    /// and the events after it (`Loaded`).
    fn load(&self, py: Python<'_>, aggregate_id: String) -> PyResult<PyLoaded> {
        let id = aggregate_id.clone();
        let (loaded, reader) = self.call(py, move |s| Ok((s.load(&id)?, s.reader())))?;
        PyLoaded::new(py, loaded, Arc::clone(&self.handle), reader, aggregate_id)
    }

    /// The aggregate as it stood at a past point, given by exactly one of
    /// `version` (its own version), `position` (a global position) or
    /// `recorded_at` (unix nanoseconds, the engine's clock): the newest kept
    /// snapshot at or before that point and the events after it up to it.
    #[pyo3(signature = (aggregate_id, *, version=None, position=None, recorded_at=None))]
    fn load_as_of(
        &self,
        py: Python<'_>,
        aggregate_id: String,
        version: Option<u64>,
        position: Option<u64>,
        recorded_at: Option<i64>,
    ) -> PyResult<PyLoaded> {
        let as_of = match (version, position, recorded_at) {
            (Some(v), None, None) => AsOf::Version(v),
            (None, Some(p), None) => AsOf::Position(p),
            (None, None, Some(t)) => AsOf::RecordedAt(t),
            _ => return Err(PyTypeError::new_err("load_as_of takes exactly one of version, position, recorded_at")),
        };
        let id = aggregate_id.clone();
        let (loaded, reader) = self.call(py, move |s| Ok((s.load_as_of(&id, as_of)?, s.reader())))?;
        PyLoaded::new(py, loaded, Arc::clone(&self.handle), reader, aggregate_id)
    }

    /// Counters and sizes (`Stats`).
    fn stats(&self, py: Python<'_>) -> PyResult<PyStats> {
        self.call(py, |s| Ok(s.stats())).map(Into::into)
    }

    /// Checks every record and index entry of the store (appends go on
    /// meanwhile) and returns what it found (`VerifyReport`); problems are
    /// listed there, not raised.
    fn verify(&self, py: Python<'_>) -> PyResult<PyVerifyReport> {
        self.call(py, |s| s.verify(&mut |_, _| {})).map(Into::into)
    }

    /// Forces an fdatasync of everything written (for `"buffered"` stores).
    fn sync(&self, py: Python<'_>) -> PyResult<()> {
        self.call(py, |s| s.sync())
    }

    /// A live subscription to the whole log: the durable events from
    /// `from_position` on (or, with `from_end=True`, only those appended
    /// from now on) whose type is in `event_types` and whose aggregate id
    /// starts with one of `aggregate_prefixes` (None: any), in global order.
    #[pyo3(signature = (from_position=0, *, from_end=false, event_types=None, aggregate_prefixes=None))]
    fn subscribe(
        &self,
        from_position: u64,
        from_end: bool,
        event_types: Option<Vec<String>>,
        aggregate_prefixes: Option<Vec<String>>,
    ) -> PyResult<PySubscription> {
        let store = self.handle.store()?;
        let sub = store.subscribe(start_from(from_position, from_end), filter(event_types, aggregate_prefixes));
        Ok(PySubscription::new(Arc::clone(&self.handle), sub, false))
    }

    /// A live subscription to one aggregate's durable events in version
    /// order, from `from_version` (or, with `from_end=True`, its next one).
    #[pyo3(signature = (aggregate_id, from_version=0, *, from_end=false))]
    fn subscribe_aggregate(&self, aggregate_id: String, from_version: u64, from_end: bool) -> PyResult<PySubscription> {
        let store = self.handle.store()?;
        let sub = store.subscribe_aggregate(&aggregate_id, start_from(from_version, from_end));
        Ok(PySubscription::new(Arc::clone(&self.handle), sub, true))
    }

    /// Opens the durable consumer `name` (1 to 64 ASCII letters, digits,
    /// `_`, `-`, `.`), creating it at `from_position` (or the end, with
    /// `from_end=True`) if it does not exist; an existing one resumes after
    /// its checkpoint. The filter keywords are those of `subscribe`. With
    /// `auto_commit` (the default), asking for more events commits those
    /// handed out before once `commit_every_events` of them (default 1,000)
    /// or `commit_every` seconds (default 1) have gone by; with
    /// `auto_commit=False` only `Consumer.commit` moves the checkpoint.
    #[pyo3(signature = (name, *, from_position=0, from_end=false, event_types=None, aggregate_prefixes=None, auto_commit=true, commit_every_events=1000, commit_every=1.0))]
    #[allow(clippy::too_many_arguments)]
    fn consumer(
        &self,
        py: Python<'_>,
        name: String,
        from_position: u64,
        from_end: bool,
        event_types: Option<Vec<String>>,
        aggregate_prefixes: Option<Vec<String>>,
        auto_commit: bool,
        commit_every_events: u64,
        commit_every: f64,
    ) -> PyResult<PyConsumer> {
        let options = ConsumerOptions::default()
            .start(start_from(from_position, from_end))
            .filter(filter(event_types, aggregate_prefixes))
            .auto_commit(auto_commit)
            .commit_every_events(commit_every_events)
            .commit_every(seconds("commit_every", commit_every)?);
        let consumer = self.call(py, move |s| s.consumer(&name, options))?;
        Ok(PyConsumer::new(Arc::clone(&self.handle), consumer))
    }

    /// Every durable consumer of the store (`ConsumerInfo`), by name.
    fn consumers(&self, py: Python<'_>) -> PyResult<Vec<PyConsumerInfo>> {
        let list = self.call(py, |s| s.consumers())?;
        Ok(list.into_iter().map(Into::into).collect())
    }

    /// Moves a consumer that nobody has open to `position` (it and every
    /// later event are handed out again), to the end (`to_end=True`), or
    /// to the start (neither given); returns its new next position. Raises
    /// `UnknownConsumer`, `PastEnd`, `ConsumerLocked`.
    #[pyo3(signature = (name, *, position=None, to_end=false))]
    fn reset_consumer(&self, py: Python<'_>, name: String, position: Option<u64>, to_end: bool) -> PyResult<u64> {
        let to = match (position, to_end) {
            (Some(p), false) => ResetTo::Position(p),
            (None, true) => ResetTo::End,
            (None, false) => ResetTo::Start,
            (Some(_), true) => return Err(PyTypeError::new_err("reset_consumer takes position or to_end, not both")),
        };
        self.call(py, move |s| s.reset_consumer(&name, to))
    }

    /// Deletes a consumer that nobody has open: its checkpoint and
    /// dead-letter list (the events stay in the log). Raises
    /// `UnknownConsumer`, `ConsumerLocked`.
    fn delete_consumer(&self, py: Python<'_>, name: String) -> PyResult<()> {
        self.call(py, move |s| s.delete_consumer(&name))
    }
}
