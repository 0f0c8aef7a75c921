//! The public handle, [`Store`]: opening (directory, lock, recovery, the
//! writer thread), appends (argument checks in the caller's thread, then a
//! round trip to the writer), snapshots, stats, and [`Store::reader`] for
//! reads. It owns no algorithm of its own: each step lives in its module
//! (`directory`, `recovery`, `writer`, `reader`, `snapshot`, `verify`).

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::Sender;

use crate::consumer::{self, Consumer, ConsumerInfo, ConsumerOptions, ParkedEvent, ResetTo};
use crate::directory::{self, DirLock, LockKind, MARKER_NAME};
use crate::error::{Error, Result};
use crate::event::{AppendResult, AsOf, Direction, ExpectedVersion, NewEvent, RecordedEvent, SchemaVersion};
use crate::filter::Filter;
use crate::follow;
use crate::handoff::{shutdown, spin_waiters, wait_for_ack, SpinGate};
use crate::load::LoadOptions;
use crate::options::{Durability, Options};
use crate::reader::{Loaded, Reader};
use crate::record;
use crate::recovery::{self, Recovered, RecoveryReport};
use crate::segment::HEADER_BYTES;
use crate::shared::Shared;
use crate::snapshot::dictionary::{Dictionaries, DictionaryInfo};
use crate::snapshot::{Snapshot, SnapshotConfig, SnapshotInfo, Snapshots};
use crate::streams::{DeleteMode, StreamChange, StreamMeta, StreamState};
use crate::subscription::{StartFrom, Subscription};
use crate::upcast::Upcasters;
use crate::verify::{self, VerifyReport};
use crate::watermark::{self, WatermarkFile};
use crate::writer::{Active, AppendPart, AppendRequest, Command, Writer};

struct Inner {
    shared: Arc<Shared>,
    tx: Sender<Command>,
    writer: Mutex<Option<JoinHandle<()>>>,
    options: Options,
    report: RecoveryReport,
    read_only: bool,
    /// Appenders currently waiting for their acknowledgement.
    waiting: AtomicUsize,
    /// How many waiting appenders may poll for their ack instead of sleeping.
    spin_waiters: usize,
    /// Whether polling for acks has been paying lately.
    spin_gate: SpinGate,
    _lock: Arc<DirLock>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        shutdown(&self.tx, &self.writer).ok();
        self.shared.close();
    }
}

/// An open store. Cheap to clone; every clone shares one writer thread.
/// `Send + Sync`: append and read from any number of threads.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl Store {
    /// The state the writer publishes (for the engine's own unit tests).
    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.inner.shared.dir).finish()
    }
}

/// Counters and sizes of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Visible events.
    pub events: u64,
    /// Aggregates with at least one event.
    pub aggregates: u64,
    /// Segment files.
    pub segments: u64,
    /// Bytes of segment files on disk (preallocated size).
    pub segment_file_bytes: u64,
    /// Bytes of those files holding frames (headers included).
    pub log_bytes: u64,
    /// Approximate heap bytes of the index: the active segment's entries and
    /// the per-aggregate directory (sealed segments' index files are mapped, not counted).
    pub index_bytes: u64,
    /// Bytes of index checkpoint files.
    pub index_file_bytes: u64,
    /// `fdatasync` calls made by the writer since open.
    pub fsyncs: u64,
    /// Group commits made by the writer since open.
    pub group_commits: u64,
    /// Snapshot files.
    pub snapshot_files: u64,
    /// Snapshots indexed (at most `snapshots_keep` per aggregate).
    pub snapshots: u64,
    /// Bytes of snapshot files.
    pub snapshot_bytes: u64,
    /// Trained snapshot dictionaries.
    pub snapshot_dictionaries: u64,
}

impl Store {
    /// Opens the store in `dir`, creating it if `dir` is missing or empty.
    /// Takes an exclusive lock on the directory, recovers (see
    /// [`RecoveryReport`]) and starts the writer thread. Fails with
    /// [`Error::Locked`] if another opener holds the store, [`Error::NotAStore`]
    /// for a directory with other contents, [`Error::Corrupt`] for corruption
    /// before the tail (unless `options.repair`).
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Store> {
        Store::open_mode(dir.as_ref(), options, false)
    }

    /// Opens an existing store for reading only, without changing any file,
    /// and starts no writer: appends and snapshot saves fail with
    /// [`Error::ReadOnly`]. Any number of read-only opens, in any processes,
    /// may run beside one writer (a read-write open in another process or
    /// this one). What `factlog read`, `tail`, `stats`, `verify` and `dump` use.
    ///
    /// While a writer is live, the view ends at the durable watermark it
    /// publishes in the `WATERMARK` file, and it follows that watermark:
    /// [`Store::reader`] and [`Store::refresh`] catch up with it, and
    /// subscriptions keep delivering new events (polling every millisecond).
    /// If the writer has not published yet (it is still recovering), the
    /// open waits up to `options.lock_wait`, then fails with
    /// [`Error::Locked`]. With no live writer it shows the whole log and
    /// reports a torn tail without cutting it; when a writer opens later,
    /// the store follows it from there.
    ///
    /// With `options.repair` it is a dry run of a repair:
    /// [`RecoveryReport::repaired`] says exactly what a read-write open with
    /// `repair` would cut and remove, the store shows the log up to that cut,
    /// and no file changes; it fails with [`Error::Locked`] while a writer
    /// is live. A repair (read-write with `repair`) waits for every
    /// read-only open to close, as it may rewrite what they show.
    pub fn open_read_only(dir: impl AsRef<Path>, options: Options) -> Result<Store> {
        Store::open_mode(dir.as_ref(), options, true)
    }

    fn open_mode(dir: &Path, options: Options, read_only: bool) -> Result<Store> {
        options.validate()?;
        let lock = Arc::new(Store::lock(dir, read_only, &options)?);
        let (rec, follower) = if read_only {
            let (rec, follower) = follow::open(dir, &options, Arc::clone(&lock))?;
            (rec, Some(follower))
        } else {
            if options.repair {
                // IMPORTANT: before the cut, which may fall below what the old record claims.
                watermark::remove(dir)?;
            }
            (recovery::recover(dir, &options, false)?, None)
        };
        let (snapshots, snap_rec) = Snapshots::open(dir, snapshot_config(&options, read_only))?;
        let Recovered { index, active_write_offset, dedupe, mut report } = rec;
        report.snapshots = snap_rec;
        let last_recorded_at = last_recorded_at(&index)?;
        let active_seg = index.segments().last().cloned();
        let streams = crate::streams::Rules::load(dir)?;
        let shared = Arc::new(Shared::new(dir.to_path_buf(), index, snapshots, streams));
        let _ = shared.lock_probe.set(Arc::downgrade(&lock));
        if read_only {
            let _ = shared.lock_hold.set(Arc::clone(&lock));
        }
        let clamp = options.retention.is_some_and(|r| r.clamp_reads_below_start);
        shared.clamp_below_start.store(clamp, Ordering::Relaxed);
        let (tx, rx) = crossbeam_channel::bounded(options.max_pending_appends);
        let handle = if let Some(follower) = follower {
            // Never fails: the store was made just now.
            let _ = shared.follower.set(Box::new(follower));
            None
        } else {
            let seg = active_seg.ok_or_else(|| Error::corrupt(dir, 0, "store has no segment"))?;
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&seg.path)
                .map_err(|e| Error::io("open segment for writing", &seg.path, e))?;
            let watermark = Store::publish_recovered(dir, &file, &seg, active_write_offset, shared.durable_end())?;
            let active = Active { file, seg, write_offset: active_write_offset };
            let writer = Writer::new(Arc::clone(&shared), options.clone(), active, dedupe, last_recorded_at, watermark);
            let handle = std::thread::Builder::new()
                .name("factlog-writer".into())
                .spawn(move || writer.run(rx))
                .map_err(|e| Error::io("spawn writer thread", dir, e))?;
            Some(handle)
        };
        let waiting = AtomicUsize::new(0);
        let writer = Mutex::new(handle);
        let spin_waiters = spin_waiters();
        let spin_gate = SpinGate::default();
        let inner =
            Inner { shared, tx, writer, options, report, read_only, waiting, spin_waiters, spin_gate, _lock: lock };
        Ok(Store { inner: Arc::new(inner) })
    }

    /// Makes the recovered log durable and publishes its end for read-only
    /// stores in other processes, before the writer starts.
    ///
    /// IMPORTANT: recovery keeps every complete batch it finds, including
    /// ones a killed writer wrote but never synced (they were in the page
    /// cache); the `fdatasync` makes them durable before the watermark covers them.
    fn publish_recovered(
        dir: &Path,
        file: &std::fs::File,
        seg: &crate::segment::Segment,
        end_offset: u64,
        end: u64,
    ) -> Result<WatermarkFile> {
        file.sync_data().map_err(|e| Error::io("fdatasync recovered segment", &seg.path, e))?;
        let watermark = WatermarkFile::open(dir, crate::event::now_nanos() as u64)?;
        watermark.publish(end, seg.first_position, end_offset)?;
        Ok(watermark)
    }

    /// Prepares (read-write: creates if missing or empty) and locks the store
    /// directory: a read-only open beside any writer but a repair, a
    /// read-write one beside readers (but a repair beside none).
    fn lock(dir: &Path, read_only: bool, options: &Options) -> Result<DirLock> {
        let wait = options.lock_wait;
        if read_only {
            if !dir.join(MARKER_NAME).is_file() {
                return Err(Error::NotAStore { path: dir.to_path_buf(), reason: format!("no {MARKER_NAME} file") });
            }
            directory::prepare_dir(dir)?;
            return directory::lock_dir(dir, LockKind::Reader, wait);
        }
        if !dir.join(MARKER_NAME).exists() {
            directory::prepare_dir(dir)?;
        }
        let kind = if options.repair { LockKind::RepairWriter } else { LockKind::Writer };
        let lock = directory::lock_dir(dir, kind, wait)?;
        // Again under the lock: another opener may have created it meanwhile.
        directory::prepare_dir(dir)?;
        Ok(lock)
    }

    /// Whether this handle was opened with [`Store::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.inner.read_only
    }

    /// A read-only store: catches up with the writer process's published
    /// durable watermark now (one `pread` of the `WATERMARK` file when it has
    /// not moved), indexing the new events with full checks. Returns the
    /// durable position afterwards, as [`Store::durable_position`]. A
    /// read-write store has nothing to catch up with: it returns that too.
    /// [`Store::reader`] and waiting subscriptions call it themselves. The
    /// first failure (a corrupt frame below the watermark, an unreadable
    /// watermark while a writer is live) stops following for good: this and
    /// later calls fail, subscriptions end with [`Error::Closed`], and
    /// readers keep the view they had.
    pub fn refresh(&self) -> Result<Option<u64>> {
        self.inner.shared.follow()?;
        Ok(self.durable_position())
    }

    /// Why the store is poisoned, as the error appends would get.
    pub(crate) fn poison_error(&self) -> Option<Error> {
        self.inner.shared.poison_cause().map(|cause| Error::Poisoned { cause })
    }

    fn check_writable(&self) -> Result<()> {
        if self.inner.read_only {
            return Err(Error::ReadOnly { path: self.inner.shared.dir.clone() });
        }
        Ok(())
    }

    /// What recovery found and did when this store was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.report
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.shared.dir
    }

    /// Appends `events` to `aggregate_id` as one atomic batch, if the
    /// aggregate's version matches `expected`. Returns once the batch is
    /// durable (`Sync`) or written (`Buffered`). Re-appending a batch whose
    /// event ids are already stored at exactly this place returns the
    /// original result with `deduplicated: true` and writes nothing.
    pub fn append(&self, aggregate_id: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> Result<AppendResult> {
        self.check_append(aggregate_id, &events)?;
        let part = AppendPart { aggregate_id: aggregate_id.to_string(), expected, events };
        let mut results = self.send_append(vec![part])?;
        results.pop().ok_or_else(|| Error::InvalidInput("the writer returned no result".into()))
    }

    /// Appends one batch to each of several aggregates as **one** atomic
    /// batch: all of them or none, in one group commit and one
    /// acknowledgement (multi-aggregate transactions, as process managers and
    /// sagas need). Each batch has its own expected version; if any does not
    /// match, nothing is written and the error is the
    /// [`Error::WrongExpectedVersion`] naming that aggregate and its actual
    /// version. The batches get consecutive positions in the order given.
    /// Returns one [`AppendResult`] per batch, in order. A retry of the same
    /// call (same event ids) returns the original results with
    /// `deduplicated: true` and writes nothing.
    ///
    /// Each aggregate may appear once, every batch must be non-empty, and
    /// all events together count against `Options::max_batch_events` and must
    /// fit in one segment; otherwise [`Error::InvalidInput`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use factlog::{EventId, ExpectedVersion, NewEvent, Options, Store};
    /// let store = Store::open(dir.path(), Options::default())?;
    /// store.append("account-1", ExpectedVersion::NoStream, vec![NewEvent::new(EventId::new_v7(), "AccountOpened", "{}")])?;
    /// // A transfer: both sides or neither.
    /// let results = store.append_many([
    ///     ("account-1", ExpectedVersion::Exact(0), vec![NewEvent::new(EventId::new_v7(), "FundsWithdrawn", r#"{"amount":30}"#)]),
    ///     ("account-2", ExpectedVersion::NoStream, vec![NewEvent::new(EventId::new_v7(), "FundsDeposited", r#"{"amount":30}"#)]),
    /// ])?;
    /// assert_eq!((results[0].last_version, results[1].last_version), (1, 0));
    /// assert_eq!(results[1].first_position, results[0].last_position + 1);
    /// # Ok::<(), factlog::Error>(())
    /// ```
    pub fn append_many<S: AsRef<str>>(
        &self,
        batches: impl IntoIterator<Item = (S, ExpectedVersion, Vec<NewEvent>)>,
    ) -> Result<Vec<AppendResult>> {
        let parts: Vec<AppendPart> = batches
            .into_iter()
            .map(|(id, expected, events)| AppendPart { aggregate_id: id.as_ref().to_string(), expected, events })
            .collect();
        if parts.is_empty() {
            return Err(Error::InvalidInput("append_many with no batches".into()));
        }
        let mut seen = std::collections::HashSet::with_capacity(parts.len());
        let mut ids = std::collections::HashMap::new();
        let mut total = 0usize;
        for part in &parts {
            if !seen.insert(part.aggregate_id.as_str()) {
                return Err(Error::InvalidInput(format!(
                    "aggregate {:?} appears twice in one append_many: give it one batch",
                    part.aggregate_id
                )));
            }
            self.check_append(&part.aggregate_id, &part.events)?;
            for ev in &part.events {
                if let Some(other) = ids.insert(ev.event_id, part.aggregate_id.as_str()) {
                    return Err(Error::InvalidInput(format!(
                        "event id {} appears twice in one append_many (for aggregates {other:?} and {:?})",
                        crate::error::fmt_id(&ev.event_id),
                        part.aggregate_id
                    )));
                }
            }
            total += part.events.len();
        }
        if total > self.inner.options.max_batch_events {
            return Err(Error::InvalidInput(format!(
                "append_many of {total} events over {} aggregates is over the batch limit of {}",
                parts.len(),
                self.inner.options.max_batch_events
            )));
        }
        self.send_append(parts)
    }

    /// Hands checked parts to the writer and waits for its reply.
    fn send_append(&self, parts: Vec<AppendPart>) -> Result<Vec<AppendResult>> {
        self.check_writable()?;
        if let Some(cause) = self.inner.shared.poison_cause() {
            return Err(Error::Poisoned { cause });
        }
        let (reply, rx) = crossbeam_channel::bounded(1);
        let req = AppendRequest { parts, reply };
        let waiting = &self.inner.waiting;
        let spin = waiting.fetch_add(1, Ordering::AcqRel) < self.inner.spin_waiters;
        let sent = self.inner.tx.send(Command::Append(req)).map_err(|_| Error::Closed);
        let reply = sent.and_then(|()| wait_for_ack(&rx, spin, &self.inner.spin_gate));
        waiting.fetch_sub(1, Ordering::AcqRel);
        reply?
    }

    fn check_append(&self, aggregate_id: &str, events: &[NewEvent]) -> Result<()> {
        let opts = &self.inner.options;
        if events.is_empty() {
            return Err(Error::InvalidInput(format!("empty batch for aggregate {aggregate_id:?}")));
        }
        if events.len() > opts.max_batch_events {
            return Err(Error::InvalidInput(format!(
                "batch of {} events for aggregate {aggregate_id:?} is over the limit of {}",
                events.len(),
                opts.max_batch_events
            )));
        }
        for (i, ev) in events.iter().enumerate() {
            record::check_names(aggregate_id, &ev.event_type)
                .map_err(|r| Error::InvalidInput(format!("event {i} for aggregate {aggregate_id:?}: {r}")))?;
            let approx = (ev.data.len() + ev.metadata.len() + aggregate_id.len() + ev.event_type.len()) as u64;
            if approx > u64::from(opts.max_event_bytes) {
                return Err(Error::EventTooLarge {
                    aggregate_id: aggregate_id.to_string(),
                    index: i,
                    size: approx,
                    max: u64::from(opts.max_event_bytes),
                });
            }
        }
        Ok(())
    }

    /// A consistent, zero-copy view of everything visible now. On a
    /// read-only store it first catches up with the writer process, as
    /// [`Store::refresh`] does (an error there leaves the view as it was;
    /// `refresh` reports it).
    pub fn reader(&self) -> Reader {
        let _ = self.inner.shared.follow();
        Reader::new(&self.inner.shared)
    }

    /// Up to `limit` events from `from_position` on, in global order, as owned copies.
    pub fn read_all_owned(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>> {
        let r = self.reader();
        r.read_all(from_position).take(limit).map(|e| e.map(|e| e.to_recorded())).collect()
    }

    /// Up to `limit` events of one aggregate from `from_version`, as owned copies.
    pub fn read_aggregate_owned(
        &self,
        aggregate_id: &str,
        from_version: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let r = self.reader();
        let events = r.read_aggregate(aggregate_id, from_version, direction).take(limit);
        events.map(|e| e.map(|e| e.to_recorded())).collect()
    }

    /// The upcasters given in [`Options::upcasters`], for upcasting reads
    /// of your own ([`Upcasters::events`] over a [`Reader`] iterator,
    /// [`Loaded::upcast_events`], [`Subscription::upcast`]).
    pub fn upcasters(&self) -> &Upcasters {
        &self.inner.options.upcasters
    }

    /// [`Store::read_all_owned`], with each event upcast by
    /// [`Options::upcasters`]. Fails with [`Error::UpcastFailed`] on the
    /// first event an upcaster fails on.
    pub fn read_all_upcast(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>> {
        let r = self.reader();
        let upcasters = self.upcasters();
        let events = upcasters.events(r.read_all(from_position).take(limit));
        events.map(|e| e.map(|e| e.into_recorded())).collect()
    }

    /// [`Store::read_aggregate_owned`], with each event upcast by
    /// [`Options::upcasters`]. Fails with [`Error::UpcastFailed`] on the
    /// first event an upcaster fails on.
    pub fn read_aggregate_upcast(
        &self,
        aggregate_id: &str,
        from_version: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let r = self.reader();
        let upcasters = self.upcasters();
        let events = upcasters.events(r.read_aggregate(aggregate_id, from_version, direction).take(limit));
        events.map(|e| e.map(|e| e.into_recorded())).collect()
    }

    /// The aggregate's current (visible) version, `None` if it has no events.
    pub fn aggregate_version(&self, aggregate_id: &str) -> Option<u64> {
        let end = self.inner.shared.visible_end.load(Ordering::Acquire);
        let current = self.inner.shared.index().version_below(aggregate_id, end);
        // No event of it left in the log: the version its removed events reached.
        self.inner.shared.streams().current_version(aggregate_id, current)
    }

    /// Position of the last visible event, `None` for an empty store.
    pub fn last_position(&self) -> Option<u64> {
        self.inner
            .shared
            .visible_end
            .load(Ordering::Acquire)
            .checked_sub(1)
            .filter(|_| self.first_position_raw() < self.inner.shared.visible_end.load(Ordering::Acquire))
    }

    fn first_position_raw(&self) -> u64 {
        self.inner.shared.segments().first().map_or(0, |s| s.first_position)
    }

    /// Position of the last event known to be on disk: every event at or
    /// below it survives a machine crash. In `Sync` mode equal to
    /// [`Store::last_position`]. Cheap (one atomic load): the signal live
    /// subscriptions wait on.
    pub fn durable_position(&self) -> Option<u64> {
        let end = self.inner.shared.durable_end.load(Ordering::Acquire);
        end.checked_sub(1).filter(|_| self.first_position_raw() < end)
    }

    /// Forces an `fdatasync` of everything written (useful in `Buffered` mode).
    pub fn sync(&self) -> Result<()> {
        self.check_writable()?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.inner.tx.send(Command::Sync(tx)).map_err(|_| Error::Closed)?;
        rx.recv().map_err(|_| Error::Closed)??;
        self.inner.shared.snapshots.sync()
    }

    /// Counters and sizes.
    pub fn stats(&self) -> Stats {
        let shared = &self.inner.shared;
        let mut stats = Stats {
            index_file_bytes: index_file_bytes(&shared.dir),
            fsyncs: shared.fsyncs.load(Ordering::Relaxed),
            group_commits: shared.groups.load(Ordering::Relaxed),
            ..Stats::default()
        };
        {
            let snaps = &shared.snapshots;
            (stats.snapshot_files, stats.snapshots, stats.snapshot_bytes) = snaps.stats();
            stats.snapshot_dictionaries = snaps.dictionaries() as u64;
        }
        // One index lock for every log figure, so they describe one moment:
        // the writer publishes the index and the watermark under the same lock.
        let idx = shared.index();
        let visible_end = shared.visible_end.load(Ordering::Acquire);
        for (seg, last_offset) in idx.last_offsets() {
            stats.segment_file_bytes += seg.len();
            stats.log_bytes += match last_offset {
                Some(off) => seg.frame_end(u64::from(off)),
                None => HEADER_BYTES,
            };
        }
        stats.events = visible_end.saturating_sub(idx.first_position());
        stats.aggregates = idx.aggregate_count() as u64;
        stats.segments = idx.segments().len() as u64;
        stats.index_bytes = idx.memory_bytes();
        stats
    }

    /// Saves a snapshot of `aggregate_id`'s state as of `version` (events
    /// `0..=version` folded), compressed with zstd, in the snapshot files.
    /// Fails with [`Error::SnapshotAhead`] if the aggregate has not reached
    /// `version`. Durable on return in `Sync` mode.
    pub fn save_snapshot(
        &self,
        aggregate_id: &str,
        version: u64,
        schema: SchemaVersion,
        state: &[u8],
    ) -> Result<SnapshotInfo> {
        self.check_writable()?;
        record::check_names(aggregate_id, "x").map_err(|e| Error::InvalidInput(e.to_string()))?;
        let actual = self.aggregate_version(aggregate_id);
        if actual.is_none_or(|a| a < version) {
            return Err(Error::SnapshotAhead { aggregate_id: aggregate_id.to_string(), version, actual });
        }
        let snaps = &self.inner.shared.snapshots;
        snaps.save(aggregate_id, version, schema.0, state)
    }

    /// A subscription to the whole log from `from`, delivering the durable
    /// events that pass `filter` in global order: first those already in the
    /// log, then each new one as soon as it is durable, with no gap and no
    /// duplicate. See [`Subscription`].
    pub fn subscribe(&self, from: StartFrom, filter: Filter) -> Subscription {
        Subscription::all(Arc::clone(&self.inner.shared), from, filter)
    }

    /// A subscription to one aggregate's durable events in version order,
    /// from a version (`StartFrom::Position(v)`), its first or its next one.
    pub fn subscribe_aggregate(&self, aggregate_id: &str, from: StartFrom) -> Subscription {
        Subscription::aggregate(Arc::clone(&self.inner.shared), aggregate_id, from)
    }

    /// Opens the durable consumer `name`, creating it (at
    /// `options.start`) if it does not exist: a subscription that resumes
    /// after its last committed checkpoint, with a dead-letter list. Its
    /// files live in `consumers/` and need only the consumer's own lock, so
    /// it works on a read-only store too, in any process. Fails with
    /// [`Error::ConsumerLocked`] while another handle has it open,
    /// [`Error::InvalidInput`] for a bad name, [`Error::Corrupt`] naming the
    /// file if its checkpoint is damaged (never a silent restart from 0).
    pub fn consumer(&self, name: &str, options: ConsumerOptions) -> Result<Consumer> {
        Consumer::open(self, name, options)
    }

    /// Every durable consumer of the store with its checkpoint, lag and
    /// parked count, by name.
    pub fn consumers(&self) -> Result<Vec<ConsumerInfo>> {
        consumer::list(self)
    }

    /// One durable consumer, as [`Store::consumers`] lists it
    /// ([`Error::UnknownConsumer`] if there is none of that name).
    pub fn consumer_info(&self, name: &str) -> Result<ConsumerInfo> {
        consumer::info(self, name)
    }

    /// Moves a consumer that nobody has open to the start, the end, a
    /// position or a point in time; returns its new next position. Fails with
    /// [`Error::PastEnd`] for a position beyond the durable end,
    /// [`Error::ConsumerLocked`] while it is open somewhere.
    pub fn reset_consumer(&self, name: &str, to: ResetTo) -> Result<u64> {
        consumer::reset(self, name, to)
    }

    /// Deletes a consumer that nobody has open: its checkpoint and
    /// dead-letter list (the events stay in the log).
    pub fn delete_consumer(&self, name: &str) -> Result<()> {
        consumer::delete(self, name)
    }

    /// The events in a consumer's dead-letter list, by position (readable
    /// while the consumer runs).
    pub fn parked_events(&self, name: &str) -> Result<Vec<ParkedEvent>> {
        consumer::parked_events(self, name)
    }

    /// Asks for a parked event of a consumer nobody has open to be handed to
    /// its handler again when it next runs ([`Consumer::request_replay`]).
    pub fn request_parked_replay(&self, name: &str, position: u64) -> Result<()> {
        consumer::with_parked(self, name, |log| log.request_replay(position))
    }

    /// Removes a parked event from the dead-letter list of a consumer nobody
    /// has open ([`Consumer::discard_parked`]); the event stays in the log.
    pub fn discard_parked(&self, name: &str, position: u64) -> Result<()> {
        consumer::with_parked(self, name, |log| log.remove(position, true))
    }

    /// The kept snapshots (at most `snapshots_keep` per aggregate) of the
    /// aggregates whose id starts with `prefix` (`""` for all), by aggregate
    /// and version, without reading them.
    pub fn snapshots(&self, prefix: &str) -> Vec<crate::SnapshotEntry> {
        self.inner.shared.snapshots.list(prefix)
    }

    /// The newest snapshot of an aggregate, decompressed.
    pub fn latest_snapshot(&self, aggregate_id: &str) -> Result<Option<Snapshot>> {
        self.snapshot_at_or_before(aggregate_id, u64::MAX)
    }

    /// The newest kept snapshot at or before `version`.
    pub fn snapshot_at_or_before(&self, aggregate_id: &str, version: u64) -> Result<Option<Snapshot>> {
        self.inner.shared.snapshots.read(aggregate_id, version)
    }

    /// Trains a zstd dictionary on `samples` (example snapshot states, at
    /// least 8) and uses it, from now on, for every snapshot of an aggregate
    /// whose id starts with `prefix` (`""` for all; where prefixes overlap
    /// the longest wins, then the newest dictionary). `max_dict_bytes`
    /// bounds its size ([`crate::DICT_BYTES_MIN`]..=[`crate::DICT_BYTES_MAX`];
    /// 16 KiB is a good start). Small, alike states compress several times
    /// better with one (see README, W7). The dictionary is stored durably in
    /// `snapshots/` before this returns and is never removed: snapshots
    /// compressed with it name it. Snapshots saved earlier are unchanged.
    pub fn train_snapshot_dictionary(
        &self,
        prefix: &str,
        samples: &[&[u8]],
        max_dict_bytes: usize,
    ) -> Result<DictionaryInfo> {
        self.check_writable()?;
        if prefix.len() > crate::NAME_BYTES_MAX {
            return Err(Error::InvalidInput(format!(
                "dictionary prefix of {} bytes is longer than an aggregate id can be",
                prefix.len()
            )));
        }
        // Training takes a while; snapshot reads and saves go on meanwhile.
        let dict = Dictionaries::train(prefix, samples, max_dict_bytes)?;
        self.inner.shared.snapshots.install_dictionary(prefix, &dict)
    }

    /// Rewrites sealed snapshot files whose records are mostly superseded,
    /// crash-safely. Returns the number of files compacted. (Also runs
    /// automatically whenever a snapshot file is sealed.)
    pub fn compact_snapshots(&self) -> Result<usize> {
        self.check_writable()?;
        self.inner.shared.snapshots.compact()
    }

    /// Sets an aggregate's retention rules (replacing the ones it had):
    /// reads hide what they exclude at once, and a scavenge reclaims the
    /// space. Durable when it returns; ordered after every append
    /// acknowledged before the call. A soft delete's cut is kept.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use factlog::{EventId, ExpectedVersion, NewEvent, Options, Store, StreamMeta};
    /// let store = Store::open(dir.path(), Options::default())?;
    /// for v in 0..5u64 {
    ///     let ev = NewEvent::new(EventId::new_v7(), "TemperatureRead", format!("{v}"));
    ///     store.append("sensor-1", ExpectedVersion::Any, vec![ev])?;
    /// }
    /// store.set_stream_meta("sensor-1", StreamMeta { max_count: Some(2), ..StreamMeta::default() })?;
    /// let kept = store.read_aggregate_owned("sensor-1", 0, factlog::Direction::Forward, 10)?;
    /// assert_eq!(kept.iter().map(|e| e.version).collect::<Vec<_>>(), [3, 4]);
    /// # Ok::<(), factlog::Error>(())
    /// ```
    pub fn set_stream_meta(&self, aggregate_id: &str, meta: StreamMeta) -> Result<StreamState> {
        self.change_stream(aggregate_id, StreamChange::SetMeta(meta))
    }

    /// Deletes an aggregate: its events disappear from every read at once
    /// (the scavenge reclaims their space, and drops its snapshots).
    /// [`DeleteMode::Soft`]: a later append starts it again, its versions
    /// continuing after the deleted ones (an append with
    /// `ExpectedVersion::NoStream` is accepted as a restart).
    /// [`DeleteMode::Hard`]: any later append fails with
    /// [`Error::AggregateDeleted`]. An aggregate without events gives
    /// [`Error::UnknownAggregate`].
    pub fn delete_aggregate(&self, aggregate_id: &str, mode: DeleteMode) -> Result<StreamState> {
        self.change_stream(aggregate_id, StreamChange::Delete(mode))
    }

    /// Erases an aggregate, for privacy law: a hard delete whose bytes
    /// (data, metadata, ids) leave every file of the store when the next
    /// scavenge completes. Until then its events are hidden from every read.
    ///
    /// Refused ([`Error::InvalidInput`]) while [`crate::Options::recycle_segments`]
    /// is on: a recycled file keeps old bytes after the log's end. (Segments
    /// recycled before, in a session with it on, have those bytes zeroed by
    /// the scavenge that completes the erasure.)
    pub fn erase(&self, aggregate_id: &str) -> Result<StreamState> {
        if self.inner.options.recycle_segments {
            return Err(Error::InvalidInput(format!(
                "erasing {aggregate_id:?} needs Options::recycle_segments off: a recycled segment file keeps old bytes \
                 after the log's end"
            )));
        }
        self.change_stream(aggregate_id, StreamChange::Erase)
    }

    /// Reclaims the space of every event the lifecycle rules hide (deleted,
    /// truncated, expired, erased aggregates): rewrites the sealed segments
    /// holding such events without them, crash-safely, while appends, reads
    /// and subscriptions go on. Positions never change: reads skip the
    /// removed ones. Erased data in the active segment is reached by sealing
    /// it first. When it returns, erased aggregates' bytes are in no file of
    /// the store, and deleted aggregates' snapshots are gone. `progress` gets
    /// (bytes read, bytes of sealed segments).
    pub fn scavenge(&self, progress: &mut dyn FnMut(u64, u64)) -> Result<crate::ScavengeReport> {
        self.check_writable()?;
        crate::scavenge::run(&self.inner.shared, self, progress)
    }

    /// Applies `Options::retention` now (it also runs whenever a segment is
    /// sealed): removes the sealed segments at the head of the log that are
    /// over the size or age limit. Returns how many were removed. Reads from
    /// below the new start fail with [`Error::BelowRetainedStart`].
    pub fn apply_retention(&self) -> Result<usize> {
        self.check_writable()?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.inner.tx.send(Command::Retention(tx)).map_err(|_| Error::Closed)?;
        rx.recv().map_err(|_| Error::Closed)?
    }

    /// Position of the first event the log still holds (0 until retention
    /// removes segments; `None` for an empty log).
    pub fn first_position(&self) -> Option<u64> {
        let end = self.inner.shared.visible_end.load(Ordering::Acquire);
        let first = self.first_position_raw();
        (first < end).then_some(first)
    }

    /// The aggregate's lifecycle state (its rules and deletion), `None` if it has none.
    pub fn stream_state(&self, aggregate_id: &str) -> Option<StreamState> {
        self.inner.shared.streams().get(aggregate_id).copied()
    }

    fn change_stream(&self, aggregate_id: &str, change: StreamChange) -> Result<StreamState> {
        self.check_writable()?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.inner.tx.send(Command::Streams(aggregate_id.to_string(), change, tx)).map_err(|_| Error::Closed)?;
        rx.recv().map_err(|_| Error::Closed)?
    }

    /// Everything needed to rehydrate an aggregate: its newest snapshot and a
    /// zero-copy iterator over the events after it.
    pub fn load(&self, aggregate_id: &str) -> Result<Loaded> {
        let reader = self.reader();
        let until = reader.end_position().saturating_sub(1);
        self.load_until(reader, aggregate_id, until)
    }

    /// The aggregate as it stood at a past point: the newest kept snapshot at
    /// or before that point, and the events after it up to that point.
    pub fn load_as_of(&self, aggregate_id: &str, as_of: AsOf) -> Result<Loaded> {
        let reader = self.reader();
        let until = match as_of {
            AsOf::Version(v) => reader.position_of_version(aggregate_id, v),
            other => reader.position_of(other)?,
        };
        match until {
            Some(p) => self.load_until(reader, aggregate_id, p),
            None => Ok(Loaded::new(None, reader, aggregate_id, 0, None)),
        }
    }

    /// [`Store::load`] or, with [`LoadOptions::as_of`], [`Store::load_as_of`],
    /// with a say over the snapshot: given
    /// [`LoadOptions::snapshot_schema`], a snapshot whose schema version is
    /// another is stale, and the load either fails with
    /// [`Error::StaleSnapshot`] ([`crate::StaleSnapshot::Refuse`]) or leaves
    /// it out and replays the aggregate's events from the first
    /// ([`crate::StaleSnapshot::Skip`]). Upcast the events with
    /// [`Loaded::upcast_events`].
    pub fn load_with(&self, aggregate_id: &str, options: &LoadOptions) -> Result<Loaded> {
        let reader = self.reader();
        let until = match options.as_of {
            None => reader.end_position().checked_sub(1),
            Some(AsOf::Version(v)) => reader.position_of_version(aggregate_id, v),
            Some(other) => reader.position_of(other)?,
        };
        match until {
            Some(p) => self.load_until_with(reader, aggregate_id, p, options),
            None => Ok(Loaded::new(None, reader, aggregate_id, 0, None)),
        }
    }

    fn load_until(&self, reader: Reader, aggregate_id: &str, until_position: u64) -> Result<Loaded> {
        self.load_until_with(reader, aggregate_id, until_position, &LoadOptions::default())
    }

    fn load_until_with(
        &self,
        reader: Reader,
        aggregate_id: &str,
        until_position: u64,
        options: &LoadOptions,
    ) -> Result<Loaded> {
        let until_version = reader.version_at(aggregate_id, until_position);
        let snapshot = match until_version {
            Some(v) => self.snapshot_at_or_before(aggregate_id, v)?,
            None => None,
        };
        // A deleted aggregate's snapshots fold deleted events: never used.
        let snapshot = snapshot.filter(|s| !reader.deleted_through(aggregate_id, s.version));
        // Then the caller's say on its schema version (refuse, or skip and replay).
        let snapshot = options.accept(aggregate_id, snapshot)?;
        let from_version = snapshot.as_ref().map_or(0, |s| s.version + 1);
        if let Some(first_version) = reader.removed_before(aggregate_id, from_version) {
            return Err(Error::AggregateTruncated { aggregate_id: aggregate_id.to_string(), first_version });
        }
        Ok(Loaded::new(snapshot, reader, aggregate_id, from_version, until_version))
    }

    /// Checks every record and index entry of the store; `progress` is
    /// called with (events checked, events in total) as it goes. Reads from a
    /// [`Reader`] and holds the index lock only for short slices, so appends
    /// go on meanwhile; it sees the store as it was when it started.
    pub fn verify(&self, progress: &mut dyn FnMut(u64, u64)) -> Result<VerifyReport> {
        verify::verify(&self.inner.shared, &self.reader(), progress)
    }

    /// Where the frame of `position` lives: its segment file and byte offset.
    pub fn locate(&self, position: u64) -> Option<(std::path::PathBuf, u64)> {
        let idx = self.inner.shared.index();
        let (i, off) = idx.locate(position)?;
        Some((idx.segment(i)?.path.clone(), off))
    }

    /// Stops the writer after syncing everything written. Other clones of
    /// this handle get [`Error::Closed`] on append afterwards; the lock is
    /// released when the last clone is dropped.
    pub fn close(self) -> Result<()> {
        // Subscriptions end now, whatever else happens.
        self.inner.shared.close();
        if self.inner.read_only {
            return Ok(());
        }
        shutdown(&self.inner.tx, &self.inner.writer)?;
        self.inner.shared.snapshots.sync()
    }
}

/// When the log's last event was recorded (0: none), so that the writer's
/// `recorded_at` never goes back even if the clock does. The last positions
/// may have been removed by a scavenge: the newest surviving one counts.
fn last_recorded_at(index: &crate::index::IndexState) -> Result<i64> {
    let mut position = index.next_position();
    while position > index.first_position() {
        position -= 1;
        match index.event_at(position) {
            Some(Ok(event)) => return Ok(event.recorded_at()),
            Some(Err(Error::EventRemoved { .. })) => continue,
            Some(Err(e)) => return Err(e),
            None => break,
        }
    }
    Ok(0)
}

/// Bytes of the index checkpoint files in `dir`.
fn index_file_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    rd.filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(crate::index::IDX_SUFFIX)))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// The snapshot store's settings, from the store's options.
fn snapshot_config(options: &Options, read_only: bool) -> SnapshotConfig {
    SnapshotConfig {
        file_bytes: options.snapshot_file_bytes,
        keep: options.snapshots_keep,
        level: options.snapshot_zstd_level,
        max_bytes: options.max_snapshot_bytes,
        sync: options.durability == Durability::Sync,
        read_only,
    }
}

impl crate::scavenge::WriterLink for Store {
    fn seal(&self, roll: bool) -> Result<()> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.inner.tx.send(Command::Seal(roll, tx)).map_err(|_| Error::Closed)?;
        rx.recv().map_err(|_| Error::Closed)?
    }

    fn change(&self, aggregate_id: &str, change: StreamChange) -> Result<()> {
        self.change_stream(aggregate_id, change).map(|_| ())
    }

    fn scrub_parked(&self, aggregate_ids: &std::collections::HashSet<String>) -> Result<Vec<String>> {
        crate::consumer::scrub_parked(self.dir(), aggregate_ids)
    }

    fn forget_snapshots(&self, aggregate_ids: &std::collections::HashSet<String>) -> Result<usize> {
        let report = self.inner.shared.snapshots.forget(aggregate_ids)?;
        Ok(report.records_removed as usize)
    }
}
