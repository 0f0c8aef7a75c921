//! The opaque handles C holds: `factlog_store` (a `Store`),
//! `factlog_iter` (a `Reader` or a `Loaded` with the zero-copy iterator
//! borrowing it, made one object by `self_cell`), `factlog_subscription`
//! (a `Subscription` and the event it delivered last). Safe code: the
//! handles hand out Rust references; `exports` turns pointers into them.

#![allow(non_camel_case_types)]

use factlog::{AggregateEvents, AllEvents, Direction, Loaded, Reader, RecordedEvent, Store, Subscription};

use crate::convert::{recorded_view, ref_view};
use crate::status::Failure;
use crate::types::{factlog_event_view, factlog_loaded};

/// An open store. Shareable: any number of threads may call functions on one
/// handle at once, except `factlog_close`, which must be the last call.
pub struct factlog_store {
    pub(crate) store: Store,
}

/// The engine iterator under a `factlog_iter` made from a `Reader`.
pub(crate) enum Walk<'r> {
    /// The global log.
    All(AllEvents<'r>),
    /// One aggregate.
    Aggregate(AggregateEvents<'r>),
}

self_cell::self_cell!(
    /// A reader's view and the iterator borrowing it, as one owned value.
    pub(crate) struct ReaderCell {
        owner: Reader,
        #[covariant]
        dependent: Walk,
    }
);

self_cell::self_cell!(
    /// A loaded aggregate (its snapshot state included) and the iterator over
    /// its events, as one owned value.
    pub(crate) struct LoadedCell {
        owner: Loaded,
        #[covariant]
        dependent: AggregateEvents,
    }
);

/// A zero-copy event iterator. Not shareable: use it from one thread at a time.
/// The views it fills point into the store's memory maps, which it keeps
/// alive until it is freed (even after `factlog_close`).
pub struct factlog_iter {
    cells: Cells,
}

/// What a `factlog_iter` reads from.
enum Cells {
    /// `factlog_read_all`, `factlog_read_aggregate`.
    Reader(ReaderCell),
    /// `factlog_load`, `factlog_load_as_of`.
    Loaded(LoadedCell),
}

impl factlog_iter {
    /// Events from `from_position` on, in global order.
    pub(crate) fn read_all(reader: Reader, from_position: u64) -> factlog_iter {
        factlog_iter { cells: Cells::Reader(ReaderCell::new(reader, |r| Walk::All(r.read_all(from_position)))) }
    }

    /// Events of one aggregate from `from_version`, in `direction`.
    pub(crate) fn read_aggregate(reader: Reader, id: &str, from_version: u64, direction: Direction) -> factlog_iter {
        let cell = ReaderCell::new(reader, |r| Walk::Aggregate(r.read_aggregate(id, from_version, direction)));
        factlog_iter { cells: Cells::Reader(cell) }
    }

    /// The events after a loaded aggregate's snapshot, and the view of its
    /// snapshot: pointers into the cell's heap object, which stays in place
    /// however the handle moves, until it is dropped.
    pub(crate) fn loaded(loaded: Loaded) -> (factlog_iter, factlog_loaded) {
        let cell = LoadedCell::new(loaded, |l| l.events());
        let view = crate::convert::loaded(cell.borrow_owner());
        (factlog_iter { cells: Cells::Loaded(cell) }, view)
    }

    /// The next event as a view into the maps this iterator holds; `None` at the end.
    pub(crate) fn next_view(&mut self) -> Result<Option<factlog_event_view>, Failure> {
        let next = match &mut self.cells {
            Cells::Reader(cell) => cell.with_dependent_mut(|_, walk| {
                let event = match walk {
                    Walk::All(it) => it.next(),
                    Walk::Aggregate(it) => it.next(),
                };
                event.map(|e| e.map(|e| ref_view(&e)))
            }),
            Cells::Loaded(cell) => cell.with_dependent_mut(|_, it| it.next().map(|e| e.map(|e| ref_view(&e)))),
        };
        next.transpose().map_err(Failure::from)
    }
}

/// A live subscription. Not shareable: use it from one thread at a time. It
/// may outlive its store handle: after `factlog_close` it reports `FACTLOG_CLOSED`.
pub struct factlog_subscription {
    pub(crate) subscription: Subscription,
    /// The event the last `next` delivered: the view's pointers point into it.
    current: Option<RecordedEvent>,
}

impl factlog_subscription {
    /// A handle for `subscription`.
    pub(crate) fn new(subscription: Subscription) -> factlog_subscription {
        factlog_subscription { subscription, current: None }
    }

    /// The next matching event, waiting at most `timeout`; `None` if none came.
    pub(crate) fn next_view(&mut self, timeout: std::time::Duration) -> Result<Option<factlog_event_view>, Failure> {
        // The previous event's view ends here, as the header says.
        self.current = self.subscription.next_timeout(timeout)?;
        Ok(self.current.as_ref().map(recorded_view))
    }
}

/// What the header promises about threads, checked by the compiler: a store
/// handle may be shared, iterators and subscriptions may move between threads.
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    const fn movable<T: Send>() {}
    shareable::<factlog_store>();
    movable::<factlog_iter>();
    movable::<factlog_subscription>();
};
