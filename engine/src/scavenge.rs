//! The scavenge: rewrites sealed segments without the events the lifecycle
//! rules hide (deleted, expired, truncated, erased), as sparse segments in
//! which every surviving event keeps its position; then completes erasures
//! (their ids leave the `STREAMS` file, a hash tombstone stays) and drops
//! the snapshots of deleted aggregates. It runs on the caller's thread
//! beside appends, reads and subscriptions.
//!
//! It must never change a position, never write into the active segment
//! (when erased data lies there it asks the writer to seal it first), and
//! never let a crash lose a surviving event or bring a removed one back
//! once it returned. Per segment: the new file is written aside and synced
//! and checked in full; the old checkpoint is removed and the directory
//! synced; the new file is renamed over the old and the directory synced;
//! the index swaps the maps; the new checkpoint is written. A crash between
//! any two steps leaves either segment whole, with a checkpoint that
//! describes it or none (then recovery scans and rebuilds it). Readers
//! holding the old map keep reading it: an unlinked file stays mapped.

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rkyv::util::AlignedVec;

use crate::durable::TMP_SUFFIX;
use crate::error::{Error, Result};
use crate::event::EventRef;
use crate::index::{self, CheckpointEntry};
use crate::reader::Reader;
use crate::record::{self, FrameFormat, RecordBody, FRAME_HEADER_BYTES};
use crate::segment::{self, Check, FrameCursor, Segment, SegmentHeader, HEADER_BYTES, SPARSE_SEGMENT_BYTES_MIN};
use crate::shared::Shared;
use crate::streams::{DeleteMode, StreamChange};

/// What a scavenge did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScavengeReport {
    /// Sealed segments looked at.
    pub segments_scanned: usize,
    /// Segments rewritten without removed events.
    pub segments_rewritten: usize,
    /// Events removed from the log.
    pub events_removed: u64,
    /// Bytes of the segments read (the input).
    pub bytes_read: u64,
    /// Bytes of segment files before the rewrites (of the rewritten ones).
    pub bytes_before: u64,
    /// Bytes of their replacements.
    pub bytes_after: u64,
    /// Erasures completed: no file holds these aggregates' bytes any more.
    pub erasures_completed: usize,
    /// Erasures not completed because a consumer in use lists the
    /// aggregates in its dead-letter list (`consumers_in_use`): run the
    /// scavenge again once it is closed.
    pub erasures_pending: usize,
    /// The consumers that kept an erasure pending.
    pub consumers_in_use: Vec<String>,
    /// Aggregates whose snapshots were dropped.
    pub snapshots_dropped: usize,
    /// Wall time.
    pub duration: Duration,
}

impl ScavengeReport {
    /// Bytes reclaimed on disk.
    pub fn bytes_reclaimed(&self) -> u64 {
        self.bytes_before.saturating_sub(self.bytes_after)
    }
}

/// What the scavenge needs from the store above it: the writer's commands.
pub(crate) trait WriterLink {
    /// Seals the active segment (module `writer`, `Command::Seal`); with
    /// `roll` false, only waits until every sealed segment's checkpoint is written.
    fn seal(&self, roll: bool) -> Result<()>;
    /// Applies a lifecycle change through the writer thread.
    fn change(&self, aggregate_id: &str, change: StreamChange) -> Result<()>;
    /// Drops every snapshot of these aggregates; returns how many aggregates had some.
    fn forget_snapshots(&self, aggregate_ids: &HashSet<String>) -> Result<usize>;
    /// Removes these aggregates from every consumer's dead-letter list;
    /// returns the consumers in use, whose lists could not be rewritten.
    fn scrub_parked(&self, aggregate_ids: &HashSet<String>) -> Result<Vec<String>>;
}

/// Runs one scavenge. `progress` gets (bytes read, bytes of sealed segments).
pub(crate) fn run(
    shared: &Arc<Shared>,
    link: &dyn WriterLink,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ScavengeReport> {
    let started = Instant::now();
    let _one = shared.scavenge_lock.lock().unwrap_or_else(|p| p.into_inner());
    let mut report = ScavengeReport::default();
    let rules = shared.streams();
    // Erased data in the active segment: seal it, so it can be rewritten.
    let erased: Vec<String> = rules.iter().filter(|(_, s)| s.erased).map(|(id, _)| id.to_string()).collect();
    if !erased.is_empty() {
        let active_first = shared.segments().last().map_or(0, |s| s.first_position);
        let idx = shared.index();
        let in_active = erased
            .iter()
            .any(|id| idx.positions(id).and_then(|v| v.last_position()).is_some_and(|p| p >= active_first));
        drop(idx);
        // A recycled active segment may hold old bytes of erased events
        // after its log's end: sealed, its tail can be zeroed (`complete`).
        let recycled_active = shared.segments().last().is_some_and(|s| s.recycled);
        if in_active || recycled_active {
            link.seal(true)?;
        }
    }
    // Every sealed segment with its checkpoint: none is skipped for being young.
    link.seal(false)?;
    let reader = Reader::new(shared);
    let segs: Vec<Arc<Segment>> = reader.segments().to_vec();
    let sealed = segs.len().saturating_sub(1);
    set_floors(shared, &reader, link, segs.last().map_or(0, |s| s.first_position))?;
    let total: u64 = segs.iter().take(sealed).map(|s| s.len()).sum();
    for k in 0..sealed {
        let (seg, end) = (&segs[k], segs[k + 1].first_position);
        report.segments_scanned += 1;
        // A sealed segment whose checkpoint could not be written (the writer
        // waited for them above) ends this scavenge: its rewrite must not race
        // a late checkpoint write, and the segments after it must not lose an
        // aggregate's events while it keeps earlier ones (removals are a
        // prefix of each aggregate's versions). A reopen rebuilds it.
        if !shared.dir.join(index::file_name(seg.first_position)).exists() {
            break;
        }
        report.bytes_read += seg.len();
        rewrite(shared, &reader, seg, end, &mut report)?;
        progress(report.bytes_read, total);
    }
    complete(shared, link, &rules, &mut report)?;
    report.duration = started.elapsed();
    Ok(report)
}

/// One surviving event of a segment being rewritten: its position and its
/// new frame offset.
type Kept = (u64, u32);

/// An event a rewrite keeps, and its whole frame in the old segment when
/// that frame is copied rather than re-encoded (format 2 segments).
struct Survivor<'s> {
    event: EventRef<'s>,
    /// Its offset in the old segment.
    offset: u64,
    frame: Option<&'s [u8]>,
}

impl Survivor<'_> {
    /// Appends its frame to `buf` (a new batch of one): the old frame copied,
    /// or the event re-encoded in format 2.
    fn encode(&self, buf: &mut AlignedVec, source: &Path) -> Result<()> {
        let e = &self.event;
        let position = e.position();
        let Some(frame) = self.frame else {
            let body = RecordBody {
                position,
                version: e.version(),
                event_id: e.event_id().0,
                occurred_at: e.occurred_at(),
                recorded_at: e.recorded_at(),
                event_version: e.event_version(),
                causation_id: e.causation_id().map(|c| c.0),
                correlation_id: e.correlation_id().map(|c| c.0),
                aggregate_id: e.aggregate_id(),
                event_type: e.event_type(),
                metadata: e.metadata(),
                data: e.data(),
            };
            return record::encode_frame_as(buf, &body, 1, 0, true, FrameFormat::V2)
                .map(|_| ())
                .map_err(|err| Error::InvalidInput(format!("re-encoding position {position}: {err}")));
        };
        record::copy_frame(buf, frame, 1, 0, true).map(|_| ()).map_err(|err| {
            Error::corrupt(source, self.offset, format!("copying the frame of position {position}: {err}"))
        })
    }
}

/// Rewrites `seg` (covering positions up to `end`) without the events
/// `reader` hides, if there are any.
fn rewrite(shared: &Shared, reader: &Reader, seg: &Arc<Segment>, end: u64, report: &mut ScavengeReport) -> Result<()> {
    // A segment not validated yet in this process is walked with every
    // check once, rather than validated and then walked.
    let full = seg.unvalidated();
    let check = if full { Check::Full } else { Check::Trusted };
    let mut frames = seg.frames(HEADER_BYTES, seg.first_position, check)?;
    let mut keep: Vec<Survivor<'_>> = Vec::new();
    let mut removed: Vec<(&str, u64)> = Vec::new();
    // Format 2 frames are copied as they are; format 1 ones re-encoded.
    let copy = seg.format == FrameFormat::V2;
    let bytes = seg.bytes();
    while frames.position() < end {
        let offset = frames.offset();
        // The fast path: a hidden event's payload is never read.
        let hidden = std::cell::Cell::new(None);
        let step = (!full)
            .then(|| {
                frames.next_trusted_kept(|env| {
                    let hides = reader.hides(env);
                    if hides {
                        hidden.set(Some((env.aggregate_id(), env.position())));
                    }
                    !hides
                })
            })
            .flatten();
        let event = match step {
            Some(Some(event)) => event,
            Some(None) => {
                removed.extend(hidden.take());
                continue;
            }
            // Not a trusted frame (or a full walk): `next_frame` says what is there.
            None => match frames.next_frame() {
                Ok(Some(f)) if reader.hides(&f.event) => {
                    removed.push((f.event.aggregate_id(), f.event.position()));
                    continue;
                }
                Ok(Some(f)) => f.event,
                Ok(None) if seg.sparse_end.is_some() => break,
                Ok(None) => return Err(Error::corrupt(&seg.path, offset, "sealed segment ends early")),
                Err(e) => return Err(Error::corrupt(&seg.path, offset, e.to_string())),
            },
        };
        let frame = copy.then(|| usize::try_from(offset).ok().zip(usize::try_from(frames.offset()).ok())).flatten();
        let frame = frame.and_then(|(from, to)| bytes.get(from..to));
        if copy && frame.is_none() {
            return Err(Error::corrupt(&seg.path, offset, "frame outside its segment"));
        }
        keep.push(Survivor { event, offset, frame });
    }
    if removed.is_empty() {
        return Ok(());
    }
    let name = segment::file_name(seg.first_position);
    let tmp = shared.dir.join(format!("{name}{TMP_SUFFIX}"));
    let (kept, len) = write_aside(&tmp, &seg.path, &keep, |frames_len| {
        let len = (HEADER_BYTES + frames_len).next_multiple_of(4096).max(SPARSE_SEGMENT_BYTES_MIN);
        let header = SegmentHeader {
            first_position: seg.first_position,
            segment_bytes: len,
            created_at: crate::event::now_nanos(),
            format: FrameFormat::V2,
            sparse_end: Some(end),
            recycled: false,
        };
        (header.encode(), len)
    })?;
    // Everything the new file says is checked in full before it replaces anything.
    if let Err(e) = check_rewrite(&tmp, &keep, &kept) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let swap = shared.swap_lock.lock().unwrap_or_else(|p| p.into_inner());
    let fits = {
        let idx = shared.index();
        // Retention may have removed it meanwhile.
        let there = idx.segments().any(|s| Arc::ptr_eq(s, seg));
        let fits = there.then(|| idx.check_removal(&removed).map(|_| ()));
        fits
    };
    match fits {
        Some(Ok(())) => {}
        other => {
            let _ = std::fs::remove_file(&tmp);
            return match other {
                Some(Err(e)) => Err(Error::corrupt(&seg.path, 0, format!("scavenge refused: {e}"))),
                _ => Ok(()),
            };
        }
    }
    let dir = &shared.dir;
    let idx_path = dir.join(index::file_name(seg.first_position));
    // IMPORTANT: the old checkpoint goes first (durably): a checkpoint must
    // never describe a file it was not written for.
    match std::fs::remove_file(&idx_path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("remove index checkpoint (scavenge)", idx_path, e)),
    }
    segment::sync_dir(dir)?;
    let path = dir.join(&name);
    std::fs::rename(&tmp, &path).map_err(|e| Error::io("install scavenged segment", &path, e))?;
    segment::sync_dir(dir)?;
    let new_seg = Arc::new(Segment::open(path, None)?);
    let entries: Vec<CheckpointEntry<'_>> = keep
        .iter()
        .map(|s| &s.event)
        .zip(&kept)
        .map(|(e, (position, offset))| CheckpointEntry {
            aggregate_id: e.aggregate_id(),
            version: e.version(),
            position: *position,
            offset: *offset,
        })
        .collect();
    {
        let mut idx = shared.index_mut();
        if let Err(e) = idx.replace_sealed(Arc::clone(&new_seg), &entries, &removed) {
            // The file is in place and correct; the in-memory index is not: stop.
            let cause = format!("index invariant broken by a scavenge: {e}");
            shared.set_poison(cause.clone());
            return Err(Error::Poisoned { cause });
        }
        shared.publish_segments(&idx);
    }
    // A failure here is not fatal: recovery rebuilds a missing index file,
    // and until then the new segment's entries stay in memory.
    if let Ok(p) = index::write_checkpoint(dir, &new_seg, &entries) {
        shared.attach_index_file(&new_seg, &p);
    }
    drop(swap);
    report.segments_rewritten += 1;
    report.events_removed += removed.len() as u64;
    report.bytes_before += seg.len();
    report.bytes_after += len;
    Ok(())
}

/// Bytes of the frames written at a time by [`write_aside`].
const WRITE_CHUNK_BYTES: usize = 4 << 20;

/// Writes the new segment to `tmp`: the surviving events as frames (each
/// its own batch) after the header's room, in writes of about
/// [`WRITE_CHUNK_BYTES`] (no buffer as large as the segment is held); then
/// the header `header` makes for the frames' length (with the file's
/// length), zero-padding to that length, and a sync. Format 2 frames are
/// copied with their new batch slot, format 1 ones re-encoded. Returns each
/// event's (position, offset) and the file's length.
fn write_aside(
    tmp: &Path,
    source: &Path,
    keep: &[Survivor<'_>],
    header: impl FnOnce(u64) -> ([u8; HEADER_BYTES as usize], u64),
) -> Result<(Vec<Kept>, u64)> {
    let written = (|| {
        let file = File::create(tmp).map_err(|e| Error::io("create scavenged segment", tmp, e))?;
        let io = |e| Error::io("write scavenged segment", tmp, e);
        let mut written = HEADER_BYTES;
        let mut buf = AlignedVec::with_capacity(WRITE_CHUNK_BYTES + 4096);
        let mut kept = Vec::with_capacity(keep.len());
        for s in keep {
            let at = written + buf.len() as u64;
            let offset = u32::try_from(at).map_err(|_| Error::InvalidInput("scavenged segment over 4 GiB".into()))?;
            s.encode(&mut buf, source)?;
            kept.push((s.event.position(), offset));
            if buf.len() >= WRITE_CHUNK_BYTES {
                file.write_all_at(&buf, written).map_err(io)?;
                written += buf.len() as u64;
                buf.clear();
            }
        }
        file.write_all_at(&buf, written).map_err(io)?;
        let (head, len) = header(written + buf.len() as u64 - HEADER_BYTES);
        file.write_all_at(&head, 0).map_err(io)?;
        file.set_len(len).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok((kept, len))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    written
}

/// Reads the new file back and compares it with what it must hold: the
/// same events at the recorded offsets, each frame's checksums holding. A
/// copied frame must hold the old frame's envelope and payload byte for byte
/// (the old bytes passed the segment's validation, so the new ones are as
/// valid: rkyv's relative pointers do not depend on where the archive lies,
/// and both start 16-aligned); a re-encoded one is decoded with every check
/// and compared field by field.
fn check_rewrite(tmp: &Path, keep: &[Survivor<'_>], kept: &[Kept]) -> Result<()> {
    let seg = Segment::open(PathBuf::from(tmp), None)?;
    let mut next = HEADER_BYTES;
    for (Survivor { event: want, frame, .. }, (position, offset)) in keep.iter().zip(kept) {
        if next != u64::from(*offset) {
            return Err(Error::corrupt(tmp, next, format!("scavenged frame of position {position} misplaced")));
        }
        let same = match frame {
            Some(old) => {
                let at = *offset as usize;
                let new = seg.bytes().get(at..at + old.len()).unwrap_or_default();
                let parse = |b| record::parse_header(b, old.len(), FrameFormat::V2);
                // The payload's checksum is the old frame's, over the same bytes.
                let intact = match (parse(new), parse(old)) {
                    (Ok(h), Ok(was)) => {
                        record::checked_envelope(new, &h).is_ok()
                            && (h.body_len, h.data_len, h.data_crc, h.batch_len, h.batch_index)
                                == (was.body_len, was.data_len, was.data_crc, 1, 0)
                    }
                    _ => false,
                };
                next += old.len() as u64;
                intact && new.get(FRAME_HEADER_BYTES..) == old.get(FRAME_HEADER_BYTES..)
            }
            None => {
                let mut frames = FrameCursor::for_scan_from(&seg, next, *position);
                let got = match frames.next_frame() {
                    Ok(Some(f)) => f.event,
                    Ok(None) => return Err(Error::corrupt(tmp, next, "scavenged segment ends early")),
                    Err(e) => return Err(Error::corrupt(tmp, next, e.to_string())),
                };
                next = frames.offset();
                got.position() == *position && got.to_recorded() == want.to_recorded()
            }
        };
        if !same {
            return Err(Error::corrupt(
                tmp,
                u64::from(*offset),
                format!("scavenged frame of position {position} differs"),
            ));
        }
    }
    Ok(())
}

/// Before the rewrites: every aggregate the scavenge will leave without
/// events keeps its version count in its rules (durably, before its events
/// go), so that its versions go on after a reopen.
fn set_floors(shared: &Arc<Shared>, reader: &Reader, link: &dyn WriterLink, sealed_end: u64) -> Result<()> {
    let rules = shared.streams();
    let mut floors = Vec::new();
    {
        let idx = shared.index();
        for (id, state) in rules.iter() {
            if state.refuses_appends() {
                continue;
            }
            let Some(v) = idx.positions(id) else { continue };
            let Some(last) = v.last_position() else { continue };
            let next_version = v.end();
            // `max_age` hides event by event: then the newest one decides.
            let all_hidden = reader.first_visible_version(id) >= next_version
                || idx.event_at(last).and_then(|e| e.ok()).is_some_and(|e| reader.hides(&e));
            let covered = state.version_floor.is_some_and(|f| f >= next_version);
            if last < sealed_end && all_hidden && !covered {
                floors.push((id.to_string(), next_version - 1));
            }
        }
    }
    for (id, last_version) in floors {
        link.change(&id, StreamChange::Floor { last_version })?;
    }
    Ok(())
}

/// After the rewrites: the snapshots of deleted aggregates go first, then
/// erasures whose aggregates no segment holds any more complete (in that
/// order: a crash between must not forget which snapshots to drop).
fn complete(
    shared: &Arc<Shared>,
    link: &dyn WriterLink,
    rules: &crate::streams::Rules,
    report: &mut ScavengeReport,
) -> Result<()> {
    let mut forget = HashSet::new();
    let mut erased = Vec::new();
    for (id, state) in rules.iter() {
        let (left, next_version) = {
            let idx = shared.index();
            match idx.positions(id) {
                Some(v) => (v.len(), v.end()),
                None => (0, 0),
            }
        };
        let deleted = state.refuses_appends()
            || (state.deleted == Some(DeleteMode::Soft) && next_version <= state.meta.truncate_before.unwrap_or(0));
        if deleted {
            forget.insert(id.to_string());
        }
        if state.erased && left == 0 {
            erased.push(id.to_string());
        } else if state.erased {
            // Events of it the scavenge could not reach (a segment without its checkpoint).
            report.erasures_pending += 1;
        }
    }
    if !forget.is_empty() {
        report.snapshots_dropped = link.forget_snapshots(&forget)?;
    }
    // Dead-letter records name the aggregate (and quote its handler's error).
    let ids: HashSet<String> = erased.iter().cloned().collect();
    let busy = if ids.is_empty() { Vec::new() } else { link.scrub_parked(&ids)? };
    if !busy.is_empty() {
        // Not complete: a consumer in use still lists them; the next scavenge finishes.
        report.erasures_pending += erased.len();
        report.consumers_in_use = busy;
        return Ok(());
    }
    if !erased.is_empty() {
        zero_recycled_tails(shared)?;
    }
    for id in erased {
        link.change(&id, StreamChange::ErasureDone)?;
        report.erasures_completed += 1;
    }
    Ok(())
}

/// Zeroes what follows the last frame of every sealed recycled segment
/// (format version 4: the old file's bytes, which may hold erased events),
/// then syncs each: before an erasure is recorded complete, no file may hold
/// its bytes. Readers never read past a segment's last frame, and the writer
/// never writes into a sealed segment.
fn zero_recycled_tails(shared: &Shared) -> Result<()> {
    let segs = shared.segments();
    let ends: Vec<(Arc<Segment>, Option<u32>)> = {
        let idx = shared.index();
        idx.last_offsets().map(|(s, last)| (Arc::clone(s), last)).collect()
    };
    let sealed = ends.len().saturating_sub(1);
    for (seg, last) in ends.into_iter().take(sealed) {
        if !seg.recycled || !segs.iter().any(|s| Arc::ptr_eq(s, &seg)) {
            continue;
        }
        let from = last.map_or(HEADER_BYTES, |o| seg.frame_end(u64::from(o)));
        let bytes = seg.bytes();
        let Some(dirty) = bytes.get(from as usize..).and_then(|t| t.iter().position(|b| *b != 0)) else { continue };
        let at = from + dirty as u64;
        let file = match std::fs::OpenOptions::new().write(true).open(&seg.path) {
            Ok(f) => f,
            // Removed meanwhile (retention): its bytes went with it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("open recycled segment to zero its tail", &seg.path, e)),
        };
        crate::durable::zero_fill(&file, &seg.path, at, seg.len())?;
        file.sync_data().map_err(|e| Error::io("fsync zeroed tail", &seg.path, e))?;
    }
    Ok(())
}
