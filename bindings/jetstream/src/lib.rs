//! # factlog-relay
//!
//! Ships a factlog store's log to a NATS JetStream stream, exactly once into
//! the broker, so that consumers on other machines can read it. The relay is
//! a durable consumer of the store ([`factlog::Store::consumer`]): it runs in
//! the application's process, or beside it on a read-only open
//! ([`factlog::Store::open_read_only`]), and keeps the engine free of any
//! network dependency.
//!
//! ```no_run
//! use factlog::{Options, Store};
//! use factlog_relay::{Relay, RelayOptions};
//!
//! let store = Store::open_read_only("/var/lib/bank", Options::default())?;
//! let mut relay = Relay::new(&store, RelayOptions::new("nats://127.0.0.1:4222", "BANK"))?;
//! relay.run()?; // until stopped (Relay::stop_handle) or the store closes
//! # Ok::<(), factlog_relay::Error>(())
//! ```
//!
//! Each event becomes one message on subject `<prefix>.<aggregate id>`, its
//! envelope in headers, its data as the body ([`envelope`] has the format,
//! [`decode`] reads it back). `Nats-Msg-Id` is the event id. On start, and
//! after every failure, the relay reads the stream's last message and
//! resumes after the position it carries; every publish carries
//! `Nats-Expected-Last-Sequence`, so a message can only land right after the
//! one before it, whoever publishes. The consumer's checkpoint follows the
//! broker's acknowledgements; the stream, not the checkpoint, says where to
//! resume. [`relay`]'s module doc has the argument.
//!
//! Modules, one noun each: `options` ([`RelayOptions`]), [`envelope`] (the
//! wire format), `stream` (creating and checking the stream, reading its
//! end), `relay` ([`Relay`], the pipeline and the retries), `status`
//! ([`RelayStatus`], lag), `error` ([`Error`]), [`test_server`] (a
//! throwaway `nats-server` for tests and benchmarks).

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod envelope;
mod error;
mod options;
pub mod relay;
mod status;
mod stream;
pub mod test_server;

pub use envelope::decode;
pub use error::{Error, Result};
pub use options::{RelayOptions, Storage};
pub use relay::{Relay, RunSummary};
pub use status::{RelayState, RelayStatus, StatusHandle, StopHandle};
