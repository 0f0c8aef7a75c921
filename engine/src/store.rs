//! The public handle: opening (directory checks, the exclusive lock,
//! recovery, starting the writer), appends (argument checks in the caller's
//! thread, then a round trip to the writer), and reads through [`Reader`], a
//! consistent snapshot of what is visible. Readers never take the writer's
//! path: they read the memory maps up to the published watermark, so they
//! never see a partial batch, nor (in `Sync` mode) an event not yet durable.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::error::{Error, Result};
use crate::event::{AppendResult, AsOf, Direction, EventRef, ExpectedVersion, NewEvent, RecordedEvent};
use crate::index::IndexState;
use crate::options::Options;
use crate::record;
use crate::recovery::{self, RecoveryReport};
use crate::segment::{self, Segment, HEADER_BYTES};
use crate::snapshot::dictionary::{Dictionaries, DictionaryInfo};
use crate::snapshot::{Snapshot, SnapshotConfig, SnapshotInfo, Snapshots};
use crate::writer::{Active, AppendRequest, Command, Writer};

/// Name of the marker file that makes a directory a factlog store.
pub const MARKER_NAME: &str = "FACTLOG";
/// Name of the lock file.
pub const LOCK_NAME: &str = "LOCK";
const MARKER_TEXT: &str = "factlog store\nformat 1\n";

/// State shared by the writer thread and every reader.
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub index: RwLock<IndexState>,
    /// Segment maps in log order, swapped (copy on write) when one is added.
    segment_list: RwLock<Arc<Vec<Arc<Segment>>>>,
    /// One past the last position readers may see.
    pub visible_end: AtomicU64,
    /// One past the last position known to be on disk.
    pub durable_end: AtomicU64,
    poisoned: AtomicBool,
    poison: Mutex<Option<String>>,
    pub fsyncs: AtomicU64,
    pub groups: AtomicU64,
    pub snapshots: Snapshots,
}

impl Shared {
    pub(crate) fn poison_cause(&self) -> Option<String> {
        if !self.poisoned.load(Ordering::Acquire) {
            return None;
        }
        self.poison.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn set_poison(&self, cause: String) {
        let mut p = self.poison.lock().unwrap_or_else(|p| p.into_inner());
        if p.is_none() {
            *p = Some(cause);
        }
        self.poisoned.store(true, Ordering::Release);
    }

    pub(crate) fn refresh_segment_list(&self) {
        let list: Vec<Arc<Segment>> = {
            let idx = self.index.read().unwrap_or_else(|p| p.into_inner());
            idx.segments.iter().map(|s| Arc::clone(&s.seg)).collect()
        };
        *self.segment_list.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(list);
    }

    fn segments(&self) -> Arc<Vec<Arc<Segment>>> {
        Arc::clone(&self.segment_list.read().unwrap_or_else(|p| p.into_inner()))
    }
}

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
    _lock: File,
}

impl Drop for Inner {
    fn drop(&mut self) {
        shutdown(&self.tx, &self.writer).ok();
    }
}

/// How long an appender polls for its acknowledgement before sleeping: about
/// one group commit (a write plus an `fdatasync`) on an SSD.
const SPIN_FOR_ACK_US: u64 = 400;

/// Appenders that may poll at once: one core is left to the writer, so on a
/// 2-core machine a single appender polls and the rest sleep.
fn spin_waiters() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).saturating_sub(1).min(4)
}

/// Waits for the writer's reply. Sleeping on the channel costs a futex
/// wake-up per append (tens of microseconds on a VM, a third of an
/// `fdatasync`), so up to `spin_waiters()` appenders poll first, each with
/// a spare core to poll on.
fn wait_for_ack(rx: &Receiver<Result<AppendResult>>, spin: bool) -> Result<Result<AppendResult>> {
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

fn shutdown(tx: &Sender<Command>, writer: &Mutex<Option<JoinHandle<()>>>) -> Result<()> {
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

/// An open store. Cheap to clone; every clone shares one writer thread.
/// `Send + Sync`: append and read from any number of threads.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl Store {
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
    /// Approximate heap bytes of the in-memory index.
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

fn prepare_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create store directory", dir, e))?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            segment::sync_dir(parent)?;
        }
    }
    if !dir.is_dir() {
        return Err(Error::NotAStore { path: dir.to_path_buf(), reason: "not a directory".into() });
    }
    let marker = dir.join(MARKER_NAME);
    match std::fs::read_to_string(&marker) {
        Ok(text) => {
            if text == MARKER_TEXT {
                return Ok(());
            }
            if let Some(v) = text.strip_prefix("factlog store\nformat ").and_then(|r| r.trim().parse::<u32>().ok()) {
                return Err(Error::UnsupportedFormat { path: marker, found: v, supported: segment::FORMAT_VERSION });
            }
            Err(Error::NotAStore {
                path: dir.to_path_buf(),
                reason: format!("{MARKER_NAME} file has unexpected contents"),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let others = std::fs::read_dir(dir)
                .map_err(|e| Error::io("list store directory", dir, e))?
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name() != LOCK_NAME)
                .count();
            if others > 0 {
                return Err(Error::NotAStore {
                    path: dir.to_path_buf(),
                    reason: format!("not empty and has no {MARKER_NAME} file"),
                });
            }
            crate::durable::write_file(dir, MARKER_NAME, &[MARKER_TEXT.as_bytes()], "write store marker").map(|_| ())
        }
        Err(e) => Err(Error::io("read store marker", &marker, e)),
    }
}

fn lock_dir(dir: &Path, shared: bool) -> Result<File> {
    let path = dir.join(LOCK_NAME);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io("open lock file", &path, e))?;
    let r = if shared { f.try_lock_shared() } else { f.try_lock() };
    match r {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked { path: dir.to_path_buf() }),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io("lock store", &path, e)),
    }
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

    /// Opens an existing store for reading only, without changing any file:
    /// takes a shared lock (so several inspectors may open it, but not while a
    /// writer has it open, which gives [`Error::Locked`]), reports a torn tail
    /// without cutting it, and starts no writer. Appends and snapshot saves
    /// fail with [`Error::ReadOnly`]. What `factlog read`, `stats`, `verify`
    /// and `dump` use.
    pub fn open_read_only(dir: impl AsRef<Path>, options: Options) -> Result<Store> {
        Store::open_mode(dir.as_ref(), options, true)
    }

    fn open_mode(dir: &Path, options: Options, read_only: bool) -> Result<Store> {
        options.validate()?;
        if read_only && options.repair {
            return Err(Error::InvalidOptions("repair cannot be combined with a read-only open".into()));
        }
        let dir = dir.to_path_buf();
        let lock = if read_only {
            if !dir.join(MARKER_NAME).is_file() {
                return Err(Error::NotAStore { path: dir, reason: format!("no {MARKER_NAME} file") });
            }
            prepare_dir(&dir)?;
            lock_dir(&dir, true)?
        } else {
            if !dir.join(MARKER_NAME).exists() {
                prepare_dir(&dir)?;
            }
            let lock = lock_dir(&dir, false)?;
            prepare_dir(&dir)?;
            lock
        };
        let rec = recovery::recover(&dir, &options, read_only)?;
        let snap_cfg = SnapshotConfig {
            file_bytes: options.snapshot_file_bytes,
            keep: options.snapshots_keep,
            level: options.snapshot_zstd_level,
            max_bytes: options.max_snapshot_bytes,
            sync: options.durability == crate::options::Durability::Sync,
            read_only,
        };
        let (snapshots, snap_rec) = Snapshots::open(&dir, snap_cfg)?;
        let last_recorded_at =
            match rec.index.next_position.checked_sub(1).and_then(|p| rec.index.locate(p).map(|l| (p, l))) {
                Some((p, (i, off))) => rec.index.segments[i].seg.event_at(off, p)?.0.recorded_at(),
                None => 0,
            };
        let next_position = rec.index.next_position;
        let active_seg = rec.index.segments.last().map(|s| Arc::clone(&s.seg));
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            index: RwLock::new(rec.index),
            segment_list: RwLock::new(Arc::new(Vec::new())),
            visible_end: AtomicU64::new(next_position),
            durable_end: AtomicU64::new(next_position),
            poisoned: AtomicBool::new(false),
            poison: Mutex::new(None),
            fsyncs: AtomicU64::new(0),
            groups: AtomicU64::new(0),
            snapshots,
        });
        shared.refresh_segment_list();
        let mut report = rec.report;
        report.snapshots = snap_rec;
        let (tx, rx) = crossbeam_channel::bounded(options.max_pending_appends);
        let handle = if read_only {
            drop(rx);
            None
        } else {
            let active_seg = active_seg.ok_or_else(|| Error::corrupt(&dir, 0, "store has no segment"))?;
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&active_seg.path)
                .map_err(|e| Error::io("open segment for writing", &active_seg.path, e))?;
            let active = Active { file, seg: active_seg, write_offset: rec.active_write_offset };
            let writer =
                Writer::new(Arc::clone(&shared), options.clone(), active, next_position, rec.dedupe, last_recorded_at);
            let handle = std::thread::Builder::new()
                .name("factlog-writer".into())
                .spawn(move || writer.run(rx))
                .map_err(|e| Error::io("spawn writer thread", &dir, e))?;
            Some(handle)
        };
        Ok(Store {
            inner: Arc::new(Inner {
                shared,
                tx,
                writer: Mutex::new(handle),
                options,
                report,
                read_only,
                waiting: AtomicUsize::new(0),
                spin_waiters: spin_waiters(),
                _lock: lock,
            }),
        })
    }

    /// Whether this handle was opened with [`Store::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.inner.read_only
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
        self.check_writable()?;
        self.check_append(aggregate_id, &events)?;
        if let Some(cause) = self.inner.shared.poison_cause() {
            return Err(Error::Poisoned { cause });
        }
        let (reply, rx) = crossbeam_channel::bounded(1);
        let req = AppendRequest { aggregate_id: aggregate_id.to_string(), expected, events, reply };
        let waiting = &self.inner.waiting;
        let spin = waiting.fetch_add(1, Ordering::AcqRel) < self.inner.spin_waiters;
        let sent = self.inner.tx.send(Command::Append(req)).map_err(|_| Error::Closed);
        let reply = sent.and_then(|()| wait_for_ack(&rx, spin));
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

    /// A consistent, zero-copy view of everything visible now.
    pub fn reader(&self) -> Reader {
        let shared = &self.inner.shared;
        let visible_end = shared.visible_end.load(Ordering::Acquire);
        Reader { shared: Arc::clone(shared), segments: shared.segments(), visible_end }
    }

    /// Up to `limit` events from `from_position` on, in global order, as owned copies.
    pub fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>> {
        let r = self.reader();
        r.read_all(from_position).take(limit).map(|e| e.map(|e| e.to_owned())).collect()
    }

    /// Up to `limit` events of one aggregate from `from_version`, as owned copies.
    pub fn read_aggregate(
        &self,
        aggregate_id: &str,
        from_version: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let r = self.reader();
        r.read_aggregate(aggregate_id, from_version, direction).take(limit).map(|e| e.map(|e| e.to_owned())).collect()
    }

    /// The aggregate's current (visible) version, `None` if it has no events.
    pub fn aggregate_version(&self, aggregate_id: &str) -> Option<u64> {
        let end = self.inner.shared.visible_end.load(Ordering::Acquire);
        self.inner.shared.index.read().unwrap_or_else(|p| p.into_inner()).version_below(aggregate_id, end)
    }

    /// Position of the last visible event, `None` for an empty store.
    pub fn last_position(&self) -> Option<u64> {
        self.inner
            .shared
            .visible_end
            .load(Ordering::Acquire)
            .checked_sub(1)
            .filter(|_| self.first_position() < self.inner.shared.visible_end.load(Ordering::Acquire))
    }

    fn first_position(&self) -> u64 {
        self.inner.shared.segments().first().map(|s| s.first_position).unwrap_or(0)
    }

    /// Position of the last event known to be on disk: every event at or
    /// below it survives a machine crash. In `Sync` mode equal to
    /// [`Store::last_position`]. Cheap (one atomic load): the signal live
    /// subscriptions wait on.
    pub fn durable_position(&self) -> Option<u64> {
        let end = self.inner.shared.durable_end.load(Ordering::Acquire);
        end.checked_sub(1).filter(|_| self.first_position() < end)
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
        let events_end = shared.visible_end.load(Ordering::Acquire);
        let idx = shared.index.read().unwrap_or_else(|p| p.into_inner());
        let mut log_bytes = 0u64;
        let mut segment_file_bytes = 0u64;
        for slot in &idx.segments {
            segment_file_bytes += slot.seg.len();
            log_bytes += match slot.offsets.last() {
                Some(&off) => {
                    let at = &slot.seg.bytes()[off as usize..];
                    u64::from(off) + record::parse_header(at, at.len()).map(|h| h.frame_len() as u64).unwrap_or(0)
                }
                None => HEADER_BYTES,
            };
        }
        let first = idx.segments.first().map(|s| s.seg.first_position).unwrap_or(0);
        let index_file_bytes = std::fs::read_dir(&shared.dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(crate::index::IDX_SUFFIX)))
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        drop(idx);
        let (snapshot_files, snapshots, snapshot_bytes) = shared.snapshots.stats();
        let snapshot_dictionaries = shared.snapshots.dictionaries() as u64;
        let idx = shared.index.read().unwrap_or_else(|p| p.into_inner());
        Stats {
            snapshot_files,
            snapshots,
            snapshot_bytes,
            snapshot_dictionaries,
            events: events_end.saturating_sub(first),
            aggregates: idx.aggregates.len() as u64,
            segments: idx.segments.len() as u64,
            segment_file_bytes,
            log_bytes,
            index_bytes: idx.memory_bytes(),
            index_file_bytes,
            fsyncs: shared.fsyncs.load(Ordering::Relaxed),
            group_commits: shared.groups.load(Ordering::Relaxed),
        }
    }

    /// Saves a snapshot of `aggregate_id`'s state as of `version` (events
    /// `0..=version` folded), compressed with zstd, in the snapshot files.
    /// Fails with [`Error::SnapshotAhead`] if the aggregate has not reached
    /// `version`. Durable on return in `Sync` mode.
    pub fn save_snapshot(
        &self,
        aggregate_id: &str,
        version: u64,
        schema_version: u32,
        state: &[u8],
    ) -> Result<SnapshotInfo> {
        self.check_writable()?;
        record::check_names(aggregate_id, "x").map_err(Error::InvalidInput)?;
        let actual = self.aggregate_version(aggregate_id);
        if actual.is_none_or(|a| a < version) {
            return Err(Error::SnapshotAhead { aggregate_id: aggregate_id.to_string(), version, actual });
        }
        self.inner.shared.snapshots.save(aggregate_id, version, schema_version, state)
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
        let until = match reader.position_of(as_of)? {
            Some(p) => p,
            None => {
                return Ok(Loaded {
                    snapshot: None,
                    reader,
                    aggregate_id: aggregate_id.to_string(),
                    from_version: 0,
                    until_version: None,
                })
            }
        };
        self.load_until(reader, aggregate_id, until)
    }

    fn load_until(&self, reader: Reader, aggregate_id: &str, until_position: u64) -> Result<Loaded> {
        let until_version = reader.version_at(aggregate_id, until_position);
        let snapshot = match until_version {
            Some(v) => self.snapshot_at_or_before(aggregate_id, v)?,
            None => None,
        };
        let from_version = snapshot.as_ref().map_or(0, |s| s.version + 1);
        Ok(Loaded { snapshot, reader, aggregate_id: aggregate_id.to_string(), from_version, until_version })
    }

    /// Stops the writer after syncing everything written. Other clones of
    /// this handle get [`Error::Closed`] on append afterwards; the lock is
    /// released when the last clone is dropped.
    pub fn close(self) -> Result<()> {
        if self.inner.read_only {
            return Ok(());
        }
        shutdown(&self.inner.tx, &self.inner.writer)?;
        self.inner.shared.snapshots.sync()
    }
}

/// A consistent snapshot for zero-copy reads: sees exactly the events that
/// were visible when it was created. Holds the segment maps alive; events
/// borrowed from it are valid as long as it is.
pub struct Reader {
    pub(crate) shared: Arc<Shared>,
    pub(crate) segments: Arc<Vec<Arc<Segment>>>,
    visible_end: u64,
}

impl Reader {
    /// One past the last position this reader sees.
    pub fn end_position(&self) -> u64 {
        self.visible_end
    }

    /// Events from `from_position` on, in global order.
    pub fn read_all(&self, from_position: u64) -> AllEvents<'_> {
        let first = self.segments.first().map(|s| s.first_position).unwrap_or(0);
        let position = from_position.max(first);
        let mut it = AllEvents { reader: self, position, end: self.visible_end, seg: 0, offset: 0, failed: false };
        if position < self.visible_end {
            let idx = self.shared.index.read().unwrap_or_else(|p| p.into_inner());
            match idx.locate(position) {
                Some((seg, offset)) => {
                    it.seg = seg;
                    it.offset = offset;
                }
                None => it.failed = true,
            }
        }
        it
    }

    /// Events of one aggregate from `from_version`, forwards or backwards.
    pub fn read_aggregate<'r>(
        &'r self,
        aggregate_id: &str,
        from_version: u64,
        direction: Direction,
    ) -> AggregateEvents<'r> {
        self.read_aggregate_until(aggregate_id, from_version, u64::MAX, direction)
    }

    /// Events of one aggregate from `from_version`, considering only versions
    /// up to and including `until_version` (time travel by version).
    pub fn read_aggregate_until<'r>(
        &'r self,
        aggregate_id: &str,
        from_version: u64,
        until_version: u64,
        direction: Direction,
    ) -> AggregateEvents<'r> {
        let idx = self.shared.index.read().unwrap_or_else(|p| p.into_inner());
        let mut places = Vec::new();
        if let Some(positions) = idx.aggregates.get(aggregate_id) {
            let visible = positions.partition_point(|p| *p < self.visible_end) as u64;
            let n = visible.min(until_version.saturating_add(1));
            let versions: Box<dyn Iterator<Item = u64>> = match direction {
                Direction::Forward => Box::new(from_version.min(n)..n),
                Direction::Backward if n == 0 => Box::new(0..0),
                Direction::Backward => Box::new((0..=from_version.min(n - 1)).rev()),
            };
            places.reserve(versions.size_hint().0.min(1 << 20));
            for v in versions {
                let position = positions[v as usize];
                match idx.locate(position) {
                    Some((seg, offset)) => places.push((seg as u32, offset, position)),
                    None => break,
                }
            }
        }
        AggregateEvents { reader: self, places: places.into_iter() }
    }

    /// Events from `from_position` up to and including the point `as_of`, in
    /// global order: rebuild a projection as of a moment.
    pub fn read_all_until(&self, from_position: u64, as_of: AsOf) -> Result<AllEvents<'_>> {
        let end = match self.position_of(as_of)? {
            Some(p) => p + 1,
            None => 0,
        };
        let mut it = self.read_all(from_position.min(end));
        it.end = end.min(self.visible_end);
        Ok(it)
    }

    /// The last position at or before `as_of` that this reader sees, `None`
    /// if there is none.
    pub fn position_of(&self, as_of: AsOf) -> Result<Option<u64>> {
        let first = self.segments.first().map(|s| s.first_position).unwrap_or(0);
        let last = match self.visible_end.checked_sub(1).filter(|l| *l >= first) {
            Some(l) => l,
            None => return Ok(None),
        };
        match as_of {
            AsOf::Position(p) if p < first => Ok(None),
            AsOf::Position(p) => Ok(Some(p.min(last))),
            AsOf::RecordedAt(t) => {
                // recorded_at is non-decreasing along the log: binary search.
                let (mut lo, mut hi) = (first, last + 1);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    let at = self.event_at_position(mid)?.recorded_at();
                    if at <= t {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                Ok(lo.checked_sub(1).filter(|p| *p >= first))
            }
        }
    }

    /// The event at a global position this reader sees.
    pub fn event_at_position(&self, position: u64) -> Result<EventRef<'_>> {
        let mut it = self.read_all(position);
        it.end = (position + 1).min(self.visible_end);
        match it.next() {
            Some(r) => r,
            None => {
                Err(Error::InvalidInput(format!("position {position} is not in the log (end {})", self.visible_end)))
            }
        }
    }

    /// The aggregate's last version whose position is at or before `position`.
    pub fn version_at(&self, aggregate_id: &str, position: u64) -> Option<u64> {
        let idx = self.shared.index.read().unwrap_or_else(|p| p.into_inner());
        let positions = idx.aggregates.get(aggregate_id)?;
        let bound = position.saturating_add(1).min(self.visible_end);
        (positions.partition_point(|p| *p < bound) as u64).checked_sub(1)
    }
}

/// An aggregate ready to rehydrate: fold `snapshot` (if any), then `events()`.
pub struct Loaded {
    /// The newest snapshot at or before the point loaded, decompressed.
    pub snapshot: Option<Snapshot>,
    reader: Reader,
    aggregate_id: String,
    from_version: u64,
    until_version: Option<u64>,
}

impl Loaded {
    /// The events after the snapshot (all events if there is none), zero-copy.
    pub fn events(&self) -> AggregateEvents<'_> {
        match self.until_version {
            Some(until) => {
                self.reader.read_aggregate_until(&self.aggregate_id, self.from_version, until, Direction::Forward)
            }
            None => AggregateEvents { reader: &self.reader, places: Vec::new().into_iter() },
        }
    }

    /// The aggregate's version at the point loaded (`None`: no events yet).
    pub fn version(&self) -> Option<u64> {
        self.until_version
    }
}

/// Iterator over the global log; see [`Reader::read_all`].
pub struct AllEvents<'r> {
    reader: &'r Reader,
    position: u64,
    end: u64,
    seg: usize,
    offset: u64,
    failed: bool,
}

impl<'r> Iterator for AllEvents<'r> {
    type Item = Result<EventRef<'r>>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.position >= self.end {
            return None;
        }
        let segs = &self.reader.segments;
        while segs.get(self.seg + 1).is_some_and(|s| s.first_position <= self.position) {
            self.seg += 1;
            self.offset = HEADER_BYTES;
        }
        let seg = segs.get(self.seg)?;
        match seg.event_at(self.offset, self.position) {
            Ok((ev, len)) => {
                self.offset += len as u64;
                self.position += 1;
                Some(Ok(ev))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Iterator over one aggregate; see [`Reader::read_aggregate`].
pub struct AggregateEvents<'r> {
    reader: &'r Reader,
    places: std::vec::IntoIter<(u32, u64, u64)>,
}

impl<'r> Iterator for AggregateEvents<'r> {
    type Item = Result<EventRef<'r>>;
    fn next(&mut self) -> Option<Self::Item> {
        let (seg, offset, position) = self.places.next()?;
        let seg = self.reader.segments.get(seg as usize)?;
        Some(seg.event_at(offset, position).map(|(e, _)| e))
    }
}
