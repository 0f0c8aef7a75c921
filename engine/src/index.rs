//! The per-aggregate offset index: (aggregate, version) → global position
//! and position → (segment, offset). Sealed segments are indexed by their
//! memory-mapped index files (`index_file`, `<first position>.idx`); only
//! the active segment's entries (and those of a sealed segment whose file is
//! not written yet) live in memory, with a small resident directory per
//! aggregate: its first and next version, and the span of positions its
//! events lie in, which bounds the files a lookup visits. A lookup of one
//! aggregate never scans a file: each file answers through its filter and a
//! binary search. A file that is missing or fails its checks is rebuilt
//! from its segment. This module never reads event bodies.
//!
//! Memory: for the active segment, 4 bytes per event for the offset and 8
//! for the position; per aggregate, its id and 32 bytes in a hash map.
//! Sealed segments cost no heap: their files are mapped (page cache).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::event::EventRef;
pub use crate::index_file::BadIndexFile;
use crate::index_file::{key_hash, IndexFile, Row, RunIn};
use crate::segment::Segment;

/// File name suffix of index files.
pub const IDX_SUFFIX: &str = ".idx";

/// File name of the index file of the segment starting at `first_position`.
pub fn file_name(first_position: u64) -> String {
    format!("{first_position:020}{IDX_SUFFIX}")
}

type Hasher = foldhash::quality::RandomState;

/// Why the index refused an entry, or an index file was not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// An entry arrived out of order: a bug or a lying index file, never a torn write.
    #[error("position {position} is not next ({next})")]
    PositionNotNext {
        /// The position offered.
        position: u64,
        /// The position expected.
        next: u64,
    },
    /// A version arrived out of order for its aggregate.
    #[error("aggregate {aggregate_id:?} version {version} is not next ({next})")]
    VersionNotNext {
        /// The aggregate.
        aggregate_id: String,
        /// The version offered.
        version: u64,
        /// The version expected.
        next: u64,
    },
    /// An entry before any segment, or after its segment was sealed.
    #[error("no segment to index into")]
    NoSegment,
    /// An index file that cannot be used (the caller rebuilds it from its segment).
    #[error("{0}")]
    BadCheckpoint(String),
}

/// One aggregate's versions in one segment held in memory.
#[derive(Debug, Default)]
struct Run {
    first_version: u64,
    positions: Vec<u64>,
}

/// A segment's entries in memory: the active segment's, or a sealed one's
/// until its index file is written and attached.
#[derive(Default)]
struct MemPart {
    /// Frame offset of each position, by `position - first_position`.
    offsets: Vec<u32>,
    /// The aggregates' runs.
    runs: HashMap<Box<str>, Run, Hasher>,
}

enum Part {
    Mem(MemPart),
    File(Arc<IndexFile>),
}

/// One segment as the index sees it.
struct SegmentSlot {
    seg: Arc<Segment>,
    part: Part,
}

/// An aggregate's run in one segment, wherever it is kept.
enum RunRef<'a> {
    Mem(&'a Run),
    File(&'a IndexFile, Row),
}

impl RunRef<'_> {
    fn first_version(&self) -> u64 {
        match self {
            RunRef::Mem(r) => r.first_version,
            RunRef::File(_, row) => row.first_version,
        }
    }

    fn count(&self) -> u64 {
        match self {
            RunRef::Mem(r) => r.positions.len() as u64,
            RunRef::File(_, row) => u64::from(row.count),
        }
    }

    fn position(&self, k: u64) -> Option<u64> {
        match self {
            RunRef::Mem(r) => r.positions.get(usize::try_from(k).ok()?).copied(),
            RunRef::File(f, row) => f.run_position(row, k),
        }
    }

    fn count_below(&self, position: u64) -> u64 {
        match self {
            RunRef::Mem(r) => r.positions.partition_point(|p| *p < position) as u64,
            RunRef::File(f, row) => f.run_count_below(row, position),
        }
    }
}

impl SegmentSlot {
    fn offset_at(&self, position: u64) -> Option<u32> {
        match &self.part {
            Part::Mem(m) => {
                m.offsets.get(usize::try_from(position.checked_sub(self.seg.first_position)?).ok()?).copied()
            }
            Part::File(f) => f.offset_of(position),
        }
    }

    fn last_offset(&self) -> Option<u32> {
        match &self.part {
            Part::Mem(m) => m.offsets.last().copied(),
            Part::File(f) => f.last_offset(),
        }
    }

    fn run(&self, id: &str, hash: u64) -> Option<RunRef<'_>> {
        match &self.part {
            Part::Mem(m) => m.runs.get(id).map(RunRef::Mem),
            Part::File(f) => f.find(id, hash).map(|row| RunRef::File(f, row)),
        }
    }
}

/// What stays in memory per aggregate.
#[derive(Debug, Clone, Copy)]
struct Dir {
    /// The first version still in the log.
    base: u64,
    /// One past the last version.
    end: u64,
    /// No version from `base` on lies before this position.
    first_hint: u64,
    /// The position of version `end - 1` (meaningless when `base == end`).
    last_position: u64,
}

/// One aggregate's events in the index: versions from `base` to `end`
/// (exclusive), dense. `base` is 0 until retention or a scavenge removes the
/// aggregate's first events. A lookup handle: each call searches the
/// segments that can hold the aggregate (filters, then binary searches).
#[derive(Clone, Copy)]
pub struct Versions<'a> {
    idx: &'a IndexState,
    id: &'a str,
    hash: u64,
    dir: Dir,
}

impl std::fmt::Debug for Versions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Versions").field("id", &self.id).field("dir", &self.dir).finish()
    }
}

impl<'a> Versions<'a> {
    /// The first version still in the log.
    pub fn base(&self) -> u64 {
        self.dir.base
    }

    /// One past the last version (the next version to append).
    pub fn end(&self) -> u64 {
        self.dir.end
    }

    /// How many versions are still in the log.
    pub fn len(&self) -> u64 {
        self.dir.end - self.dir.base
    }

    /// Whether no event of it is left in the log.
    pub fn is_empty(&self) -> bool {
        self.dir.end == self.dir.base
    }

    /// The position of its last version, if any is left.
    pub fn last_position(&self) -> Option<u64> {
        (!self.is_empty()).then_some(self.dir.last_position)
    }

    /// The slots that can hold its versions, oldest first.
    fn slots(&self) -> std::ops::Range<usize> {
        self.idx.slot_of(self.dir.first_hint)..self.idx.slot_of(self.dir.last_position) + 1
    }

    /// The runs of it, oldest first, with their slot numbers.
    fn runs(&self) -> impl DoubleEndedIterator<Item = (usize, RunRef<'a>)> + 'a {
        let (id, hash, idx) = (self.id, self.hash, self.idx);
        let slots = if self.is_empty() { 0..0 } else { self.slots() };
        slots.filter_map(move |i| Some((i, idx.segments.get(i)?.run(id, hash)?)))
    }

    /// The position of `version`, if it is still in the log.
    pub fn position(&self, version: u64) -> Option<u64> {
        if version < self.dir.base || version >= self.dir.end {
            return None;
        }
        if version == self.dir.end - 1 {
            return Some(self.dir.last_position);
        }
        // Versions grow with positions: search from the nearer end.
        if version - self.dir.base < self.dir.end - version {
            for (_, r) in self.runs() {
                if version < r.first_version() {
                    return None;
                }
                if version < r.first_version() + r.count() {
                    return r.position(version - r.first_version());
                }
            }
        } else {
            for (_, r) in self.runs().rev() {
                if version >= r.first_version() + r.count() {
                    return None;
                }
                if version >= r.first_version() {
                    return r.position(version - r.first_version());
                }
            }
        }
        None
    }

    /// The positions of versions `from..to` (clamped to what is left), in
    /// version order; it stops early at a version it cannot find.
    pub fn positions(&self, from: u64, to: u64) -> Vec<u64> {
        let (from, to) = (from.max(self.dir.base), to.min(self.dir.end));
        let mut out = Vec::with_capacity(usize::try_from(to.saturating_sub(from)).unwrap_or(0).min(1 << 20));
        let mut next = from;
        for (_, r) in self.runs() {
            if next >= to {
                break;
            }
            let (first, count) = (r.first_version(), r.count());
            if next >= first + count {
                continue;
            }
            if next < first {
                break;
            }
            for k in next - first..count.min(to - first) {
                match r.position(k) {
                    Some(p) => out.push(p),
                    None => return out,
                }
            }
            next = first + count.min(to - first);
        }
        out
    }

    /// One past the last version whose position is below `end` (0: none;
    /// the versions before `base` count, though they left the log).
    pub fn end_below(&self, end: u64) -> u64 {
        if self.is_empty() || self.dir.last_position < end {
            return self.dir.end;
        }
        let hi = self.idx.slot_of(end.min(self.dir.last_position));
        for (i, r) in self.runs().rev() {
            if i > hi {
                continue;
            }
            let k = r.count_below(end);
            if k > 0 {
                return (r.first_version() + k).max(self.dir.base);
            }
        }
        self.dir.base
    }
}

/// The whole index. Guarded by the store's `RwLock`; the writer (and,
/// before it starts, recovery; and the scavenge, under the swap lock) is
/// the only mutator.
#[derive(Default)]
pub struct IndexState {
    /// Segments in log order.
    segments: Vec<SegmentSlot>,
    /// The resident directory: each aggregate's versions and span.
    aggregates: HashMap<Box<str>, Dir, Hasher>,
    /// One past the last indexed position.
    next_position: u64,
    /// Whether events were removed before the end of what is indexed (the
    /// log starts after position 0, or a sparse segment came): only then
    /// may an aggregate's first indexed version be above 0.
    gaps: bool,
    /// A read-only store's index following a live writer: it may hold an
    /// aggregate's early events from before a scavenge removed later ones.
    following: bool,
}

impl IndexState {
    /// An empty index of a log that starts at `first_position`.
    pub fn starting_at(first_position: u64) -> IndexState {
        IndexState { next_position: first_position, ..IndexState::default() }
    }

    /// Marks this index as a read-only store's, following a live writer.
    pub fn set_following(&mut self) {
        self.following = true;
    }

    /// One past the last indexed position.
    pub fn next_position(&self) -> u64 {
        self.next_position
    }

    /// Position of the first event the log holds (of its first segment).
    pub fn first_position(&self) -> u64 {
        self.segments.first().map_or(self.next_position, |s| s.seg.first_position)
    }

    /// The slot whose segment holds `position` (the first one if none does).
    fn slot_of(&self, position: u64) -> usize {
        self.segments.partition_point(|s| s.seg.first_position <= position).saturating_sub(1)
    }

    /// The segment slot index and frame offset of `position`.
    pub fn locate(&self, position: u64) -> Option<(usize, u64)> {
        if position >= self.next_position {
            return None;
        }
        let i = self.segments.partition_point(|s| s.seg.first_position <= position).checked_sub(1)?;
        let off = self.segments.get(i)?.offset_at(position)?;
        Some((i, u64::from(off)))
    }

    /// The event at `position`, read through its segment (checksum verified).
    pub fn event_at(&self, position: u64) -> Option<Result<EventRef<'_>>> {
        let (i, offset) = self.locate(position)?;
        Some(self.segments.get(i)?.seg.event_at(offset, position).map(|(e, _)| e))
    }

    /// The segments, in log order.
    pub fn segments(&self) -> impl ExactSizeIterator<Item = &Arc<Segment>> + '_ {
        self.segments.iter().map(|s| &s.seg)
    }

    /// The segment of slot `i` (as returned by [`IndexState::locate`]).
    pub fn segment(&self, i: usize) -> Option<&Arc<Segment>> {
        self.segments.get(i).map(|s| &s.seg)
    }

    /// Offset of the last frame of each segment (`None`: the segment is empty).
    pub fn last_offsets(&self) -> impl Iterator<Item = (&Arc<Segment>, Option<u32>)> + '_ {
        self.segments.iter().map(|s| (&s.seg, s.last_offset()))
    }

    /// An aggregate's versions, to look its positions up.
    pub fn positions<'a>(&'a self, aggregate_id: &str) -> Option<Versions<'a>> {
        let (id, dir) = self.aggregates.get_key_value(aggregate_id)?;
        Some(Versions { idx: self, id, hash: key_hash(id), dir: *dir })
    }

    /// Every aggregate with its versions, in no particular order.
    pub fn aggregates(&self) -> impl Iterator<Item = (&str, Versions<'_>)> + '_ {
        self.aggregates.iter().map(|(k, dir)| (&**k, Versions { idx: self, id: k, hash: key_hash(k), dir: *dir }))
    }

    /// Aggregates with at least one event.
    pub fn aggregate_count(&self) -> usize {
        self.aggregates.len()
    }

    /// The aggregate's version counting only positions below `visible_end`.
    pub fn version_below(&self, aggregate_id: &str, visible_end: u64) -> Option<u64> {
        self.positions(aggregate_id)?.end_below(visible_end).checked_sub(1)
    }

    /// Removes the segments before the one starting at `first_position` (the
    /// head of the log, which retention deleted) and every index entry below
    /// it. Returns the segments removed.
    pub fn drop_head(&mut self, first_position: u64) -> Vec<Arc<Segment>> {
        let keep_from = self.segments.partition_point(|s| s.seg.first_position < first_position);
        let removed: Vec<SegmentSlot> = self.segments.drain(..keep_from).collect();
        if removed.is_empty() {
            return Vec::new();
        }
        self.gaps = true;
        let start = self.first_position();
        // Each aggregate's base moves past its versions in the removed
        // segments. An aggregate left without events keeps its entry: its
        // versions go on in this process (after a reopen it starts again at
        // 0, README).
        for slot in &removed {
            let mut past = |id: &str, end_version: u64| {
                if let Some(d) = self.aggregates.get_mut(id) {
                    d.base = d.base.max(end_version.min(d.end));
                    d.first_hint = d.first_hint.max(start);
                }
            };
            match &slot.part {
                Part::Mem(m) => m.runs.iter().for_each(|(id, r)| past(id, r.first_version + r.positions.len() as u64)),
                Part::File(f) => f.rows().for_each(|(row, id)| past(id, row.first_version + u64::from(row.count))),
            }
        }
        removed.into_iter().map(|s| s.seg).collect()
    }

    /// Starts indexing a new segment (it must start at the next position).
    /// The previous segment is sealed: its entries never grow again.
    pub fn push_segment(&mut self, seg: Arc<Segment>, expected_events: usize) -> Result<(), IndexError> {
        self.start_segment(&seg)?;
        if let Some(SegmentSlot { part: Part::Mem(m), .. }) = self.segments.last_mut() {
            m.offsets.shrink_to_fit();
            m.runs.values_mut().for_each(|r| r.positions.shrink_to_fit());
        }
        let part = MemPart { offsets: Vec::with_capacity(expected_events), runs: HashMap::default() };
        self.segments.push(SegmentSlot { seg, part: Part::Mem(part) });
        Ok(())
    }

    /// Seals the last segment and checks that `seg` starts where it ends.
    fn start_segment(&mut self, seg: &Segment) -> Result<(), IndexError> {
        // A sparse predecessor ends at its end position, whatever its last frame.
        self.seal_sparse()?;
        if seg.first_position != self.next_position && !self.segments.is_empty() {
            return Err(IndexError::PositionNotNext { position: seg.first_position, next: self.next_position });
        }
        if self.segments.is_empty() {
            self.next_position = seg.first_position;
            self.gaps |= seg.first_position > 0;
        }
        self.gaps |= seg.sparse_end.is_some();
        Ok(())
    }

    /// Adds one event to the last segment. Versions must arrive densely per aggregate.
    pub fn push(&mut self, aggregate_id: &str, version: u64, position: u64, offset: u32) -> Result<(), IndexError> {
        let Some(SegmentSlot { seg, part: Part::Mem(slot) }) = self.segments.last_mut() else {
            return Err(IndexError::NoSegment);
        };
        let covered = seg.first_position + slot.offsets.len() as u64;
        if position != covered || position != self.next_position {
            // A sparse segment skips the positions the scavenge removed: a
            // walk from one of them starts at this frame.
            let skips = seg.sparse_end.is_some_and(|end| position > self.next_position && position < end);
            if !skips || self.next_position != covered {
                return Err(IndexError::PositionNotNext { position, next: self.next_position });
            }
            slot.offsets.resize((position - seg.first_position) as usize, offset);
            self.next_position = position;
        }
        debug_assert!(slot.offsets.last().is_none_or(|last| *last < offset), "frame offsets grow within a segment");
        let dir = match self.aggregates.get_mut(aggregate_id) {
            Some(d) => d,
            // The log may start after an aggregate's first events (retention, scavenge).
            None if version == 0 || self.gaps => self.aggregates.entry(aggregate_id.into()).or_insert(Dir {
                base: version,
                end: version,
                first_hint: position,
                last_position: position,
            }),
            None => {
                return Err(IndexError::VersionNotNext { aggregate_id: aggregate_id.to_string(), version, next: 0 })
            }
        };
        if dir.end != version {
            // Following a writer whose scavenge removed the versions between
            // (hidden there by the aggregate's rules): the older ones go too.
            if !(self.following && self.gaps && version > dir.end) {
                return Err(IndexError::VersionNotNext {
                    aggregate_id: aggregate_id.to_string(),
                    version,
                    next: dir.end,
                });
            }
            *dir = Dir { base: version, end: version, first_hint: position, last_position: position };
        }
        dir.end += 1;
        dir.last_position = position;
        let run = match slot.runs.get_mut(aggregate_id) {
            Some(r) => r,
            None => {
                slot.runs.entry(aggregate_id.into()).or_insert(Run { first_version: version, positions: Vec::new() })
            }
        };
        if run.first_version + run.positions.len() as u64 != version {
            // The following case above: the run starts again.
            *run = Run { first_version: version, positions: Vec::new() };
        }
        run.positions.push(position);
        slot.offsets.push(offset);
        self.next_position += 1;
        Ok(())
    }

    /// Ends a sparse segment's entries: the positions after its last frame
    /// (removed) lead to where its frames end, and the log goes on at its
    /// end position. A dense segment is left as it is.
    pub fn seal_sparse(&mut self) -> Result<(), IndexError> {
        let Some(SegmentSlot { seg, part: Part::Mem(slot) }) = self.segments.last_mut() else { return Ok(()) };
        let Some(end) = seg.sparse_end else { return Ok(()) };
        let covered = seg.first_position + slot.offsets.len() as u64;
        if covered > end || self.next_position != covered {
            return Err(IndexError::PositionNotNext { position: end, next: self.next_position });
        }
        let frames_end = frames_end(seg, slot.offsets.last().copied());
        slot.offsets.resize((end - seg.first_position) as usize, frames_end);
        self.next_position = end;
        Ok(())
    }

    /// Indexes a sealed segment by its (validated) index file, which must
    /// cover it: dense, up to `end`; sparse, up to its end position. Only
    /// the file's aggregate table is read, to update the directory.
    pub fn push_file(&mut self, seg: Arc<Segment>, file: Arc<IndexFile>, end: u64) -> Result<(), IndexError> {
        let bad = |r: String| IndexError::BadCheckpoint(format!("{}: {r}", file.path().display()));
        if file.is_sparse() != seg.sparse_end.is_some() || seg.first_position + file.covered() != end {
            return Err(bad(format!("covers {} positions, its segment {}", file.covered(), end - seg.first_position)));
        }
        self.start_segment(&seg)?;
        let first = seg.first_position;
        for (row, id) in file.rows() {
            let (Some(first_pos), Some(last_pos)) =
                (file.run_position(&row, 0), file.run_position(&row, u64::from(row.count) - 1))
            else {
                return Err(bad(format!("aggregate {id:?}: run out of range")));
            };
            if first_pos < first || last_pos >= end {
                return Err(bad(format!("aggregate {id:?}: positions out of range")));
            }
            match self.aggregates.get_mut(id) {
                Some(d) if d.end == row.first_version => {
                    d.end += u64::from(row.count);
                    d.last_position = last_pos;
                }
                Some(d) => {
                    let next = d.end;
                    return Err(IndexError::VersionNotNext {
                        aggregate_id: id.into(),
                        version: row.first_version,
                        next,
                    });
                }
                None if row.first_version > 0 && !self.gaps => {
                    let version = row.first_version;
                    return Err(IndexError::VersionNotNext { aggregate_id: id.into(), version, next: 0 });
                }
                None => {
                    let dir = Dir {
                        base: row.first_version,
                        end: row.first_version + u64::from(row.count),
                        first_hint: first_pos,
                        last_position: last_pos,
                    };
                    self.aggregates.insert(id.into(), dir);
                }
            }
        }
        self.segments.push(SegmentSlot { seg, part: Part::File(file) });
        self.next_position = end;
        Ok(())
    }

    /// Whether `file` says exactly what the in-memory entries of the sealed
    /// segment `seg` say (false if `seg` is not such a segment). Reads every
    /// entry of the file: call it under the read lock, before
    /// [`IndexState::attach`].
    pub fn file_matches(&self, seg: &Arc<Segment>, file: &IndexFile) -> bool {
        let Some(m) = self.sealed_mem(seg) else { return false };
        if file.covered() != m.offsets.len() as u64 || file.aggregate_count() != m.runs.len() {
            return false;
        }
        let first = seg.first_position;
        let offsets = m.offsets.iter().enumerate().all(|(k, o)| file.offset_of(first + k as u64) == Some(*o));
        offsets
            && m.runs.iter().all(|(id, run)| {
                file.find(id, key_hash(id)).is_some_and(|row| {
                    row.first_version == run.first_version
                        && u64::from(row.count) == run.positions.len() as u64
                        && run.positions.iter().enumerate().all(|(k, p)| file.run_position(&row, k as u64) == Some(*p))
                })
            })
    }

    /// The in-memory entries of the sealed segment `seg`.
    fn sealed_mem(&self, seg: &Arc<Segment>) -> Option<&MemPart> {
        let i = self.segments.iter().position(|s| Arc::ptr_eq(&s.seg, seg))?;
        if i + 1 == self.segments.len() {
            return None;
        }
        match &self.segments.get(i)?.part {
            Part::Mem(m) => Some(m),
            Part::File(_) => None,
        }
    }

    /// Replaces the in-memory entries of the sealed segment `seg` by its
    /// index file, which [`IndexState::file_matches`] accepted. Returns
    /// whether it did (the segment may have gone meanwhile).
    pub fn attach(&mut self, seg: &Arc<Segment>, file: Arc<IndexFile>) -> bool {
        if self.sealed_mem(seg).is_none() {
            return false;
        }
        match self.segments.iter_mut().find(|s| Arc::ptr_eq(&s.seg, seg)) {
            Some(slot) => {
                slot.part = Part::File(file);
                true
            }
            None => false,
        }
    }

    /// Whether removing these (aggregate, position) events (in position
    /// order) leaves every aggregate's versions dense: each aggregate's
    /// removed events must be the first it has left. Returns them grouped by
    /// aggregate.
    pub fn check_removal<'a>(&self, removed: &[(&'a str, u64)]) -> Result<HashMap<&'a str, Vec<u64>>, IndexError> {
        let mut per_agg: HashMap<&str, Vec<u64>> = HashMap::new();
        for (agg, position) in removed {
            per_agg.entry(agg).or_default().push(*position);
        }
        for (agg, list) in &per_agg {
            let prefix = self.positions(agg).is_some_and(|v| {
                v.len() >= list.len() as u64 && v.positions(v.base(), v.base() + list.len() as u64) == *list
            });
            if !prefix {
                let reason = format!("the events removed from aggregate {agg:?} are not its first ones");
                return Err(IndexError::BadCheckpoint(reason));
            }
        }
        Ok(per_agg)
    }

    /// Replaces the sealed segment starting where `seg` does by `seg` (the
    /// scavenge's rewrite of it, sparse), whose events are `kept` (in
    /// position order); `removed` are the (aggregate, position) of the events
    /// it left out, in position order. Each aggregate's removed events must
    /// be the first it has left in the index (the lifecycle rules only ever
    /// remove a prefix of an aggregate's versions); they leave the index,
    /// and its versions go on from the next one. The new segment's entries
    /// are in memory until its index file is attached.
    pub fn replace_sealed(
        &mut self,
        seg: Arc<Segment>,
        kept: &[CheckpointEntry<'_>],
        removed: &[(&str, u64)],
    ) -> Result<(), IndexError> {
        let bad = |r: String| IndexError::BadCheckpoint(r);
        let i = self
            .segments
            .iter()
            .position(|s| s.seg.first_position == seg.first_position)
            .ok_or_else(|| bad(format!("no segment starts at {}", seg.first_position)))?;
        let end = match self.segments.get(i + 1) {
            Some(next) => next.seg.first_position,
            None => return Err(bad("the active segment is never replaced".into())),
        };
        if seg.sparse_end != Some(end) {
            return Err(bad(format!("replacement ends at {:?}, the segment at {end}", seg.sparse_end)));
        }
        // Check every aggregate's removed events first: nothing changes on an error.
        let per_agg = self.check_removal(removed)?;
        let part = mem_part(&seg, kept, end).map_err(bad)?;
        for (agg, list) in per_agg {
            if let Some(d) = self.aggregates.get_mut(agg) {
                // Kept even when empty: its versions go on after the removed ones.
                d.base += list.len() as u64;
                d.first_hint = d.first_hint.max(list.last().map_or(0, |p| p + 1));
            }
        }
        self.segments[i] = SegmentSlot { seg, part: Part::Mem(part) };
        self.gaps = true;
        Ok(())
    }

    /// Approximate heap bytes used by the index: the in-memory entries and
    /// the resident directory (index files are mapped, not counted).
    pub fn memory_bytes(&self) -> u64 {
        let run_bytes = std::mem::size_of::<(Box<str>, Run)>() + 8;
        let mem: usize = self
            .segments
            .iter()
            .map(|s| match &s.part {
                Part::Mem(m) => {
                    m.offsets.capacity() * 4
                        + m.runs.iter().map(|(k, r)| k.len() + r.positions.capacity() * 8 + run_bytes).sum::<usize>()
                        + m.runs.capacity().saturating_sub(m.runs.len()) * run_bytes
                }
                Part::File(_) => std::mem::size_of::<IndexFile>(),
            })
            .sum();
        let dir_bytes = std::mem::size_of::<(Box<str>, Dir)>() + 1;
        let dir: usize = self.aggregates.keys().map(|k| k.len() + dir_bytes).sum::<usize>()
            + self.aggregates.capacity().saturating_sub(self.aggregates.len()) * dir_bytes;
        (mem + dir + self.segments.capacity() * std::mem::size_of::<SegmentSlot>()) as u64
    }
}

/// Where the frames of a segment whose last frame is at `last` end.
fn frames_end(seg: &Segment, last: Option<u32>) -> u32 {
    match last {
        Some(o) => u32::try_from(seg.frame_end(u64::from(o))).unwrap_or(u32::MAX),
        None => crate::segment::HEADER_BYTES as u32,
    }
}

/// The in-memory entries of a sealed segment covering positions up to
/// `end`, whose events are `entries` (in position order).
fn mem_part(seg: &Segment, entries: &[CheckpointEntry<'_>], end: u64) -> Result<MemPart, String> {
    let first = seg.first_position;
    let mut m = MemPart { offsets: Vec::with_capacity((end - first) as usize), runs: HashMap::default() };
    for e in entries {
        if e.position < first + m.offsets.len() as u64 || e.position >= end {
            return Err(format!("position {} out of order or range", e.position));
        }
        m.offsets.resize((e.position - first) as usize, e.offset);
        m.offsets.push(e.offset);
        let run = match m.runs.get_mut(e.aggregate_id) {
            Some(r) => r,
            None => {
                m.runs.entry(e.aggregate_id.into()).or_insert(Run { first_version: e.version, positions: Vec::new() })
            }
        };
        if run.first_version + run.positions.len() as u64 != e.version {
            return Err(format!("aggregate {:?} version {} is not next in its segment", e.aggregate_id, e.version));
        }
        run.positions.push(e.position);
    }
    let last = frames_end(seg, m.offsets.last().copied());
    m.offsets.resize((end - first) as usize, last);
    Ok(m)
}

/// One event of a segment, as recorded in its index file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointEntry<'a> {
    /// Aggregate id.
    pub aggregate_id: &'a str,
    /// Version.
    pub version: u64,
    /// Global position.
    pub position: u64,
    /// Frame offset.
    pub offset: u32,
}

/// Writes the index file of the sealed segment `seg`, whose events are
/// `entries` (in position order), crash-safely (temp file, fsync, rename,
/// fsync directory). A dense segment covers its entries; a sparse one its
/// positions up to its end position.
pub fn write_checkpoint(dir: &Path, seg: &Segment, entries: &[CheckpointEntry<'_>]) -> Result<PathBuf> {
    let first = seg.first_position;
    let end = seg.sparse_end.unwrap_or(first + entries.len() as u64);
    let m = mem_part(seg, entries, end).map_err(|r| Error::corrupt(&seg.path, 0, format!("index file: {r}")))?;
    if seg.sparse_end.is_none() && m.offsets.len() != entries.len() {
        return Err(Error::corrupt(&seg.path, 0, "index file: a dense segment's positions have gaps"));
    }
    let runs = m
        .runs
        .iter()
        .map(|(id, r)| RunIn { aggregate_id: id, first_version: r.first_version, positions: r.positions.clone() })
        .collect();
    let bytes = crate::index_file::encode(first, seg.sparse_end.is_some(), &m.offsets, runs)
        .ok_or_else(|| Error::corrupt(&seg.path, 0, "index file: a count does not fit its field"))?;
    crate::durable::write_file(dir, &file_name(first), &[&bytes], "write index file")
}

/// Opens and validates the index file of the segment starting at `first_position`.
pub fn open_file(path: &Path, first_position: u64) -> Result<Arc<IndexFile>, BadIndexFile> {
    IndexFile::open(path, first_position).map(Arc::new)
}
