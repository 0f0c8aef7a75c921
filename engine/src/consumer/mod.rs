//! Durable consumers: a named [`Consumer`] is a subscription whose progress
//! (its checkpoint: every position below it is handled) survives restarts
//! and `kill -9`, with a dead-letter list of the events its handler gave up
//! on. This module owns the consumer's files under `consumers/` (through
//! `checkpoint` and `parked`), its lock, its options and the store-level
//! operations (list, reset, delete); the handler runner is `runner`. It never
//! writes to the log: a consumer needs only its own lock, not the store's
//! write lock, so it runs in any process that can open the store.
//!
//! Delivery is at least once: the checkpoint only moves past an event once
//! it is handled (or parked), so after a crash the consumer resumes at its
//! checkpoint and may see again the events handled after it, never skip one.

pub(crate) mod checkpoint;
pub(crate) mod parked;
mod runner;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::directory::{self, DirLock};
use crate::error::{Error, Result};
use crate::event::AsOf;
use crate::filter::Filter;
use crate::store::Store;
use crate::subscription::{Batch, StartFrom, Subscription};
use checkpoint::CheckpointFile;
use parked::ParkedLog;
pub use parked::{ParkedEvent, PARKED_ERROR_BYTES_MAX};
pub use runner::{RetryPolicy, RunSummary};

/// The folder of a store that holds its consumers' files.
pub const CONSUMERS_DIR: &str = "consumers";
/// The longest consumer name, in bytes.
pub const CONSUMER_NAME_MAX: usize = 64;
/// The runner checks [`ConsumerOptions::commit_every`] once per this many
/// handled events (reading the clock per event would cost a fast handler a
/// third of its rate).
const COMMIT_CLOCK_EVENTS: u32 = 64;
const CHECKPOINT_SUFFIX: &str = ".checkpoint";
const PARKED_SUFFIX: &str = ".parked";
const LOCK_SUFFIX: &str = ".lock";

/// How a durable consumer starts, commits, retries and parks.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConsumerOptions {
    /// Where a consumer that does not exist yet starts (default: the start of
    /// the log). An existing consumer always resumes at its checkpoint.
    pub start: StartFrom,
    /// Which events it is given (default: all). Skipped events still move
    /// the checkpoint.
    pub filter: Filter,
    /// Commit automatically (default). Off: only [`Consumer::commit`] moves the checkpoint.
    pub auto_commit: bool,
    /// Commit automatically once this many positions were handled since the
    /// last commit (default 1,000).
    pub commit_every_events: u64,
    /// Commit automatically once this long has passed since the last commit
    /// (default 1 s), and whenever the consumer has caught up. The runner
    /// reads the clock for it once every 64 handled events, and between batches.
    pub commit_every: Duration,
    /// Automatic commits are written at once but `fdatasync`ed at most this
    /// often (default 1 s), and always when the consumer catches up, stops or
    /// is dropped. A kill loses nothing (the page cache survives it); a power
    /// cut may bring back a checkpoint up to this old, whose later events
    /// are then handled again. [`Consumer::commit`] always syncs.
    pub checkpoint_sync_interval: Duration,
    /// How often the runner retries a failing event before it parks it.
    pub retry: RetryPolicy,
    /// When an event is parked, park every later event of its aggregate
    /// behind it, unhandled, until it is replayed or discarded (default on:
    /// later events of an aggregate usually depend on earlier ones).
    pub park_aggregate_behind: bool,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions {
            start: StartFrom::Start,
            filter: Filter::all(),
            auto_commit: true,
            commit_every_events: 1000,
            commit_every: Duration::from_secs(1),
            checkpoint_sync_interval: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            park_aggregate_behind: true,
        }
    }
}

impl ConsumerOptions {
    /// Sets [`ConsumerOptions::start`].
    pub fn start(mut self, start: StartFrom) -> Self {
        self.start = start;
        self
    }
    /// Sets [`ConsumerOptions::filter`].
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }
    /// Sets [`ConsumerOptions::auto_commit`].
    pub fn auto_commit(mut self, on: bool) -> Self {
        self.auto_commit = on;
        self
    }
    /// Sets [`ConsumerOptions::commit_every_events`].
    pub fn commit_every_events(mut self, n: u64) -> Self {
        self.commit_every_events = n;
        self
    }
    /// Sets [`ConsumerOptions::commit_every`].
    pub fn commit_every(mut self, d: Duration) -> Self {
        self.commit_every = d;
        self
    }
    /// Sets [`ConsumerOptions::checkpoint_sync_interval`].
    pub fn checkpoint_sync_interval(mut self, d: Duration) -> Self {
        self.checkpoint_sync_interval = d;
        self
    }
    /// Sets [`ConsumerOptions::retry`].
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
    /// Sets [`ConsumerOptions::park_aggregate_behind`].
    pub fn park_aggregate_behind(mut self, on: bool) -> Self {
        self.park_aggregate_behind = on;
        self
    }
}

/// Where [`Store::reset_consumer`] moves a consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    /// The first event of the log: everything is handled again.
    Start,
    /// The durable end: only events appended from now on.
    End,
    /// This position: it and every later event are handled again.
    Position(u64),
    /// Just after the last event at or before this point (a position or a
    /// recorded time): the events after it are handled again.
    AsOf(AsOf),
}

/// A consumer as [`Store::consumers`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerInfo {
    /// Its name.
    pub name: String,
    /// The next position it will handle: every position below is handled.
    pub next_position: u64,
    /// The last position whose handling is committed (`None`: none yet).
    pub checkpoint: Option<u64>,
    /// When the checkpoint was committed, unix nanoseconds.
    pub committed_at: i64,
    /// Durable events after its checkpoint (filtered-out ones included).
    pub lag_events: u64,
    /// Bytes of log after its checkpoint.
    pub lag_bytes: u64,
    /// Events in its dead-letter list.
    pub parked: usize,
    /// Whether a handle (in any process) has it open now.
    pub active: bool,
}

/// Stops a running consumer from another thread; see [`Consumer::stop_handle`].
#[derive(Debug, Clone, Default)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    /// Asks the consumer's runner to commit and return: `run` stops after the
    /// event in hand (its retries included); `run_workers` after its workers
    /// handled what was queued for them; a caught-up runner within 50 ms.
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A named, checkpointed, resumable subscription; see [`Store::consumer`].
/// Holds the consumer's lock until dropped.
pub struct Consumer {
    name: String,
    store: Store,
    sub: Subscription,
    committer: Committer,
    parked: Mutex<ParkedLog>,
    options: ConsumerOptions,
    stop: StopHandle,
    _lock: DirLock,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("name", &self.name).field("next", &self.sub.position()).finish()
    }
}

impl Consumer {
    /// Opens (creating it if it does not exist) the consumer `name` of `store`.
    pub(crate) fn open(store: &Store, name: &str, options: ConsumerOptions) -> Result<Consumer> {
        let files = ConsumerFiles::new(store.dir(), name)?;
        std::fs::create_dir_all(&files.dir).map_err(|e| Error::io("create consumers folder", &files.dir, e))?;
        let lock = files.lock()?;
        let checkpoint = if files.checkpoint.exists() {
            CheckpointFile::open(&files.checkpoint)?
        } else {
            let next = match options.start {
                // The log's first retained position: nothing before it exists.
                StartFrom::Start => store.reader().first_position(),
                StartFrom::Position(p) => check_position(store, p)?,
                StartFrom::End => durable_end(store)?,
            };
            // The dead-letter list first: a checkpoint never exists without one.
            parked::create(&files.dir, &format!("{name}{PARKED_SUFFIX}"))?;
            let file_name = format!("{name}{CHECKPOINT_SUFFIX}");
            let cp = CheckpointFile::create(&files.dir, &file_name, next)?;
            crate::durable::sync_dir(store.dir())?;
            cp
        };
        let next = checkpoint.current().next;
        let end = durable_end(store)?;
        if next > end {
            // The log was cut below it (a repair): resuming would skip the
            // events written at those positions from now on.
            return Err(Error::PastEnd { position: next, end });
        }
        let parked = ParkedLog::open(&files.parked)?;
        let sub = store.subscribe(StartFrom::Position(next), options.filter.clone()).never_clamp();
        let now = Instant::now();
        let committer = Committer {
            checkpoint,
            auto: options.auto_commit,
            every_events: options.commit_every_events.max(1),
            every: options.commit_every,
            sync_interval: options.checkpoint_sync_interval,
            last_commit: now,
            last_sync: now,
            unsynced: false,
            since_clock: 0,
        };
        Ok(Consumer {
            name: name.to_string(),
            store: store.clone(),
            sub,
            committer,
            parked: Mutex::new(parked),
            options,
            stop: StopHandle::default(),
            _lock: lock,
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next position this consumer will look at (its subscription's cursor).
    pub fn position(&self) -> u64 {
        self.sub.position()
    }

    /// The committed checkpoint: every position below it is handled.
    pub fn committed(&self) -> u64 {
        self.committer.checkpoint.current().next
    }

    /// A handle that stops [`Consumer::run`] from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// The next batch of matching durable events, zero-copy, waiting at most
    /// `timeout` for one (see [`Subscription::batch`]). With auto-commit,
    /// asking for a batch first commits every event handed out before it:
    /// handle a batch completely before asking for the next.
    pub fn poll(&mut self, max: usize, timeout: Duration) -> Result<Batch<'_>> {
        let handled = self.sub.position();
        self.committer.auto_commit(handled, false)?;
        self.sub.batch(max, timeout)
    }

    /// Commits durably that every event at or before `position` is handled:
    /// after a crash the consumer resumes at `position + 1`. Fails with
    /// [`Error::PastEnd`] for a position that is not durable in the log.
    pub fn commit(&mut self, position: u64) -> Result<()> {
        let end = durable_end(&self.store)?;
        if position >= end {
            return Err(Error::PastEnd { position, end });
        }
        self.committer.store(position + 1, true)
    }

    /// The events in this consumer's dead-letter list, by position.
    pub fn parked(&self) -> Vec<ParkedEvent> {
        self.parked.lock().unwrap_or_else(|p| p.into_inner()).live().values().cloned().collect()
    }

    /// Removes a parked event from the dead-letter list for good (the event
    /// stays in the log). [`Error::NotParked`] if it is not parked.
    pub fn discard_parked(&mut self, position: u64) -> Result<()> {
        self.parked.get_mut().unwrap_or_else(|p| p.into_inner()).remove(position, true)
    }

    /// Asks for a parked event to be handed to the handler again: the next
    /// [`Consumer::run`] replays it before going on. [`Error::NotParked`] if
    /// it is not parked.
    pub fn request_replay(&mut self, position: u64) -> Result<()> {
        self.parked.get_mut().unwrap_or_else(|p| p.into_inner()).request_replay(position)
    }
}

/// A consumer's checkpoint file and when it last committed and synced.
struct Committer {
    checkpoint: CheckpointFile,
    auto: bool,
    every_events: u64,
    every: Duration,
    sync_interval: Duration,
    last_commit: Instant,
    last_sync: Instant,
    unsynced: bool,
    /// Events handled since the clock was last read for `every`.
    since_clock: u32,
}

impl Committer {
    /// After the runner handled an event: commits `next` (one past it) if a
    /// threshold is reached. Counts per event; reads the clock only every
    /// [`COMMIT_CLOCK_EVENTS`] events.
    fn after_event(&mut self, next: u64) -> Result<()> {
        self.since_clock += 1;
        let by_count = next.saturating_sub(self.checkpoint.current().next) >= self.every_events;
        if by_count || self.since_clock >= COMMIT_CLOCK_EVENTS {
            self.since_clock = 0;
            return self.auto_commit(next, false);
        }
        Ok(())
    }

    /// Commits `next` if auto-commit is on and a threshold is reached (or
    /// `flush`: the consumer caught up or stops), syncing per the options.
    fn auto_commit(&mut self, next: u64, flush: bool) -> Result<()> {
        if !self.auto {
            return Ok(());
        }
        let current = self.checkpoint.current().next;
        if next != current {
            let due = next.saturating_sub(current) >= self.every_events || self.last_commit.elapsed() >= self.every;
            if flush || due {
                let sync = flush || self.last_sync.elapsed() >= self.sync_interval;
                return self.store(next, sync);
            }
        }
        if flush && self.unsynced {
            self.checkpoint.sync()?;
            self.unsynced = false;
            self.last_sync = Instant::now();
        }
        Ok(())
    }

    fn store(&mut self, next: u64, sync: bool) -> Result<()> {
        self.checkpoint.store(next, sync)?;
        self.last_commit = Instant::now();
        if sync {
            self.last_sync = self.last_commit;
        }
        self.unsynced = !sync;
        Ok(())
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        // Best effort: the last automatic commit becomes durable.
        if self.committer.unsynced {
            let _ = self.committer.checkpoint.sync();
        }
    }
}

/// The paths of one consumer's files.
pub(crate) struct ConsumerFiles {
    name: String,
    dir: PathBuf,
    checkpoint: PathBuf,
    parked: PathBuf,
    lock: PathBuf,
}

impl ConsumerFiles {
    /// The files of consumer `name` of the store in `store_dir`; checks the name.
    fn new(store_dir: &Path, name: &str) -> Result<ConsumerFiles> {
        check_name(name)?;
        let dir = store_dir.join(CONSUMERS_DIR);
        Ok(ConsumerFiles {
            name: name.to_string(),
            checkpoint: dir.join(format!("{name}{CHECKPOINT_SUFFIX}")),
            parked: dir.join(format!("{name}{PARKED_SUFFIX}")),
            lock: dir.join(format!("{name}{LOCK_SUFFIX}")),
            dir,
        })
    }

    /// The files of an existing consumer: [`Error::UnknownConsumer`] otherwise.
    fn existing(store_dir: &Path, name: &str) -> Result<ConsumerFiles> {
        let files = ConsumerFiles::new(store_dir, name)?;
        if !files.checkpoint.exists() {
            return Err(Error::UnknownConsumer { name: name.to_string(), dir: store_dir.to_path_buf() });
        }
        Ok(files)
    }

    /// Who has the consumer open, if anyone: asks without taking the lock.
    fn holder(&self) -> Result<Option<crate::error::LockHolder>> {
        directory::file_lock_holder(&self.canonical_lock()?)
    }

    /// The lock file's path with the folder made canonical.
    fn canonical_lock(&self) -> Result<PathBuf> {
        let dir = std::fs::canonicalize(&self.dir).map_err(|e| Error::io("resolve consumers folder", &self.dir, e))?;
        Ok(dir.join(self.lock.file_name().unwrap_or_default()))
    }

    /// Takes the consumer's lock, without waiting. The path is made
    /// canonical first: the lock is registered per process by path, and two
    /// spellings of one store must not make two owners.
    fn lock(&self) -> Result<DirLock> {
        directory::lock_file(&self.canonical_lock()?).map_err(|e| match e {
            Error::Locked { path, holder } => Error::ConsumerLocked { name: self.name.clone(), path, holder },
            other => other,
        })
    }
}

/// Removes every dead-letter record naming one of `ids` (aggregates being
/// erased) from every consumer of the store in `store_dir`, each under its
/// consumer's lock. Returns the consumers it could not scrub because they
/// are in use (their records stay).
pub(crate) fn scrub_parked(store_dir: &Path, ids: &std::collections::HashSet<String>) -> Result<Vec<String>> {
    let dir = store_dir.join(CONSUMERS_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list consumers folder", &dir, e)),
    };
    let mut busy = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list consumers folder", &dir, e))?;
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(PARKED_SUFFIX)) else { continue };
        let Ok(files) = ConsumerFiles::new(store_dir, name) else { continue };
        let bytes = std::fs::read(&files.parked).map_err(|e| Error::io("read dead-letter list", &files.parked, e))?;
        let mentions = ids.iter().any(|id| bytes.windows(id.len()).any(|w| w == id.as_bytes()));
        if !mentions {
            continue;
        }
        match files.lock() {
            Ok(_lock) => {
                parked::scrub(&files.parked, ids)?;
            }
            Err(Error::ConsumerLocked { .. }) => busy.push(name.to_string()),
            Err(e) => return Err(e),
        }
    }
    Ok(busy)
}

/// Consumer names: 1 to [`CONSUMER_NAME_MAX`] bytes of ASCII letters,
/// digits, `_`, `-` and `.`, not starting with `.` or `-` (they name files).
fn check_name(name: &str) -> Result<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if name.is_empty() || name.len() > CONSUMER_NAME_MAX || name.starts_with(['.', '-']) || !name.chars().all(ok_char) {
        return Err(Error::InvalidInput(format!(
            "consumer name {name:?} is not 1 to {CONSUMER_NAME_MAX} ASCII letters, digits, '_', '-' or '.' \
             (not starting with '.' or '-')"
        )));
    }
    Ok(())
}

/// One past the last durable position (a read-only store first catches up
/// with its writer).
fn durable_end(store: &Store) -> Result<u64> {
    Ok(store.refresh()?.map_or_else(|| store.reader().first_position(), |p| p + 1))
}

/// `next` if a consumer may resume there (at most the durable end).
fn check_position(store: &Store, next: u64) -> Result<u64> {
    let end = durable_end(store)?;
    if next > end {
        return Err(Error::PastEnd { position: next, end });
    }
    Ok(next)
}

/// Every consumer of the store in `dir`, by name.
pub(crate) fn list(store: &Store) -> Result<Vec<ConsumerInfo>> {
    let dir = store.dir().join(CONSUMERS_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list consumers", &dir, e)),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(CHECKPOINT_SUFFIX)).map(str::to_string))
        .filter(|n| check_name(n).is_ok())
        .collect();
    names.sort();
    names.iter().map(|n| info(store, n)).collect()
}

/// One consumer, as listed.
pub(crate) fn info(store: &Store, name: &str) -> Result<ConsumerInfo> {
    let files = ConsumerFiles::existing(store.dir(), name)?;
    let stored = checkpoint::read(&files.checkpoint)?;
    let parked = parked::read(&files.parked)?.len();
    let active = files.holder()?.is_some();
    let end = durable_end(store)?;
    let reader = store.reader();
    Ok(ConsumerInfo {
        name: name.to_string(),
        next_position: stored.next,
        checkpoint: stored.next.checked_sub(1),
        committed_at: stored.at,
        lag_events: end.saturating_sub(stored.next.max(reader.first_position())),
        lag_bytes: reader.log_bytes_between(stored.next, end),
        parked,
        active,
    })
}

/// Moves an idle consumer's checkpoint; returns the new next position.
pub(crate) fn reset(store: &Store, name: &str, to: ResetTo) -> Result<u64> {
    let files = ConsumerFiles::existing(store.dir(), name)?;
    let _lock = files.lock()?;
    let next = match to {
        ResetTo::Start => store.reader().first_position(),
        ResetTo::End => durable_end(store)?,
        ResetTo::Position(p) => check_position(store, p)?,
        ResetTo::AsOf(as_of) => store.reader().position_of(as_of)?.map_or(0, |p| p + 1).min(durable_end(store)?),
    };
    let mut cp = CheckpointFile::open(&files.checkpoint)?;
    cp.store(next, true)?;
    Ok(next)
}

/// Removes an idle consumer's files: the dead-letter list first, so that a
/// crash half way leaves a consumer without dead letters, never dead letters
/// a new consumer of that name would inherit. The lock file stays: removing
/// a lock file others may have opened would let two handles lock two files.
pub(crate) fn delete(store: &Store, name: &str) -> Result<()> {
    let files = ConsumerFiles::existing(store.dir(), name)?;
    let _lock = files.lock()?;
    for path in [&files.parked, &files.checkpoint] {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("delete consumer", path, e)),
        }
    }
    crate::durable::sync_dir(&files.dir)
}

/// Runs `f` on an idle consumer's dead-letter list (for the CLI and
/// [`Store::parked`]-style calls that do not open the consumer).
pub(crate) fn with_parked<T>(store: &Store, name: &str, f: impl FnOnce(&mut ParkedLog) -> Result<T>) -> Result<T> {
    let files = ConsumerFiles::existing(store.dir(), name)?;
    let _lock = files.lock()?;
    let mut log = ParkedLog::open(&files.parked)?;
    f(&mut log)
}

/// The events parked now by consumer `name`, read without its lock.
pub(crate) fn parked_events(store: &Store, name: &str) -> Result<Vec<ParkedEvent>> {
    let files = ConsumerFiles::existing(store.dir(), name)?;
    Ok(parked::read(&files.parked)?.into_values().collect())
}
