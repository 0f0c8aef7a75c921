//! Whole-store verification: re-reads every frame of every segment (checksum,
//! rkyv structure, claimed position, batch slots), checks every in-memory
//! and checkpointed index entry against the log, and decodes every snapshot.
//! Reports problems instead of stopping at the first; never writes a file.

use std::path::PathBuf;

use crate::error::Result;
use crate::index::{self, IndexState};
use crate::reader::Reader;
use crate::segment::{FrameCursor, Segment};
use crate::shared::Shared;

/// Frames checked against the index per index-lock acquisition: the writer's
/// publish waits at most this long on `verify`.
const SLICE_FRAMES: usize = 4096;

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub path: PathBuf,
    /// Byte offset in it.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}

/// What [`crate::Store::verify`] checked and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Events whose frames were checked.
    pub events: u64,
    /// Aggregates in the index.
    pub aggregates: u64,
    /// Segment files.
    pub segments: u64,
    /// Index checkpoint files compared with their segment.
    pub checkpoints: u64,
    /// Snapshot records decoded.
    pub snapshots: u64,
    /// Everything wrong, in log order (empty when the store is sound).
    pub problems: Vec<Problem>,
}

/// One frame as the log has it: (position, offset, aggregate, version).
type Found<'r> = (u64, u32, &'r str, u64);

/// Checks every frame `reader` sees, the index entries pointing at them, the
/// sealed segments' checkpoints and every snapshot.
pub(crate) fn verify(shared: &Shared, reader: &Reader, progress: &mut dyn FnMut(u64, u64)) -> Result<VerifyReport> {
    let end = reader.end_position();
    let segs = reader.segments();
    let total = end.saturating_sub(segs.first().map_or(0, |s| s.first_position));
    let mut report = VerifyReport { segments: segs.len() as u64, ..VerifyReport::default() };
    for (si, seg) in segs.iter().enumerate() {
        let seg_end = segs.get(si + 1).map_or(end, |n| n.first_position).min(end);
        let found = check_segment(shared, (seg, seg_end, total), &mut report, &mut *progress);
        if si + 1 < segs.len() {
            check_checkpoint(&shared.dir, seg, &found, &mut report);
        }
    }
    let idx = shared.index();
    report.aggregates = idx.aggregate_count() as u64;
    let indexed: u64 = idx.aggregates().map(|(_, p)| p.end_below(end) - p.base()).sum();
    if indexed != report.events && report.problems.is_empty() {
        let path = shared.dir.clone();
        let reason =
            format!("the aggregate index holds {indexed} events below position {end}, the log {}", report.events);
        report.problems.push(Problem { path, offset: 0, reason });
    }
    drop(idx);
    progress(report.events, total);
    let (snapshots, problems) = shared.snapshots.verify();
    report.snapshots = snapshots;
    report.problems.extend(problems.into_iter().map(|(path, offset, reason)| Problem { path, offset, reason }));
    Ok(report)
}

/// Walks one segment's frames up to `seg_end`, fully checked, comparing
/// them with the index a slice at a time. Returns what the log holds.
fn check_segment<'r>(
    shared: &Shared,
    (seg, seg_end, total): (&'r Segment, u64, u64),
    report: &mut VerifyReport,
    progress: &mut dyn FnMut(u64, u64),
) -> Vec<Found<'r>> {
    let mut frames = FrameCursor::for_scan(seg);
    let mut found: Vec<Found<'r>> = Vec::new();
    let mut checked = 0;
    while frames.position() < seg_end {
        let offset = frames.offset();
        match frames.next_frame() {
            Ok(Some(f)) => found.push((f.event.position(), offset as u32, f.event.aggregate_id(), f.event.version())),
            // A sparse segment's frames end before its positions do (removed ones).
            Ok(None) if frames.position() >= seg_end && seg.sparse_end.is_some() => break,
            Ok(None) => {
                report.problems.push(problem(seg, offset, "log ends before the visible watermark".into()));
                break;
            }
            Err(e) => {
                report.problems.push(problem(seg, offset, e.to_string()));
                break;
            }
        }
        if found.len() - checked == SLICE_FRAMES {
            check_against_index(&shared.index(), seg, &found[checked..], report);
            checked = found.len();
            progress(report.events, total);
        }
    }
    check_against_index(&shared.index(), seg, &found[checked..], report);
    if frames.in_batch() && frames.position() == seg_end {
        report.problems.push(problem(seg, frames.offset(), "segment ends inside a batch".into()));
    }
    found
}

/// Checks that the index places each frame of `slice` where the log has it.
fn check_against_index(idx: &IndexState, seg: &Segment, slice: &[Found<'_>], report: &mut VerifyReport) {
    for &(position, offset, agg, version) in slice {
        report.events += 1;
        match idx.locate(position) {
            Some((i, off)) if idx.segment(i).is_some_and(|s| s.id == seg.id) && off == u64::from(offset) => {}
            other => {
                let reason = format!("index places position {position} at {other:?}");
                report.problems.push(problem(seg, offset.into(), reason));
            }
        }
        let indexed = idx.positions(agg).and_then(|p| p.position(version));
        if indexed != Some(position) {
            let reason = format!(
                "aggregate index has {indexed:?} for {agg:?} v{version}, the log has it at position {position}"
            );
            report.problems.push(problem(seg, offset.into(), reason));
        }
    }
}

/// The on-disk checkpoint of a sealed segment must say exactly what the log says.
fn check_checkpoint(dir: &std::path::Path, seg: &Segment, found: &[Found<'_>], report: &mut VerifyReport) {
    let cp_path = dir.join(index::file_name(seg.first_position));
    // An older format is out of date, not damaged: the next read-write open rebuilds it.
    if !cp_path.exists() || crate::index_file::is_older_format(&cp_path) {
        return;
    }
    report.checkpoints += 1;
    match index::open_file(&cp_path, seg.first_position) {
        Ok(file) => {
            // Every frame is in the file where the log has it, and the file
            // holds nothing else (as many entries).
            let same = file.entries() == found.len() as u64
                && found.iter().all(|(position, offset, agg, version)| {
                    file.offset_of(*position) == Some(*offset) && file.position_of(agg, *version) == Some(*position)
                });
            if !same {
                let reason = "checkpoint disagrees with its segment".into();
                report.problems.push(Problem { path: cp_path, offset: 0, reason });
            }
        }
        Err(e) => report.problems.push(Problem { path: cp_path, offset: 0, reason: e.to_string() }),
    }
}

fn problem(seg: &Segment, offset: u64, reason: String) -> Problem {
    Problem { path: seg.path.clone(), offset, reason }
}
