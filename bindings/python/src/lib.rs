//! The `factlog` Python package: a thin pyo3 layer over the `factlog`
//! engine crate (no second implementation of anything), built by maturin as
//! one stable-ABI (`abi3`, CPython 3.9 and later) extension module. The
//! Python API is described in `factlog.pyi` beside this crate, and in
//! README's "Bindings" section.
//!
//! Modules, one noun each: `errors` (the exception classes and the
//! engine-error mapping), `expected` (`expected_version`), `event` (`Event`,
//! `RecordedEvent`, payloads and ids), `handle` (the engine store shared with
//! everything made from it, and its closed flag), `iter` (read iterators),
//! `snapshot`, `subscription` (subscriptions and durable consumers),
//! `report` (stats and verify records) and `store` (`Store`).

mod errors;
mod event;
mod expected;
mod handle;
mod iter;
mod report;
mod snapshot;
mod store;
mod subscription;

use pyo3::prelude::*;

use expected::PyExpectedVersion;

/// factlog: an embedded, log-structured event store. Open one with
/// `factlog.Store(path)`, append `factlog.Event`s to aggregates, read them
/// back as `factlog.RecordedEvent`s.
#[pymodule]
#[pyo3(name = "factlog")]
fn factlog_py(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<store::PyStore>()?;
    m.add_class::<event::PyEvent>()?;
    m.add_class::<event::PyRecordedEvent>()?;
    m.add_class::<event::PyAppendResult>()?;
    m.add_class::<PyExpectedVersion>()?;
    m.add_class::<iter::PyEventIterator>()?;
    m.add_class::<snapshot::PySnapshot>()?;
    m.add_class::<snapshot::PySnapshotInfo>()?;
    m.add_class::<snapshot::PyLoaded>()?;
    m.add_class::<subscription::PySubscription>()?;
    m.add_class::<subscription::PyConsumer>()?;
    m.add_class::<report::PyStats>()?;
    m.add_class::<report::PyVerifyReport>()?;
    m.add_class::<report::PyProblem>()?;
    m.add_class::<report::PyConsumerInfo>()?;
    m.add("ANY", PyExpectedVersion::Any)?;
    m.add("NO_STREAM", PyExpectedVersion::NoStream)?;
    m.add("STREAM_EXISTS", PyExpectedVersion::StreamExists)?;
    errors::register(m)?;
    Ok(())
}
