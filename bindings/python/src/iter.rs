//! `EventIterator`: what `read_aggregate`, `read_aggregate_backward`,
//! `read_all` and `Loaded.events()` return. It owns an engine
//! [`Reader`] (a consistent view of the store when the read began, which
//! keeps the segment maps it reads alive by itself) and copies events out of
//! it a chunk at a time, without the GIL, so each `__next__` is a pop from a
//! buffer. Every `__next__` first checks the store's closed flag: after
//! `Store.close()` it raises `factlog.Closed`, whatever it had buffered.

use std::collections::VecDeque;
use std::sync::Arc;

use factlog::{Direction, Reader};
use pyo3::prelude::*;

use crate::errors::IntoPyResult;
use crate::event::{Copier, PyRecordedEvent};
use crate::handle::Handle;

/// Events copied out of the maps per trip without the GIL: large enough to
/// spread the trip's cost, small enough to keep the buffer a few hundred KiB.
pub const CHUNK_EVENTS: u64 = 256;

/// What an iterator walks, and where it stands.
#[derive(Debug, Clone)]
pub enum Walk {
    /// The global log, from this position on.
    All {
        /// The next position to read.
        next: u64,
    },
    /// One aggregate upwards, versions `next..=last`.
    Forward {
        /// The aggregate.
        id: String,
        /// The next version to read.
        next: u64,
        /// The last version to read (inclusive).
        last: u64,
    },
    /// One aggregate downwards, versions `next` down to 0.
    Backward {
        /// The aggregate.
        id: String,
        /// The next version to read.
        next: u64,
    },
    /// Nothing (more) to read.
    Done,
}

impl Walk {
    /// An aggregate's versions from `from` up to `until` (inclusive, `None`:
    /// its last version in `reader`).
    pub fn forward(reader: &Reader, id: String, from: u64, until: Option<u64>) -> Walk {
        let Some(last_visible) = reader.version_at(&id, u64::MAX) else { return Walk::Done };
        let last = until.map_or(last_visible, |u| u.min(last_visible));
        if from > last {
            return Walk::Done;
        }
        Walk::Forward { id, next: from, last }
    }

    /// An aggregate's versions from `from` (`None`: its last) down to 0.
    pub fn backward(reader: &Reader, id: String, from: Option<u64>) -> Walk {
        let Some(last) = reader.version_at(&id, u64::MAX) else { return Walk::Done };
        Walk::Backward { next: from.map_or(last, |f| f.min(last)), id }
    }

    /// Copies the next chunk of events into `buf` and moves on. An error
    /// after some events were copied is left for the next call (which then
    /// meets it first), so no event before it is lost.
    fn fill(
        &mut self,
        reader: &Reader,
        copier: &mut Copier,
        buf: &mut VecDeque<PyRecordedEvent>,
    ) -> factlog::Result<()> {
        match self {
            Walk::All { next } => {
                let start = *next;
                for event in reader.read_all(start).take(CHUNK_EVENTS as usize) {
                    match event {
                        Ok(e) => {
                            *next = e.position() + 1;
                            buf.push_back(copier.copy(&e));
                        }
                        Err(e) if buf.is_empty() => return Err(e),
                        Err(_) => return Ok(()),
                    }
                }
                if *next == start {
                    *self = Walk::Done;
                }
            }
            Walk::Forward { id, next, last } => {
                let hi = (*last).min(next.saturating_add(CHUNK_EVENTS - 1));
                let start = *next;
                for event in reader.read_aggregate_until(id, start, hi, Direction::Forward) {
                    match event {
                        Ok(e) => {
                            *next = e.version() + 1;
                            buf.push_back(copier.copy(&e));
                        }
                        Err(e) if buf.is_empty() => return Err(e),
                        Err(_) => return Ok(()),
                    }
                }
                if *next == start || *next > *last {
                    *self = Walk::Done;
                }
            }
            Walk::Backward { id, next } => {
                // A forward read of the chunk, reversed: a backward read of
                // the engine would list every version below `next` per chunk.
                let lo = next.saturating_sub(CHUNK_EVENTS - 1);
                let mut chunk = Vec::new();
                for event in reader.read_aggregate_until(id, lo, *next, Direction::Forward) {
                    chunk.push(copier.copy(&event?));
                }
                buf.extend(chunk.into_iter().rev());
                match lo.checked_sub(1) {
                    Some(below) => *next = below,
                    None => *self = Walk::Done,
                }
            }
            Walk::Done => {}
        }
        Ok(())
    }
}

/// An iterator of `RecordedEvent`s over a consistent view of the store (the
/// events visible when the read began). Raises `factlog.Closed` once the
/// store is closed, and `factlog.Corrupt` where a stored event fails its check.
#[pyclass(module = "factlog", name = "EventIterator")]
pub struct PyEventIterator {
    handle: Arc<Handle>,
    reader: Arc<Reader>,
    walk: Walk,
    copier: Copier,
    buf: VecDeque<PyRecordedEvent>,
}

impl PyEventIterator {
    /// An iterator of `walk` over `reader`.
    pub fn new(handle: Arc<Handle>, reader: Arc<Reader>, walk: Walk) -> PyEventIterator {
        PyEventIterator { handle, reader, walk, copier: Copier::default(), buf: VecDeque::new() }
    }
}

#[pymethods]
impl PyEventIterator {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<PyRecordedEvent>> {
        self.handle.check_open()?;
        if self.buf.is_empty() {
            if matches!(self.walk, Walk::Done) {
                return Ok(None);
            }
            let (reader, walk, copier, buf) = (&self.reader, &mut self.walk, &mut self.copier, &mut self.buf);
            py.detach(|| walk.fill(reader, copier, buf)).py_err(py)?;
        }
        Ok(self.buf.pop_front())
    }
}
