//! The appender's side of the writer channel: sending a request and waiting
//! for its acknowledgement (polling briefly before sleeping, while polling
//! pays), and stopping the writer thread. It never touches the log; the
//! writer does.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::error::{Error, Result};
use crate::event::AppendResult;
use crate::writer::Command;

/// How long an appender polls for its acknowledgement before sleeping: about
/// one group commit (a write plus an `fdatasync`) on an SSD.
const SPIN_FOR_ACK_US: u64 = 400;

/// A gap this long between two polls means the poller lost its core to
/// another thread: the CPU is contended, and polling on takes it from the
/// writer.
const PREEMPTED_GAP_US: u64 = 50;

/// Net misses (misses less hits) from which appenders stop polling for a
/// while; one miss alone is an `fdatasync` slower than the poll, which a
/// quiet disk has now and then.
const MISSES_BEFORE_HOLD_OFF: u32 = 2;

/// Cap on net misses: the longest hold-off is `1 << MISSES_MAX` waits.
const MISSES_MAX: u32 = 8;

/// Appenders that may poll at once: one core is left to the writer, so on a
/// 2-core machine a single appender polls and the rest sleep.
pub(crate) fn spin_waiters() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).saturating_sub(1).min(4)
}

/// Whether polling for acknowledgements has been paying lately, shared by a
/// store's appenders.
///
/// A poll *hits* when the acknowledgement arrives within
/// [`SPIN_FOR_ACK_US`] while the poller kept its core, and *misses* when
/// it times out or the poller was preempted. Both mean the same thing on a
/// busy machine: the writer thread needed a core, and the poller held one
/// (measured with `factlog-bench --cpu-load 1`: W1 fell to a fraction of
/// SQLite's). From [`MISSES_BEFORE_HOLD_OFF`] net misses on, each miss
/// makes the next 2^misses would-be pollers sleep at once (4 up to 256);
/// the poll after that probes again, and each hit takes one miss back, so
/// polling resumes within a few hundred appends once the CPU is free.
/// Races between appenders only blur the counts; both are hints.
#[derive(Debug, Default)]
pub(crate) struct SpinGate {
    /// Misses less hits, at most [`MISSES_MAX`].
    misses: AtomicU32,
    /// Would-be pollers left that sleep at once.
    hold_off: AtomicU32,
}

impl SpinGate {
    /// Whether this waiter may poll (takes one from the hold-off if not).
    fn may_spin(&self) -> bool {
        self.hold_off.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_err()
    }

    fn hit(&self) {
        let _ = self.misses.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| m.checked_sub(1));
    }

    fn miss(&self) {
        let before = self.misses.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| Some((m + 1).min(MISSES_MAX)));
        let misses = before.map_or(MISSES_MAX, |m| (m + 1).min(MISSES_MAX));
        if misses >= MISSES_BEFORE_HOLD_OFF {
            self.hold_off.store(1 << misses, Ordering::Relaxed);
        }
    }
}

/// What a poll for the acknowledgement came to.
enum Polled {
    /// The reply (or the channel's end), with whether the poller kept its core.
    Reply(Result<Result<Vec<AppendResult>>>, bool),
    /// No reply within [`SPIN_FOR_ACK_US`], or the poller lost its core.
    Miss,
}

/// Polls `rx` for up to [`SPIN_FOR_ACK_US`].
///
/// NOTE: it does not yield between polls. With a thread that never sleeps
/// on the poller's core, `sched_yield` hands that thread a whole time slice
/// (milliseconds). Measured with W1 on a memory file system and
/// `--cpu-load 1`, 10 runs each: a median of 1,860 appends/s with a yielding
/// poll against 3,900 without (runs spread over 430-9,500 and 390-17,000).
fn poll(rx: &Receiver<Result<Vec<AppendResult>>>) -> Polled {
    let start = Instant::now();
    let until = start + Duration::from_micros(SPIN_FOR_ACK_US);
    let gap_max = Duration::from_micros(PREEMPTED_GAP_US);
    let mut last = start;
    loop {
        let now = Instant::now();
        let kept_core = now.duration_since(last) < gap_max;
        last = now;
        match rx.try_recv() {
            Ok(r) => return Polled::Reply(Ok(r), kept_core),
            Err(crossbeam_channel::TryRecvError::Disconnected) => return Polled::Reply(Err(Error::Closed), kept_core),
            Err(crossbeam_channel::TryRecvError::Empty) if kept_core && now < until => std::hint::spin_loop(),
            Err(crossbeam_channel::TryRecvError::Empty) => return Polled::Miss,
        }
    }
}

/// Waits for the writer's reply. Sleeping on the channel costs a futex
/// wake-up per append (tens of microseconds on a VM, a third of an
/// `fdatasync`), so up to `spin_waiters()` appenders poll first, each with
/// a spare core to poll on, as long as `gate` says polling pays.
pub(crate) fn wait_for_ack(
    rx: &Receiver<Result<Vec<AppendResult>>>,
    spin: bool,
    gate: &SpinGate,
) -> Result<Result<Vec<AppendResult>>> {
    if spin && gate.may_spin() {
        match poll(rx) {
            Polled::Reply(reply, kept_core) => {
                if kept_core {
                    gate.hit();
                } else {
                    gate.miss();
                }
                return reply;
            }
            Polled::Miss => gate.miss(),
        }
    }
    rx.recv().map_err(|_| Error::Closed)
}

/// Asks the writer to sync and stop, and joins it. Idempotent.
pub(crate) fn shutdown(tx: &Sender<Command>, writer: &Mutex<Option<JoinHandle<()>>>) -> Result<()> {
    let handle = writer.lock().unwrap_or_else(|p| p.into_inner()).take();
    let Some(handle) = handle else { return Ok(()) };
    let (rtx, rrx) = crossbeam_channel::bounded(1);
    let r = match tx.send(Command::Shutdown(rtx)) {
        Ok(()) => rrx.recv().unwrap_or(Err(Error::Closed)),
        Err(_) => Ok(()),
    };
    let _ = handle.join();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pollers_held_off(gate: &SpinGate) -> u32 {
        let mut n = 0;
        while !gate.may_spin() {
            n += 1;
        }
        n
    }

    #[test]
    fn one_slow_sync_does_not_stop_polling() {
        let gate = SpinGate::default();
        gate.miss();
        assert!(gate.may_spin());
        gate.hit();
        gate.miss();
        assert!(gate.may_spin(), "a hit took the miss back");
    }

    #[test]
    fn misses_in_a_row_hold_pollers_off_longer_each_time_and_hits_bring_polling_back() {
        let gate = SpinGate::default();
        gate.miss();
        gate.miss();
        assert_eq!(pollers_held_off(&gate), 4);
        gate.miss();
        assert_eq!(pollers_held_off(&gate), 8);
        for _ in 0..20 {
            gate.miss();
        }
        assert_eq!(pollers_held_off(&gate), 1 << MISSES_MAX, "capped");
        for _ in 0..MISSES_MAX - 1 {
            gate.hit();
        }
        gate.miss();
        assert_eq!(pollers_held_off(&gate), 4, "hits took the misses back");
        gate.hit();
        gate.hit();
        gate.miss();
        assert_eq!(pollers_held_off(&gate), 0);
    }

    #[test]
    fn an_ack_that_is_already_there_is_a_hit() {
        let gate = SpinGate::default();
        gate.miss();
        gate.miss();
        assert_eq!(pollers_held_off(&gate), 4);
        let (tx, rx) = crossbeam_channel::bounded(1);
        tx.send(Ok(Vec::new())).ok();
        assert!(matches!(wait_for_ack(&rx, true, &gate), Ok(Ok(v)) if v.is_empty()));
        gate.miss();
        assert_eq!(pollers_held_off(&gate), 4, "the hit took one miss back, so this is the second again");
        let (tx, rx) = crossbeam_channel::bounded::<Result<Vec<AppendResult>>>(1);
        drop(tx);
        assert!(matches!(wait_for_ack(&rx, true, &gate), Err(Error::Closed)));
    }
}
