//! The event envelope as Python sees it: `Event` (what goes into an append),
//! `RecordedEvent` (what reads return, an owned copy whose fields become
//! Python objects only when asked for), `AppendResult`, and the conversions
//! of payloads (bytes, or any other value encoded as JSON) and ids
//! (`uuid.UUID`).

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyMemoryView, PyString, PyType};

use std::sync::Arc;

use factlog::{Bytes, EventId, EventRef, NewEvent};

static UUID_CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static JSON_DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static JSON_LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `uuid.UUID`.
fn uuid_class(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    UUID_CLASS.import(py, "uuid", "UUID")
}

/// An engine id as a `uuid.UUID`.
pub fn uuid_object(py: Python<'_>, id: EventId) -> PyResult<Bound<'_, PyAny>> {
    let kwargs = PyDict::new(py);
    kwargs.set_item("bytes", PyBytes::new(py, id.as_bytes()))?;
    uuid_class(py)?.call((), Some(&kwargs))
}

/// An optional engine id as a `uuid.UUID` or None.
fn opt_uuid_object(py: Python<'_>, id: Option<EventId>) -> PyResult<Bound<'_, PyAny>> {
    match id {
        Some(id) => uuid_object(py, id),
        None => Ok(py.None().into_bound(py)),
    }
}

/// An id argument: a `uuid.UUID`, or its text (`"0b0c0d0e-0f10-..."`).
pub fn id_from_py(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<EventId> {
    if let Ok(text) = obj.cast::<PyString>() {
        let text = text.to_cow()?;
        return EventId::parse(&text).map_err(|e| PyValueError::new_err(format!("{what}: {e}")));
    }
    if obj.is_instance(uuid_class(obj.py())?)? {
        let bytes = obj.getattr("bytes")?;
        let bytes = bytes.cast::<PyBytes>()?.as_bytes();
        let id: [u8; 16] =
            bytes.try_into().map_err(|_| PyValueError::new_err(format!("{what}: a UUID is 16 bytes")))?;
        return Ok(EventId(id));
    }
    Err(PyTypeError::new_err(format!("{what} must be a uuid.UUID or a UUID string")))
}

/// An optional id argument (None: absent).
fn opt_id_from_py(obj: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<EventId>> {
    match obj {
        Some(o) if !o.is_none() => Ok(Some(id_from_py(o, what)?)),
        _ => Ok(None),
    }
}

/// Payload bytes from a Python value: `bytes`, `bytearray` and `memoryview`
/// as they are; anything else (dict, list, str, number, bool, None) encoded
/// with `json.dumps` (compact, UTF-8).
pub fn payload_from_py(obj: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Bytes::copy_from_slice(b.as_bytes()));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(Bytes::from(b.to_vec()));
    }
    let py = obj.py();
    if obj.is_instance_of::<PyMemoryView>() {
        let bytes = py.get_type::<PyBytes>().call1((obj,))?;
        return Ok(Bytes::copy_from_slice(bytes.cast::<PyBytes>()?.as_bytes()));
    }
    let dumps = JSON_DUMPS
        .get_or_try_init(py, || -> PyResult<Py<PyAny>> { Ok(py.import("json")?.getattr("dumps")?.unbind()) })?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("separators", (",", ":"))?;
    kwargs.set_item("ensure_ascii", false)?;
    let text = dumps.bind(py).call((obj,), Some(&kwargs))?;
    let text = text.cast::<PyString>()?.to_cow()?;
    Ok(Bytes::copy_from_slice(text.as_bytes()))
}

/// `json.loads(bytes)`.
pub fn json_loads<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let loads = JSON_LOADS
        .get_or_try_init(py, || -> PyResult<Py<PyAny>> { Ok(py.import("json")?.getattr("loads")?.unbind()) })?;
    loads.bind(py).call1((PyBytes::new(py, bytes),))
}

/// An event to append: `Event(type, data, event_id=None, metadata=None,
/// causation_id=None, correlation_id=None, event_version=1, occurred_at=None)`.
///
/// `data` and `metadata` are bytes (bytes, bytearray, memoryview) or any
/// value `json.dumps` accepts, stored as its compact UTF-8 JSON text (so a
/// `str` is stored as a JSON string: pass `text.encode()` to store JSON text
/// you already have). `event_id` is a `uuid.UUID` (or its text); when
/// omitted, a new time-ordered UUID (version 7) is made. `occurred_at` is
/// unix nanoseconds, now when omitted. Immutable once made.
#[pyclass(module = "factlog", name = "Event", frozen)]
#[derive(Debug, Clone)]
pub struct PyEvent {
    event: NewEvent,
}

impl PyEvent {
    /// The engine's event (cheap: the payloads are shared, not copied).
    pub fn to_new_event(&self) -> NewEvent {
        self.event.clone()
    }
}

#[pymethods]
impl PyEvent {
    #[new]
    #[pyo3(signature = (r#type, data, event_id=None, metadata=None, causation_id=None, correlation_id=None, event_version=1, occurred_at=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        r#type: String,
        data: &Bound<'_, PyAny>,
        event_id: Option<&Bound<'_, PyAny>>,
        metadata: Option<&Bound<'_, PyAny>>,
        causation_id: Option<&Bound<'_, PyAny>>,
        correlation_id: Option<&Bound<'_, PyAny>>,
        event_version: u32,
        occurred_at: Option<i64>,
    ) -> PyResult<PyEvent> {
        let event_id = opt_id_from_py(event_id, "event_id")?.unwrap_or_else(EventId::new_v7);
        let metadata = match metadata {
            Some(m) if !m.is_none() => payload_from_py(m)?,
            _ => Bytes::new(),
        };
        let event = NewEvent {
            event_id,
            event_type: r#type,
            event_version,
            occurred_at: occurred_at.unwrap_or_else(factlog::now_nanos),
            causation_id: opt_id_from_py(causation_id, "causation_id")?,
            correlation_id: opt_id_from_py(correlation_id, "correlation_id")?,
            metadata,
            data: payload_from_py(data)?,
        };
        Ok(PyEvent { event })
    }

    /// The event type name (1 to 255 bytes of UTF-8), as given to the constructor's `type`.
    #[getter]
    fn event_type(&self) -> &str {
        &self.event.event_type
    }

    /// The same as `event_type`.
    #[getter(r#type)]
    fn type_(&self) -> &str {
        &self.event.event_type
    }

    /// The payload bytes.
    #[getter]
    fn data<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.event.data)
    }

    /// The event's unique id (a `uuid.UUID`), used to make retries idempotent.
    #[getter]
    fn event_id<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        uuid_object(py, self.event.event_id)
    }

    /// The metadata bytes (empty when none was given).
    #[getter]
    fn metadata<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.event.metadata)
    }

    /// The id of the event or command that caused this one, or None.
    #[getter]
    fn causation_id<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        opt_uuid_object(py, self.event.causation_id)
    }

    /// The id of the conversation this event belongs to, or None.
    #[getter]
    fn correlation_id<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        opt_uuid_object(py, self.event.correlation_id)
    }

    /// The schema version of `data`.
    #[getter]
    fn event_version(&self) -> u32 {
        self.event.event_version
    }

    /// When it happened, unix nanoseconds (the caller's clock).
    #[getter]
    fn occurred_at(&self) -> i64 {
        self.event.occurred_at
    }

    /// `data` decoded with `json.loads`.
    fn json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_loads(py, &self.event.data)
    }

    fn __repr__(&self) -> String {
        format!(
            "factlog.Event(type={:?}, event_id='{}', data=<{} bytes>)",
            self.event.event_type,
            self.event.event_id,
            self.event.data.len()
        )
    }
}

/// Reads the `events` argument of an append: one `Event`, or an iterable of them.
pub fn events_from_py(events: &Bound<'_, PyAny>) -> PyResult<Vec<NewEvent>> {
    if let Ok(one) = events.cast::<PyEvent>() {
        return Ok(vec![one.get().to_new_event()]);
    }
    if let Ok(list) = events.cast::<PyList>() {
        let mut out = Vec::with_capacity(list.len());
        for item in list.iter() {
            out.push(event_item(&item)?);
        }
        return Ok(out);
    }
    let mut out = Vec::new();
    for item in events.try_iter()? {
        out.push(event_item(&item?)?);
    }
    Ok(out)
}

fn event_item(item: &Bound<'_, PyAny>) -> PyResult<NewEvent> {
    match item.cast::<PyEvent>() {
        Ok(e) => Ok(e.get().to_new_event()),
        Err(_) => Err(PyTypeError::new_err(format!(
            "append takes factlog.Event objects, not {}",
            item.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "this".into())
        ))),
    }
}

/// How many distinct event types a [`Copier`] shares before it stops adding
/// (a log rarely has more; past that, each copy allocates its type name).
const SHARED_TYPES_MAX: usize = 64;

/// Makes [`PyRecordedEvent`]s out of the engine's zero-copy events, without
/// the GIL: the strings that repeat from event to event (the aggregate id
/// of a replay, the few event type names of a log) are shared, and an
/// event's metadata and data are one allocation, so a copy costs one
/// `malloc` rather than four. Replay speed is mostly allocation.
#[derive(Default)]
pub struct Copier {
    aggregate: Option<Arc<str>>,
    types: Vec<Arc<str>>,
}

impl Copier {
    fn aggregate(&mut self, id: &str) -> Arc<str> {
        match &self.aggregate {
            Some(a) if &**a == id => Arc::clone(a),
            _ => {
                let a: Arc<str> = Arc::from(id);
                self.aggregate = Some(Arc::clone(&a));
                a
            }
        }
    }

    fn event_type(&mut self, name: &str) -> Arc<str> {
        if let Some(t) = self.types.iter().find(|t| &***t == name) {
            return Arc::clone(t);
        }
        let t: Arc<str> = Arc::from(name);
        if self.types.len() < SHARED_TYPES_MAX {
            self.types.push(Arc::clone(&t));
        }
        t
    }

    /// An owned copy of `e`.
    pub fn copy(&mut self, e: &EventRef<'_>) -> PyRecordedEvent {
        let (metadata, data) = (e.metadata(), e.data());
        let mut payload = Vec::with_capacity(metadata.len() + data.len());
        payload.extend_from_slice(metadata);
        payload.extend_from_slice(data);
        PyRecordedEvent {
            event_id: e.event_id(),
            aggregate_id: self.aggregate(e.aggregate_id()),
            version: e.version(),
            position: e.position(),
            event_type: self.event_type(e.event_type()),
            event_version: e.event_version(),
            occurred_at: e.occurred_at(),
            recorded_at: e.recorded_at(),
            causation_id: e.causation_id(),
            correlation_id: e.correlation_id(),
            payload: payload.into_boxed_slice(),
            metadata_len: metadata.len(),
        }
    }
}

/// A stored event, as reads, subscriptions and consumers return it. The
/// fields are those of the `factlog read` JSON lines: `event_id`,
/// `aggregate_id`, `version`, `position`, `event_type`, `event_version`,
/// `occurred_at`, `recorded_at` (unix nanoseconds), `causation_id`,
/// `correlation_id` (`uuid.UUID` or None), `metadata` and `data` (bytes;
/// `json()` and `metadata_json()` decode them). Immutable; compares equal
/// to another copy of the same stored event. A field becomes a Python
/// object only when it is read.
#[pyclass(module = "factlog", name = "RecordedEvent", frozen, eq)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PyRecordedEvent {
    event_id: EventId,
    aggregate_id: Arc<str>,
    version: u64,
    position: u64,
    event_type: Arc<str>,
    event_version: u32,
    occurred_at: i64,
    recorded_at: i64,
    causation_id: Option<EventId>,
    correlation_id: Option<EventId>,
    /// The metadata bytes, then the data bytes.
    payload: Box<[u8]>,
    metadata_len: usize,
}

impl PyRecordedEvent {
    /// Its global position.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Its version within its aggregate.
    pub fn version(&self) -> u64 {
        self.version
    }

    fn metadata_bytes(&self) -> &[u8] {
        self.payload.get(..self.metadata_len).unwrap_or_default()
    }

    fn data_bytes(&self) -> &[u8] {
        self.payload.get(self.metadata_len..).unwrap_or_default()
    }
}

#[pymethods]
impl PyRecordedEvent {
    /// The event's unique id.
    #[getter]
    fn event_id<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        uuid_object(py, self.event_id)
    }

    /// The aggregate it belongs to.
    #[getter]
    fn aggregate_id(&self) -> &str {
        &self.aggregate_id
    }

    /// Its version within the aggregate (dense, from 0).
    #[getter(version)]
    fn version_py(&self) -> u64 {
        self.version
    }

    /// Its global position in the log (dense, from 0, never renumbered).
    #[getter(position)]
    fn position_py(&self) -> u64 {
        self.position
    }

    /// The event type name.
    #[getter]
    fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The schema version of `data`.
    #[getter]
    fn event_version(&self) -> u32 {
        self.event_version
    }

    /// When it happened (the appender's clock), unix nanoseconds.
    #[getter]
    fn occurred_at(&self) -> i64 {
        self.occurred_at
    }

    /// When the engine wrote it, unix nanoseconds (never decreases along the log).
    #[getter]
    fn recorded_at(&self) -> i64 {
        self.recorded_at
    }

    /// The causing event or command, or None.
    #[getter]
    fn causation_id<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        opt_uuid_object(py, self.causation_id)
    }

    /// The correlation id, or None.
    #[getter]
    fn correlation_id<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        opt_uuid_object(py, self.correlation_id)
    }

    /// The metadata bytes (empty when there is none).
    #[getter]
    fn metadata<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.metadata_bytes())
    }

    /// The payload bytes.
    #[getter]
    fn data<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.data_bytes())
    }

    /// `data` decoded with `json.loads` (raises `json.JSONDecodeError` when it is not JSON).
    fn json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_loads(py, self.data_bytes())
    }

    /// `metadata` decoded with `json.loads`, or None when there is no metadata.
    fn metadata_json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if self.metadata_len == 0 {
            return Ok(py.None().into_bound(py));
        }
        json_loads(py, self.metadata_bytes())
    }

    fn __repr__(&self) -> String {
        format!(
            "factlog.RecordedEvent(aggregate_id={:?}, version={}, position={}, event_type={:?}, event_id='{}', data=<{} bytes>)",
            self.aggregate_id,
            self.version,
            self.position,
            self.event_type,
            self.event_id,
            self.data_bytes().len()
        )
    }
}

/// What an append wrote (or, for an idempotent retry, had written before).
#[pyclass(module = "factlog", name = "AppendResult", frozen, get_all, eq)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PyAppendResult {
    /// Version of the batch's first event.
    first_version: u64,
    /// Version of its last event: the aggregate's version after the append.
    last_version: u64,
    /// Global position of the first event.
    first_position: u64,
    /// Global position of the last event.
    last_position: u64,
    /// True when every event was already stored at exactly this place and nothing was written.
    deduplicated: bool,
    /// True when the store's `snapshot_every` says it is time to save a snapshot of the aggregate.
    snapshot_due: bool,
}

impl From<factlog::AppendResult> for PyAppendResult {
    fn from(r: factlog::AppendResult) -> Self {
        PyAppendResult {
            first_version: r.first_version,
            last_version: r.last_version,
            first_position: r.first_position,
            last_position: r.last_position,
            deduplicated: r.deduplicated,
            snapshot_due: r.snapshot_due,
        }
    }
}

#[pymethods]
impl PyAppendResult {
    fn __repr__(&self) -> String {
        format!(
            "factlog.AppendResult(first_version={}, last_version={}, first_position={}, last_position={}, deduplicated={}, snapshot_due={})",
            self.first_version,
            self.last_version,
            self.first_position,
            self.last_position,
            if self.deduplicated { "True" } else { "False" },
            if self.snapshot_due { "True" } else { "False" },
        )
    }
}
