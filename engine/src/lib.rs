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
//! Module map: `record` (frame layout), `segment` (files and headers),
//! `mmap` and `view` (the only `unsafe`), `index` (per-aggregate offsets and
//! checkpoints), `dedupe` (idempotency window), `writer` (group commit),
//! `recovery` (open and crash repair), `snapshot` (snapshot files, their
//! index and trained zstd dictionaries, in layers of their own), `store`
//! (the public handle), `verify`, `fault` (test hooks). The byte layout is in `docs/FORMAT.md`.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod dedupe;
mod durable;
mod error;
mod event;
mod fault;
mod index;
#[allow(unsafe_code)]
mod mmap;
#[doc(hidden)]
pub mod record;
mod recovery;
mod segment;
#[doc(hidden)]
pub mod snapshot;
mod store;
mod verify;
#[allow(unsafe_code)]
mod view;
mod writer;

pub use error::{fmt_id, Error, Result};
pub use event::{
    now_nanos, AppendResult, AsOf, Direction, EventId, EventRef, ExpectedVersion, NewEvent, RecordedEvent,
    NAME_BYTES_MAX,
};
pub use fault::Faults;
pub use options::{Durability, Options, SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN};
pub use recovery::{RecoveryReport, Repair, TornTail};
pub use segment::{FORMAT_VERSION, POSITION_LIMIT};
pub use snapshot::dictionary::{DictionaryInfo, DICT_BYTES_MAX, DICT_BYTES_MIN};
pub use snapshot::{Snapshot, SnapshotInfo, SnapshotRecovery};
pub use store::{AggregateEvents, AllEvents, Loaded, Reader, Stats, Store, LOCK_NAME, MARKER_NAME};
pub use verify::{Problem, VerifyReport};

mod options;

/// The README's code examples, compiled and run as doctests.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
