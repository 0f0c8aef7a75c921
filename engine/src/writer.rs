//! The group-commit writer thread. It alone owns the active segment's file
//! handle and the idempotency window. Appenders send requests over a bounded
//! crossbeam channel and block on a reply channel; the writer drains every
//! pending request, checks ids and expected versions in arrival order,
//! encodes all frames of the group into one buffer, writes it with one
//! `pwrite`, makes it durable with one `fdatasync` (in `Sync` mode), then
//! publishes the index entries and the visible watermark, and only then
//! replies. It must never acknowledge an append before its bytes are durable
//! (`Sync`) or written (`Buffered`), and never write again after a failed
//! write or sync: the store is poisoned until reopened.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rkyv::util::AlignedVec;

use crate::dedupe::{aggregate_hash, Dedupe, Seen};
use crate::error::{Error, Result};
use crate::event::{now_nanos, AppendResult, ExpectedVersion, NewEvent};
use crate::fault::Faults;
use crate::index::{CheckpointEntry, IndexState};
use crate::options::{Durability, Options};
use crate::record::{self, RecordBody};
use crate::segment::{self, Check, Segment, HEADER_BYTES, POSITION_LIMIT};
use crate::shared::Shared;
use crate::streams::{Rules, StreamChange, StreamState};
use crate::watermark::WatermarkFile;

/// How long the idle writer polls its queue before blocking, in microseconds.
const SPIN_BEFORE_BLOCK_US: u64 = 30;

/// Longest a subscriber's wake-up is put off while more appends are queued.
/// Under continuous load subscribers are woken about once per this interval
/// (or whenever the writer finds its queue empty) and catch up in bigger
/// batches, rather than taking every group's wake-up (16 subscribers each
/// woken after every group commit cost W2 16% of its throughput on 2 cores).
const WAKE_COALESCE_MAX: Duration = Duration::from_millis(1);

/// A group commit this long after the last wake-up wakes subscribers at
/// once, before the appenders' acknowledgements go out: a lightly loaded
/// store (W8: one append every 500 us) delivers each event to its
/// subscribers as it acknowledges it. Closer together, commits leave the
/// wake-up to [`WAKE_COALESCE_MAX`]'s rule.
const WAKE_AT_COMMIT_AFTER: Duration = Duration::from_micros(250);

/// One append, as sent to the writer: one batch per aggregate (one for
/// [`crate::Store::append`], several for [`crate::Store::append_many`]),
/// written as one atomic batch of frames, all or nothing.
pub(crate) struct AppendRequest {
    pub parts: Vec<AppendPart>,
    /// One result per part, in order.
    pub reply: Sender<Result<Vec<AppendResult>>>,
}

/// One aggregate's events in an [`AppendRequest`]. The parts of a request
/// name different aggregates (the store checks).
pub(crate) struct AppendPart {
    pub aggregate_id: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

impl AppendRequest {
    /// Events in all parts.
    fn events(&self) -> usize {
        self.parts.iter().map(|p| p.events.len()).sum()
    }
}

/// What the writer thread can be asked to do.
pub(crate) enum Command {
    Append(AppendRequest),
    Sync(Sender<Result<()>>),
    /// A change of one aggregate's lifecycle rules, ordered with the appends.
    Streams(String, StreamChange, Sender<Result<StreamState>>),
    /// Apply `Options::retention` now; replies with the segments removed.
    Retention(Sender<Result<usize>>),
    /// Seal the active segment now (if it holds any frame) and start a new
    /// one, with its checkpoint written: the scavenge's way to reach erased
    /// data in the active segment. With `false`, only wait until every
    /// sealed segment's checkpoint is written.
    Seal(bool, Sender<Result<()>>),
    Shutdown(Sender<Result<()>>),
}

/// The writer's view of the active segment.
pub(crate) struct Active {
    pub file: File,
    pub seg: Arc<Segment>,
    pub write_offset: u64,
}

/// Index changes of a group, applied in order at publish time.
enum Pending {
    Segment(Arc<Segment>),
    Event { request: usize, part: usize, version: u64, position: u64, offset: u32 },
}

/// The state of one group commit while its requests are staged.
struct Group<'a> {
    /// The engine timestamp every event of the group gets.
    recorded_at: i64,
    /// File offset of the active segment where the buffer starts.
    buf_at: u64,
    /// Each aggregate's version after this group's earlier requests.
    overlay: HashMap<String, Option<u64>>,
    /// Index changes to publish, in order.
    pending: Vec<Pending>,
    /// Positions this group assigned: (first position, events, aggregate).
    spans: Vec<(u64, usize, &'a str)>,
    /// One reply per request.
    outcomes: Vec<Result<Vec<AppendResult>>>,
    /// A failed write or sync: nothing of the group is acknowledged.
    fatal: Option<Error>,
    /// A failed roll: the rest of the group is refused with it.
    roll_error: Option<Error>,
    /// The lifecycle rules (deleted aggregates refuse appends).
    rules: Arc<Rules>,
}

impl<'a> Group<'a> {
    fn new(recorded_at: i64, buf_at: u64, rules: Arc<Rules>) -> Group<'a> {
        Group {
            rules,
            recorded_at,
            buf_at,
            overlay: HashMap::new(),
            pending: Vec::new(),
            spans: Vec::new(),
            outcomes: Vec::new(),
            fatal: None,
            roll_error: None,
        }
    }

    /// The aggregate of the event at `position`, for error messages.
    fn aggregate_at(&self, idx: &IndexState, position: u64) -> String {
        if let Some(&(_, _, agg)) = self.spans.iter().find(|(p, n, _)| (*p..*p + *n as u64).contains(&position)) {
            return agg.to_string();
        }
        match idx.event_at(position) {
            Some(Ok(e)) => e.aggregate_id().to_string(),
            _ => "<unknown>".to_string(),
        }
    }
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    opts: Options,
    faults: Arc<Faults>,
    active: Active,
    next_position: u64,
    dedupe: Dedupe,
    buf: AlignedVec,
    unsynced: bool,
    last_sync: Instant,
    /// Watermarks moved since subscribers were last woken.
    wake_pending: bool,
    /// When subscribers were last woken.
    last_wake: Instant,
    preparer: Option<JoinHandle<Result<()>>>,
    /// Only segments starting after this one (the active segment at open)
    /// may be recycled: those this session made, which no reader of an
    /// earlier (closed) store of this directory can hold.
    recycle_after: u64,
    /// Writes the last sealed segment's index file; returns it, to attach.
    checkpointer: Option<JoinHandle<Option<Written>>>,
    /// Index files written and not yet attached: attached where the writer
    /// holds no index lock (`attach_files`).
    to_attach: Vec<Written>,
    last_recorded_at: i64,
    /// Where the durable end is published for read-only stores in other processes.
    watermark: WatermarkFile,
}

enum Verdict {
    New(Option<u64>),
    Retry(AppendResult),
}

impl Verdict {
    /// The aggregate's current version, for a new batch.
    fn current(&self) -> Option<u64> {
        match self {
            Verdict::New(current) => *current,
            Verdict::Retry(r) => Some(r.last_version),
        }
    }

    /// The original result, for a retry.
    fn retry(self) -> Option<AppendResult> {
        match self {
            Verdict::Retry(r) => Some(r),
            Verdict::New(_) => None,
        }
    }

    /// Where the batch is stored, for a retry.
    fn stored(&self) -> Option<&AppendResult> {
        match self {
            Verdict::Retry(r) => Some(r),
            Verdict::New(_) => None,
        }
    }
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        opts: Options,
        active: Active,
        dedupe: Dedupe,
        last_recorded_at: i64,
        watermark: WatermarkFile,
    ) -> Writer {
        let next_position = shared.index().next_position();
        let faults = opts.faults.clone().unwrap_or_default();
        let recycle_after = active.seg.first_position;
        Writer {
            recycle_after,
            shared,
            opts,
            faults,
            active,
            next_position,
            dedupe,
            buf: AlignedVec::with_capacity(1 << 20),
            unsynced: false,
            last_sync: Instant::now(),
            wake_pending: false,
            last_wake: Instant::now(),
            preparer: None,
            checkpointer: None,
            to_attach: Vec::new(),
            last_recorded_at,
            watermark,
        }
    }

    /// The thread body: runs until shutdown or until every sender is gone.
    pub(crate) fn run(mut self, rx: Receiver<Command>) {
        let max_group = self.opts.max_group_appends;
        loop {
            let first = match self.next_command(&rx) {
                Some(c) => c,
                None => break,
            };
            let mut appends = Vec::new();
            let mut syncs = Vec::new();
            let mut changes = Vec::new();
            let mut retentions = Vec::new();
            let mut seals = Vec::new();
            let mut shutdown = None;
            let mut push = |c: Command, appends: &mut Vec<AppendRequest>| match c {
                Command::Append(r) => appends.push(r),
                Command::Sync(tx) => syncs.push(tx),
                Command::Streams(id, change, tx) => changes.push((id, change, tx)),
                Command::Retention(tx) => retentions.push(tx),
                Command::Seal(roll, tx) => seals.push((roll, tx)),
                Command::Shutdown(tx) => shutdown = Some(tx),
            };
            push(first, &mut appends);
            while appends.len() < max_group {
                match rx.try_recv() {
                    Ok(c) => push(c, &mut appends),
                    Err(_) => break,
                }
            }
            if !appends.is_empty() {
                self.commit_group(appends);
            }
            for (id, change, tx) in changes {
                let _ = tx.send(self.change_streams(&id, &change));
            }
            for (roll, tx) in seals {
                let _ = tx.send(self.seal_active(roll));
            }
            if !retentions.is_empty() {
                let r = self.apply_retention();
                for tx in retentions {
                    let _ = tx.send(r.as_ref().map(|n| *n).map_err(Error::duplicate));
                }
            }
            if !syncs.is_empty() || self.flush_due() {
                let r = self.sync_now();
                for tx in syncs {
                    let _ = tx.send(r.as_ref().map(|_| ()).map_err(Error::duplicate));
                }
            }
            if let Some(tx) = shutdown {
                let r = self.finish();
                let _ = tx.send(r);
                return;
            }
        }
        let _ = self.finish();
    }

    fn next_command(&mut self, rx: &Receiver<Command>) -> Option<Command> {
        // Subscribers are woken when the queue runs dry, or once
        // WAKE_COALESCE_MAX has passed while work kept coming.
        match rx.try_recv() {
            Ok(c) => {
                if self.last_wake.elapsed() >= WAKE_COALESCE_MAX {
                    self.wake_subscribers();
                }
                return Some(c);
            }
            Err(crossbeam_channel::TryRecvError::Disconnected) => {
                self.wake_subscribers();
                return None;
            }
            Err(crossbeam_channel::TryRecvError::Empty) => self.wake_subscribers(),
        }
        // Poll briefly before sleeping: an appender that got its ack usually
        // sends its next append within microseconds, and a futex wake-up costs
        // more than that on a VM.
        let spin_until = Instant::now() + Duration::from_micros(SPIN_BEFORE_BLOCK_US);
        while Instant::now() < spin_until {
            match rx.try_recv() {
                Ok(c) => return Some(c),
                Err(crossbeam_channel::TryRecvError::Disconnected) => return None,
                Err(crossbeam_channel::TryRecvError::Empty) => std::hint::spin_loop(),
            }
        }
        loop {
            if !self.unsynced {
                return rx.recv().ok();
            }
            let Durability::Buffered { flush_interval_ms } = self.opts.durability else {
                return rx.recv().ok();
            };
            let due = self.last_sync + Duration::from_millis(flush_interval_ms);
            match rx.recv_timeout(due.saturating_duration_since(Instant::now())) {
                Ok(c) => return Some(c),
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.sync_now();
                    self.wake_subscribers();
                }
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Applies a lifecycle change after the appends before it: the rules are
    /// written (crash-safely) before they are published and acknowledged.
    fn change_streams(&mut self, aggregate_id: &str, change: &StreamChange) -> Result<StreamState> {
        if let Some(cause) = self.shared.poison_cause() {
            return Err(Error::Poisoned { cause });
        }
        // IMPORTANT: a delete's cut must cover what readers can see, so what
        // this process made visible but not yet durable is synced first (a
        // crash must not bring back an event the cut was computed without).
        self.sync_now()?;
        let rules = self.shared.streams();
        let current = rules.current_version(aggregate_id, self.shared.index().version_below(aggregate_id, u64::MAX));
        let rules = rules.changed(aggregate_id, current, change)?;
        rules.store(&self.shared.dir)?;
        let state = rules.get(aggregate_id).copied().unwrap_or_default();
        self.shared.set_streams(rules);
        Ok(state)
    }

    /// Seals the active segment if it holds a frame: syncs it, starts the
    /// next one, indexes and publishes it, and waits for the sealed one's
    /// checkpoint.
    fn seal_active(&mut self, roll: bool) -> Result<()> {
        if let Some(cause) = self.shared.poison_cause() {
            return Err(Error::Poisoned { cause });
        }
        if !roll || self.active.write_offset == HEADER_BYTES {
            self.join_checkpointer();
            self.attach_files();
            return Ok(());
        }
        let seg = self.roll(self.next_position, 0)?;
        {
            let mut idx = self.shared.index_mut();
            if let Err(e) = idx.push_segment(seg, 0) {
                let cause = format!("index invariant broken: {e}");
                self.shared.set_poison(cause.clone());
                return Err(Error::Poisoned { cause });
            }
            self.shared.publish_segments(&idx);
        }
        // The roll synced everything written.
        self.shared.advance_durable(self.next_position);
        self.wake_pending = true;
        self.publish_watermark();
        self.join_checkpointer();
        self.attach_files();
        Ok(())
    }

    /// Removes whole sealed segments from the head of the log as
    /// `Options::retention` says (never the active one): first from the
    /// index and the segment list readers get, then their checkpoints and
    /// files, then the directory is synced. Readers holding a removed
    /// segment's map keep reading it (an unlinked file stays mapped). A crash
    /// part way leaves a prefix of them removed, which is a valid log.
    /// Returns the number of segments removed.
    fn apply_retention(&mut self) -> Result<usize> {
        let Some(r) = self.opts.retention else { return Ok(0) };
        if let Some(cause) = self.shared.poison_cause() {
            return Err(Error::Poisoned { cause });
        }
        let cutoff =
            now_nanos().saturating_sub(r.max_age.map_or(0, |a| i64::try_from(a.as_nanos()).unwrap_or(i64::MAX)));
        let cut = {
            let idx = self.shared.index();
            let segs: Vec<Arc<Segment>> = idx.segments().cloned().collect();
            let mut total: u64 = segs.iter().map(|s| s.len()).sum();
            let mut k = 0;
            while k + 1 < segs.len() {
                let (seg, next_first) = (&segs[k], segs[k + 1].first_position);
                let over_size = r.max_bytes.is_some_and(|max| total > max);
                // The segment's newest event decides its age (an empty one is old).
                let too_old = r.max_age.is_some() && {
                    // Its newest surviving event (a scavenge may have removed the last ones).
                    let newest = (seg.first_position..next_first).rev().find_map(|p| match idx.event_at(p) {
                        Some(Err(Error::EventRemoved { .. })) => None,
                        Some(e) => Some(e.ok().map(|e| e.recorded_at())),
                        None => Some(None),
                    });
                    match newest {
                        Some(Some(at)) => at < cutoff,
                        // Unreadable: never removed for its age.
                        Some(None) => false,
                        // Every event of it was removed: as old as can be.
                        None => true,
                    }
                };
                if !over_size && !too_old {
                    break;
                }
                total -= seg.len();
                k += 1;
            }
            match k {
                0 => return Ok(0),
                _ => segs[k].first_position,
            }
        };
        // A scavenge swapping a segment file: leave retention to the next roll.
        let Ok(_swap) = self.shared.swap_lock.try_lock() else { return Ok(0) };
        // Aggregates left without events keep their version count (durably,
        // before their events go), so that their versions never restart.
        let rules = self.shared.streams();
        let floors: Vec<(String, u64)> = {
            let idx = self.shared.index();
            idx.aggregates()
                .filter(|(_, v)| v.last_position().is_some_and(|p| p < cut))
                .map(|(id, v)| (id.to_string(), v.end() - 1))
                .filter(|(id, last)| rules.version_floor(id).is_none_or(|f| f <= *last))
                .collect()
        };
        // IMPORTANT: the new start is durable before any segment goes, so
        // that recovery can tell retention from a lost head segment.
        let floors: Vec<(&str, u64)> = floors.iter().map(|(id, v)| (id.as_str(), *v)).collect();
        let next = rules.with_floors(&floors).with_log_start(cut);
        next.store(&self.shared.dir)?;
        self.shared.set_streams(next);
        // The sealed segment's checkpoint may still be being written: not after its file is gone.
        join_checkpointer(&mut self.checkpointer, &mut self.to_attach);
        let removed = {
            let mut idx = self.shared.index_mut();
            let removed = idx.drop_head(cut);
            self.shared.publish_segments(&idx);
            removed
        };
        let dir = self.shared.dir.clone();
        // An erasure pending: its bytes must leave every file, not wait in a recycled one.
        let may_recycle = self.opts.recycle_segments && !erasure_pending(&self.shared);
        let next_len = self.opts.next_segment_bytes(Some(self.active.seg.len()), 0);
        for seg in &removed {
            let idx_path = dir.join(crate::index::file_name(seg.first_position));
            match std::fs::remove_file(&idx_path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove index checkpoint (retention)", idx_path, e)),
            }
            // Recycled only if nothing can read it any more: made in this
            // session (a reader of an earlier, closed store of this directory
            // may still map older files), no reader of this store holds its
            // map (ours is the last), and (probed after the rename, below) no
            // read-only handle is open anywhere.
            let recycle = may_recycle
                && seg.first_position > self.recycle_after
                && seg.len() == next_len
                && Arc::strong_count(seg) == 1;
            let kept = segment::free(&dir, seg, recycle)?;
            // IMPORTANT: one at a time, oldest first: a power cut must never
            // leave a later segment removed and an earlier one present (a hole).
            segment::sync_dir(&dir)?;
            // A reader that locked before the rename may have mapped it: not reused.
            if kept && self.readers_present() {
                let pool = dir.join(segment::RECYCLED_NAME);
                std::fs::remove_file(&pool).map_err(|e| Error::io("remove segment (retention)", pool, e))?;
            }
        }
        self.shared.retention_runs.fetch_add(1, Ordering::Relaxed);
        Ok(removed.len())
    }

    /// Wakes the subscribers if a watermark moved since they were last woken.
    fn wake_subscribers(&mut self) {
        if self.wake_pending {
            self.wake_pending = false;
            self.last_wake = Instant::now();
            self.shared.wake_subscribers();
        }
    }

    fn flush_due(&self) -> bool {
        match self.opts.durability {
            Durability::Buffered { flush_interval_ms } => {
                self.unsynced && self.last_sync.elapsed() >= Duration::from_millis(flush_interval_ms)
            }
            Durability::Sync => false,
        }
    }

    fn finish(&mut self) -> Result<()> {
        if let Some(p) = self.preparer.take() {
            let _ = p.join();
        }
        self.join_checkpointer();
        if self.shared.poison_cause().is_some() {
            return Ok(());
        }
        let r = self.sync_now();
        self.wake_subscribers();
        r
    }

    fn poison(&self, cause: &Error) {
        self.shared.set_poison(cause.to_string());
    }

    /// `fdatasync` of the active segment, publishing the durable watermark.
    fn sync_now(&mut self) -> Result<()> {
        if let Some(cause) = self.shared.poison_cause() {
            return Err(Error::Poisoned { cause });
        }
        if !self.unsynced {
            return Ok(());
        }
        let r = self.sync_file();
        if r.is_ok() {
            self.shared.advance_durable(self.next_position);
            self.wake_pending = true;
            self.publish_watermark();
        }
        r
    }

    /// Publishes the durable end to other processes (module `watermark`).
    /// Only called when everything written is synced, so the active
    /// segment's write offset is where the durable log ends. A failed write
    /// of the watermark is not fatal: followers keep an older, still true,
    /// view until the next publish.
    fn publish_watermark(&self) {
        let (first, offset) = (self.active.seg.first_position, self.active.write_offset);
        let _ = self.watermark.publish(self.next_position, first, offset);
    }

    fn sync_file(&mut self) -> Result<()> {
        let path = &self.active.seg.path;
        let r = self
            .faults
            .check_sync(path)
            .and_then(|_| self.active.file.sync_data().map_err(|e| Error::io("fdatasync segment", path, e)));
        self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        match r {
            Ok(()) => {
                self.unsynced = false;
                self.last_sync = Instant::now();
                Ok(())
            }
            Err(e) => {
                // IMPORTANT: after a failed fdatasync the kernel may have dropped the
                // dirty pages; never retry, never acknowledge: poison.
                self.poison(&e);
                Err(e)
            }
        }
    }

    fn write_buf(&mut self, len: usize, at: u64) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let path = &self.active.seg.path;
        let file = &self.active.file;
        let r = match self.faults.check_write(path) {
            Ok(()) => file.write_all_at(&self.buf[..len], at).map_err(|e| Error::io("write frames", path, e)),
            Err((short, e)) => {
                // Injected short write: part of the frames reach the file, then the error.
                let _ = file.write_all_at(&self.buf[..short.min(len)], at);
                Err(e)
            }
        };
        if let Err(e) = &r {
            self.poison(e);
        }
        self.unsynced = true;
        r
    }

    /// Checks idempotency and the expected version of one request against the
    /// index plus this group's earlier requests.
    fn check(&self, req: &AppendPart, idx: &IndexState, group: &Group<'_>) -> Result<Verdict> {
        if let Some(retry) = self.retry_of(req, idx, group)? {
            return Ok(Verdict::Retry(retry));
        }
        let mut ids = std::collections::HashSet::with_capacity(req.events.len());
        for ev in &req.events {
            if !ids.insert(ev.event_id) {
                return Err(Error::InvalidInput(format!(
                    "event id {} appears twice in one batch for aggregate {:?}",
                    crate::error::fmt_id(&ev.event_id),
                    req.aggregate_id
                )));
            }
        }
        if let Some(e) = group.rules.refusal(&req.aggregate_id) {
            return Err(e);
        }
        let current = match group.overlay.get(&req.aggregate_id) {
            Some(v) => *v,
            None => group.rules.current_version(&req.aggregate_id, idx.version_below(&req.aggregate_id, u64::MAX)),
        };
        // A soft-deleted aggregate with no event since may be started again
        // as a new one; its versions continue after the deleted ones.
        let restarts =
            req.expected == ExpectedVersion::NoStream && group.rules.soft_deleted_empty(&req.aggregate_id, current);
        if !restarts && !req.expected.matches(current) {
            return Err(Error::WrongExpectedVersion {
                aggregate_id: req.aggregate_id.clone(),
                expected: req.expected,
                actual: current,
            });
        }
        Ok(Verdict::New(current))
    }

    /// If any id of the batch is in the dedupe window, the batch is a retry
    /// only if every one of its events is stored exactly where this batch put
    /// it: ids inside the window by the window, ids that already left it (a
    /// retry straddling the window's horizon) by reading the log at their
    /// place. Otherwise the id is a duplicate and the append is refused.
    fn retry_of(&self, req: &AppendPart, idx: &IndexState, group: &Group<'_>) -> Result<Option<AppendResult>> {
        let Some((k, seen)) = req.events.iter().enumerate().find_map(|(i, e)| Some((i, self.dedupe.get(&e.event_id)?)))
        else {
            return Ok(None);
        };
        let hash = aggregate_hash(&req.aggregate_id);
        let dup = |id, seen: Seen| Error::DuplicateEventId {
            event_id: id,
            aggregate_id: req.aggregate_id.clone(),
            existing_aggregate: group.aggregate_at(idx, seen.position),
            existing_position: seen.position,
        };
        let (Some(start), Some(first_version)) =
            (seen.position.checked_sub(k as u64), seen.version.checked_sub(k as u64))
        else {
            return Err(dup(req.events[k].event_id, seen));
        };
        for (i, ev) in req.events.iter().enumerate() {
            let (position, version) = (start + i as u64, first_version + i as u64);
            let in_place = match self.dedupe.get(&ev.event_id) {
                Some(s) => s.aggregate_hash == hash && s.position == position && s.version == version,
                // Left the window: the log itself must hold this id at that place.
                None => idx.event_at(position).and_then(|e| e.ok()).is_some_and(|e| {
                    e.event_id() == ev.event_id && e.version() == version && e.aggregate_id() == req.aggregate_id
                }),
            };
            if !in_place {
                return Err(match self.dedupe.get(&ev.event_id) {
                    Some(s) => dup(ev.event_id, s),
                    None => dup(req.events[k].event_id, seen),
                });
            }
        }
        let n = req.events.len() as u64;
        Ok(Some(AppendResult {
            first_version,
            last_version: first_version + n - 1,
            first_position: start,
            last_position: start + n - 1,
            deduplicated: true,
            snapshot_due: false,
        }))
    }

    /// For a request some of whose parts are retries (their ids in the dedupe
    /// window) and the others not: whether every part is stored where this
    /// request put it, the others read back from the log (their ids left the
    /// window). Then the results of the retry, else `None`.
    fn retry_in_log(&self, req: &AppendRequest, verdicts: &[Verdict], idx: &IndexState) -> Option<Vec<AppendResult>> {
        let (r, stored) = verdicts.iter().enumerate().find_map(|(i, v)| Some((i, v.stored()?)))?;
        let before: u64 = req.parts[..r].iter().map(|p| p.events.len() as u64).sum();
        let mut position = stored.first_position.checked_sub(before)?;
        let mut results = Vec::with_capacity(req.parts.len());
        for (part, verdict) in req.parts.iter().zip(verdicts) {
            let n = part.events.len() as u64;
            let result = match verdict.stored() {
                Some(s) if s.first_position == position => *s,
                Some(_) => return None,
                None => {
                    let first = idx.event_at(position)?.ok()?;
                    let first_version = first.version();
                    for (i, ev) in part.events.iter().enumerate() {
                        let e = idx.event_at(position + i as u64)?.ok()?;
                        let in_place = e.event_id() == ev.event_id
                            && e.aggregate_id() == part.aggregate_id
                            && e.version() == first_version + i as u64;
                        if !in_place {
                            return None;
                        }
                    }
                    AppendResult {
                        first_version,
                        last_version: first_version + n - 1,
                        first_position: position,
                        last_position: position + n - 1,
                        deduplicated: true,
                        snapshot_due: false,
                    }
                }
            };
            results.push(result);
            position += n;
        }
        Some(results)
    }

    /// Encodes a request's frames at the end of `buf`, its parts one after
    /// the other as one batch (part `k` starting at version
    /// `first_versions[k]`); returns the offsets of the frames within `buf`.
    /// On error `buf` is left as it was.
    fn encode(
        &mut self,
        req: &AppendRequest,
        first_versions: &[u64],
        first_position: u64,
        recorded_at: i64,
    ) -> Result<Vec<u32>> {
        let mark = self.buf.len();
        let n = req.events() as u32;
        let mut offsets = Vec::with_capacity(n as usize);
        let events = req.parts.iter().zip(first_versions).flat_map(|(part, first_version)| {
            part.events.iter().enumerate().map(move |(i, ev)| (part, i, first_version + i as u64, ev))
        });
        for (k, (part, i, version, ev)) in events.enumerate() {
            let body = RecordBody {
                position: first_position + k as u64,
                version,
                event_id: ev.event_id.0,
                occurred_at: ev.occurred_at,
                recorded_at,
                event_version: ev.event_version,
                causation_id: ev.causation_id.map(|c| c.0),
                correlation_id: ev.correlation_id.map(|c| c.0),
                aggregate_id: &part.aggregate_id,
                event_type: &ev.event_type,
                metadata: &ev.metadata,
                data: &ev.data,
            };
            let at = self.buf.len();
            let synced = self.opts.durability == Durability::Sync;
            let format = self.active.seg.format;
            let len = match record::encode_frame_as(&mut self.buf, &body, n, k as u32, synced, format) {
                Ok(len) => len,
                Err(e) if self.buf.len() < mark => {
                    // The encoder lost the buffer: earlier frames of the group are gone.
                    let cause = format!("frame encoding lost the group's buffer: {e}");
                    self.shared.set_poison(cause.clone());
                    return Err(Error::Poisoned { cause });
                }
                Err(e) => {
                    self.buf.resize(mark, 0);
                    return Err(Error::InvalidInput(e.to_string()));
                }
            };
            let body_len = (len - record::FRAME_HEADER_BYTES) as u64;
            if body_len > u64::from(self.opts.max_event_bytes) {
                self.buf.resize(mark, 0);
                return Err(Error::EventTooLarge {
                    aggregate_id: part.aggregate_id.clone(),
                    index: i,
                    size: body_len,
                    max: u64::from(self.opts.max_event_bytes),
                });
            }
            offsets.push((at - mark) as u32);
        }
        Ok(offsets)
    }

    /// One group commit: stage every request (checks, encoding, rolls) into
    /// one buffer, write it with one `pwrite`, sync once, publish, reply.
    fn commit_group(&mut self, appends: Vec<AppendRequest>) {
        if let Some(cause) = self.shared.poison_cause() {
            for r in appends {
                let _ = r.reply.send(Err(Error::Poisoned { cause: cause.clone() }));
            }
            return;
        }
        // recorded_at never decreases along the log, even if the clock steps back,
        // so time-travel lookups can binary-search it.
        let recorded_at = now_nanos().max(self.last_recorded_at);
        self.last_recorded_at = recorded_at;
        self.buf.clear();
        let mut group = Group::new(recorded_at, self.active.write_offset, self.shared.streams());
        let shared = Arc::clone(&self.shared);
        let idx = shared.index();
        for (ri, req) in appends.iter().enumerate() {
            let out = self.stage(&mut group, &idx, ri, req);
            group.outcomes.push(out);
        }
        drop(idx);
        if group.fatal.is_none() {
            if let Err(e) = self.write_and_sync(group.buf_at) {
                group.fatal = Some(e);
            }
        }
        let Group { outcomes, pending, fatal, .. } = group;
        if let Some(e) = fatal {
            // Nothing of this group is acknowledged; the store is poisoned.
            for (req, out) in appends.iter().zip(outcomes) {
                let _ = req.reply.send(out.and_then(|_| Err(Error::Poisoned { cause: e.to_string() })));
            }
            return;
        }
        let rolled = pending.iter().any(|p| matches!(p, Pending::Segment(_)));
        self.publish(&appends, pending);
        self.attach_files();
        if rolled && self.opts.retention.is_some() {
            // A failure leaves the segments in place; the next roll tries again.
            let _ = self.apply_retention();
        }
        // Prepare the next segment once the active one is half full: early
        // enough to be ready at the roll, late enough not to compete with
        // appends for the disk right after open.
        if self.preparer.is_none() && self.active.write_offset > self.active.seg.len() / 2 {
            self.start_preparing();
        }
        for (req, out) in appends.into_iter().zip(outcomes) {
            let _ = req.reply.send(out);
        }
    }

    /// Checks one request and, if it is new, encodes its frames into the
    /// group's buffer (rolling to a new segment if it does not fit) and notes
    /// its index entries and dedupe entries. All of a request's parts are
    /// checked before anything is staged: one failed expectation fails the
    /// request, and a retry is recognised only if every part is one.
    fn stage<'g>(
        &mut self,
        group: &mut Group<'g>,
        idx: &IndexState,
        ri: usize,
        req: &'g AppendRequest,
    ) -> Result<Vec<AppendResult>> {
        if group.fatal.is_some() {
            return Err(Error::Poisoned { cause: "an earlier write of this group failed".into() });
        }
        if let Some(e) = &group.roll_error {
            return Err(e.duplicate());
        }
        let verdicts = req.parts.iter().map(|part| self.check(part, idx, group)).collect::<Result<Vec<_>>>()?;
        let retries = verdicts.iter().filter(|v| matches!(v, Verdict::Retry(_))).count();
        if retries == verdicts.len() {
            return Ok(verdicts.into_iter().filter_map(|v| v.retry()).collect());
        }
        if retries > 0 {
            // A retry whose other parts' ids all left the dedupe window: the
            // log itself says whether they are stored where this request put them.
            if let Some(results) = self.retry_in_log(req, &verdicts, idx) {
                return Ok(results);
            }
            // Part of an atomic append is stored and part is not: its ids were
            // used by another append.
            let stored = req.parts.iter().zip(&verdicts).find_map(|(p, v)| Some((p, v.stored()?)));
            if let Some((part, stored)) = stored {
                return Err(Error::DuplicateEventId {
                    event_id: part.events[0].event_id,
                    aggregate_id: part.aggregate_id.clone(),
                    existing_aggregate: group.aggregate_at(idx, stored.first_position),
                    existing_position: stored.first_position,
                });
            }
        }
        let first_versions: Vec<u64> = verdicts.iter().map(|v| v.current().map_or(0, |c| c + 1)).collect();
        let first_position = self.next_position;
        let total = req.events() as u64;
        if first_position.saturating_add(total) > POSITION_LIMIT {
            return Err(Error::InvalidInput(format!(
                "the log's position space is exhausted (positions end below {POSITION_LIMIT})"
            )));
        }
        let (start, offsets) = self.place(group, req, &first_versions, first_position)?;
        let mut position = first_position;
        let mut results = Vec::with_capacity(req.parts.len());
        let mut offsets = offsets.into_iter();
        for (pi, (part, first_version)) in req.parts.iter().zip(first_versions).enumerate() {
            let n = part.events.len() as u64;
            let hash = aggregate_hash(&part.aggregate_id);
            let part_first = position;
            for (i, (ev, offset)) in part.events.iter().zip(offsets.by_ref()).enumerate() {
                let version = first_version + i as u64;
                let offset = (start + u64::from(offset)) as u32;
                group.pending.push(Pending::Event { request: ri, part: pi, version, position, offset });
                self.dedupe.insert(ev.event_id, Seen { position, version, aggregate_hash: hash });
                position += 1;
            }
            let last_version = first_version + n - 1;
            group.overlay.insert(part.aggregate_id.clone(), Some(last_version));
            group.spans.push((part_first, part.events.len(), &part.aggregate_id));
            results.push(AppendResult {
                first_version,
                last_version,
                first_position: part_first,
                last_position: part_first + n - 1,
                deduplicated: false,
                snapshot_due: self.snapshot_due(&part.aggregate_id, last_version),
            });
        }
        self.next_position = position;
        Ok(results)
    }

    /// Whether the aggregate has gone `snapshot_every` events past its newest snapshot.
    fn snapshot_due(&self, aggregate_id: &str, last_version: u64) -> bool {
        self.opts.snapshot_every.is_some_and(|every| {
            let snaps = &self.shared.snapshots;
            match snaps.latest_version(aggregate_id) {
                Some(s) => last_version.saturating_sub(s) >= every,
                None => last_version + 1 >= every,
            }
        })
    }

    /// Encodes a request's frames at the end of the group's buffer; if they
    /// do not fit in the active segment, writes what precedes them, rolls,
    /// and encodes them at the start of the new segment. Returns the file
    /// offset the frame offsets are relative to, and the offsets.
    fn place(
        &mut self,
        group: &mut Group<'_>,
        req: &AppendRequest,
        first_versions: &[u64],
        first_position: u64,
    ) -> Result<(u64, Vec<u32>)> {
        let mark = self.buf.len();
        let offsets = self.encode(req, first_versions, first_position, group.recorded_at).inspect_err(|e| {
            if matches!(e, Error::Poisoned { .. }) {
                group.fatal = Some(e.duplicate());
            }
        })?;
        if group.buf_at + self.buf.len() as u64 <= self.active.seg.len() {
            return Ok((group.buf_at + mark as u64, offsets));
        }
        let needed = (self.buf.len() - mark) as u64;
        self.buf.resize(mark, 0);
        if HEADER_BYTES + needed > self.opts.segment_bytes {
            return Err(Error::InvalidInput(format!(
                "batch for aggregate{} {} encodes to {needed} bytes, more than one segment holds",
                if req.parts.len() > 1 { "s" } else { "" },
                req.parts.iter().map(|p| format!("{:?}", p.aggregate_id)).collect::<Vec<_>>().join(", ")
            )));
        }
        self.roll_group(group, first_position, needed)?;
        let offsets = self.encode(req, first_versions, first_position, group.recorded_at).inspect_err(|e| {
            if matches!(e, Error::Poisoned { .. }) {
                group.fatal = Some(e.duplicate());
            }
        })?;
        Ok((group.buf_at, offsets))
    }

    /// Writes the group's buffer so far, then rolls to a new segment starting
    /// at `first_position`. A failed write is fatal for the group; a failed
    /// roll fails this request and the rest of the group.
    fn roll_group(&mut self, group: &mut Group<'_>, first_position: u64, needed: u64) -> Result<()> {
        let len = self.buf.len();
        if let Err(e) = self.write_buf(len, group.buf_at) {
            group.fatal = Some(e.duplicate());
            return Err(e);
        }
        self.active.write_offset = group.buf_at + len as u64;
        self.buf.clear();
        match self.roll(first_position, needed) {
            Ok(seg) => {
                group.pending.push(Pending::Segment(seg));
                group.buf_at = self.active.write_offset;
                Ok(())
            }
            Err(e) => {
                // IMPORTANT: the frames written above stay where they are; the
                // rest of the group goes after them, never over them.
                group.buf_at = self.active.write_offset;
                if self.shared.poison_cause().is_some() {
                    group.fatal = Some(e.duplicate());
                }
                group.roll_error = Some(e.duplicate());
                Err(e)
            }
        }
    }

    /// Writes the rest of the group's buffer at `buf_at` and, in `Sync` mode,
    /// makes it durable.
    fn write_and_sync(&mut self, buf_at: u64) -> Result<()> {
        let len = self.buf.len();
        self.write_buf(len, buf_at)?;
        self.active.write_offset = buf_at + len as u64;
        if self.opts.durability == Durability::Sync && self.unsynced {
            self.sync_file()?;
        }
        Ok(())
    }

    /// Applies the group's index changes and advances the watermarks, under
    /// the index lock, so a reader sees all of a group or none of it.
    fn publish(&mut self, appends: &[AppendRequest], pending: Vec<Pending>) {
        let mut new_segments = false;
        {
            let mut idx = self.shared.index_mut();
            for p in pending {
                let applied = match p {
                    Pending::Segment(seg) => {
                        new_segments = true;
                        idx.push_segment(seg, 0)
                    }
                    Pending::Event { request, part, version, position, offset } => {
                        idx.push(&appends[request].parts[part].aggregate_id, version, position, offset)
                    }
                };
                if let Err(e) = applied {
                    // A bug, not a disk problem: refuse to go on rather than serve a wrong index.
                    self.shared.set_poison(format!("index invariant broken: {e}"));
                    return;
                }
            }
            debug_assert_eq!(idx.next_position(), self.next_position, "the index ends where the writer does");
            // IMPORTANT: segments first, then the watermark that makes their events visible.
            if new_segments {
                self.shared.publish_segments(&idx);
            }
            self.shared.visible_end.store(self.next_position, Ordering::SeqCst);
            // In `Buffered` mode everything written is durable too when
            // nothing is left unsynced: a roll synced it, and the roll that
            // was to take the rest of the group failed.
            if self.opts.durability == Durability::Sync || !self.unsynced {
                self.shared.advance_durable(self.next_position);
            }
            // Subscribers are woken now if they have not been for a while,
            // else when the writer next looks for work (`next_command`);
            // `Buffered` mode's visible end moved too.
            self.wake_pending = true;
        }
        if self.last_wake.elapsed() >= WAKE_AT_COMMIT_AFTER {
            self.wake_subscribers();
        }
        if self.opts.durability == Durability::Sync || !self.unsynced {
            // After the index lock: readers in this process need not wait for the pwrite.
            self.publish_watermark();
        }
        self.shared.groups.fetch_add(1, Ordering::Relaxed);
    }

    /// Seals the active segment (sync + checkpoint) and makes a new one
    /// starting at `first_position`, with room for `needed` bytes of frames,
    /// the active segment.
    fn roll(&mut self, first_position: u64, needed: u64) -> Result<Arc<Segment>> {
        // Seal: the old segment must be durable before anything lands in the next one.
        self.sync_file()?;
        self.checkpoint_active();
        if let Some(p) = self.preparer.take() {
            let _ = p.join();
        }
        let dir = self.shared.dir.clone();
        let len = self.opts.next_segment_bytes(Some(self.active.seg.len()), needed);
        let path = segment::install(&dir, first_position, len, &self.faults)?;
        let seg = Arc::new(Segment::open(path.clone(), None)?);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("open segment for writing", &path, e))?;
        self.active = Active { file, seg: Arc::clone(&seg), write_offset: HEADER_BYTES };
        Ok(seg)
    }

    /// Writes the index checkpoint of the active segment. A failure is not
    /// fatal: recovery rebuilds a missing checkpoint from the segment.
    /// Starts writing the sealed active segment's checkpoint on a background
    /// thread (one at a time), off the append path.
    fn checkpoint_active(&mut self) {
        self.join_checkpointer();
        let seg = Arc::clone(&self.active.seg);
        let end = self.active.write_offset;
        let dir = self.shared.dir.clone();
        self.checkpointer = std::thread::Builder::new()
            .name("factlog-checkpoint".into())
            .spawn(move || write_checkpoint_of(&dir, seg, end))
            .ok();
    }

    /// Whether a read-only handle of this store is open anywhere (then no
    /// file is recycled). Unknown counts as yes.
    fn readers_present(&self) -> bool {
        let lock = self.shared.lock_probe.get().and_then(std::sync::Weak::upgrade);
        lock.is_none_or(|l| l.readers_present().unwrap_or(true))
    }

    /// Waits for the index file of the last sealed segment, and moves that
    /// segment's entries from memory to it (the segment is sealed in the
    /// index by now: every caller joins after the next segment was pushed,
    /// else the entries stay in memory, correct, and a reopen uses the file).
    fn join_checkpointer(&mut self) {
        join_checkpointer(&mut self.checkpointer, &mut self.to_attach);
    }

    /// Moves the entries of the sealed segments whose index files are
    /// written from memory to their files. Never under an index lock.
    fn attach_files(&mut self) {
        for (seg, path) in self.to_attach.drain(..) {
            self.shared.attach_index_file(&seg, &path);
        }
    }

    fn start_preparing(&mut self) {
        if !self.opts.prepare_next_segment {
            return;
        }
        // A recycled file waits for the roll: nothing to zero-fill.
        let len = self.opts.next_segment_bytes(Some(self.active.seg.len()), 0);
        if segment::ready(&self.shared.dir, segment::RECYCLED_NAME, len) {
            return;
        }
        let path: PathBuf = self.shared.dir.join(segment::PREPARED_NAME);
        let len = self.opts.next_segment_bytes(Some(self.active.seg.len()), 0);
        let faults = Arc::clone(&self.faults);
        self.preparer = std::thread::Builder::new()
            .name("factlog-prepare".into())
            .spawn(move || {
                if std::fs::metadata(&path).map(|m| m.len() == len).unwrap_or(false) {
                    return Ok(());
                }
                segment::create_zeroed(&path, len, &faults)
            })
            .ok();
    }
}

/// Whether an erasure is pending in the store's rules.
fn erasure_pending(shared: &Shared) -> bool {
    shared.streams().iter().any(|(_, s)| s.erased)
}

/// A sealed segment and its index file, just written.
type Written = (Arc<Segment>, PathBuf);

/// [`Writer::join_checkpointer`], for a caller holding a borrow of the writer's `shared`.
fn join_checkpointer(checkpointer: &mut Option<JoinHandle<Option<Written>>>, to_attach: &mut Vec<Written>) {
    if let Some(Ok(Some(written))) = checkpointer.take().map(|c| c.join()) {
        to_attach.push(written);
    }
}

/// Writes the index file of a sealed segment whose frames end at `end`, and
/// moves its entries from memory to the file. A failure is not fatal: the
/// entries stay in memory, and recovery rebuilds a missing file from the segment.
fn write_checkpoint_of(dir: &std::path::Path, seg: Arc<Segment>, end: u64) -> Option<Written> {
    let path = {
        let mut frames = seg.frames(HEADER_BYTES, seg.first_position, Check::Trusted).ok()?;
        let mut entries = Vec::new();
        while frames.offset() < end {
            let Ok(Some(f)) = frames.next_frame() else { return None };
            let (aggregate_id, version) = (f.event.aggregate_id(), f.event.version());
            let position = f.event.position();
            entries.push(CheckpointEntry { aggregate_id, version, position, offset: f.offset as u32 });
        }
        crate::index::write_checkpoint(dir, &seg, &entries).ok()?
    };
    Some((seg, path))
}
