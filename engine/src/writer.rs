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
use crate::index::{CheckpointEntry, IndexState, SegmentSlot};
use crate::options::{Durability, Options};
use crate::record::{self, RecordBody};
use crate::segment::{self, Segment, HEADER_BYTES, POSITION_LIMIT};
use crate::store::Shared;

/// How long the idle writer polls its queue before blocking, in microseconds.
const SPIN_BEFORE_BLOCK_US: u64 = 30;

/// One append, as sent to the writer.
pub(crate) struct AppendRequest {
    pub aggregate_id: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
    pub reply: Sender<Result<AppendResult>>,
}

/// What the writer thread can be asked to do.
pub(crate) enum Command {
    Append(AppendRequest),
    Sync(Sender<Result<()>>),
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
    Event { request: usize, version: u64, position: u64, offset: u32 },
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
    preparer: Option<JoinHandle<Result<()>>>,
    checkpointer: Option<JoinHandle<()>>,
    last_recorded_at: i64,
}

enum Check {
    New(Option<u64>),
    Retry(AppendResult),
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        opts: Options,
        active: Active,
        next_position: u64,
        dedupe: Dedupe,
        last_recorded_at: i64,
    ) -> Writer {
        let faults = opts.faults.clone().unwrap_or_default();
        Writer {
            shared,
            opts,
            faults,
            active,
            next_position,
            dedupe,
            buf: AlignedVec::with_capacity(1 << 20),
            unsynced: false,
            last_sync: Instant::now(),
            preparer: None,
            checkpointer: None,
            last_recorded_at,
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
            let mut shutdown = None;
            let mut push = |c: Command, appends: &mut Vec<AppendRequest>| match c {
                Command::Append(r) => appends.push(r),
                Command::Sync(tx) => syncs.push(tx),
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
                }
                Err(RecvTimeoutError::Disconnected) => return None,
            }
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
        if let Some(c) = self.checkpointer.take() {
            let _ = c.join();
        }
        if self.shared.poison_cause().is_some() {
            return Ok(());
        }
        self.sync_now()
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
            self.shared.durable_end.store(self.next_position, Ordering::Release);
        }
        r
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
    fn check(
        &self,
        req: &AppendRequest,
        idx: &IndexState,
        overlay: &HashMap<String, Option<u64>>,
        group: &[(u64, usize, &str)],
    ) -> Result<Check> {
        let hash = aggregate_hash(&req.aggregate_id);
        let first = &req.events[0];
        let aggregate_at = |position: u64| -> String {
            if let Some(&(_, _, agg)) = group.iter().find(|(p, n, _)| position >= *p && position < *p + *n as u64) {
                return agg.to_string();
            }
            idx.locate(position)
                .and_then(|(i, off)| {
                    idx.segments[i].seg.event_at(off, position).ok().map(|(e, _)| e.aggregate_id().to_string())
                })
                .unwrap_or_else(|| "<unknown>".to_string())
        };
        let dup = |id, seen: Seen| Error::DuplicateEventId {
            event_id: id,
            aggregate_id: req.aggregate_id.clone(),
            existing_aggregate: aggregate_at(seen.position),
            existing_position: seen.position,
        };
        if let Some(s0) = self.dedupe.get(&first.event_id) {
            // A retry only if every id sits exactly where this batch would have put it.
            for (i, ev) in req.events.iter().enumerate() {
                match self.dedupe.get(&ev.event_id) {
                    Some(s)
                        if s.aggregate_hash == hash
                            && s.position == s0.position + i as u64
                            && s.version == s0.version + i as u64 => {}
                    Some(s) => return Err(dup(ev.event_id, s)),
                    None => return Err(dup(first.event_id, s0)),
                }
            }
            if s0.aggregate_hash != hash {
                return Err(dup(first.event_id, s0));
            }
            let n = req.events.len() as u64;
            return Ok(Check::Retry(AppendResult {
                first_version: s0.version,
                last_version: s0.version + n - 1,
                first_position: s0.position,
                last_position: s0.position + n - 1,
                deduplicated: true,
                snapshot_due: false,
            }));
        }
        let mut ids = std::collections::HashSet::with_capacity(req.events.len());
        for ev in &req.events {
            if let Some(s) = self.dedupe.get(&ev.event_id) {
                return Err(dup(ev.event_id, s));
            }
            if !ids.insert(ev.event_id) {
                return Err(Error::InvalidInput(format!(
                    "event id {} appears twice in one batch for aggregate {:?}",
                    crate::error::fmt_id(&ev.event_id),
                    req.aggregate_id
                )));
            }
        }
        let current = match overlay.get(&req.aggregate_id) {
            Some(v) => *v,
            None => idx.version_below(&req.aggregate_id, u64::MAX),
        };
        if !req.expected.matches(current) {
            return Err(Error::WrongExpectedVersion {
                aggregate_id: req.aggregate_id.clone(),
                expected: req.expected,
                actual: current,
            });
        }
        Ok(Check::New(current))
    }

    /// Encodes a request's frames at the end of `buf`; returns the offsets of
    /// the frames within `buf`. On error `buf` is left as it was.
    fn encode(
        &mut self,
        req: &AppendRequest,
        first_version: u64,
        first_position: u64,
        recorded_at: i64,
    ) -> Result<Vec<u32>> {
        let mark = self.buf.len();
        let n = req.events.len() as u32;
        let mut offsets = Vec::with_capacity(req.events.len());
        for (i, ev) in req.events.iter().enumerate() {
            let body = RecordBody {
                position: first_position + i as u64,
                version: first_version + i as u64,
                event_id: ev.event_id,
                occurred_at: ev.occurred_at,
                recorded_at,
                event_version: ev.event_version,
                causation_id: ev.causation_id,
                correlation_id: ev.correlation_id,
                aggregate_id: &req.aggregate_id,
                event_type: &ev.event_type,
                metadata: &ev.metadata,
                data: &ev.data,
            };
            let at = self.buf.len();
            let synced = self.opts.durability == Durability::Sync;
            let len = match record::encode_frame_slot(&mut self.buf, &body, n, i as u32, synced) {
                Ok(len) => len,
                Err(reason) => {
                    self.buf.resize(mark, 0);
                    return Err(Error::InvalidInput(reason));
                }
            };
            let body_len = (len - record::FRAME_HEADER_BYTES) as u64;
            if body_len > u64::from(self.opts.max_event_bytes) {
                self.buf.resize(mark, 0);
                return Err(Error::EventTooLarge {
                    aggregate_id: req.aggregate_id.clone(),
                    index: i,
                    size: body_len,
                    max: u64::from(self.opts.max_event_bytes),
                });
            }
            offsets.push((at - mark) as u32);
        }
        Ok(offsets)
    }

    fn commit_group(&mut self, appends: Vec<AppendRequest>) {
        let mut outcomes: Vec<Result<AppendResult>> = Vec::with_capacity(appends.len());
        if let Some(cause) = self.shared.poison_cause() {
            for r in appends {
                let _ = r.reply.send(Err(Error::Poisoned { cause: cause.clone() }));
            }
            return;
        }
        self.buf.clear();
        let mut buf_at = self.active.write_offset;
        // recorded_at never decreases along the log, even if the clock steps back,
        // so time-travel lookups can binary-search it.
        let recorded_at = now_nanos().max(self.last_recorded_at);
        self.last_recorded_at = recorded_at;
        let mut overlay: HashMap<String, Option<u64>> = HashMap::new();
        let mut pending: Vec<Pending> = Vec::new();
        let mut group: Vec<(u64, usize, &str)> = Vec::new();
        let mut fatal: Option<Error> = None;
        let mut roll_error: Option<Error> = None;
        let shared = Arc::clone(&self.shared);
        let idx = shared.index.read().unwrap_or_else(|p| p.into_inner());
        for (ri, req) in appends.iter().enumerate() {
            if fatal.is_some() {
                outcomes.push(Err(Error::Poisoned { cause: "an earlier write of this group failed".into() }));
                continue;
            }
            if let Some(e) = &roll_error {
                outcomes.push(Err(e.duplicate()));
                continue;
            }
            let current = match self.check(req, &idx, &overlay, &group) {
                Ok(Check::New(current)) => current,
                Ok(Check::Retry(r)) => {
                    outcomes.push(Ok(r));
                    continue;
                }
                Err(e) => {
                    outcomes.push(Err(e));
                    continue;
                }
            };
            let first_version = current.map_or(0, |v| v + 1);
            let first_position = self.next_position;
            if first_position.saturating_add(req.events.len() as u64) > POSITION_LIMIT {
                outcomes.push(Err(Error::InvalidInput(format!(
                    "the log's position space is exhausted (positions end below {POSITION_LIMIT})"
                ))));
                continue;
            }
            let mark = self.buf.len();
            let mut offsets = match self.encode(req, first_version, first_position, recorded_at) {
                Ok(o) => o,
                Err(e) => {
                    outcomes.push(Err(e));
                    continue;
                }
            };
            let mut req_start = mark;
            if buf_at + self.buf.len() as u64 > self.active.seg.len() {
                // Does not fit: write what precedes it, seal, roll, re-encode there.
                let needed = (self.buf.len() - mark) as u64;
                self.buf.resize(mark, 0);
                if HEADER_BYTES + needed > self.opts.segment_bytes {
                    outcomes.push(Err(Error::InvalidInput(format!(
                        "batch for aggregate {:?} encodes to {needed} bytes, more than one segment holds",
                        req.aggregate_id
                    ))));
                    continue;
                }
                if let Err(e) = self.write_buf(mark, buf_at) {
                    outcomes.push(Err(e.duplicate()));
                    fatal = Some(e);
                    continue;
                }
                self.active.write_offset = buf_at + mark as u64;
                self.buf.clear();
                buf_at = self.active.write_offset;
                match self.roll(first_position) {
                    Ok(seg) => pending.push(Pending::Segment(seg)),
                    Err(e) => {
                        if self.shared.poison_cause().is_some() {
                            fatal = Some(e.duplicate());
                        }
                        outcomes.push(Err(e.duplicate()));
                        roll_error = Some(e);
                        continue;
                    }
                }
                buf_at = self.active.write_offset;
                req_start = 0;
                offsets = match self.encode(req, first_version, first_position, recorded_at) {
                    Ok(o) => o,
                    Err(e) => {
                        outcomes.push(Err(e));
                        continue;
                    }
                };
            }
            let n = req.events.len();
            let hash = aggregate_hash(&req.aggregate_id);
            for (i, ev) in req.events.iter().enumerate() {
                let position = first_position + i as u64;
                let version = first_version + i as u64;
                let offset = (buf_at + req_start as u64 + u64::from(offsets[i])) as u32;
                pending.push(Pending::Event { request: ri, version, position, offset });
                self.dedupe.insert(ev.event_id, Seen { position, version, aggregate_hash: hash });
            }
            self.next_position += n as u64;
            overlay.insert(req.aggregate_id.clone(), Some(first_version + n as u64 - 1));
            group.push((first_position, n, &req.aggregate_id));
            let last_version = first_version + n as u64 - 1;
            let snapshot_due = self.opts.snapshot_every.is_some_and(|every| {
                match self.shared.snapshots.latest_version(&req.aggregate_id) {
                    Some(s) => last_version.saturating_sub(s) >= every,
                    None => last_version + 1 >= every,
                }
            });
            outcomes.push(Ok(AppendResult {
                first_version,
                last_version,
                first_position,
                last_position: first_position + n as u64 - 1,
                deduplicated: false,
                snapshot_due,
            }));
        }
        drop(idx);
        if fatal.is_none() {
            let len = self.buf.len();
            match self.write_buf(len, buf_at) {
                Ok(()) => self.active.write_offset = buf_at + len as u64,
                Err(e) => fatal = Some(e),
            }
        }
        if fatal.is_none() && self.opts.durability == Durability::Sync && self.unsynced {
            if let Err(e) = self.sync_file() {
                fatal = Some(e);
            }
        }
        if let Some(e) = fatal {
            // Nothing of this group is acknowledged; the store is poisoned.
            for (req, out) in appends.iter().zip(outcomes) {
                let r = match out {
                    Ok(_) => Err(Error::Poisoned { cause: e.to_string() }),
                    Err(x) => Err(x),
                };
                let _ = req.reply.send(r);
            }
            return;
        }
        self.publish(&appends, pending);
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

    fn publish(&mut self, appends: &[AppendRequest], pending: Vec<Pending>) {
        let sync_mode = self.opts.durability == Durability::Sync;
        let mut new_segments = false;
        {
            let mut idx = self.shared.index.write().unwrap_or_else(|p| p.into_inner());
            for p in pending {
                match p {
                    Pending::Segment(seg) => {
                        // The sealed segment's offsets never grow again: drop the slack.
                        if let Some(last) = idx.segments.last_mut() {
                            last.offsets.shrink_to_fit();
                        }
                        idx.segments.push(SegmentSlot { seg, offsets: Vec::new() });
                        new_segments = true;
                    }
                    Pending::Event { request, version, position, offset } => {
                        if let Err(e) = idx.push(&appends[request].aggregate_id, version, position, offset) {
                            // A bug, not a disk problem: refuse to go on rather than serve a wrong index.
                            self.shared.set_poison(format!("index invariant broken: {e}"));
                            return;
                        }
                    }
                }
            }
        }
        if new_segments {
            self.shared.refresh_segment_list();
        }
        self.shared.visible_end.store(self.next_position, Ordering::Release);
        if sync_mode {
            self.shared.durable_end.store(self.next_position, Ordering::Release);
        }
        self.shared.groups.fetch_add(1, Ordering::Relaxed);
    }

    /// Seals the active segment (sync + checkpoint) and makes a new one
    /// starting at `first_position` the active segment.
    fn roll(&mut self, first_position: u64) -> Result<Arc<Segment>> {
        // Seal: the old segment must be durable before anything lands in the next one.
        self.sync_file()?;
        self.checkpoint_active();
        if let Some(p) = self.preparer.take() {
            let _ = p.join();
        }
        let dir = self.shared.dir.clone();
        let path = segment::install(&dir, first_position, self.opts.segment_bytes, &self.faults)?;
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
        if let Some(c) = self.checkpointer.take() {
            let _ = c.join();
        }
        let seg = Arc::clone(&self.active.seg);
        let end = self.active.write_offset;
        let dir = self.shared.dir.clone();
        self.checkpointer = std::thread::Builder::new()
            .name("factlog-checkpoint".into())
            .spawn(move || write_checkpoint_of(&dir, &seg, end))
            .ok();
    }

    fn start_preparing(&mut self) {
        if !self.opts.prepare_next_segment {
            return;
        }
        let path: PathBuf = self.shared.dir.join(segment::PREPARED_NAME);
        let len = self.opts.segment_bytes;
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

/// Writes the checkpoint of a sealed segment whose frames end at `end`. A
/// failure is not fatal: recovery rebuilds a missing checkpoint from the segment.
fn write_checkpoint_of(dir: &std::path::Path, seg: &Segment, end: u64) {
    let mut entries = Vec::new();
    let mut offset = HEADER_BYTES;
    let mut position = seg.first_position;
    while offset < end {
        match seg.event_at(offset, position) {
            Ok((ev, len)) => {
                entries.push(CheckpointEntry {
                    aggregate_id: ev.aggregate_id(),
                    version: ev.version(),
                    offset: offset as u32,
                });
                offset += len as u64;
                position += 1;
            }
            Err(_) => return,
        }
    }
    let _ = crate::index::write_checkpoint(dir, seg.first_position, &entries);
}
