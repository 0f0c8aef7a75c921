//! Threads that run the engine's blocking calls for async callers, so that a
//! `persist` future never blocks the executor it is polled on and needs no
//! particular runtime: the future waits on a oneshot channel that a worker
//! thread completes. Many persists in flight at once keep many appends in
//! the engine's queue at once, which is what lets its group commit share one
//! `fdatasync` between them.
//!
//! Also [`block_on`], for the replay threads that feed cqrs-es's
//! `ReplayStream` (whose `push` is async) from a plain thread.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

use crossbeam_channel::{Receiver, Sender};
use tokio::sync::oneshot;

use crate::error::Error;

/// Worker threads started at most: past this many persists in flight, the
/// later ones queue until a worker is free (the engine itself queues at most
/// `Options::max_pending_appends` appends).
pub const WORKER_THREADS_MAX: usize = 64;

type Job = Box<dyn FnOnce() + Send>;

/// A pool of threads, started as they are needed, up to [`WORKER_THREADS_MAX`].
/// They end when the pool is dropped.
pub struct Workers {
    tx: Sender<Job>,
    rx: Receiver<Job>,
    /// Threads free for a job not yet claimed by a caller (a semaphore: a
    /// caller claims one before it queues its job, a thread adds one each
    /// time it finishes a job).
    idle: Arc<AtomicUsize>,
    started: AtomicUsize,
}

impl Workers {
    /// An empty pool.
    pub fn new() -> Workers {
        // NOTE: unbounded, but never longer than the number of persist
        // futures being awaited: each queued job is one waiting caller.
        let (tx, rx) = crossbeam_channel::unbounded();
        Workers { tx, rx, idle: Arc::new(AtomicUsize::new(0)), started: AtomicUsize::new(0) }
    }

    /// Runs `job` on a worker thread; the receiver gets its result.
    pub fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
        on_unreceived: impl FnOnce(T) + Send + 'static,
    ) -> Result<oneshot::Receiver<T>, Error> {
        // IMPORTANT: claimed, not just looked at: callers that all saw one
        // idle thread would otherwise queue behind it, one append at a time.
        let claimed = self.idle.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok();
        if !claimed {
            self.start_thread()?;
        }
        let (reply, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            if let Err(result) = reply.send(job()) {
                // The caller's future was dropped: the result still matters.
                on_unreceived(result);
            }
        });
        self.tx.send(job).map_err(|_| Error::Unavailable("the job queue is closed".into()))?;
        Ok(rx)
    }

    /// Starts one more thread unless the pool is full (a full pool's jobs
    /// wait for the next free thread).
    fn start_thread(&self) -> Result<(), Error> {
        let started = self.started.fetch_add(1, Ordering::AcqRel);
        if started >= WORKER_THREADS_MAX {
            self.started.fetch_sub(1, Ordering::AcqRel);
            return Ok(());
        }
        let (rx, idle) = (self.rx.clone(), Arc::clone(&self.idle));
        // A new thread takes a queued job first, so it counts itself free only
        // after its first job.
        let spawned = thread::Builder::new().name("factlog-cqrs".into()).spawn(move || {
            while let Ok(job) = rx.recv() {
                job();
                idle.fetch_add(1, Ordering::AcqRel);
            }
        });
        match spawned {
            Ok(_) => Ok(()),
            Err(e) => {
                self.started.fetch_sub(1, Ordering::AcqRel);
                // With threads already running the job still gets done.
                if started > 0 {
                    Ok(())
                } else {
                    Err(Error::Unavailable(format!("cannot start a worker thread: {e}")))
                }
            }
        }
    }
}

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future to completion on this thread, parking while it is pending.
/// For plain threads only (never call it from inside an async task).
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(output) => return output,
            Poll::Pending => thread::park(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_jobs_and_reports_unreceived_results() {
        let workers = Workers::new();
        let rx = workers.run(|| 7, |_| {}).unwrap();
        assert_eq!(block_on(rx).unwrap(), 7);

        let (seen_tx, seen_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let rx = workers
            .run(
                move || {
                    go_rx.recv().ok();
                    8
                },
                move |v| seen_tx.send(v).unwrap(),
            )
            .unwrap();
        drop(rx);
        go_tx.send(()).unwrap();
        assert_eq!(seen_rx.recv().unwrap(), 8);
    }

    #[test]
    fn jobs_submitted_together_run_together() {
        // Each job waits for all the others: they finish only if each got a
        // thread of its own, as concurrent appends must to share a group commit.
        let workers = Workers::new();
        for round in 0..3 {
            let barrier = Arc::new(std::sync::Barrier::new(8));
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            let receivers: Vec<_> = (0..8)
                .map(|_| {
                    let (barrier, done_tx) = (Arc::clone(&barrier), done_tx.clone());
                    workers.run(move || done_tx.send(barrier.wait().is_leader()).is_ok(), |_| {}).unwrap()
                })
                .collect();
            for _ in 0..8 {
                done_rx.recv_timeout(std::time::Duration::from_secs(10)).expect("a job waited for a thread");
            }
            for rx in receivers {
                assert!(block_on(rx).unwrap(), "round {round}");
            }
        }
        assert!(workers.started.load(Ordering::Acquire) <= 8 + 1);
    }
}
