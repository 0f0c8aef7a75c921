//! # factlog-cqrs
//!
//! A storage backend for the [cqrs-es](https://docs.rs/cqrs-es/0.5.0) framework
//! (0.5.0): [`FactlogEventRepository`] implements cqrs-es's
//! `PersistedEventRepository` on an embedded factlog [`Store`](factlog::Store), so
//! an application that uses postgres-es (or mysql-es, dynamo-es) switches by
//! changing the line that makes the repository:
//!
//! ```no_run
//! # use cqrs_es::doc::{MyAggregate, MyService};
//! use cqrs_es::persist::PersistedEventStore;
//! use cqrs_es::CqrsFramework;
//!
//! # fn main() -> Result<(), factlog_cqrs::Error> {
//! // let repo = postgres_es::PostgresEventRepository::new(pool);
//! let repo = factlog_cqrs::FactlogEventRepository::open("/var/lib/app/events")?;
//! let store = PersistedEventStore::<_, MyAggregate>::new_event_store(repo);
//! let cqrs = CqrsFramework::new(store, vec![], MyService);
//! # Ok(()) }
//! ```
//!
//! [`factlog_cqrs`], [`factlog_snapshot_cqrs`] and [`factlog_aggregate_cqrs`]
//! mirror postgres-es's `postgres_cqrs` family, and [`FactlogCqrs`] its
//! `PostgresCqrs`. The futures need no particular async runtime.
//!
//! ## Mapping
//!
//! | cqrs-es | factlog |
//! |---|---|
//! | `aggregate_type` + `aggregate_id` | one aggregate id: the type with `\` and `/` escaped by a `\`, a `/`, then the id verbatim (`BankAccount/acct-1`); unambiguous, and at most 255 bytes ([`Error::InvalidKey`] otherwise) |
//! | `sequence`, from 1 | `version`, from 0: `version = sequence - 1` |
//! | `event_type` | `event_type` |
//! | `payload` (JSON) | `data`, the JSON text |
//! | `event_version` (a string) | kept verbatim in the metadata envelope; factlog's `u32` `event_version` gets its leading number (`"2.1"` → 2, else 0) as a hint for other readers |
//! | `metadata` (JSON) | `metadata`: the envelope `{"v":<event_version>,"m":<metadata>}` |
//! | snapshot (`current_snapshot` n, the aggregate) | in the log, `"s":{"n":n,"state":<aggregate>}` in the envelope of the event it was taken at; a copy, compressed, in factlog's snapshot store at that version |
//! | (no event id) | UUID v5 of the aggregate id, the sequence and every stored byte of the event |
//!
//! Every field round-trips exactly: JSON values are stored as their text and
//! parsed back, strings byte for byte.
//!
//! ## `persist` is atomic
//!
//! One `persist` call is one factlog batch, and a batch is all there or not
//! there after any crash. Before anything is written the repository checks
//! that the first sequence follows the aggregate's last one and that the
//! snapshot number is the newest one + 1; the batch is appended with that
//! version expected, so a commit that raced another one fails in the engine.
//! Either way the caller gets `PersistenceError::OptimisticLockError` (cqrs-es's
//! `AggregateConflict`) and nothing is written. (postgres-es commits the events
//! before it checks the snapshot row, so it can report a conflict for a commit
//! it stored.)
//!
//! The snapshot goes *into the batch*, in the envelope of the event it was
//! taken at, so the log alone says which snapshot is the newest: that is what
//! makes the events and the snapshot one atomic write. The copy in factlog's
//! snapshot store is saved after the append and only speeds up loads: a load
//! takes the newest copy at or before the aggregate's version, checks that the
//! log's event at that version carries the same snapshot number, and looks at
//! the events after it for a newer one (a copy lost to a crash, or not saved
//! yet). So a crash between the append and the copy loses nothing, in every
//! cqrs-es mode: the event store mode never reads snapshots; the snapshot
//! store mode would be right even with an older snapshot, and gets the newest;
//! the aggregate store mode, which treats the snapshot as the truth and
//! replays nothing after it, needs exactly the newest one, and gets it.
//!
//! cqrs-es does not say at which sequence its snapshot was taken.
//! postgres-es records the commit's last sequence; so does this crate, unless
//! [`FactlogEventRepository::with_snapshot_size`] tells it the snapshot store's
//! size (then the last multiple of it). The two differ only when one command's
//! events cross a multiple of the size, and then only the second is right.
//!
//! cqrs-es 0.5 itself applies a commit's events to the aggregate twice
//! before it hands over the snapshot (once in the event sink, once in
//! `PersistedEventStore::commit`), on every backend: with a snapshot or
//! aggregate store, give events the state they leave (`FundsDeposited {
//! amount, balance }`) so that applying one twice changes nothing.
//!
//! ## Retries
//!
//! Event ids are derived from the event, so the same commit always has the
//! same ids. When a `persist` failed in a way that may still have stored it (an
//! I/O error, a dropped future), the repository remembers it; a retry of that
//! commit through the same repository is deduplicated by the engine and
//! succeeds. Any other commit that finds its ids already stored is a second
//! caller that made the same commit, and gets a conflict: two identical
//! deposits from two clients are two deposits, never one. (The one case the
//! ids cannot tell apart: while a commit's outcome is uncertain, another
//! caller's byte-identical commit at the same sequence is taken for its
//! retry. Put a request id in the cqrs-es metadata to rule it out.) The
//! record holds at most [`UNCERTAIN_COMMITS_MAX`] commits and lives in
//! memory: a retry after a restart finds the first attempt stored and gets a
//! conflict, which is safe.
//!
//! ## Streaming, threads, limits
//!
//! `stream_events` and `stream_all_events` run a thread that reads the log
//! (zero-copy, in log order) and hands the stream at most its channel size
//! ([`DEFAULT_STREAM_CHANNEL_SIZE`]) of events ahead of its reader. Appends run
//! on up to [`WORKER_THREADS_MAX`] threads, so concurrent commands share the
//! engine's group commit. A commit holds at most factlog's `max_batch_events`
//! (10,000) events, each at most `max_event_bytes` (4 MiB) with its envelope,
//! and the snapshot it carries counts towards its event's size. Carrying
//! snapshots in the log costs log space: one copy of the aggregate per
//! snapshot. Loading a snapshot parses the envelopes of the events after the
//! newest copy (fewer than the snapshot size), and all of an aggregate's
//! events while it has none.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod cqrs;
mod envelope;
mod error;
pub mod key;
mod repository;
mod workers;

pub use cqrs::{factlog_aggregate_cqrs, factlog_cqrs, factlog_snapshot_cqrs, FactlogCqrs, FactlogEventStore};
pub use error::Error;
pub use repository::{
    FactlogEventRepository, DEFAULT_STREAM_CHANNEL_SIZE, SNAPSHOT_COPY_SCHEMA, UNCERTAIN_COMMITS_MAX,
};
pub use workers::WORKER_THREADS_MAX;
