//! Recovering the log when a store opens (the directory is already locked:
//! see `directory`): list and check segments, load index checkpoints
//! (rebuilding any that are missing or bad), scan the active segment, cut a
//! torn tail, and rebuild the idempotency window. It must never map a segment
//! before deciding its size, never silently drop an event before the torn
//! tail (that is corruption: an error, or with `Options::repair` a reported
//! truncation), and never leave stale frames behind a truncation point.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dedupe::{aggregate_hash, Dedupe, Seen};
use crate::error::{Error, Result};
use crate::index::{self, CheckpointEntry, IndexError, IndexState};
use crate::options::Options;
use crate::record;
use crate::segment::{self, FrameCursor, IndexDigest, LazyExpect, Segment, HEADER_BYTES};

/// What recovery found and did while opening a store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Segment files in the store.
    pub segments: usize,
    /// Index checkpoints loaded as they were.
    pub checkpoints_loaded: usize,
    /// Index checkpoints that were missing or invalid and were rebuilt from their segment.
    pub checkpoints_rebuilt: Vec<PathBuf>,
    /// Events read by scanning (the active segment and rebuilt segments).
    pub events_scanned: u64,
    /// A torn tail (an unfinished last batch) that was cut off.
    pub torn_tail: Option<TornTail>,
    /// Data dropped by `Options::repair` after corruption in a sealed segment.
    pub repaired: Option<Repair>,
    /// Events in the store after recovery.
    pub events: u64,
    /// Time the whole open took.
    pub duration: Duration,
    /// What opening the snapshot files found.
    pub snapshots: crate::snapshot::SnapshotRecovery,
}

/// An unacknowledged partial batch (or garbage) removed from the end of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TornTail {
    /// The active segment.
    pub path: PathBuf,
    /// Where the log now ends.
    pub offset: u64,
    /// Complete-looking frames of the unfinished batch that were dropped.
    pub frames_dropped: u64,
    /// Bytes zeroed after the cut.
    pub bytes_zeroed: u64,
    /// What was found at the cut.
    pub reason: String,
}

/// What `Options::repair` cut away.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Repair {
    /// The segment holding the first corrupt record.
    pub path: PathBuf,
    /// Its offset.
    pub offset: u64,
    /// The first position lost; every event from here on is gone.
    pub lost_from_position: u64,
    /// Events lost (those that were indexed or countable after the cut).
    pub events_lost: u64,
    /// Later segment files removed.
    pub removed_files: Vec<PathBuf>,
    /// What was wrong.
    pub reason: String,
}

/// The result of scanning a segment's frames.
pub(crate) struct Scan<'a> {
    /// Frames of complete batches, in order.
    pub entries: Vec<CheckpointEntry<'a>>,
    /// Offset just after the last complete batch.
    pub end_offset: u64,
    /// Position just after the last complete batch (a sparse segment's end
    /// position when the scan reached its end).
    pub end_position: u64,
    /// Why the scan stopped, if not at clean zeroed space or `stop_at`.
    pub problem: Option<(u64, String, u64)>,
}

/// Scans `seg` from its first frame, validating every frame fully and
/// keeping only complete batches. Stops at zeroed space, at the first invalid
/// frame, or when `stop_at` (an end position) is reached.
pub(crate) fn scan_segment(seg: &Segment, stop_at: Option<u64>) -> Scan<'_> {
    scan_from(seg, HEADER_BYTES, seg.first_position, stop_at)
}

/// [`scan_segment`] from `offset`, where the frame of `position` starts and
/// a batch starts (the end of the complete batches an earlier scan found):
/// what a read-only store following a writer scans when the watermark moves.
pub(crate) fn scan_from(seg: &Segment, offset: u64, position: u64, stop_at: Option<u64>) -> Scan<'_> {
    let mut frames = FrameCursor::for_scan_from(seg, offset, position);
    let mut entries = Vec::new();
    let mut batch: Vec<CheckpointEntry<'_>> = Vec::new();
    let mut committed = offset;
    let mut committed_position = position;
    let problem = loop {
        if stop_at == Some(frames.position()) && batch.is_empty() {
            break None;
        }
        let frame = match frames.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) if batch.is_empty() => {
                // A sparse segment's cursor moved on to its end position.
                committed_position = frames.position();
                break None;
            }
            Ok(None) => break Some("batch ends early (zeroed space)".to_string()),
            Err(e) => break Some(e.to_string()),
        };
        batch.push(CheckpointEntry {
            aggregate_id: frame.event.aggregate_id(),
            version: frame.event.version(),
            position: frame.event.position(),
            offset: frame.offset as u32,
        });
        if !frames.in_batch() {
            entries.append(&mut batch);
            committed = frames.offset();
            committed_position = frames.position();
        }
    };
    let problem = problem.map(|r| (committed, r, batch.len() as u64));
    Scan { entries, end_offset: committed, end_position: committed_position, problem }
}

/// Zeroes every non-zero 4 KiB block of `seg` from `from` to its end, then
/// syncs. Returns the bytes zeroed. Blocks that are already zero are skipped,
/// so a clean tail costs one read pass.
fn zero_tail(seg: &Segment, from: u64) -> Result<u64> {
    zero_range(seg, from, seg.len())
}

/// [`zero_tail`] from `from` up to `to` (rounded up to a 4 KiB block).
fn zero_range(seg: &Segment, from: u64, to: u64) -> Result<u64> {
    let bytes = seg.bytes();
    let bytes = &bytes[..usize::try_from(to.next_multiple_of(4096)).map_or(bytes.len(), |t| t.min(bytes.len()))];
    let file = OpenOptions::new()
        .write(true)
        .open(&seg.path)
        .map_err(|e| Error::io("open segment to cut tail", &seg.path, e))?;
    let mut zeroed = 0u64;
    let mut at = from as usize;
    let zeros = vec![0u8; 4096];
    while at < bytes.len() {
        let end = ((at / 4096) + 1) * 4096;
        let end = end.min(bytes.len());
        if bytes[at..end].iter().any(|b| *b != 0) {
            file.write_all_at(&zeros[..end - at], at as u64).map_err(|e| Error::io("zero torn tail", &seg.path, e))?;
            zeroed += (end - at) as u64;
        }
        at = end;
    }
    if zeroed > 0 {
        file.sync_data().map_err(|e| Error::io("fsync after cutting tail", &seg.path, e))?;
    }
    Ok(zeroed)
}

/// Offset of the first non-zero byte of `seg` at or after `from`, read with
/// `pread` rather than through the map, so that checking the (normally all
/// zero) unwritten part of the active segment does not pull it into the
/// process's resident memory.
fn first_nonzero(seg: &Segment, from: u64) -> Result<Option<u64>> {
    let file = std::fs::File::open(&seg.path).map_err(|e| Error::io("open segment", &seg.path, e))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut at = from;
    while at < seg.len() {
        let n = (seg.len() - at).min(buf.len() as u64) as usize;
        // A file shorter than its segment (read-only look at a cut active
        // segment) reads as zeros past its end, as recovery would pad it.
        let got = file.read_at(&mut buf[..n], at).map_err(|e| Error::io("read segment tail", &seg.path, e))?;
        if got == 0 {
            break;
        }
        if let Some(i) = buf[..got].iter().position(|b| *b != 0) {
            return Ok(Some(at + i as u64));
        }
        at += got as u64;
    }
    Ok(None)
}

/// Looks past `from` (where the valid log ends) for a frame of this
/// segment (one claiming one of its positions: [`claimed_here`]) with a
/// valid checksum that a `Sync`-mode writer wrote in a later `pwrite` than
/// the one covering `from`. Such a write was only issued after everything
/// before it was synced, so damage at `from` is corruption of synced data,
/// not a torn write. Returns that frame's offset.
fn later_synced_write(seg: &Segment, from: u64) -> Option<u64> {
    let bytes = seg.bytes();
    let mut at = from as usize + record::FRAME_ALIGN;
    while at + record::FRAME_HEADER_BYTES <= bytes.len() {
        let here = &bytes[at..];
        if record::has_magic(here, seg.format) {
            if let Ok(h) = record::parse_header(here, bytes.len(), seg.format) {
                let write_start = (at as u64).checked_sub(h.offset_in_write());
                if h.written_synced() && write_start.is_some_and(|s| s > from) && claimed_here(seg, here, &h).is_some()
                {
                    return Some(at as u64);
                }
            }
        }
        at += record::FRAME_ALIGN;
    }
    None
}

/// The position a checksum-valid frame at the start of `here` claims, if it
/// is one of `seg`'s own (at or after its first position): a recycled
/// segment's old frames claim earlier ones.
fn claimed_here(seg: &Segment, here: &[u8], h: &record::FrameHeader) -> Option<u64> {
    let body = record::checked_body(here, h).and_then(|b| record::validate_body(b, h)).ok()?;
    let position = body.position.to_native();
    (position >= seg.first_position).then_some(position)
}

/// In a recycled segment, where the frames this segment's life wrote after
/// `from` (the cut) end: the end of the last checksum-valid frame claiming
/// one of its positions, `None` if there is none (what follows is the old
/// file's). Frames of the old file are stepped over whole.
fn this_life_end(seg: &Segment, from: u64) -> Option<u64> {
    let bytes = seg.bytes();
    let mut end = None;
    let mut at = from as usize;
    while at + record::FRAME_HEADER_BYTES <= bytes.len() {
        let here = &bytes[at..];
        let mut step = record::FRAME_ALIGN;
        if record::has_magic(here, seg.format) {
            if let Ok(h) = record::parse_header(here, bytes.len(), seg.format) {
                match claimed_here(seg, here, &h) {
                    Some(_) => end = Some((at + h.frame_len()) as u64),
                    None if record::checked_body(here, &h).is_ok() => step = h.frame_len(),
                    None => {}
                }
            }
        }
        at += step;
    }
    end
}

/// The log starts where retention last said (`STREAMS`' log start, 0 when
/// it never ran): segments wholly below it are what a retention killed part
/// way had still to remove (removed now; skipped read-only), and a log that
/// starts later is missing its head: corrupt, never taken for retention.
fn complete_retention(dir: &Path, segs: &mut Vec<(u64, PathBuf)>, read_only: bool) -> Result<()> {
    let start = crate::streams::Rules::load(dir)?.log_start();
    let below = segs.windows(2).take_while(|w| w[1].0 <= start).count();
    for (first, path) in segs.drain(..below) {
        if !read_only {
            let _ = std::fs::remove_file(dir.join(index::file_name(first)));
            std::fs::remove_file(&path).map_err(|e| Error::io("remove segment below the log start", &path, e))?;
            segment::sync_dir(dir)?;
        }
    }
    match segs.first() {
        Some((first, path)) if *first > start => Err(Error::corrupt(
            path,
            0,
            format!("the log starts at position {first}, but retention kept it from {start}: the segments before it are missing"),
        )),
        _ => Ok(()),
    }
}

/// Everything `Store::open` needs from recovery.
pub(crate) struct Recovered {
    pub index: IndexState,
    pub active_write_offset: u64,
    pub dedupe: Dedupe,
    pub report: RecoveryReport,
}

pub(crate) fn list_segments(dir: &Path, read_only: bool) -> Result<Vec<(u64, PathBuf)>> {
    let mut segs = Vec::new();
    let mut checkpoints = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io("list store directory", dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| Error::io("list store directory", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(first) = segment::parse_file_name(name) {
            segs.push((first, entry.path()));
        } else if let Some(first) = name.strip_suffix(index::IDX_SUFFIX).and_then(|d| d.parse::<u64>().ok()) {
            checkpoints.push((first, entry.path()));
        } else if name == segment::RECYCLED_NAME && !read_only {
            // NOTE: a file kept for recycling by an earlier writer: who may
            // still map it is unknown (its reader check died with it), so it is
            // never reused.
            let _ = std::fs::remove_file(entry.path());
        } else if name.ends_with(".tmp") && !read_only {
            // NOTE: a temp file is an interrupted checkpoint; it was never renamed into place.
            let _ = std::fs::remove_file(entry.path());
        }
    }
    segs.sort();
    if !read_only {
        // NOTE: retention removes a checkpoint before its segment, but a
        // crash can still leave one whose segment is gone: never used, removed.
        for (first, path) in checkpoints {
            if segs.binary_search_by_key(&first, |(f, _)| *f).is_err() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
    Ok(segs)
}

/// Recovers the store in `dir` (already locked and marked as a store). With
/// `read_only`, nothing is written: a torn tail is reported and left out of
/// the index but not cut, missing checkpoints are not written, a store
/// without segments is opened empty, and `repair` is a dry run (the report
/// says what it would cut and remove; the index ends at the cut).
pub(crate) fn recover(dir: &Path, opts: &Options, read_only: bool) -> Result<Recovered> {
    recover_up_to(dir, opts, read_only, None)
}

/// How far a read-only open beside a live writer may look: the writer's
/// published durable watermark.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limit {
    /// One past the last durable position.
    pub end: u64,
    /// First position of the segment holding the durable end.
    pub segment_first: u64,
    /// Offset in that segment where the durable log ends.
    pub end_offset: u64,
}

/// [`recover`], read-only, seeing only the log below `limit`: segments
/// after the limit's are left out, and the limit's segment is scanned up to
/// the limit's end only, never past it (the writer appends there). The log
/// must reach the limit exactly: it is durable.
pub(crate) fn recover_to(dir: &Path, opts: &Options, limit: Limit) -> Result<Recovered> {
    recover_up_to(dir, opts, true, Some(limit))
}

fn recover_up_to(dir: &Path, opts: &Options, read_only: bool, limit: Option<Limit>) -> Result<Recovered> {
    let started = Instant::now();
    let mut segs = list_segments(dir, read_only)?;
    if let Some(limit) = limit {
        segs.retain(|(first, _)| *first <= limit.segment_first);
    }
    complete_retention(dir, &mut segs, read_only)?;
    if segs.is_empty() && !read_only {
        let faults = opts.faults.clone().unwrap_or_default();
        segs.push((0, segment::install(dir, 0, opts.next_segment_bytes(None, 0), &faults)?));
    }
    let mut r = Recovery {
        dir,
        opts,
        read_only,
        index: IndexState::starting_at(segs.first().map_or(0, |s| s.0)),
        active_write_offset: HEADER_BYTES,
        report: RecoveryReport::default(),
        attach: Vec::new(),
    };
    let mut i = 0;
    while i < segs.len() {
        let (first, path) = segs[i].clone();
        let sealed_end = segs.get(i + 1).map(|(f, _)| *f);
        r.check_continuity(&path, first, sealed_end)?;
        let done = match sealed_end {
            Some(end) if !opts.repair && r.load_checkpointed(&path, first, end)? => false,
            Some(end) => r.recover_sealed(&path, first, end, &segs[i + 1..])?,
            None => {
                match limit {
                    Some(limit) => r.recover_up_to_limit(&path, first, limit)?,
                    None => r.recover_active(&path, first)?,
                }
                true
            }
        };
        if done {
            segs.truncate(i + 1);
            break;
        }
        i += 1;
    }
    let Recovery { mut index, active_write_offset, mut report, attach, .. } = r;
    for (seg, file) in attach {
        if index.file_matches(&seg, &file) {
            index.attach(&seg, file);
        }
    }
    report.segments = segs.len();
    let dedupe = rebuild_dedupe(&index, if read_only { 0 } else { opts.dedupe_window_events })?;
    report.events = index.next_position();
    report.duration = started.elapsed();
    Ok(Recovered { index, active_write_offset, dedupe, report })
}

/// The state of one recovery pass over the segments, in log order.
struct Recovery<'a> {
    dir: &'a Path,
    opts: &'a Options,
    read_only: bool,
    index: IndexState,
    active_write_offset: u64,
    report: RecoveryReport,
    /// Sealed segments scanned and their rebuilt index files, attached once
    /// every segment is indexed.
    attach: Vec<(Arc<Segment>, Arc<crate::index_file::IndexFile>)>,
}

impl Recovery<'_> {
    /// Each segment must start where the log so far ends.
    fn check_continuity(&self, path: &Path, first: u64, sealed_end: Option<u64>) -> Result<()> {
        if sealed_end.is_some_and(|end| end < first) {
            return Err(Error::corrupt(path, 0, "segments overlap"));
        }
        if self.index.next_position() != first {
            let reason = format!("segment starts at position {first}, log ends at {}", self.index.next_position());
            return Err(Error::corrupt(path, 0, reason));
        }
        Ok(())
    }

    /// A sealed segment with a good checkpoint: indexed from the checkpoint,
    /// not scanned now; its frames are validated lazily on first read.
    /// Returns `false` (nothing done) when the checkpoint is missing or bad.
    fn load_checkpointed(&mut self, path: &Path, first: u64, end: u64) -> Result<bool> {
        let idx_path = self.dir.join(index::file_name(first));
        // An old format, a damaged file: rebuilt from the segment (reported there).
        let Ok(file) = index::open_file(&idx_path, first) else { return Ok(false) };
        // It must cover the segment: a dense one up to the next segment's first position.
        if first + file.covered() != end {
            return Ok(false);
        }
        let of = Arc::clone(&file);
        let digest = Arc::new(move || {
            let mut digest = IndexDigest::new();
            for (aggregate_id, version, position, offset) in of.entries_by_aggregate() {
                digest.add(position, offset, aggregate_id, version);
            }
            digest.finish()
        });
        let lazy = LazyExpect { end, digest };
        let seg = Arc::new(Segment::open(path.to_path_buf(), Some(lazy))?);
        check_header(&seg, first)?;
        check_sparse_end(&seg, Some(end))?;
        if file.is_sparse() != seg.sparse_end.is_some() {
            return Ok(false);
        }
        self.index.push_file(seg, file, end).map_err(|e| Error::corrupt(&idx_path, 0, e.to_string()))?;
        self.report.checkpoints_loaded += 1;
        Ok(true)
    }

    /// A sealed segment scanned frame by frame: indexed, its checkpoint
    /// rewritten; damage is an error, or with `repair` the end of the log.
    /// Returns whether the log ends here (repaired).
    fn recover_sealed(&mut self, path: &Path, first: u64, end: u64, later: &[(u64, PathBuf)]) -> Result<bool> {
        let seg = Arc::new(Segment::open(path.to_path_buf(), None)?);
        check_header(&seg, first)?;
        check_sparse_end(&seg, Some(end))?;
        let scan = scan_segment(&seg, Some(end));
        self.report.events_scanned += scan.entries.len() as u64;
        let scanned_end = scan.end_position;
        let mut entries = owned_entries(&scan.entries);
        let (end_offset, problem) = (scan.end_offset, scan.problem.clone());
        drop(scan);
        if scanned_end == end && problem.is_none() {
            let written =
                if self.read_only { None } else { index::write_checkpoint(self.dir, &seg, &entry_refs(&entries)).ok() };
            push_entries(&mut self.index, Arc::clone(&seg), &mut entries)
                .map_err(|e| Error::corrupt(path, 0, e.to_string()))?;
            if let Some(p) = written {
                // Sealed by the next segment's push: the entries move from memory to the file.
                if let Ok(file) = index::open_file(&p, first) {
                    self.attach.push((seg, file));
                }
                self.report.checkpoints_rebuilt.push(p);
            }
            return Ok(false);
        }
        let (offset, reason) =
            problem.map(|(o, r, _)| (o, r)).unwrap_or((end_offset, "sealed segment ends early".into()));
        if !self.opts.repair {
            let reason = format!("{reason} (sealed segment; open with repair to truncate the log here)");
            return Err(Error::corrupt(path, offset, reason));
        }
        let log_end = log_end(later)?;
        let removed = self.remove_after(first, later)?;
        if !self.read_only {
            zero_tail(&seg, end_offset)?;
        }
        self.report.repaired = Some(Repair {
            path: path.to_path_buf(),
            offset,
            lost_from_position: scanned_end,
            events_lost: log_end.saturating_sub(scanned_end),
            removed_files: removed,
            reason,
        });
        let sparse_end = seg.sparse_end;
        push_entries(&mut self.index, seg, &mut entries).map_err(|e| Error::corrupt(path, 0, e.to_string()))?;
        self.active_write_offset = end_offset;
        if let Some(end) = sparse_end.filter(|_| !self.read_only) {
            // A sparse segment is never appended to: the log goes on in a new
            // one at its end position (the positions between the cut and it
            // stay empty, counted as lost above).
            let faults = self.opts.faults.clone().unwrap_or_default();
            let new = segment::install(self.dir, end, self.opts.next_segment_bytes(None, 0), &faults)?;
            let seg = Arc::new(Segment::open(new, None)?);
            self.index.push_segment(seg, 0).map_err(|e| Error::corrupt(path, 0, e.to_string()))?;
            self.active_write_offset = HEADER_BYTES;
        }
        Ok(true)
    }

    /// Repair: removes every segment after the damaged one (and the stale
    /// checkpoints, the damaged one's too, which no longer matches).
    /// Read-only (a dry run): removes nothing, returns what it would remove.
    fn remove_after(&self, first: u64, later: &[(u64, PathBuf)]) -> Result<Vec<PathBuf>> {
        if self.read_only {
            return Ok(later.iter().map(|(_, p)| p.clone()).collect());
        }
        let mut removed = Vec::new();
        for (f, p) in later {
            std::fs::remove_file(p).map_err(|e| Error::io("remove segment during repair", p, e))?;
            let _ = std::fs::remove_file(self.dir.join(index::file_name(*f)));
            removed.push(p.clone());
        }
        let _ = std::fs::remove_file(self.dir.join(index::file_name(first)));
        segment::sync_dir(self.dir)?;
        Ok(removed)
    }

    /// The active (last) segment: cut whatever follows the last complete
    /// batch, unless a later, separately synced write proves the damage is
    /// not a torn tail but corruption of acknowledged data.
    fn recover_active(&mut self, path: &Path, first: u64) -> Result<()> {
        let padded = if self.read_only { 0 } else { pad_short_active(path)? };
        let seg = Arc::new(Segment::open_with(path.to_path_buf(), None, self.read_only)?);
        check_header(&seg, first)?;
        check_sparse_end(&seg, None)?;
        let scan = scan_segment(&seg, None);
        self.report.events_scanned += scan.entries.len() as u64;
        let scanned_end = first + scan.entries.len() as u64;
        let mut entries = owned_entries(&scan.entries);
        let (end_offset, problem) = (scan.end_offset, scan.problem.clone());
        drop(scan);
        // What follows the cut that this segment's life wrote: in a
        // zero-filled segment, any non-zero byte; in a recycled one, only
        // checksum-valid frames claiming this segment's positions (the rest
        // is the old file's, which can never validate here, and stays).
        let dirty = match seg.recycled {
            false => first_nonzero(&seg, end_offset)?.map(|d| (d, seg.len())),
            true => this_life_end(&seg, end_offset).map(|e| (end_offset, e)),
        };
        if let Some(later) = dirty.and_then(|_| later_synced_write(&seg, end_offset)) {
            self.corruption_before_synced_write(&seg, end_offset, scanned_end, later)?;
        }
        let zeroed = match dirty {
            Some((from, to)) if !self.read_only => zero_range(&seg, from, to)? + padded,
            _ => padded,
        };
        let stale = self.read_only && dirty.is_some();
        // A recycled segment's old bytes at the cut are its normal end, not a torn tail.
        let problem = problem.filter(|(_, _, dropped)| !seg.recycled || *dropped > 0 || dirty.is_some());
        if problem.is_some() || zeroed > 0 || stale {
            let (_, reason, frames_dropped) = problem.unwrap_or_else(|| {
                let why = match dirty {
                    None => format!("file was {padded} bytes short of its segment size; padded with zeros"),
                    Some(_) => "stale bytes after the last batch".into(),
                };
                (end_offset, why, 0)
            });
            let path = path.to_path_buf();
            let tail = TornTail { path, offset: end_offset, frames_dropped, bytes_zeroed: zeroed, reason };
            self.report.torn_tail = Some(tail);
        }
        push_entries(&mut self.index, seg, &mut entries).map_err(|e| Error::corrupt(path, 0, e.to_string()))?;
        self.active_write_offset = end_offset;
        Ok(())
    }

    /// The segment holding a live writer's durable end, read-only: scanned
    /// up to that end and not a frame further; it must reach it exactly.
    fn recover_up_to_limit(&mut self, path: &Path, first: u64, limit: Limit) -> Result<()> {
        if first != limit.segment_first {
            let reason = format!("the watermark's segment starts at {}, not found", limit.segment_first);
            return Err(Error::corrupt(path, 0, reason));
        }
        let seg = Arc::new(Segment::open(path.to_path_buf(), None)?);
        check_header(&seg, first)?;
        check_sparse_end(&seg, None)?;
        let scan = scan_segment(&seg, Some(limit.end));
        self.report.events_scanned += scan.entries.len() as u64;
        let scanned_end = first + scan.entries.len() as u64;
        check_reached(&seg, &scan, scanned_end, limit.end, Some(limit.end_offset))?;
        let mut entries = owned_entries(&scan.entries);
        let end_offset = scan.end_offset;
        drop(scan);
        push_entries(&mut self.index, seg, &mut entries).map_err(|e| Error::corrupt(path, 0, e.to_string()))?;
        self.active_write_offset = end_offset;
        Ok(())
    }

    /// Damage in the active segment before a frame written (and synced) by a
    /// later write: an error, or with `repair` a reported truncation that
    /// counts every checksummed event after the cut as lost.
    fn corruption_before_synced_write(&mut self, seg: &Segment, at: u64, scanned_end: u64, later: u64) -> Result<()> {
        let hint = if self.opts.repair { "" } else { " (open with repair to truncate the log here)" };
        let reason =
            format!("damaged frame before a later synced write at offset {later}: corruption, not a torn tail{hint}");
        if !self.opts.repair {
            return Err(Error::corrupt(&seg.path, at, reason));
        }
        let events_lost = last_valid_position_after(seg, at).map_or(0, |p| (p + 1).saturating_sub(scanned_end));
        self.report.repaired = Some(Repair {
            path: seg.path.clone(),
            offset: at,
            lost_from_position: scanned_end,
            events_lost,
            removed_files: Vec::new(),
            reason,
        });
        Ok(())
    }
}

/// A scan up to a durable end must reach it exactly (at `end_offset`, when
/// the watermark says where that is): the bytes below it were synced before
/// the watermark was published and are never rewritten, so anything else is
/// corruption, not a torn write.
pub(crate) fn check_reached(
    seg: &Segment,
    scan: &Scan<'_>,
    scanned_end: u64,
    end: u64,
    end_offset: Option<u64>,
) -> Result<()> {
    if scanned_end != end {
        let why = scan.problem.as_ref().map_or("zeroed space", |(_, r, _)| r.as_str());
        let reason = format!("the log ends at position {scanned_end} ({why}), but it is durable up to {end}");
        return Err(Error::corrupt(&seg.path, scan.end_offset, reason));
    }
    if let Some(want) = end_offset.filter(|o| *o != scan.end_offset) {
        let reason = format!("the durable log ends at offset {}, the watermark says {want}", scan.end_offset);
        return Err(Error::corrupt(&seg.path, scan.end_offset, reason));
    }
    Ok(())
}

/// Where the log ends according to the segments after a damaged one: the
/// last segment's first position plus the events of its complete batches.
fn log_end(later: &[(u64, PathBuf)]) -> Result<u64> {
    let Some((first, path)) = later.last() else { return Ok(0) };
    let seg = Segment::open_with(path.clone(), None, true)?;
    Ok(first + scan_segment(&seg, None).entries.len() as u64)
}

/// The highest position claimed by a checksum-valid frame at or after `from`
/// (frames start on [`record::FRAME_ALIGN`] boundaries).
fn last_valid_position_after(seg: &Segment, from: u64) -> Option<u64> {
    let bytes = seg.bytes();
    let mut last = None;
    let mut at = from as usize;
    while at + record::FRAME_HEADER_BYTES <= bytes.len() {
        let here = &bytes[at..];
        if record::has_magic(here, seg.format) {
            if let Ok(h) = record::parse_header(here, bytes.len(), seg.format) {
                if let Ok(body) = record::checked_body(here, &h).and_then(|b| record::validate_body(b, &h)) {
                    last = last.max(Some(body.position.to_native()));
                }
            }
        }
        at += record::FRAME_ALIGN;
    }
    last
}

/// A scanned frame, owned: (aggregate, version, position, offset).
type OwnedEntry = (String, u64, u64, u32);

fn owned_entries(entries: &[CheckpointEntry<'_>]) -> Vec<OwnedEntry> {
    entries.iter().map(|e| (e.aggregate_id.to_string(), e.version, e.position, e.offset)).collect()
}

fn entry_refs(entries: &[OwnedEntry]) -> Vec<CheckpointEntry<'_>> {
    entries
        .iter()
        .map(|(a, v, p, o)| CheckpointEntry { aggregate_id: a, version: *v, position: *p, offset: *o })
        .collect()
}

/// The active segment file cut short (a copy tool, a truncating crash of a
/// foreign file system): extend it back to its header's size with zeros
/// before mapping it, so the scan sees a torn tail instead of mapping past
/// the end of the file. Returns the bytes added.
fn pad_short_active(path: &Path) -> Result<u64> {
    let file =
        OpenOptions::new().read(true).write(true).open(path).map_err(|e| Error::io("open active segment", path, e))?;
    let len = file.metadata().map_err(|e| Error::io("stat active segment", path, e))?.len();
    let mut head = [0u8; HEADER_BYTES as usize];
    if len < HEADER_BYTES {
        return Err(Error::corrupt(path, 0, format!("active segment is {len} bytes, shorter than its header")));
    }
    file.read_exact_at(&mut head, 0).map_err(|e| Error::io("read segment header", path, e))?;
    let header = segment::SegmentHeader::decode(path, &head)?;
    if len >= header.segment_bytes {
        return Ok(0);
    }
    crate::durable::zero_fill(&file, path, len, header.segment_bytes)?;
    file.sync_all().map_err(|e| Error::io("fsync padded segment", path, e))?;
    Ok(header.segment_bytes - len)
}

/// A sparse segment (one the scavenge rewrote) is sealed: it must end where
/// the next segment starts, and is never the last one.
fn check_sparse_end(seg: &Segment, next_first: Option<u64>) -> Result<()> {
    match (seg.sparse_end, next_first) {
        (None, _) => Ok(()),
        (Some(end), Some(next)) if end == next => Ok(()),
        (Some(end), next) => Err(Error::corrupt(
            &seg.path,
            40,
            format!("sparse segment ends at position {end}, the next segment starts at {next:?}"),
        )),
    }
}

fn check_header(seg: &Segment, first: u64) -> Result<()> {
    if seg.first_position != first {
        return Err(Error::corrupt(
            &seg.path,
            16,
            format!("header says first position {}, file name says {first}", seg.first_position),
        ));
    }
    Ok(())
}

fn push_entries(
    index: &mut IndexState,
    seg: Arc<Segment>,
    entries: &mut Vec<OwnedEntry>,
) -> std::result::Result<(), IndexError> {
    index.push_segment(seg, entries.len())?;
    for (agg, version, position, offset) in entries.drain(..) {
        index.push(&agg, version, position, offset)?;
    }
    index.seal_sparse()
}

fn rebuild_dedupe(index: &IndexState, window: u64) -> Result<Dedupe> {
    let mut dedupe = Dedupe::new(window);
    let from = index.next_position().saturating_sub(window).max(index.first_position());
    for position in from..index.next_position() {
        let Some(ev) = index.event_at(position) else { break };
        let ev = match ev {
            Ok(ev) => ev,
            // A position a scavenge removed (a sparse segment).
            Err(Error::EventRemoved { .. }) => continue,
            Err(e) => return Err(e),
        };
        dedupe.insert(
            ev.event_id(),
            Seen { position, version: ev.version(), aggregate_hash: aggregate_hash(ev.aggregate_id()) },
        );
    }
    Ok(dedupe)
}
