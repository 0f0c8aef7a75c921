//! Opening a store: lock, list and check segments, load index checkpoints
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
use crate::index::{self, CheckpointEntry, IndexState, SegmentSlot};
use crate::options::Options;
use crate::record::{self, FrameError};
use crate::segment::{self, IndexDigest, LazyExpect, Segment, HEADER_BYTES};

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
    /// Why the scan stopped, if not at clean zeroed space or `stop_at`.
    pub problem: Option<(u64, String, u64)>,
}

/// Scans `seg` from its first frame, validating every frame fully and
/// keeping only complete batches. Stops at zeroed space, at the first invalid
/// frame, or when `stop_at` (an end position) is reached.
pub(crate) fn scan_segment(seg: &Segment, stop_at: Option<u64>) -> Scan<'_> {
    let bytes = seg.bytes();
    let mut offset = HEADER_BYTES as usize;
    let mut position = seg.first_position;
    let mut entries = Vec::new();
    let mut batch: Vec<CheckpointEntry<'_>> = Vec::new();
    let mut committed = offset;
    let mut batch_len = 0u32;
    let problem = loop {
        if stop_at == Some(position) && batch.is_empty() {
            break None;
        }
        let at = &bytes[offset.min(bytes.len())..];
        let header = match record::parse_header(at, bytes.len()) {
            Ok(h) => h,
            Err(FrameError::Empty) if batch.is_empty() => break None,
            Err(FrameError::Empty) => break Some("batch ends early (zeroed space)".to_string()),
            Err(FrameError::Invalid(r)) => break Some(r),
        };
        if header.position != position {
            break Some(format!("frame claims position {}, expected {position}", header.position));
        }
        let expected_index = batch.len() as u32;
        if batch.is_empty() {
            batch_len = header.batch_len;
        }
        if header.batch_index != expected_index || header.batch_len != batch_len {
            break Some(format!(
                "frame is slot {}/{} of a batch, expected slot {expected_index}/{batch_len}",
                header.batch_index, header.batch_len
            ));
        }
        let body = match record::checked_body(at, &header).and_then(|b| record::validate_body(b, &header)) {
            Ok(b) => b,
            Err(e) => break Some(segment::frame_msg(e)),
        };
        batch.push(CheckpointEntry {
            aggregate_id: &body.aggregate_id,
            version: body.version.to_native(),
            offset: offset as u32,
        });
        offset += header.frame_len();
        position += 1;
        if header.batch_index + 1 == header.batch_len {
            entries.append(&mut batch);
            committed = offset;
        }
    };
    let problem = problem.map(|r| (committed as u64, r, batch.len() as u64));
    Scan { entries, end_offset: committed as u64, problem }
}

/// Zeroes every non-zero 4 KiB block of `seg` from `from` to its end, then
/// syncs. Returns the bytes zeroed. Blocks that are already zero are skipped,
/// so a clean tail costs one read pass.
fn zero_tail(seg: &Segment, from: u64) -> Result<u64> {
    let bytes = seg.bytes();
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

/// Looks past `from` (where the valid log ends) for a frame with a valid
/// checksum that a `Sync`-mode writer wrote in a later `pwrite` than the one
/// covering `from`. Such a write was only issued after everything before it
/// was synced, so damage at `from` is corruption of synced data, not a torn
/// write. Returns that frame's offset.
fn later_synced_write(seg: &Segment, from: u64) -> Option<u64> {
    let bytes = seg.bytes();
    let mut at = from as usize + record::FRAME_ALIGN;
    while at + record::FRAME_HEADER_BYTES <= bytes.len() {
        let here = &bytes[at..];
        if here[..4] == record::FRAME_MAGIC.to_le_bytes() {
            if let Ok(h) = record::parse_header(here, bytes.len()) {
                let write_start = (at as u64).checked_sub(h.offset_in_write());
                if h.written_synced() && write_start.is_some_and(|s| s > from) && record::checked_body(here, &h).is_ok()
                {
                    return Some(at as u64);
                }
            }
        }
        at += record::FRAME_ALIGN;
    }
    None
}

/// Everything `Store::open` needs from recovery.
pub(crate) struct Recovered {
    pub index: IndexState,
    pub active_write_offset: u64,
    pub dedupe: Dedupe,
    pub report: RecoveryReport,
}

fn list_segments(dir: &Path, read_only: bool) -> Result<Vec<(u64, PathBuf)>> {
    let mut segs = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io("list store directory", dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| Error::io("list store directory", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(first) = segment::parse_file_name(name) {
            segs.push((first, entry.path()));
        } else if name.ends_with(".tmp") && !read_only {
            // NOTE: a temp file is an interrupted checkpoint; it was never renamed into place.
            let _ = std::fs::remove_file(entry.path());
        }
    }
    segs.sort();
    Ok(segs)
}

/// Recovers the store in `dir` (already locked and marked as a store). With
/// `read_only`, nothing is written: a torn tail is reported and left out of
/// the index but not cut, missing checkpoints are not written, and a store
/// without segments is opened empty.
pub(crate) fn recover(dir: &Path, opts: &Options, read_only: bool) -> Result<Recovered> {
    let started = Instant::now();
    let faults = opts.faults.clone().unwrap_or_default();
    let mut report = RecoveryReport::default();
    let mut segs = list_segments(dir, read_only)?;
    if segs.is_empty() && !read_only {
        let path = segment::install(dir, 0, opts.segment_bytes, &faults)?;
        segs.push((0, path));
    }
    let mut index = IndexState::default();
    let mut active_write_offset = HEADER_BYTES;
    let count = segs.len();
    let mut i = 0;
    while i < count {
        let (first, path) = segs[i].clone();
        let sealed_end = segs.get(i + 1).map(|(f, _)| *f);
        if let Some(end) = sealed_end {
            if end < first {
                return Err(Error::corrupt(&path, 0, "segments overlap"));
            }
        }
        if i == 0 {
            index.next_position = first;
        } else if index.next_position != first {
            return Err(Error::corrupt(
                &path,
                0,
                format!("segment starts at position {first}, log ends at {}", index.next_position),
            ));
        }
        // Sealed segment with a good checkpoint: no scan now, validate lazily on
        // first read. With `repair`, every segment is scanned.
        if let Some(end) = sealed_end.filter(|_| !opts.repair) {
            let idx_path = dir.join(index::file_name(first));
            if let Ok(cp) = index::read_checkpoint(&idx_path, first) {
                if cp.entries.len() as u64 == end - first {
                    let mut digest = IndexDigest::new();
                    for (n, offset, version) in &cp.entries {
                        let name = cp.names.get(*n as usize).map(String::as_str).unwrap_or_default();
                        digest.add(*offset, name, *version);
                    }
                    let lazy = LazyExpect { end, digest: digest.finish() };
                    let seg = Arc::new(Segment::open(path.clone(), Some(lazy))?);
                    check_header(&seg, first)?;
                    load_checkpoint(&mut index, seg, &cp).map_err(|r| Error::corrupt(&idx_path, 0, r))?;
                    report.checkpoints_loaded += 1;
                    i += 1;
                    continue;
                }
            }
        }
        let padded = if sealed_end.is_none() && !read_only { pad_short_active(&path)? } else { 0 };
        let seg = Arc::new(Segment::open_with(path.clone(), None, read_only && sealed_end.is_none())?);
        check_header(&seg, first)?;
        let scan = scan_segment(&seg, sealed_end);
        report.events_scanned += scan.entries.len() as u64;
        let scanned_end = first + scan.entries.len() as u64;
        let mut entries_owned: Vec<(String, u64, u32)> =
            scan.entries.iter().map(|e| (e.aggregate_id.to_string(), e.version, e.offset)).collect();
        let end_offset = scan.end_offset;
        let problem = scan.problem.clone();
        drop(scan);
        match (sealed_end, problem) {
            (Some(end), problem) if scanned_end != end || problem.is_some() => {
                let (offset, reason) =
                    problem.map(|(o, r, _)| (o, r)).unwrap_or((end_offset, "sealed segment ends early".into()));
                if !opts.repair {
                    return Err(Error::corrupt(
                        &path,
                        offset,
                        format!("{reason} (sealed segment; open with repair to truncate the log here)"),
                    ));
                }
                let mut removed = Vec::new();
                for (f, p) in &segs[i + 1..] {
                    std::fs::remove_file(p).map_err(|e| Error::io("remove segment during repair", p, e))?;
                    let _ = std::fs::remove_file(dir.join(index::file_name(*f)));
                    removed.push(p.clone());
                }
                let _ = std::fs::remove_file(dir.join(index::file_name(first)));
                segment::sync_dir(dir)?;
                zero_tail(&seg, end_offset)?;
                report.repaired = Some(Repair {
                    path: path.clone(),
                    offset,
                    lost_from_position: scanned_end,
                    events_lost: segs.last().map(|(f, _)| f.saturating_sub(scanned_end)).unwrap_or(0),
                    removed_files: removed,
                    reason,
                });
                segs.truncate(i + 1);
                push_entries(&mut index, Arc::clone(&seg), &mut entries_owned)
                    .map_err(|r| Error::corrupt(&path, 0, r))?;
                active_write_offset = end_offset;
                break;
            }
            (Some(_), _) => {
                let refs: Vec<CheckpointEntry<'_>> = entries_owned
                    .iter()
                    .map(|(a, v, o)| CheckpointEntry { aggregate_id: a, version: *v, offset: *o })
                    .collect();
                if !read_only {
                    if let Ok(p) = index::write_checkpoint(dir, first, &refs) {
                        report.checkpoints_rebuilt.push(p);
                    }
                }
                push_entries(&mut index, seg, &mut entries_owned).map_err(|r| Error::corrupt(&path, 0, r))?;
            }
            (None, problem) => {
                // The active segment: cut whatever follows the last complete batch,
                // unless a later, separately synced write proves the damage is not a
                // torn tail but corruption of acknowledged data.
                let dirty = first_nonzero(&seg, end_offset)?;
                if let Some(later) = dirty.and_then(|_| later_synced_write(&seg, end_offset)) {
                    let reason = format!(
                        "damaged frame before a later synced write at offset {later}: corruption, not a torn tail{}",
                        if opts.repair { "" } else { " (open with repair to truncate the log here)" }
                    );
                    if !opts.repair {
                        return Err(Error::corrupt(&path, end_offset, reason));
                    }
                    report.repaired = Some(Repair {
                        path: path.clone(),
                        offset: end_offset,
                        lost_from_position: scanned_end,
                        events_lost: 0,
                        removed_files: Vec::new(),
                        reason,
                    });
                }
                let zeroed = match dirty {
                    Some(d) if !read_only => zero_tail(&seg, d)? + padded,
                    _ => padded,
                };
                let stale = read_only && dirty.is_some();
                if problem.is_some() || zeroed > 0 || stale {
                    let (_, reason, dropped) = problem.unwrap_or_else(|| {
                        let why = if dirty.is_none() {
                            format!("file was {padded} bytes short of its segment size; padded with zeros")
                        } else {
                            "stale bytes after the last batch".into()
                        };
                        (end_offset, why, 0)
                    });
                    report.torn_tail = Some(TornTail {
                        path: path.clone(),
                        offset: end_offset,
                        frames_dropped: dropped,
                        bytes_zeroed: zeroed,
                        reason,
                    });
                }
                push_entries(&mut index, seg, &mut entries_owned).map_err(|r| Error::corrupt(&path, 0, r))?;
                active_write_offset = end_offset;
            }
        }
        i += 1;
    }
    report.segments = segs.len();
    let dedupe = rebuild_dedupe(&index, if read_only { 0 } else { opts.dedupe_window_events })?;
    report.events = index.next_position;
    report.duration = started.elapsed();
    Ok(Recovered { index, active_write_offset, dedupe, report })
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
    let zeros = vec![0u8; 1 << 20];
    let mut at = len;
    while at < header.segment_bytes {
        let n = (header.segment_bytes - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at).map_err(|e| Error::io("pad short segment", path, e))?;
        at += n as u64;
    }
    file.sync_all().map_err(|e| Error::io("fsync padded segment", path, e))?;
    Ok(header.segment_bytes - len)
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

fn load_checkpoint(
    index: &mut IndexState,
    seg: Arc<Segment>,
    cp: &index::Checkpoint,
) -> std::result::Result<(), String> {
    let first = seg.first_position;
    let seg_len = seg.len();
    index.segments.push(SegmentSlot { seg, offsets: Vec::with_capacity(cp.entries.len()) });
    // Group positions per aggregate first, so each aggregate is hashed once per segment.
    let mut per_agg: Vec<Vec<(u64, u64)>> = vec![Vec::new(); cp.names.len()];
    let slot = index.segments.last_mut().ok_or("no slot")?;
    let mut last_offset = 0u32;
    for (i, (n, offset, version)) in cp.entries.iter().enumerate() {
        if u64::from(*offset) < HEADER_BYTES || u64::from(*offset) >= seg_len || (i > 0 && *offset <= last_offset) {
            return Err(format!("checkpoint offset {offset} out of order or range"));
        }
        last_offset = *offset;
        slot.offsets.push(*offset);
        per_agg[*n as usize].push((*version, first + i as u64));
    }
    for (name, list) in cp.names.iter().zip(per_agg) {
        let positions = match index.aggregates.get_mut(name.as_str()) {
            Some(p) => p,
            None => index.aggregates.entry(name.as_str().into()).or_default(),
        };
        for (version, position) in list {
            if version != positions.len() as u64 {
                return Err(format!("aggregate {name:?} version {version} is not next ({})", positions.len()));
            }
            positions.push(position);
        }
    }
    index.next_position = first + cp.entries.len() as u64;
    Ok(())
}

fn push_entries(
    index: &mut IndexState,
    seg: Arc<Segment>,
    entries: &mut Vec<(String, u64, u32)>,
) -> std::result::Result<(), String> {
    let first = seg.first_position;
    index.segments.push(SegmentSlot { seg, offsets: Vec::with_capacity(entries.len()) });
    for (i, (agg, version, offset)) in entries.drain(..).enumerate() {
        index.push(&agg, version, first + i as u64, offset)?;
    }
    Ok(())
}

fn rebuild_dedupe(index: &IndexState, window: u64) -> Result<Dedupe> {
    let mut dedupe = Dedupe::new(window);
    let start_of_log = index.segments.first().map(|s| s.seg.first_position).unwrap_or(0);
    let from = index.next_position.saturating_sub(window).max(start_of_log);
    for position in from..index.next_position {
        let Some((i, offset)) = index.locate(position) else { break };
        let (ev, _) = index.segments[i].seg.event_at(offset, position)?;
        dedupe.insert(
            ev.event_id(),
            Seen { position, version: ev.version(), aggregate_hash: aggregate_hash(ev.aggregate_id()) },
        );
    }
    Ok(dedupe)
}
