//! The appender's side of the writer channel: sending a request and waiting
//! for its acknowledgement (polling briefly before sleeping), and stopping
//! the writer thread. It never touches the log; the writer does.

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

/// Appenders that may poll at once: one core is left to the writer, so on a
/// 2-core machine a single appender polls and the rest sleep.
pub(crate) fn spin_waiters() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).saturating_sub(1).min(4)
}

/// Waits for the writer's reply. Sleeping on the channel costs a futex
/// wake-up per append (tens of microseconds on a VM, a third of an
/// `fdatasync`), so up to `spin_waiters()` appenders poll first, each with
/// a spare core to poll on.
pub(crate) fn wait_for_ack(rx: &Receiver<Result<Vec<AppendResult>>>, spin: bool) -> Result<Result<Vec<AppendResult>>> {
    if spin {
        let until = Instant::now() + Duration::from_micros(SPIN_FOR_ACK_US);
        while Instant::now() < until {
            match rx.try_recv() {
                Ok(r) => return Ok(r),
                Err(crossbeam_channel::TryRecvError::Disconnected) => return Err(Error::Closed),
                Err(crossbeam_channel::TryRecvError::Empty) => std::hint::spin_loop(),
            }
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
