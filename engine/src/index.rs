//! The per-aggregate offset index: in memory, (aggregate, version) → global
//! position and position → (segment, offset); on disk, one checkpoint file
//! per sealed segment (`<first position>.idx`) so that reopening reads the
//! checkpoints and scans only the active segment. A checkpoint that is
//! missing or fails its checksum is rebuilt from its segment. This module
//! never reads event bodies; it only maps keys to places.
//!
//! Memory: 4 bytes per event for the offset (per segment), 8 bytes per event
//! for the position (per aggregate), plus a fixed overhead per aggregate
//! (its id and a `Vec` header in a hash map).
//!
//! Checkpoint layout (little-endian):
//! ```text
//!  0  8 magic b"FLOGIDX\x1a"
//!  8  4 format version (1)
//! 12  4 reserved 0
//! 16  8 first_position of the segment
//! 24  8 event_count
//! 32  4 aggregate_count
//! 36  4 crc32 of every byte from 40 to the end
//! 40  .. aggregate names: u8 length + bytes, aggregate_count times
//! ..  .. entries, event_count times: u32 aggregate number, u32 frame offset, u64 version
//!         (format version 2, for sparse segments: then u64 position)
//! ```
//! A dense segment's checkpoint is format version 1 (positions implied:
//! the segment's first position plus the entry's number); a sparse
//! segment's (one the scavenge rewrote) is format version 2.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::Result;
use crate::event::EventRef;
use crate::segment::Segment;

const IDX_MAGIC: [u8; 8] = *b"FLOGIDX\x1a";
const IDX_VERSION: u32 = 1;
/// Checkpoints of sparse segments: entries carry their positions.
const IDX_VERSION_SPARSE: u32 = 2;

// Checkpoint header offsets, each derived from the one before (module doc).
const MAGIC_AT: usize = 0;
const VERSION_AT: usize = MAGIC_AT + 8;
const RESERVED_AT: usize = VERSION_AT + 4;
const FIRST_POSITION_AT: usize = RESERVED_AT + 4;
const EVENT_COUNT_AT: usize = FIRST_POSITION_AT + 8;
const AGGREGATE_COUNT_AT: usize = EVENT_COUNT_AT + 8;
const CRC_AT: usize = AGGREGATE_COUNT_AT + 4;
const IDX_HEADER: usize = CRC_AT + 4;
/// Bytes of one entry: u32 aggregate number, u32 frame offset, u64 version.
const ENTRY_BYTES: usize = 4 + 4 + 8;
/// Bytes of one entry of a sparse segment's checkpoint: then u64 position.
const SPARSE_ENTRY_BYTES: usize = ENTRY_BYTES + 8;

const _: () = assert!(IDX_HEADER == 40);

/// File name suffix of index checkpoints.
pub const IDX_SUFFIX: &str = ".idx";

/// File name of the checkpoint of the segment starting at `first_position`.
pub fn file_name(first_position: u64) -> String {
    format!("{first_position:020}{IDX_SUFFIX}")
}

/// Why the index refused an entry, or a checkpoint file was not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// An entry arrived out of order: a bug or a lying checkpoint, never a torn write.
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
    /// An entry before any segment.
    #[error("no segment to index into")]
    NoSegment,
    /// A checkpoint file that cannot be used (the caller rebuilds it from its segment).
    #[error("{0}")]
    BadCheckpoint(String),
}

/// One segment as the index sees it.
struct SegmentSlot {
    /// The mapped segment.
    seg: Arc<Segment>,
    /// Frame offset of each event, by `position - first_position`.
    offsets: Vec<u32>,
}

/// One aggregate's events in the index: the position of each version from
/// `base` on. `base` is 0 until retention removes the aggregate's first
/// events; versions are dense from it.
#[derive(Debug, Default, Clone)]
pub struct Versions {
    base: u64,
    positions: Vec<u64>,
}

impl Versions {
    /// The first version still in the log.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The position of `version`, if it is still in the log.
    pub fn position(&self, version: u64) -> Option<u64> {
        let i = usize::try_from(version.checked_sub(self.base)?).ok()?;
        self.positions.get(i).copied()
    }

    /// One past the last version whose position is below `end` (0: none;
    /// the versions before `base` count, though they left the log).
    pub fn end_below(&self, end: u64) -> u64 {
        self.base + self.positions.partition_point(|p| *p < end) as u64
    }

    /// The positions, from version `base` on.
    pub fn positions(&self) -> &[u64] {
        &self.positions
    }
}

/// The whole in-memory index. Guarded by the store's `RwLock`; the writer
/// (and, before it starts, recovery) is the only mutator.
#[derive(Default)]
pub struct IndexState {
    /// Segments in log order.
    segments: Vec<SegmentSlot>,
    /// Global position of every event, by aggregate and version.
    aggregates: HashMap<Box<str>, Versions, foldhash::quality::RandomState>,
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

    /// The segment slot index and frame offset of `position`.
    pub fn locate(&self, position: u64) -> Option<(usize, u64)> {
        if position >= self.next_position {
            return None;
        }
        let i = self.segments.partition_point(|s| s.seg.first_position <= position).checked_sub(1)?;
        let slot = self.segments.get(i)?;
        let off = slot.offsets.get(usize::try_from(position - slot.seg.first_position).ok()?)?;
        Some((i, u64::from(*off)))
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
        self.segments.iter().map(|s| (&s.seg, s.offsets.last().copied()))
    }

    /// Global positions of an aggregate's events, by version.
    pub fn positions(&self, aggregate_id: &str) -> Option<&Versions> {
        self.aggregates.get(aggregate_id)
    }

    /// Every aggregate with its positions by version, in no particular order.
    pub fn aggregates(&self) -> impl Iterator<Item = (&str, &Versions)> + '_ {
        self.aggregates.iter().map(|(k, v)| (&**k, v))
    }

    /// Aggregates with at least one event.
    pub fn aggregate_count(&self) -> usize {
        self.aggregates.len()
    }

    /// The aggregate's version counting only positions below `visible_end`.
    pub fn version_below(&self, aggregate_id: &str, visible_end: u64) -> Option<u64> {
        self.aggregates.get(aggregate_id)?.end_below(visible_end).checked_sub(1)
    }

    /// Removes the segments before the one starting at `first_position` (the
    /// head of the log, which retention deleted) and every index entry below
    /// it. Returns the segments removed.
    pub fn drop_head(&mut self, first_position: u64) -> Vec<Arc<Segment>> {
        let keep_from = self.segments.partition_point(|s| s.seg.first_position < first_position);
        let removed: Vec<Arc<Segment>> = self.segments.drain(..keep_from).map(|s| s.seg).collect();
        if removed.is_empty() {
            return removed;
        }
        self.gaps = true;
        let start = self.first_position();
        // An aggregate left without events keeps its entry: its versions go
        // on in this process (after a reopen it starts again at 0, README).
        for v in self.aggregates.values_mut() {
            let n = v.positions.partition_point(|p| *p < start);
            v.positions.drain(..n);
            v.base += n as u64;
        }
        removed
    }

    /// Starts indexing a new segment (it must start at the next position).
    /// The previous segment is sealed: its offsets never grow again.
    pub fn push_segment(&mut self, seg: Arc<Segment>, expected_events: usize) -> Result<(), IndexError> {
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
        if let Some(last) = self.segments.last_mut() {
            last.offsets.shrink_to_fit();
        }
        self.segments.push(SegmentSlot { seg, offsets: Vec::with_capacity(expected_events) });
        Ok(())
    }

    /// Adds one event to the last segment. Versions must arrive densely per aggregate.
    pub fn push(&mut self, aggregate_id: &str, version: u64, position: u64, offset: u32) -> Result<(), IndexError> {
        let slot = self.segments.last_mut().ok_or(IndexError::NoSegment)?;
        if position != slot.seg.first_position + slot.offsets.len() as u64 || position != self.next_position {
            // A sparse segment skips the positions the scavenge removed: a
            // walk from one of them starts at this frame.
            let skips = slot.seg.sparse_end.is_some_and(|end| position > self.next_position && position < end);
            if !skips || self.next_position != slot.seg.first_position + slot.offsets.len() as u64 {
                return Err(IndexError::PositionNotNext { position, next: self.next_position });
            }
            slot.offsets.resize((position - slot.seg.first_position) as usize, offset);
            self.next_position = position;
        }
        debug_assert!(slot.offsets.last().is_none_or(|last| *last < offset), "frame offsets grow within a segment");
        let versions = match self.aggregates.get_mut(aggregate_id) {
            Some(p) => p,
            // The log may start after an aggregate's first events (retention, scavenge).
            None if version == 0 || self.gaps => {
                self.aggregates.entry(aggregate_id.into()).or_insert(Versions { base: version, positions: Vec::new() })
            }
            None => {
                return Err(IndexError::VersionNotNext { aggregate_id: aggregate_id.to_string(), version, next: 0 })
            }
        };
        let next = versions.base + versions.positions.len() as u64;
        if next != version {
            // Following a writer whose scavenge removed the versions between
            // (hidden there by the aggregate's rules): the older ones go too.
            if !(self.following && self.gaps && version > next) {
                return Err(IndexError::VersionNotNext { aggregate_id: aggregate_id.to_string(), version, next });
            }
            versions.base = version;
            versions.positions.clear();
        }
        versions.positions.push(position);
        slot.offsets.push(offset);
        self.next_position += 1;
        Ok(())
    }

    /// Ends a sparse segment's entries: the positions after its last frame
    /// (removed) lead to where its frames end, and the log goes on at its
    /// end position. A dense segment is left as it is.
    pub fn seal_sparse(&mut self) -> Result<(), IndexError> {
        let Some(slot) = self.segments.last_mut() else { return Ok(()) };
        let Some(end) = slot.seg.sparse_end else { return Ok(()) };
        let covered = slot.seg.first_position + slot.offsets.len() as u64;
        if covered > end || self.next_position != covered {
            return Err(IndexError::PositionNotNext { position: end, next: self.next_position });
        }
        let frames_end = match slot.offsets.last() {
            Some(o) => u32::try_from(slot.seg.frame_end(u64::from(*o))).unwrap_or(u32::MAX),
            None => crate::segment::HEADER_BYTES as u32,
        };
        slot.offsets.resize((end - slot.seg.first_position) as usize, frames_end);
        self.next_position = end;
        Ok(())
    }

    /// Indexes a sealed segment from its checkpoint (which must be in range:
    /// offsets inside the segment and increasing, versions dense, positions
    /// dense or, in a sparse segment, increasing inside its range).
    pub fn push_checkpoint(&mut self, seg: Arc<Segment>, cp: &Checkpoint) -> Result<(), IndexError> {
        let first = seg.first_position;
        let seg_len = seg.len();
        let sparse_end = seg.sparse_end;
        self.push_segment(seg, cp.entries.len())?;
        // Group positions per aggregate first, so each aggregate is hashed once per segment.
        let mut per_agg: Vec<Vec<(u64, u64)>> = vec![Vec::new(); cp.names.len()];
        let slot = self.segments.last_mut().ok_or(IndexError::NoSegment)?;
        let mut last_offset = 0u32;
        let mut next = first;
        for (i, (n, offset, version)) in cp.entries.iter().enumerate() {
            let in_segment = (crate::segment::HEADER_BYTES..seg_len).contains(&u64::from(*offset));
            if !in_segment || (i > 0 && *offset <= last_offset) {
                return Err(IndexError::BadCheckpoint(format!("checkpoint offset {offset} out of order or range")));
            }
            let position = cp.positions.as_ref().and_then(|p| p.get(i).copied()).unwrap_or(first + i as u64);
            let fits = position == next || sparse_end.is_some_and(|end| position > next && position < end);
            if !fits {
                return Err(IndexError::BadCheckpoint(format!("checkpoint position {position} out of order or range")));
            }
            // Removed positions (sparse) lead to the next frame.
            slot.offsets.resize((position - first) as usize, *offset);
            last_offset = *offset;
            slot.offsets.push(*offset);
            per_agg[*n as usize].push((*version, position));
            next = position + 1;
        }
        for (name, list) in cp.names.iter().zip(per_agg) {
            let Some(&(first_version, _)) = list.first() else { continue };
            let versions = match self.aggregates.get_mut(name.as_str()) {
                Some(p) => p,
                None if first_version > 0 && !self.gaps => {
                    return Err(IndexError::VersionNotNext {
                        aggregate_id: name.clone(),
                        version: first_version,
                        next: 0,
                    })
                }
                None => self
                    .aggregates
                    .entry(name.as_str().into())
                    .or_insert(Versions { base: first_version, positions: Vec::new() }),
            };
            for (version, position) in list {
                let next = versions.base + versions.positions.len() as u64;
                if version != next {
                    return Err(IndexError::VersionNotNext { aggregate_id: name.clone(), version, next });
                }
                versions.positions.push(position);
            }
        }
        self.next_position = next;
        self.seal_sparse()
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
            let prefix = self.aggregates.get(*agg).is_some_and(|v| v.positions.starts_with(list));
            if !prefix {
                let reason = format!("the events removed from aggregate {agg:?} are not its first ones");
                return Err(IndexError::BadCheckpoint(reason));
            }
        }
        Ok(per_agg)
    }

    /// Replaces the sealed segment starting where `seg` does by `seg` (the
    /// scavenge's rewrite of it, sparse), whose frames are `kept` (position,
    /// frame offset, in order); `removed` are the (aggregate, position) of
    /// the events it left out, in position order. Each aggregate's removed
    /// events must be the first it has left in the index (the lifecycle
    /// rules only ever remove a prefix of an aggregate's versions); they
    /// leave the index, and its versions go on from the next one.
    pub fn replace_sealed(
        &mut self,
        seg: Arc<Segment>,
        kept: &[(u64, u32)],
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
        let first = seg.first_position;
        let frames_end = match kept.last() {
            Some((_, o)) => u32::try_from(seg.frame_end(u64::from(*o))).unwrap_or(u32::MAX),
            None => crate::segment::HEADER_BYTES as u32,
        };
        let mut offsets = Vec::with_capacity((end - first) as usize);
        for (position, offset) in kept {
            if *position < first + offsets.len() as u64 || *position >= end {
                return Err(bad(format!("kept position {position} out of order or range")));
            }
            offsets.resize((position - first) as usize, *offset);
            offsets.push(*offset);
        }
        offsets.resize((end - first) as usize, frames_end);
        for (agg, list) in per_agg {
            if let Some(v) = self.aggregates.get_mut(agg) {
                v.positions.drain(..list.len());
                // Kept even when empty: its versions go on after the removed ones.
                v.base += list.len() as u64;
            }
        }
        self.segments[i] = SegmentSlot { seg, offsets };
        self.gaps = true;
        Ok(())
    }

    /// Approximate heap bytes used by the index.
    pub fn memory_bytes(&self) -> u64 {
        let offsets: usize = self.segments.iter().map(|s| s.offsets.capacity() * 4).sum();
        let aggs: usize = self
            .aggregates
            .iter()
            .map(|(k, v)| k.len() + v.positions.capacity() * 8 + std::mem::size_of::<(Box<str>, Versions)>() + 8)
            .sum();
        (offsets + aggs + self.aggregates.capacity().saturating_sub(self.aggregates.len()) * 40) as u64
    }
}

/// One event of a segment, as recorded in a checkpoint.
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

/// A checkpoint as read back: aggregate names once, then one compact entry per event.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// Aggregate ids, numbered by their index.
    pub names: Vec<String>,
    /// Per event, in position order: (aggregate number, frame offset, version).
    pub entries: Vec<(u32, u32, u64)>,
    /// A sparse segment's checkpoint: each entry's position (else they are dense).
    pub positions: Option<Vec<u64>>,
}

/// Writes the checkpoint of a sealed segment crash-safely (temp file, fsync,
/// rename, fsync directory).
/// A sparse segment's checkpoint (`sparse`) is format 2 even when the
/// positions that survived happen to be dense.
pub fn write_checkpoint(
    dir: &Path,
    first_position: u64,
    entries: &[CheckpointEntry<'_>],
    sparse: bool,
) -> Result<PathBuf> {
    let mut names: HashMap<&str, u32> = HashMap::new();
    let mut name_list: Vec<&str> = Vec::new();
    let mut body = Vec::with_capacity(entries.len() * 16 + 1024);
    let mut tail = Vec::with_capacity(entries.len() * 16);
    let dense = !sparse && entries.iter().enumerate().all(|(i, e)| e.position == first_position + i as u64);
    for e in entries {
        let n = *names.entry(e.aggregate_id).or_insert_with(|| {
            name_list.push(e.aggregate_id);
            (name_list.len() - 1) as u32
        });
        tail.extend_from_slice(&n.to_le_bytes());
        tail.extend_from_slice(&e.offset.to_le_bytes());
        tail.extend_from_slice(&e.version.to_le_bytes());
        if !dense {
            tail.extend_from_slice(&e.position.to_le_bytes());
        }
    }
    for n in &name_list {
        body.push(n.len() as u8);
        body.extend_from_slice(n.as_bytes());
    }
    body.extend_from_slice(&tail);
    let mut head = [0u8; IDX_HEADER];
    head[MAGIC_AT..VERSION_AT].copy_from_slice(&IDX_MAGIC);
    let version = if dense { IDX_VERSION } else { IDX_VERSION_SPARSE };
    head[VERSION_AT..RESERVED_AT].copy_from_slice(&version.to_le_bytes());
    head[FIRST_POSITION_AT..EVENT_COUNT_AT].copy_from_slice(&first_position.to_le_bytes());
    head[EVENT_COUNT_AT..AGGREGATE_COUNT_AT].copy_from_slice(&(entries.len() as u64).to_le_bytes());
    head[AGGREGATE_COUNT_AT..CRC_AT].copy_from_slice(&(name_list.len() as u32).to_le_bytes());
    head[CRC_AT..IDX_HEADER].copy_from_slice(&crc32fast::hash(&body).to_le_bytes());
    crate::durable::write_file(dir, &file_name(first_position), &[&head, &body], "write index checkpoint")
}

/// Reads a checkpoint. Any mismatch (magic, version, checksum, first
/// position, structure) is an `Err` with the reason; the caller rebuilds.
pub fn read_checkpoint(path: &Path, first_position: u64) -> Result<Checkpoint, IndexError> {
    let bad = |r: &str| IndexError::BadCheckpoint(r.to_string());
    let bytes = std::fs::read(path).map_err(|e| IndexError::BadCheckpoint(format!("cannot read: {e}")))?;
    let head: &[u8; IDX_HEADER] =
        bytes.get(..IDX_HEADER).and_then(|h| h.try_into().ok()).ok_or_else(|| bad("shorter than its header"))?;
    let u32_at = |at: usize| crate::le::fixed_u32(head, at);
    let u64_at = |at: usize| crate::le::fixed_u64(head, at);
    if head[MAGIC_AT..VERSION_AT] != IDX_MAGIC {
        return Err(bad("bad magic"));
    }
    let sparse = match u32_at(VERSION_AT) {
        IDX_VERSION => false,
        IDX_VERSION_SPARSE => true,
        v => return Err(IndexError::BadCheckpoint(format!("unknown version {v}"))),
    };
    let entry_bytes = if sparse { SPARSE_ENTRY_BYTES } else { ENTRY_BYTES };
    if u64_at(FIRST_POSITION_AT) != first_position {
        let other = u64_at(FIRST_POSITION_AT);
        return Err(IndexError::BadCheckpoint(format!("belongs to segment {other}, not {first_position}")));
    }
    let body = &bytes[IDX_HEADER..];
    if crc32fast::hash(body) != u32_at(CRC_AT) {
        return Err(bad("checksum mismatch"));
    }
    let count = usize::try_from(u64_at(EVENT_COUNT_AT)).map_err(|_| bad("event count too large"))?;
    let (names, at) = read_names(body, u32_at(AGGREGATE_COUNT_AT) as usize)?;
    let entries = body.get(at..).ok_or_else(|| bad("entries missing"))?;
    if entries.len() != count.checked_mul(entry_bytes).ok_or_else(|| bad("event count too large"))? {
        return Err(IndexError::BadCheckpoint(format!("{} entry bytes for {count} events", entries.len())));
    }
    let mut out = Vec::with_capacity(count);
    let mut positions = Vec::with_capacity(if sparse { count } else { 0 });
    for e in entries.chunks_exact(entry_bytes) {
        let n = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
        let offset = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
        let mut v = [0u8; 8];
        v.copy_from_slice(&e[8..ENTRY_BYTES]);
        if n as usize >= names.len() {
            return Err(bad("aggregate number out of range"));
        }
        out.push((n, offset, u64::from_le_bytes(v)));
        if sparse {
            positions.push(crate::le::le_u64(e, ENTRY_BYTES).unwrap_or_default());
        }
    }
    Ok(Checkpoint { names, entries: out, positions: sparse.then_some(positions) })
}

/// Reads `count` length-prefixed names; returns them and where they end.
fn read_names(body: &[u8], count: usize) -> Result<(Vec<String>, usize), IndexError> {
    let truncated = || IndexError::BadCheckpoint("names truncated".into());
    let mut at = 0usize;
    let mut names = Vec::with_capacity(count.min(1 << 20));
    for _ in 0..count {
        let len = *body.get(at).ok_or_else(truncated)? as usize;
        let name = body.get(at + 1..at + 1 + len).ok_or_else(truncated)?;
        let name = std::str::from_utf8(name).map_err(|_| IndexError::BadCheckpoint("name not UTF-8".into()))?;
        names.push(name.to_string());
        at += 1 + len;
    }
    Ok((names, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_round_trip_and_corruption_detected() {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = (0..7).map(|i| format!("a{i}")).collect();
        let entries: Vec<_> = (0..50u64)
            .map(|i| CheckpointEntry {
                aggregate_id: &names[(i % 7) as usize],
                version: i / 7,
                position: 100 + i,
                offset: 64 + i as u32 * 48,
            })
            .collect();
        let p = write_checkpoint(dir.path(), 100, &entries, false).unwrap();
        let back = read_checkpoint(&p, 100).unwrap();
        assert_eq!(back.names, names);
        let again: Vec<_> = back
            .entries
            .iter()
            .enumerate()
            .map(|(i, (n, offset, version))| CheckpointEntry {
                aggregate_id: &back.names[*n as usize],
                version: *version,
                position: 100 + i as u64,
                offset: *offset,
            })
            .collect();
        assert_eq!(again, entries);
        assert!(read_checkpoint(&p, 101).is_err());
        let mut b = std::fs::read(&p).unwrap();
        let n = b.len();
        b[n - 3] ^= 0x10;
        std::fs::write(&p, &b).unwrap();
        assert!(read_checkpoint(&p, 100).unwrap_err().to_string().contains("checksum"));
    }
}
