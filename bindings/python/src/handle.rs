//! [`Handle`]: the one engine [`factlog::Store`] behind a Python `Store`,
//! shared (through an `Arc`) with every iterator, subscription and consumer
//! made from it, so that each of them can tell that the store was closed and
//! raise `factlog.Closed` instead of using it. Closing takes the engine
//! handle out (and drops the open consumers, which hold a clone of it), so
//! that the directory lock is released even while Python still holds
//! iterators: they keep only the engine's reader views, which own their maps.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use pyo3::PyResult;

use crate::errors::closed;

/// What a Python consumer owns: its engine consumer, until it or the store is closed.
pub type ConsumerSlot = Mutex<Option<factlog::Consumer>>;

/// The engine store of one Python `Store`, and whether it was closed.
pub struct Handle {
    store: Mutex<Option<factlog::Store>>,
    closed: AtomicBool,
    consumers: Mutex<Vec<Weak<ConsumerSlot>>>,
}

/// Locks a mutex, taking the data of a poisoned one as it is: every critical
/// section here only moves an `Option` or a `Vec`, which a panic cannot leave half done.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Handle {
    /// A handle of an open store.
    pub fn new(store: factlog::Store) -> Arc<Handle> {
        Arc::new(Handle {
            store: Mutex::new(Some(store)),
            closed: AtomicBool::new(false),
            consumers: Mutex::new(Vec::new()),
        })
    }

    /// A clone of the engine store (cheap), or `factlog.Closed`.
    pub fn store(&self) -> PyResult<factlog::Store> {
        lock(&self.store).clone().ok_or_else(closed)
    }

    /// `factlog.Closed` once the store is closed.
    pub fn check_open(&self) -> PyResult<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(closed());
        }
        Ok(())
    }

    /// Whether the store was closed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Remembers a consumer so that closing the store closes it too.
    pub fn register_consumer(&self, slot: &Arc<ConsumerSlot>) {
        let mut consumers = lock(&self.consumers);
        consumers.retain(|w| w.strong_count() > 0);
        consumers.push(Arc::downgrade(slot));
    }

    /// Marks the store closed and takes the engine handles out: the store
    /// (`None` if it was closed already) and the open consumers, to be
    /// dropped by the caller without the GIL (a drop may sync a file).
    pub fn take(&self) -> (Option<factlog::Store>, Vec<factlog::Consumer>) {
        self.closed.store(true, Ordering::Release);
        let store = lock(&self.store).take();
        let slots = std::mem::take(&mut *lock(&self.consumers));
        let consumers = slots.iter().filter_map(Weak::upgrade).filter_map(|slot| lock(&slot).take()).collect();
        (store, consumers)
    }
}
