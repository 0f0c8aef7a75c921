//! # factlog
//!
//! An embedded, log-structured event storage engine: append immutable events
//! to per-aggregate streams with optimistic concurrency, read them back
//! zero-copy, and reopen after a crash with every acknowledged event intact.
//!
//! ```no_run
//! use factlog::{ExpectedVersion, NewEvent, Options, Store, Direction};
//! let store = Store::open("/tmp/bank", Options::default())?;
//! let ev = NewEvent::new(*b"0123456789abcdef", "FundsDeposited", &br#"{"amount":100}"#[..]);
//! store.append("account-1", ExpectedVersion::NoStream, vec![ev])?;
//! let reader = store.reader();
//! for event in reader.read_aggregate("account-1", 0, Direction::Forward) {
//!     let event = event?;
//!     println!("{} v{}: {} bytes", event.event_type(), event.version(), event.data().len());
//! }
//! # Ok::<(), factlog::Error>(())
//! ```
//!
//! Module map, in layers (a module uses only those below it): byte formats
//! (`record`, `segment`'s header and frame cursor, `index_file`,
//! `snapshot`'s frames); files and views (`durable`, `mmap` and `view`, the
//! only `unsafe`, `directory`, `watermark`); state (`index`, `dedupe`,
//! `shared`, `streams`); actors (`writer`, `recovery`, `follow`, `scavenge`,
//! the snapshot store, `verify`); handles (`store`,
//! `reader`, `filter`, `subscription`, `handoff`). `upcast` (schema evolution
//! on the read path: registered upcasters and the borrowed-or-owned event
//! they hand out) sits beside `event`, under the handles that offer upcast
//! reads; `load` holds what a caller asks of a load (the snapshot schema). `fault` holds the test hooks. The byte layout, the
//! crash argument and the concurrency design are in `docs/FORMAT.md`.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod consumer;
mod dedupe;
mod directory;
mod durable;
mod error;
mod event;
mod fault;
mod filter;
mod follow;
mod handoff;
mod id;
mod index;
mod index_file;
mod le;
mod load;
#[allow(unsafe_code)]
mod mmap;
mod reader;
#[doc(hidden)]
pub mod record;
mod recovery;
mod scavenge;
mod segment;
mod shared;
#[doc(hidden)]
pub mod snapshot;
mod store;
mod streams;
mod subscription;
mod upcast;
mod verify;
#[allow(unsafe_code)]
mod view;
mod watermark;
mod writer;

pub use bytes::Bytes;
pub use consumer::{
    Consumer, ConsumerInfo, ConsumerOptions, ParkedEvent, ResetTo, RetryPolicy, RunSummary, StopHandle, CONSUMERS_DIR,
    CONSUMER_NAME_MAX, PARKED_ERROR_BYTES_MAX,
};
pub use directory::{LOCK_NAME, MARKER_NAME};
pub use error::{fmt_id, Error, LockHolder, Result};
pub use event::{
    now_nanos, AppendResult, AsOf, Direction, Envelope, EventId, EventRef, ExpectedVersion, IntoPayload, NewEvent,
    RecordedEvent, SchemaVersion,
};
pub use fault::Faults;
pub use filter::Filter;
pub use id::ParseEventIdError;
pub use load::{LoadOptions, StaleSnapshot};
pub use options::{Durability, Options, Retention};
pub use reader::{AggregateEvents, AggregateInfo, AllEvents, FilteredEvents, Loaded, Reader};
pub use record::NAME_BYTES_MAX;
pub use recovery::{RecoveryReport, Repair, TornTail};
pub use scavenge::ScavengeReport;
pub use segment::{FORMAT_VERSION, POSITION_LIMIT, SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN};
pub use snapshot::dictionary::{DictionaryInfo, DICT_BYTES_MAX, DICT_BYTES_MIN};
pub use snapshot::{Snapshot, SnapshotEntry, SnapshotInfo, SnapshotRecovery};
pub use store::{Stats, Store};
pub use streams::{DeleteMode, StreamMeta, StreamState, STREAMS_NAME};
pub use subscription::{Batch, BatchEvents, StartFrom, Subscription, UpcastBatchEvents};
pub use upcast::{Upcast, UpcastError, UpcastEvents, Upcasted, Upcasters};
pub use verify::{Problem, VerifyReport};
pub use watermark::WATERMARK_NAME;

mod options;

/// The README's code examples, compiled and run as doctests.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
