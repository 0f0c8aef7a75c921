//! Whole-store verification: re-reads every frame of every segment (checksum,
//! rkyv structure, claimed position, batch slots), checks every in-memory
//! and checkpointed index entry against the log, and decodes every snapshot.
//! Reports problems instead of stopping at the first; never writes a file.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::error::Result;
use crate::index;
use crate::record;
use crate::segment::HEADER_BYTES;
use crate::store::Store;

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

/// What [`Store::verify`] checked and found.
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

impl Store {
    /// Checks every record and index entry of the store; `progress` is
    /// called with (events checked, events in total) as it goes.
    pub fn verify(&self, progress: &mut dyn FnMut(u64, u64)) -> Result<VerifyReport> {
        let reader = self.reader();
        let shared = self.shared();
        let end = reader.end_position();
        let segs = reader.segments.clone();
        let first = segs.first().map_or(0, |s| s.first_position);
        let total = end.saturating_sub(first);
        let mut report = VerifyReport { segments: segs.len() as u64, ..VerifyReport::default() };
        let idx = shared.index.read().unwrap_or_else(|p| p.into_inner());
        report.aggregates = idx.aggregates.len() as u64;
        // Reverse map for checking the per-aggregate index: position -> (aggregate, version).
        let mut by_position: HashMap<u64, (&str, u64)> = HashMap::with_capacity(total.min(1 << 24) as usize);
        for (agg, positions) in &idx.aggregates {
            for (v, p) in positions.iter().enumerate() {
                if *p < end {
                    by_position.insert(*p, (agg, v as u64));
                }
            }
        }
        for (si, seg) in segs.iter().enumerate() {
            let seg_end = segs.get(si + 1).map_or(end, |n| n.first_position).min(end);
            let mut offset = HEADER_BYTES as usize;
            let mut position = seg.first_position;
            let mut batch: Option<(u32, u32)> = None;
            let mut found = Vec::new();
            let problem =
                |offset: usize, reason: String| Problem { path: seg.path.clone(), offset: offset as u64, reason };
            while position < seg_end {
                let bytes = seg.bytes().get(offset..).unwrap_or(&[]);
                let checked = record::parse_header(bytes, seg.bytes().len())
                    .and_then(|h| record::checked_body(bytes, &h).map(|b| (h, b)))
                    .and_then(|(h, b)| record::validate_body(b, &h).map(|a| (h, a)));
                let (h, body) = match checked {
                    Ok(x) => x,
                    Err(e) => {
                        report.problems.push(problem(offset, crate::segment::frame_msg(e)));
                        break;
                    }
                };
                if h.position != position {
                    report
                        .problems
                        .push(problem(offset, format!("frame claims position {}, expected {position}", h.position)));
                    break;
                }
                let expect_index = batch.map_or(0, |(_, next)| next);
                if h.batch_index != expect_index || batch.is_some_and(|(len, _)| len != h.batch_len) {
                    report
                        .problems
                        .push(problem(offset, format!("batch slot {}/{} out of sequence", h.batch_index, h.batch_len)));
                }
                batch = if h.batch_index + 1 == h.batch_len { None } else { Some((h.batch_len, h.batch_index + 1)) };
                match idx.locate(position) {
                    Some((i, off)) if i == si && off == offset as u64 => {}
                    other => {
                        report.problems.push(problem(offset, format!("index places position {position} at {other:?}")))
                    }
                }
                let agg: &str = &body.aggregate_id;
                match by_position.get(&position) {
                    Some((a, v)) if *a == agg && *v == body.version.to_native() => {}
                    other => report.problems.push(problem(
                        offset,
                        format!(
                            "aggregate index has {other:?} for position {position}, the log says {agg:?} v{}",
                            body.version.to_native()
                        ),
                    )),
                }
                found.push((agg, body.version.to_native(), offset as u32));
                offset += h.frame_len();
                position += 1;
                report.events += 1;
                if report.events.is_multiple_of(65_536) {
                    progress(report.events, total);
                }
            }
            if batch.is_some() && position == seg_end {
                report.problems.push(problem(offset, "segment ends inside a batch".into()));
            }
            // The on-disk checkpoint of a sealed segment must say exactly the same.
            let cp_path = shared.dir.join(index::file_name(seg.first_position));
            if si + 1 < segs.len() && cp_path.exists() {
                report.checkpoints += 1;
                match index::read_checkpoint(&cp_path, seg.first_position) {
                    Ok(cp) => {
                        let same = cp.entries.len() == found.len()
                            && cp.entries.iter().zip(&found).all(|((n, off, v), (a, fv, fo))| {
                                cp.names.get(*n as usize).is_some_and(|name| name == a) && off == fo && v == fv
                            });
                        if !same {
                            report.problems.push(Problem {
                                path: cp_path,
                                offset: 0,
                                reason: "checkpoint disagrees with its segment".into(),
                            });
                        }
                    }
                    Err(r) => report.problems.push(Problem { path: cp_path, offset: 0, reason: r }),
                }
            }
        }
        drop(idx);
        progress(report.events, total);
        let (snapshots, problems) = shared.snapshots.verify();
        report.snapshots = snapshots;
        report.problems.extend(problems.into_iter().map(|(path, offset, reason)| Problem { path, offset, reason }));
        Ok(report)
    }

    /// Where the frame of `position` lives: its segment file and byte offset.
    pub fn locate(&self, position: u64) -> Option<(PathBuf, u64)> {
        let idx = self.shared().index.read().unwrap_or_else(|p| p.into_inner());
        let (i, off) = idx.locate(position)?;
        Some((idx.segments[i].seg.path.clone(), off))
    }
}
