//! What the writer thread publishes and every reader reads: the index, the
//! list of segment maps, the watermarks (`visible_end`, `durable_end`), the
//! poison flag and the snapshot store. Only the writer advances the
//! watermarks and mutates the index (in a read-only store: the follower,
//! through the [`Follow`] hook); this module never does I/O.
//!
//! Lock order (never take them the other way round): `index`, then
//! `segment_list`; `poison` is a leaf. Readers load a watermark with
//! `Acquire` before reading what it covers; the writer publishes index
//! entries before storing the watermark with `Release`.

use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

use crate::directory::DirLock;
use crate::index::IndexState;
use crate::segment::Segment;
use crate::snapshot::Snapshots;
use crate::streams::Rules;

/// State shared by the writer thread and every reader.
pub(crate) struct Shared {
    pub dir: PathBuf,
    index: RwLock<IndexState>,
    /// Segment maps in log order, swapped (copy on write) when one is added.
    segment_list: RwLock<Arc<Vec<Arc<Segment>>>>,
    /// One past the last position readers may see.
    pub visible_end: AtomicU64,
    /// One past the last position known to be on disk.
    pub durable_end: AtomicU64,
    poisoned: AtomicBool,
    poison: Mutex<Option<String>>,
    /// Wakes subscribers when `durable_end` moves or the store closes.
    pub durable_signal: DurableSignal,
    /// Set once the store is closed: subscriptions end with `Error::Closed`.
    pub closed: AtomicBool,
    pub fsyncs: AtomicU64,
    pub groups: AtomicU64,
    /// Times retention removed segments.
    pub retention_runs: AtomicU64,
    /// Held while a segment file is replaced (scavenge) or removed
    /// (retention), so that neither undoes the other. The writer thread only
    /// ever tries it, never waits.
    pub swap_lock: Mutex<()>,
    /// Held for a whole scavenge: one at a time.
    pub scavenge_lock: Mutex<()>,
    /// `Retention::clamp_reads_below_start`: reads below the first retained
    /// position start there instead of failing.
    pub clamp_below_start: AtomicBool,
    pub snapshots: Snapshots,
    /// Every aggregate's lifecycle rules (module `streams`), replaced whole
    /// by the writer thread on a change.
    streams: RwLock<Arc<Rules>>,
    /// Set for a read-only store: moves the view as a writer in another
    /// process publishes (module `follow`). The writer thread never uses it.
    pub follower: OnceLock<Box<dyn Follow>>,
    /// A read-only store's share of the store lock, held as long as anything
    /// holds this state (readers and subscriptions that outlive their
    /// store): while they may read segment maps, the reader byte stays
    /// locked, so the writer never recycles a file under them.
    pub lock_hold: OnceLock<Arc<DirLock>>,
    /// The store's lock, for probing who else has it open (a writer store's:
    /// not held, so a closed writer store's readers do not keep it locked).
    pub lock_probe: OnceLock<Weak<DirLock>>,
}

/// How a read-only store catches up with a writer in another process: the
/// one thing `Shared` asks of the module above it that implements it
/// (`follow`), so that waiting subscribers can poll it.
pub(crate) trait Follow: Send + Sync {
    /// Indexes what the writer has made durable since the last call and
    /// advances the watermarks (as the writer thread does in-process).
    fn refresh(&self, shared: &Shared) -> Result<()>;
}

/// How often a subscriber of a read-only store looks at the writer's
/// watermark while it waits (there is no cross-process wake-up).
pub(crate) const FOLLOW_POLL: Duration = Duration::from_millis(1);

impl Shared {
    /// Shared state over a recovered index, every watermark at its end.
    pub(crate) fn new(dir: PathBuf, index: IndexState, snapshots: Snapshots, streams: Rules) -> Shared {
        let end = index.next_position();
        let shared = Shared {
            dir,
            index: RwLock::new(index),
            segment_list: RwLock::new(Arc::new(Vec::new())),
            visible_end: AtomicU64::new(end),
            durable_end: AtomicU64::new(end),
            poisoned: AtomicBool::new(false),
            poison: Mutex::new(None),
            durable_signal: DurableSignal::default(),
            closed: AtomicBool::new(false),
            fsyncs: AtomicU64::new(0),
            groups: AtomicU64::new(0),
            retention_runs: AtomicU64::new(0),
            swap_lock: Mutex::new(()),
            scavenge_lock: Mutex::new(()),
            clamp_below_start: AtomicBool::new(false),
            snapshots,
            streams: RwLock::new(Arc::new(streams)),
            follower: OnceLock::new(),
            lock_hold: OnceLock::new(),
            lock_probe: OnceLock::new(),
        };
        shared.publish_segments(&shared.index());
        shared
    }

    /// The index, for reading. Held briefly: the writer waits on it to publish.
    pub(crate) fn index(&self) -> RwLockReadGuard<'_, IndexState> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The index, for the writer's publish step.
    pub(crate) fn index_mut(&self) -> RwLockWriteGuard<'_, IndexState> {
        self.index.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves the sealed segment `seg`'s entries from memory to its index
    /// file at `path`, just written, once the file is validated and says
    /// exactly what memory says (checked under the read lock). Returns
    /// whether it did; if not, the entries stay in memory (correct, only
    /// larger) and the next open rebuilds or uses the file.
    pub(crate) fn attach_index_file(&self, seg: &Arc<Segment>, path: &std::path::Path) -> bool {
        let Ok(file) = crate::index::open_file(path, seg.first_position) else { return false };
        if !self.index().file_matches(seg, &file) {
            return false;
        }
        self.index_mut().attach(seg, file)
    }

    /// Why the store is poisoned, if it is.
    pub(crate) fn poison_cause(&self) -> Option<String> {
        if !self.poisoned.load(Ordering::Acquire) {
            return None;
        }
        self.poison.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Poisons the store (the first cause is kept).
    pub(crate) fn set_poison(&self, cause: String) {
        let mut p = self.poison.lock().unwrap_or_else(|p| p.into_inner());
        if p.is_none() {
            *p = Some(cause);
        }
        self.poisoned.store(true, Ordering::Release);
    }

    /// Republishes the segment list from `index` (which the caller holds
    /// locked) after it gained a segment.
    ///
    /// IMPORTANT: the writer calls this before it advances `visible_end` past
    /// the new segment's first event, so a reader that sees the new watermark
    /// also gets a segment list holding every event below it.
    pub(crate) fn publish_segments(&self, index: &IndexState) {
        let list: Vec<Arc<Segment>> = index.segments().cloned().collect();
        *self.segment_list.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(list);
    }

    /// The lifecycle rules as they are now.
    pub(crate) fn streams(&self) -> Arc<Rules> {
        Arc::clone(&self.streams.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Replaces the lifecycle rules (the writer thread, after writing them).
    pub(crate) fn set_streams(&self, rules: Rules) {
        *self.streams.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(rules);
    }

    /// The segment maps in log order, as of the last roll.
    pub(crate) fn segments(&self) -> Arc<Vec<Arc<Segment>>> {
        Arc::clone(&self.segment_list.read().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Shared {
    /// Advances `durable_end` to `end` and wakes the subscribers waiting for it.
    pub(crate) fn publish_durable(&self, end: u64) {
        self.durable_end.store(end, Ordering::SeqCst);
        self.durable_signal.notify();
    }

    /// Advances `durable_end` to `end` without waking anyone: the writer
    /// wakes subscribers itself ([`Shared::wake_subscribers`]), coalescing
    /// wake-ups while appends keep coming.
    pub(crate) fn advance_durable(&self, end: u64) {
        self.durable_end.store(end, Ordering::SeqCst);
    }

    /// Wakes the subscribers waiting for `durable_end` or `visible_end` to
    /// move (the writer calls it after moving them).
    pub(crate) fn wake_subscribers(&self) {
        self.durable_signal.notify();
    }

    /// Waits until `visible_end` is past `position`, the store closes, or
    /// `deadline` passes (for subscribers that take unflushed events). A
    /// read-only store sees only what the writer made durable: there it is
    /// [`Shared::wait_durable_past`].
    pub(crate) fn wait_visible_past(&self, position: u64, deadline: Option<Instant>) -> u64 {
        if self.follower.get().is_some() {
            return self.wait_durable_past(position, deadline);
        }
        self.wait_signal(&self.visible_end, position, deadline)
    }

    /// Sleeps on the writer's signal until `watermark` is past `position`,
    /// the store closes, or `deadline` passes; returns the watermark then.
    fn wait_signal(&self, watermark: &AtomicU64, position: u64, deadline: Option<Instant>) -> u64 {
        self.durable_signal
            .wait(deadline, || {
                let end = watermark.load(Ordering::SeqCst);
                (end > position || self.closed.load(Ordering::SeqCst)).then_some(end)
            })
            .unwrap_or_else(|| watermark.load(Ordering::SeqCst))
    }

    /// The durable watermark now.
    pub(crate) fn durable_end(&self) -> u64 {
        self.durable_end.load(Ordering::SeqCst)
    }

    /// Marks the store closed and wakes every subscriber.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.durable_signal.notify_all_now();
    }

    /// Catches a read-only store up with the writer (nothing for a
    /// read-write one). The first failure stops following for good: the
    /// store is poisoned with it and closed (subscriptions end with
    /// [`Error::Closed`]); readers keep the view they had.
    pub(crate) fn follow(&self) -> Result<()> {
        let Some(follower) = self.follower.get() else { return Ok(()) };
        if let Some(cause) = self.poison_cause() {
            return Err(Error::Poisoned { cause });
        }
        if self.closed.load(Ordering::SeqCst) {
            return Ok(());
        }
        follower.refresh(self).inspect_err(|e| {
            self.set_poison(format!("following the writer failed: {e}"));
            self.close();
        })
    }

    /// Waits until `durable_end` is past `position`, the store closes, or
    /// `deadline` passes. Returns the durable end then. On a read-only store
    /// it polls the writer's watermark every [`FOLLOW_POLL`].
    pub(crate) fn wait_durable_past(&self, position: u64, deadline: Option<Instant>) -> u64 {
        if self.follower.get().is_some() {
            return self.poll_durable_past(position, deadline);
        }
        self.wait_signal(&self.durable_end, position, deadline)
    }
}

impl Shared {
    /// [`Shared::wait_durable_past`] for a read-only store: refresh, check, sleep.
    fn poll_durable_past(&self, position: u64, deadline: Option<Instant>) -> u64 {
        loop {
            let _ = self.follow();
            let end = self.durable_end.load(Ordering::SeqCst);
            if end > position || self.closed.load(Ordering::SeqCst) {
                return end;
            }
            let now = Instant::now();
            match deadline {
                Some(d) if now >= d => return end,
                Some(d) => std::thread::sleep(FOLLOW_POLL.min(d - now)),
                None => std::thread::sleep(FOLLOW_POLL),
            }
        }
    }
}

/// A condition variable the writer signals when the durable watermark moves,
/// at the cost of one atomic load per group commit while nobody waits.
///
/// No lost wake-up: a waiter counts itself in `waiters` (SeqCst) before it
/// checks the watermark under `lock`; the writer stores the watermark
/// (SeqCst) before it reads `waiters`, and notifies under `lock`. So either
/// the waiter sees the new watermark, or the writer sees the waiter and its
/// notification cannot fall between the waiter's check and its sleep.
#[derive(Default)]
pub(crate) struct DurableSignal {
    waiters: AtomicUsize,
    lock: Mutex<()>,
    cv: Condvar,
}

impl DurableSignal {
    fn notify(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.notify_all_now();
        }
    }

    fn notify_all_now(&self) {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.cv.notify_all();
    }

    /// Sleeps until `ready` gives a value or `deadline` passes (`None`: then).
    fn wait<T>(&self, deadline: Option<Instant>, mut ready: impl FnMut() -> Option<T>) -> Option<T> {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let mut guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let found = loop {
            if let Some(v) = ready() {
                break Some(v);
            }
            match deadline {
                None => guard = self.cv.wait(guard).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        break None;
                    }
                    guard = self.cv.wait_timeout(guard, d - now).unwrap_or_else(|p| p.into_inner()).0;
                }
            }
        };
        drop(guard);
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        found
    }
}
