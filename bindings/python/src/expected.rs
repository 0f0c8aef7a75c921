//! `expected_version` of an append: the constants `ANY`, `NO_STREAM` and
//! `STREAM_EXISTS` (members of the `ExpectedVersion` class), or an `int` for
//! an exact version, and their conversion to and from the engine's
//! [`factlog::ExpectedVersion`].

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBool;

/// What an append expects of its aggregate, besides an exact version (an int).
#[pyclass(module = "factlog", name = "ExpectedVersion", eq, frozen, hash, from_py_object)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PyExpectedVersion {
    /// No check: append whatever the aggregate's version.
    #[pyo3(name = "ANY")]
    Any,
    /// The aggregate must have no events yet.
    #[pyo3(name = "NO_STREAM")]
    NoStream,
    /// The aggregate must have at least one event.
    #[pyo3(name = "STREAM_EXISTS")]
    StreamExists,
}

#[pymethods]
impl PyExpectedVersion {
    fn __repr__(&self) -> &'static str {
        match self {
            PyExpectedVersion::Any => "factlog.ANY",
            PyExpectedVersion::NoStream => "factlog.NO_STREAM",
            PyExpectedVersion::StreamExists => "factlog.STREAM_EXISTS",
        }
    }
}

/// The `expected_version` argument of an append, read with [`expected_from_py`].
pub struct Expected(pub factlog::ExpectedVersion);

impl<'a, 'py> FromPyObject<'a, 'py> for Expected {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Expected> {
        expected_from_py(&obj).map(Expected)
    }
}

/// Reads an `expected_version` argument: one of the constants, or an exact
/// version (an int of 0 or more; a bool is refused, as it is most likely a mistake).
pub fn expected_from_py(obj: &Bound<'_, PyAny>) -> PyResult<factlog::ExpectedVersion> {
    if let Ok(kind) = obj.extract::<PyExpectedVersion>() {
        return Ok(match kind {
            PyExpectedVersion::Any => factlog::ExpectedVersion::Any,
            PyExpectedVersion::NoStream => factlog::ExpectedVersion::NoStream,
            PyExpectedVersion::StreamExists => factlog::ExpectedVersion::StreamExists,
        });
    }
    if obj.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err("expected_version must be an int or factlog.ANY/NO_STREAM/STREAM_EXISTS"));
    }
    match obj.extract::<i128>() {
        Ok(v) => u64::try_from(v)
            .map(factlog::ExpectedVersion::Exact)
            .map_err(|_| PyValueError::new_err(format!("expected_version {v} is not a version (0 or more)"))),
        Err(_) => Err(PyTypeError::new_err("expected_version must be an int or factlog.ANY/NO_STREAM/STREAM_EXISTS")),
    }
}

/// The Python value of an engine expectation: an int or a constant.
pub fn expected_object(py: Python<'_>, expected: factlog::ExpectedVersion) -> Bound<'_, PyAny> {
    let kind = match expected {
        factlog::ExpectedVersion::Exact(v) => {
            return v.into_pyobject(py).map(Bound::into_any).unwrap_or_else(|_| py.None().into_bound(py))
        }
        factlog::ExpectedVersion::Any => PyExpectedVersion::Any,
        factlog::ExpectedVersion::NoStream => PyExpectedVersion::NoStream,
        factlog::ExpectedVersion::StreamExists => PyExpectedVersion::StreamExists,
    };
    match Bound::new(py, kind) {
        Ok(b) => b.into_any(),
        Err(_) => py.None().into_bound(py),
    }
}
