//! Live feeds as blocking Python iterators: `Subscription` (the engine's
//! [`factlog::Subscription`]: durable events in order, first those in the
//! log, then each new one as soon as it is durable) and `Consumer` (a named
//! subscription whose checkpoint survives restarts). Waiting happens without
//! the GIL, in slices of [`WAIT_SLICE`] so that Ctrl-C (a pending signal)
//! and `Store.close()` are noticed. After the store is closed both raise
//! `factlog.Closed`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::prelude::*;

use crate::errors::{closed, IntoPyResult};
use crate::event::{Copier, PyRecordedEvent};
use crate::handle::{lock, ConsumerSlot, Handle};
use crate::iter::CHUNK_EVENTS;
use crate::store::seconds;

/// The longest a wait goes without the GIL before looking at signals and the closed flag.
const WAIT_SLICE: Duration = Duration::from_millis(100);

/// A `timeout` argument in seconds (None: wait as long as it takes) as a deadline.
pub fn deadline(timeout: Option<f64>) -> PyResult<Option<Instant>> {
    match timeout {
        None => Ok(None),
        Some(t) => Ok(Instant::now().checked_add(seconds("timeout", t)?)),
    }
}

/// How long the next slice of a wait for `deadline` lasts.
fn slice(deadline: Option<Instant>) -> Duration {
    match deadline {
        Some(d) => d.saturating_duration_since(Instant::now()).min(WAIT_SLICE),
        None => WAIT_SLICE,
    }
}

/// Waits for events with `fetch` (one slice at a time, without the GIL)
/// until `buf` has one or `deadline` passes; checks the closed flag and
/// signals between slices.
fn wait_for_events(
    py: Python<'_>,
    handle: &Handle,
    buf: &mut VecDeque<PyRecordedEvent>,
    deadline: Option<Instant>,
    mut fetch: impl FnMut(&mut VecDeque<PyRecordedEvent>, Duration) -> factlog::Result<()> + Send,
) -> PyResult<Option<PyRecordedEvent>> {
    loop {
        handle.check_open()?;
        if let Some(e) = buf.pop_front() {
            return Ok(Some(e));
        }
        let wait = slice(deadline);
        match py.detach(|| fetch(buf, wait)) {
            Err(factlog::Error::Closed) => return Err(closed()),
            other => other.py_err(py)?,
        }
        if buf.is_empty() {
            py.check_signals()?;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
        }
    }
}

/// A live, ordered feed of the store's durable events, from
/// `Store.subscribe` or `Store.subscribe_aggregate`. Iterating blocks until
/// the next event; `poll(timeout)` waits at most `timeout` seconds.
#[pyclass(module = "factlog", name = "Subscription")]
pub struct PySubscription {
    handle: Arc<Handle>,
    sub: factlog::Subscription,
    /// Whether it follows one aggregate: its cursor is then a version.
    aggregate: bool,
    copier: Copier,
    buf: VecDeque<PyRecordedEvent>,
}

impl PySubscription {
    /// A Python subscription over the engine's (`aggregate`: made by
    /// `subscribe_aggregate`, so its cursor counts versions).
    pub fn new(handle: Arc<Handle>, sub: factlog::Subscription, aggregate: bool) -> PySubscription {
        PySubscription { handle, sub, aggregate, copier: Copier::default(), buf: VecDeque::new() }
    }

    fn next_event(&mut self, py: Python<'_>, deadline: Option<Instant>) -> PyResult<Option<PyRecordedEvent>> {
        let (handle, sub, copier, buf) = (&self.handle, &mut self.sub, &mut self.copier, &mut self.buf);
        wait_for_events(py, handle, buf, deadline, |buf, wait| {
            let mut batch = sub.batch(CHUNK_EVENTS as usize, wait)?;
            for event in batch.events() {
                buf.push_back(copier.copy(&event?));
            }
            Ok(())
        })
    }
}

#[pymethods]
impl PySubscription {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<PyRecordedEvent>> {
        self.next_event(py, None)
    }

    /// The next event, waiting at most `timeout` seconds (None: as long as
    /// it takes); None when none came in time.
    #[pyo3(signature = (timeout=None))]
    fn poll(&mut self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<PyRecordedEvent>> {
        let deadline = deadline(timeout)?;
        self.next_event(py, deadline)
    }

    /// The next global position (for `subscribe_aggregate`: the next
    /// version) this subscription will deliver: what to store as a checkpoint.
    #[getter]
    fn position(&self) -> u64 {
        match self.buf.front() {
            Some(e) if self.aggregate => e.version(),
            Some(e) => e.position(),
            None => self.sub.position(),
        }
    }
}

/// A durable consumer from `Store.consumer(name)`: a subscription that
/// resumes after its last committed checkpoint, in this or a later process.
/// Delivery is at least once: with `auto_commit` (the default) the events
/// handed out are committed as the consumer asks for more (every
/// `commit_every_events` events or `commit_every` seconds), and a crash, or
/// a `close()` before the next commit, makes it hand out again the events
/// since the last commit; `commit()` commits at once. One handle per
/// consumer at a time (`factlog.ConsumerLocked` otherwise); `close()` (or the
/// end of a `with` block, or closing the store) releases it.
#[pyclass(module = "factlog", name = "Consumer")]
pub struct PyConsumer {
    handle: Arc<Handle>,
    slot: Arc<ConsumerSlot>,
    name: String,
    copier: Copier,
    buf: VecDeque<PyRecordedEvent>,
}

impl PyConsumer {
    /// A Python consumer over the engine's, registered with the store so
    /// that closing the store closes it.
    pub fn new(handle: Arc<Handle>, consumer: factlog::Consumer) -> PyConsumer {
        let name = consumer.name().to_string();
        let slot = Arc::new(ConsumerSlot::new(Some(consumer)));
        handle.register_consumer(&slot);
        PyConsumer { handle, slot, name, copier: Copier::default(), buf: VecDeque::new() }
    }

    fn next_event(&mut self, py: Python<'_>, deadline: Option<Instant>) -> PyResult<Option<PyRecordedEvent>> {
        let (handle, slot, copier, buf) = (&self.handle, &self.slot, &mut self.copier, &mut self.buf);
        wait_for_events(py, handle, buf, deadline, |buf, wait| {
            let mut guard = lock(slot);
            let consumer = guard.as_mut().ok_or(factlog::Error::Closed)?;
            // IMPORTANT: a poll commits (with auto_commit) every event of the
            // batch before; the buffer is empty here, so Python was handed them all.
            let mut batch = consumer.poll(CHUNK_EVENTS as usize, wait)?;
            for event in batch.events() {
                buf.push_back(copier.copy(&event?));
            }
            Ok(())
        })
    }

    fn with_consumer<T>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut factlog::Consumer) -> factlog::Result<T> + Send,
    ) -> PyResult<T>
    where
        T: Send,
    {
        self.handle.check_open()?;
        let slot = &self.slot;
        let result = py.detach(|| {
            let mut guard = lock(slot);
            let consumer = guard.as_mut().ok_or(factlog::Error::Closed)?;
            f(consumer)
        });
        match result {
            Err(factlog::Error::Closed) => Err(closed()),
            other => other.py_err(py),
        }
    }
}

#[pymethods]
impl PyConsumer {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<PyRecordedEvent>> {
        self.next_event(py, None)
    }

    /// The next event, waiting at most `timeout` seconds (None: as long as
    /// it takes); None when none came in time.
    #[pyo3(signature = (timeout=None))]
    fn poll(&mut self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<PyRecordedEvent>> {
        let deadline = deadline(timeout)?;
        self.next_event(py, deadline)
    }

    /// Commits durably that every event at or before `position` is handled
    /// (after a crash the consumer resumes at `position + 1`). Without
    /// `position`: every event handed out so far. `factlog.PastEnd` for a
    /// position that is not durable in the log.
    #[pyo3(signature = (position=None))]
    fn commit(&mut self, py: Python<'_>, position: Option<u64>) -> PyResult<()> {
        let position = match position {
            Some(p) => p,
            None => match self.next_position(py)?.checked_sub(1) {
                Some(p) => p,
                None => return Ok(()),
            },
        };
        self.with_consumer(py, |c| c.commit(position))
    }

    /// The consumer's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The next position this consumer will hand out (every position below
    /// was handed out, or filtered out).
    #[getter]
    fn position(&self, py: Python<'_>) -> PyResult<u64> {
        self.next_position(py)
    }

    /// The committed checkpoint: every position below it is handled.
    #[getter]
    fn committed(&self, py: Python<'_>) -> PyResult<u64> {
        self.with_consumer(py, |c| Ok(c.committed()))
    }

    /// Releases the consumer (its lock), committing nothing more. Idempotent.
    fn close(&mut self, py: Python<'_>) {
        self.buf.clear();
        let slot = &self.slot;
        py.detach(|| drop(lock(slot).take()));
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&mut self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close(py);
        false
    }
}

impl PyConsumer {
    fn next_position(&self, py: Python<'_>) -> PyResult<u64> {
        match self.buf.front() {
            Some(e) => Ok(e.position()),
            None => self.with_consumer(py, |c| Ok(c.position())),
        }
    }
}
