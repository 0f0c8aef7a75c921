//! The exception classes, one per way an engine call can fail, and the one
//! function that turns a [`factlog::Error`] into the matching exception with
//! its fields as attributes. Every other module reports engine errors
//! through [`to_py`]; nothing else builds a factlog exception.
//!
//! The hierarchy (all under `factlog.Error`, itself an `Exception`):
//! `WrongExpectedVersion`, `DuplicateEventId`, `InvalidInput` (with
//! `EventTooLarge`, `SnapshotAhead`, `InvalidOptions`, `PastEnd` and
//! `NotParked` below it), `Corrupt` (with `UnsupportedFormat`), `NotAStore`,
//! `Locked` (with `ConsumerLocked`), `NoSpace`, `IoError`, `Poisoned`,
//! `ReadOnly`, `Closed` and `UnknownConsumer`.

use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyString;
use pyo3::{create_exception, PyTypeInfo};

use crate::event::uuid_object;
use crate::expected::expected_object;

create_exception!(factlog, Error, PyException, "Base class of every error factlog raises.");
create_exception!(
    factlog,
    WrongExpectedVersion,
    Error,
    "The aggregate's version did not match `expected_version`; nothing was written. \
     Attributes: `aggregate_id`, `expected` (an int or `ANY`/`NO_STREAM`/`STREAM_EXISTS`), \
     `actual` (the aggregate's current version, None when it has no events)."
);
create_exception!(
    factlog,
    DuplicateEventId,
    Error,
    "An event id of the batch is already stored elsewhere; nothing was written. Attributes: \
     `event_id` (uuid.UUID), `aggregate_id`, `existing_aggregate`, `existing_position`."
);
create_exception!(
    factlog,
    InvalidInput,
    Error,
    "An argument the engine refuses (empty batch, empty or oversized id or type, ...); nothing was written."
);
create_exception!(
    factlog,
    EventTooLarge,
    InvalidInput,
    "An event is over the store's `max_event_bytes`. Attributes: `aggregate_id`, `index`, `size`, `max`."
);
create_exception!(
    factlog,
    SnapshotAhead,
    InvalidInput,
    "A snapshot was offered for a version the aggregate has not reached. Attributes: `aggregate_id`, \
     `version`, `actual`."
);
create_exception!(factlog, InvalidOptions, InvalidInput, "The options given to `Store(...)` are inconsistent.");
create_exception!(
    factlog,
    PastEnd,
    InvalidInput,
    "A position beyond the durable end of the log. Attributes: `position`, `end`."
);
create_exception!(
    factlog,
    NotParked,
    InvalidInput,
    "The consumer has no parked event at that position. Attributes: `consumer`, `position`."
);
create_exception!(
    factlog,
    Corrupt,
    Error,
    "A file failed its checksum or structural check. Attributes: `path`, `offset`, `reason`."
);
create_exception!(
    factlog,
    UnsupportedFormat,
    Corrupt,
    "A file has a format version this build cannot read. Attributes: `path`, `found`, `supported` \
     (`offset` is 0)."
);
create_exception!(
    factlog,
    NotAStore,
    Error,
    "The directory is not empty and is not a factlog store. Attributes: `path`, `reason`."
);
create_exception!(
    factlog,
    Locked,
    Error,
    "Another opener holds the store (another process, or another `Store` of this path in this process: \
     share one `Store` object instead). Attributes: `path`, `holder` (a description)."
);
create_exception!(
    factlog,
    ConsumerLocked,
    Locked,
    "Another handle has the durable consumer open. Attributes: `name`, `path`, `holder`."
);
create_exception!(
    factlog,
    NoSpace,
    Error,
    "The file system is full; nothing of the failed append was acknowledged, and the store works again \
     once space is freed. Attribute: `path`."
);
create_exception!(
    factlog,
    IoError,
    Error,
    "An I/O operation failed. Attributes: `op`, `path`, `errno` (None when unknown)."
);
create_exception!(
    factlog,
    Poisoned,
    Error,
    "An earlier write or fsync failed: the store refuses writes until it is reopened, which recovers \
     to the last durable state. Attribute: `cause`."
);
create_exception!(factlog, ReadOnly, Error, "The store was opened with `read_only=True`. Attribute: `path`.");
create_exception!(
    factlog,
    Closed,
    Error,
    "The store was closed: every call on it, and on its iterators, subscriptions and consumers, raises this."
);
create_exception!(
    factlog,
    UnknownConsumer,
    Error,
    "No durable consumer of that name exists. Attributes: `name`, `path`."
);

/// Adds every exception class to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("Error", py.get_type::<Error>())?;
    m.add("WrongExpectedVersion", py.get_type::<WrongExpectedVersion>())?;
    m.add("DuplicateEventId", py.get_type::<DuplicateEventId>())?;
    m.add("InvalidInput", py.get_type::<InvalidInput>())?;
    m.add("EventTooLarge", py.get_type::<EventTooLarge>())?;
    m.add("SnapshotAhead", py.get_type::<SnapshotAhead>())?;
    m.add("InvalidOptions", py.get_type::<InvalidOptions>())?;
    m.add("PastEnd", py.get_type::<PastEnd>())?;
    m.add("NotParked", py.get_type::<NotParked>())?;
    m.add("Corrupt", py.get_type::<Corrupt>())?;
    m.add("UnsupportedFormat", py.get_type::<UnsupportedFormat>())?;
    m.add("NotAStore", py.get_type::<NotAStore>())?;
    m.add("Locked", py.get_type::<Locked>())?;
    m.add("ConsumerLocked", py.get_type::<ConsumerLocked>())?;
    m.add("NoSpace", py.get_type::<NoSpace>())?;
    m.add("IoError", py.get_type::<IoError>())?;
    m.add("Poisoned", py.get_type::<Poisoned>())?;
    m.add("ReadOnly", py.get_type::<ReadOnly>())?;
    m.add("Closed", py.get_type::<Closed>())?;
    m.add("UnknownConsumer", py.get_type::<UnknownConsumer>())?;
    Ok(())
}

/// The error a call on a closed store (or on what it handed out) raises.
pub fn closed() -> PyErr {
    Closed::new_err("store is closed")
}

/// An attribute value of an exception.
type Attr<'py> = (&'static str, Bound<'py, PyAny>);

/// An exception of class `T` with the engine's message and these attributes.
fn raise<'py, T: PyTypeInfo>(py: Python<'py>, message: String, attrs: Vec<Attr<'py>>) -> PyErr {
    let err = PyErr::new::<T, _>(message);
    let value = err.value(py);
    for (name, attr) in attrs {
        if let Err(e) = value.setattr(name, attr) {
            return e;
        }
    }
    err
}

/// The exception for an engine error: its class names the variant, its
/// message is the engine's (which names the aggregate, file, offset, ...),
/// and its attributes are the variant's fields.
pub fn to_py(py: Python<'_>, e: factlog::Error) -> PyErr {
    use factlog::Error as E;
    let message = e.to_string();
    let s = |text: &str| PyString::new(py, text).into_any();
    let path = |p: &std::path::Path| s(&p.to_string_lossy());
    let int = |v: u64| v.into_pyobject(py).map(Bound::into_any).unwrap_or_else(|_| py.None().into_bound(py));
    let opt = |v: Option<u64>| v.map_or_else(|| py.None().into_bound(py), int);
    match e {
        E::WrongExpectedVersion { aggregate_id, expected, actual } => raise::<WrongExpectedVersion>(
            py,
            message,
            vec![
                ("aggregate_id", s(&aggregate_id)),
                ("expected", expected_object(py, expected)),
                ("actual", opt(actual)),
            ],
        ),
        E::DuplicateEventId { event_id, aggregate_id, existing_aggregate, existing_position } => {
            let id = match uuid_object(py, event_id) {
                Ok(id) => id,
                Err(e) => return e,
            };
            raise::<DuplicateEventId>(
                py,
                message,
                vec![
                    ("event_id", id),
                    ("aggregate_id", s(&aggregate_id)),
                    ("existing_aggregate", s(&existing_aggregate)),
                    ("existing_position", int(existing_position)),
                ],
            )
        }
        E::InvalidInput(_) => raise::<InvalidInput>(py, message, vec![]),
        E::EventTooLarge { aggregate_id, index, size, max } => raise::<EventTooLarge>(
            py,
            message,
            vec![
                ("aggregate_id", s(&aggregate_id)),
                ("index", int(index as u64)),
                ("size", int(size)),
                ("max", int(max)),
            ],
        ),
        E::SnapshotAhead { aggregate_id, version, actual } => raise::<SnapshotAhead>(
            py,
            message,
            vec![("aggregate_id", s(&aggregate_id)), ("version", int(version)), ("actual", opt(actual))],
        ),
        E::InvalidOptions(_) => raise::<InvalidOptions>(py, message, vec![]),
        E::Corrupt { path: p, offset, reason } => {
            raise::<Corrupt>(py, message, vec![("path", path(&p)), ("offset", int(offset)), ("reason", s(&reason))])
        }
        E::UnsupportedFormat { path: p, found, supported } => raise::<UnsupportedFormat>(
            py,
            message.clone(),
            vec![
                ("path", path(&p)),
                ("offset", int(0)),
                ("reason", s(&message)),
                ("found", int(found.into())),
                ("supported", int(supported.into())),
            ],
        ),
        E::NotAStore { path: p, reason } => {
            raise::<NotAStore>(py, message, vec![("path", path(&p)), ("reason", s(&reason))])
        }
        E::Locked { path: p, holder } => {
            raise::<Locked>(py, message, vec![("path", path(&p)), ("holder", s(&holder.to_string()))])
        }
        E::NoSpace { path: p } => raise::<NoSpace>(py, message, vec![("path", path(&p))]),
        E::Io { op, path: p, source } => {
            let errno =
                source.raw_os_error().map_or_else(|| py.None().into_bound(py), |n| int(n.unsigned_abs().into()));
            raise::<IoError>(py, message, vec![("op", s(op)), ("path", path(&p)), ("errno", errno)])
        }
        E::Poisoned { cause } => raise::<Poisoned>(py, message, vec![("cause", s(&cause))]),
        E::ReadOnly { path: p } => raise::<ReadOnly>(py, message, vec![("path", path(&p))]),
        E::Closed => raise::<Closed>(py, message, vec![]),
        E::UnknownConsumer { name, dir } => {
            raise::<UnknownConsumer>(py, message, vec![("name", s(&name)), ("path", path(&dir))])
        }
        E::ConsumerLocked { name, path: p, holder } => raise::<ConsumerLocked>(
            py,
            message,
            vec![("name", s(&name)), ("path", path(&p)), ("holder", s(&holder.to_string()))],
        ),
        E::PastEnd { position, end } => {
            raise::<PastEnd>(py, message, vec![("position", int(position)), ("end", int(end))])
        }
        E::NotParked { consumer, position } => {
            raise::<NotParked>(py, message, vec![("consumer", s(&consumer)), ("position", int(position))])
        }
        // The engine's enum is non-exhaustive: a variant added later is still a factlog.Error.
        _ => raise::<Error>(py, message, vec![]),
    }
}

/// Runs an engine call's result through [`to_py`].
pub trait IntoPyResult<T> {
    /// The value, or the engine error as its exception.
    fn py_err(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for Result<T, factlog::Error> {
    fn py_err(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py(py, e))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use factlog::{Error as E, EventId, ExpectedVersion, LockHolder};
    use pyo3::types::PyModule;

    use super::*;
    use crate::expected::PyExpectedVersion;

    /// Every engine variant, with the class and attributes it must raise with.
    fn cases() -> Vec<(E, &'static str, &'static [&'static str])> {
        let path = PathBuf::from("/store/00000000000000000000.seg");
        vec![
            (
                E::WrongExpectedVersion { aggregate_id: "a".into(), expected: ExpectedVersion::Exact(3), actual: None },
                "WrongExpectedVersion",
                &["aggregate_id", "expected", "actual"],
            ),
            (
                E::DuplicateEventId {
                    event_id: EventId([7; 16]),
                    aggregate_id: "a".into(),
                    existing_aggregate: "b".into(),
                    existing_position: 9,
                },
                "DuplicateEventId",
                &["event_id", "aggregate_id", "existing_aggregate", "existing_position"],
            ),
            (E::InvalidInput("bad".into()), "InvalidInput", &[]),
            (
                E::EventTooLarge { aggregate_id: "a".into(), index: 1, size: 10, max: 5 },
                "EventTooLarge",
                &["aggregate_id", "index", "size", "max"],
            ),
            (
                E::SnapshotAhead { aggregate_id: "a".into(), version: 4, actual: Some(2) },
                "SnapshotAhead",
                &["aggregate_id", "version", "actual"],
            ),
            (E::InvalidOptions("opt".into()), "InvalidOptions", &[]),
            (
                E::Corrupt { path: path.clone(), offset: 64, reason: "flip".into() },
                "Corrupt",
                &["path", "offset", "reason"],
            ),
            (
                E::UnsupportedFormat { path: path.clone(), found: 9, supported: 1 },
                "UnsupportedFormat",
                &["path", "offset", "reason", "found", "supported"],
            ),
            (E::NotAStore { path: path.clone(), reason: "r".into() }, "NotAStore", &["path", "reason"]),
            (E::Locked { path: path.clone(), holder: LockHolder::Process(7) }, "Locked", &["path", "holder"]),
            (E::NoSpace { path: path.clone() }, "NoSpace", &["path"]),
            (
                E::Io { op: "write frames", path: path.clone(), source: std::io::Error::from_raw_os_error(5) },
                "IoError",
                &["op", "path", "errno"],
            ),
            (E::Poisoned { cause: "c".into() }, "Poisoned", &["cause"]),
            (E::ReadOnly { path: path.clone() }, "ReadOnly", &["path"]),
            (E::Closed, "Closed", &[]),
            (E::UnknownConsumer { name: "c".into(), dir: path.clone() }, "UnknownConsumer", &["name", "path"]),
            (
                E::ConsumerLocked { name: "c".into(), path, holder: LockHolder::ThisProcess },
                "ConsumerLocked",
                &["name", "path", "holder"],
            ),
            (E::PastEnd { position: 9, end: 3 }, "PastEnd", &["position", "end"]),
            (E::NotParked { consumer: "c".into(), position: 4 }, "NotParked", &["consumer", "position"]),
        ]
    }

    /// Also the proof that this crate links and runs against libpython under `cargo test`.
    #[test]
    fn every_engine_error_raises_its_own_class_with_its_fields() {
        Python::initialize();
        Python::attach(|py| {
            let m = PyModule::new(py, "factlog").unwrap();
            register(&m).unwrap();
            let base = py.get_type::<Error>();
            for (e, class, attrs) in cases() {
                let message = e.to_string();
                let err = to_py(py, e);
                let value = err.value(py);
                let ty = value.get_type();
                assert_eq!(ty.name().unwrap().to_string(), class, "{message}");
                assert!(ty.is_subclass(&base).unwrap(), "{class} is a factlog.Error");
                assert_eq!(value.str().unwrap().to_string(), message);
                for attr in attrs {
                    assert!(value.hasattr(*attr).unwrap(), "{class}.{attr}");
                }
            }
            let wrong = E::WrongExpectedVersion {
                aggregate_id: "a".into(),
                expected: ExpectedVersion::NoStream,
                actual: Some(4),
            };
            let value = to_py(py, wrong).into_value(py).into_bound(py);
            assert_eq!(value.getattr("actual").unwrap().extract::<u64>().unwrap(), 4);
            let expected = value.getattr("expected").unwrap().extract::<PyExpectedVersion>().unwrap();
            assert_eq!(expected, PyExpectedVersion::NoStream);
        });
    }
}
