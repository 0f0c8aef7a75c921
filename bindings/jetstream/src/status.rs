//! What a running relay reports: where it is, how far behind the store it
//! is, and whether it waits for the broker. [`StatusHandle`] reads it from
//! any thread while [`crate::Relay::run`] works; [`StopHandle`] ends the run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// What the relay is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayState {
    /// Connecting, checking the stream, finding where to resume.
    Starting,
    /// Publishing events (some are in flight).
    Shipping,
    /// Every durable event the filter selects is acknowledged by the broker.
    CaughtUp,
    /// The broker failed; the relay waits and tries again.
    WaitingForBroker {
        /// Failures in a row.
        attempt: u32,
        /// The last one.
        last_error: String,
    },
    /// The run returned.
    Stopped,
}

/// A relay's progress, as of the last batch (see [`crate::Relay::status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayStatus {
    /// What it is doing.
    pub state: RelayState,
    /// Every position below this one is in the stream (or not selected by
    /// the filter): where a restart would resume.
    pub next_position: u64,
    /// One past the store's last durable position, as last seen.
    pub store_end: u64,
    /// Durable events not yet acknowledged by the broker (filtered-out ones
    /// included): `store_end - next_position`.
    pub lag_events: u64,
    /// Messages published and not yet acknowledged.
    pub in_flight: usize,
    /// The stream sequence of the last acknowledged message.
    pub stream_sequence: u64,
    /// Messages acknowledged during this run.
    pub published: u64,
    /// Times the relay found the stream not where it expected (another
    /// publisher, a lost acknowledgement) and read where to resume again.
    pub resyncs: u64,
    /// Why the relay last read where to resume again, if it did.
    pub last_resync: Option<String>,
    /// Times the broker failed (down, timed out) during this run.
    pub broker_failures: u64,
    /// Positions skipped during this run because retention removed them
    /// before they were shipped ([`crate::RelayOptions::accept_retention_gap`]).
    pub skipped_positions: u64,
    /// The last such gap: the stream has no message for these positions.
    pub last_gap: Option<std::ops::Range<u64>>,
}

impl Default for RelayStatus {
    fn default() -> Self {
        RelayStatus {
            state: RelayState::Starting,
            next_position: 0,
            store_end: 0,
            lag_events: 0,
            in_flight: 0,
            stream_sequence: 0,
            published: 0,
            resyncs: 0,
            last_resync: None,
            broker_failures: 0,
            skipped_positions: 0,
            last_gap: None,
        }
    }
}

/// Reads a relay's [`RelayStatus`] from another thread.
#[derive(Debug, Clone, Default)]
pub struct StatusHandle(Arc<Mutex<RelayStatus>>);

impl StatusHandle {
    /// A copy of the status now.
    pub fn get(&self) -> RelayStatus {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Changes the status.
    pub(crate) fn update(&self, f: impl FnOnce(&mut RelayStatus)) {
        let mut status = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut status);
        status.lag_events = status.store_end.saturating_sub(status.next_position);
    }
}

/// Stops a running relay from another thread; see [`crate::Relay::stop_handle`].
#[derive(Debug, Clone, Default)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    /// Asks the relay to stop: it stops taking events, waits for the
    /// acknowledgements in flight, commits its checkpoint and returns from
    /// `run` (within about 100 ms when it is idle, or one acknowledgement
    /// timeout when it waits for the broker).
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`StopHandle::stop`] was called.
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
