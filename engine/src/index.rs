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
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::Result;
use crate::event::EventRef;
use crate::segment::Segment;

const IDX_MAGIC: [u8; 8] = *b"FLOGIDX\x1a";
const IDX_VERSION: u32 = 1;

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

/// The whole in-memory index. Guarded by the store's `RwLock`; the writer
/// (and, before it starts, recovery) is the only mutator.
#[derive(Default)]
pub struct IndexState {
    /// Segments in log order.
    segments: Vec<SegmentSlot>,
    /// Global position of every event, by aggregate and version.
    aggregates: HashMap<Box<str>, Vec<u64>, foldhash::quality::RandomState>,
    /// One past the last indexed position.
    next_position: u64,
}

impl IndexState {
    /// An empty index of a log that starts at `first_position`.
    pub fn starting_at(first_position: u64) -> IndexState {
        IndexState { next_position: first_position, ..IndexState::default() }
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
    pub fn positions(&self, aggregate_id: &str) -> Option<&[u64]> {
        self.aggregates.get(aggregate_id).map(Vec::as_slice)
    }

    /// Every aggregate with its positions by version, in no particular order.
    pub fn aggregates(&self) -> impl Iterator<Item = (&str, &[u64])> + '_ {
        self.aggregates.iter().map(|(k, v)| (&**k, v.as_slice()))
    }

    /// Aggregates with at least one event.
    pub fn aggregate_count(&self) -> usize {
        self.aggregates.len()
    }

    /// The aggregate's version counting only positions below `visible_end`.
    pub fn version_below(&self, aggregate_id: &str, visible_end: u64) -> Option<u64> {
        let positions = self.aggregates.get(aggregate_id)?;
        let n = positions.partition_point(|p| *p < visible_end);
        (n as u64).checked_sub(1)
    }

    /// Starts indexing a new segment (it must start at the next position).
    /// The previous segment is sealed: its offsets never grow again.
    pub fn push_segment(&mut self, seg: Arc<Segment>, expected_events: usize) -> Result<(), IndexError> {
        if seg.first_position != self.next_position && !self.segments.is_empty() {
            return Err(IndexError::PositionNotNext { position: seg.first_position, next: self.next_position });
        }
        if self.segments.is_empty() {
            self.next_position = seg.first_position;
        }
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
            return Err(IndexError::PositionNotNext { position, next: self.next_position });
        }
        debug_assert!(slot.offsets.last().is_none_or(|last| *last < offset), "frame offsets grow within a segment");
        let positions = match self.aggregates.get_mut(aggregate_id) {
            Some(p) => p,
            None => self.aggregates.entry(aggregate_id.into()).or_default(),
        };
        if positions.len() as u64 != version {
            return Err(IndexError::VersionNotNext {
                aggregate_id: aggregate_id.to_string(),
                version,
                next: positions.len() as u64,
            });
        }
        positions.push(position);
        slot.offsets.push(offset);
        self.next_position += 1;
        Ok(())
    }

    /// Indexes a sealed segment from its checkpoint (which must be in range:
    /// offsets inside the segment and increasing, versions dense).
    pub fn push_checkpoint(&mut self, seg: Arc<Segment>, cp: &Checkpoint) -> Result<(), IndexError> {
        let first = seg.first_position;
        let seg_len = seg.len();
        self.push_segment(seg, cp.entries.len())?;
        // Group positions per aggregate first, so each aggregate is hashed once per segment.
        let mut per_agg: Vec<Vec<(u64, u64)>> = vec![Vec::new(); cp.names.len()];
        let slot = self.segments.last_mut().ok_or(IndexError::NoSegment)?;
        let mut last_offset = 0u32;
        for (i, (n, offset, version)) in cp.entries.iter().enumerate() {
            let in_segment = (crate::segment::HEADER_BYTES..seg_len).contains(&u64::from(*offset));
            if !in_segment || (i > 0 && *offset <= last_offset) {
                return Err(IndexError::BadCheckpoint(format!("checkpoint offset {offset} out of order or range")));
            }
            last_offset = *offset;
            slot.offsets.push(*offset);
            per_agg[*n as usize].push((*version, first + i as u64));
        }
        for (name, list) in cp.names.iter().zip(per_agg) {
            let positions = match self.aggregates.get_mut(name.as_str()) {
                Some(p) => p,
                None => self.aggregates.entry(name.as_str().into()).or_default(),
            };
            for (version, position) in list {
                if version != positions.len() as u64 {
                    let next = positions.len() as u64;
                    return Err(IndexError::VersionNotNext { aggregate_id: name.clone(), version, next });
                }
                positions.push(position);
            }
        }
        self.next_position = first + cp.entries.len() as u64;
        Ok(())
    }

    /// Approximate heap bytes used by the index.
    pub fn memory_bytes(&self) -> u64 {
        let offsets: usize = self.segments.iter().map(|s| s.offsets.capacity() * 4).sum();
        let aggs: usize = self
            .aggregates
            .iter()
            .map(|(k, v)| k.len() + v.capacity() * 8 + std::mem::size_of::<(Box<str>, Vec<u64>)>() + 8)
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
}

/// Writes the checkpoint of a sealed segment crash-safely (temp file, fsync,
/// rename, fsync directory).
pub fn write_checkpoint(dir: &Path, first_position: u64, entries: &[CheckpointEntry<'_>]) -> Result<PathBuf> {
    let mut names: HashMap<&str, u32> = HashMap::new();
    let mut name_list: Vec<&str> = Vec::new();
    let mut body = Vec::with_capacity(entries.len() * 16 + 1024);
    let mut tail = Vec::with_capacity(entries.len() * 16);
    for e in entries {
        let n = *names.entry(e.aggregate_id).or_insert_with(|| {
            name_list.push(e.aggregate_id);
            (name_list.len() - 1) as u32
        });
        tail.extend_from_slice(&n.to_le_bytes());
        tail.extend_from_slice(&e.offset.to_le_bytes());
        tail.extend_from_slice(&e.version.to_le_bytes());
    }
    for n in &name_list {
        body.push(n.len() as u8);
        body.extend_from_slice(n.as_bytes());
    }
    body.extend_from_slice(&tail);
    let mut head = [0u8; IDX_HEADER];
    head[MAGIC_AT..VERSION_AT].copy_from_slice(&IDX_MAGIC);
    head[VERSION_AT..RESERVED_AT].copy_from_slice(&IDX_VERSION.to_le_bytes());
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
    if u32_at(VERSION_AT) != IDX_VERSION {
        return Err(IndexError::BadCheckpoint(format!("unknown version {}", u32_at(VERSION_AT))));
    }
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
    if entries.len() != count.checked_mul(ENTRY_BYTES).ok_or_else(|| bad("event count too large"))? {
        return Err(IndexError::BadCheckpoint(format!("{} entry bytes for {count} events", entries.len())));
    }
    let mut out = Vec::with_capacity(count);
    for e in entries.chunks_exact(ENTRY_BYTES) {
        let n = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
        let offset = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
        let mut v = [0u8; 8];
        v.copy_from_slice(&e[8..ENTRY_BYTES]);
        if n as usize >= names.len() {
            return Err(bad("aggregate number out of range"));
        }
        out.push((n, offset, u64::from_le_bytes(v)));
    }
    Ok(Checkpoint { names, entries: out })
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
                offset: 64 + i as u32 * 48,
            })
            .collect();
        let p = write_checkpoint(dir.path(), 100, &entries).unwrap();
        let back = read_checkpoint(&p, 100).unwrap();
        assert_eq!(back.names, names);
        let again: Vec<_> = back
            .entries
            .iter()
            .map(|(n, offset, version)| CheckpointEntry {
                aggregate_id: &back.names[*n as usize],
                version: *version,
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
