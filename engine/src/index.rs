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
use crate::segment::Segment;

const IDX_MAGIC: [u8; 8] = *b"FLOGIDX\x1a";
const IDX_VERSION: u32 = 1;
const IDX_HEADER: usize = 40;
/// File name suffix of index checkpoints.
pub const IDX_SUFFIX: &str = ".idx";

/// File name of the checkpoint of the segment starting at `first_position`.
pub fn file_name(first_position: u64) -> String {
    format!("{first_position:020}{IDX_SUFFIX}")
}

/// One segment as the index sees it.
pub struct SegmentSlot {
    /// The mapped segment.
    pub seg: Arc<Segment>,
    /// Frame offset of each event, by `position - first_position`.
    pub offsets: Vec<u32>,
}

/// The whole in-memory index. Guarded by the store's `RwLock`; the writer
/// is the only mutator.
#[derive(Default)]
pub struct IndexState {
    /// Segments in log order.
    pub segments: Vec<SegmentSlot>,
    /// Global position of every event, by aggregate and version.
    pub aggregates: HashMap<Box<str>, Vec<u64>, foldhash::quality::RandomState>,
    /// One past the last indexed position.
    pub next_position: u64,
}

impl IndexState {
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

    /// The aggregate's version counting only positions below `visible_end`.
    pub fn version_below(&self, aggregate_id: &str, visible_end: u64) -> Option<u64> {
        let positions = self.aggregates.get(aggregate_id)?;
        let n = positions.partition_point(|p| *p < visible_end);
        (n as u64).checked_sub(1)
    }

    /// Adds one event to the index. Versions must arrive densely per aggregate.
    pub fn push(
        &mut self,
        aggregate_id: &str,
        version: u64,
        position: u64,
        offset: u32,
    ) -> std::result::Result<(), String> {
        let slot = self.segments.last_mut().ok_or("no segment to index into")?;
        if position != slot.seg.first_position + slot.offsets.len() as u64 || position != self.next_position {
            return Err(format!("position {position} is not next ({})", self.next_position));
        }
        let positions = match self.aggregates.get_mut(aggregate_id) {
            Some(p) => p,
            None => self.aggregates.entry(aggregate_id.into()).or_default(),
        };
        if positions.len() as u64 != version {
            return Err(format!("aggregate {aggregate_id:?} version {version} is not next ({})", positions.len()));
        }
        positions.push(position);
        slot.offsets.push(offset);
        self.next_position += 1;
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
    let mut head = Vec::with_capacity(IDX_HEADER);
    head.extend_from_slice(&IDX_MAGIC);
    head.extend_from_slice(&IDX_VERSION.to_le_bytes());
    head.extend_from_slice(&0u32.to_le_bytes());
    head.extend_from_slice(&first_position.to_le_bytes());
    head.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    head.extend_from_slice(&(name_list.len() as u32).to_le_bytes());
    head.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    crate::durable::write_file(dir, &file_name(first_position), &[&head, &body], "write index checkpoint")
}

/// Reads a checkpoint. Any mismatch (magic, version, checksum, first
/// position, structure) is an `Err` with the reason; the caller rebuilds.
pub fn read_checkpoint(path: &Path, first_position: u64) -> std::result::Result<Checkpoint, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let head = bytes.get(..IDX_HEADER).ok_or("shorter than its header")?;
    let u32_at = |at: usize| u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    let u64_at = |at: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&head[at..at + 8]);
        u64::from_le_bytes(a)
    };
    if head[0..8] != IDX_MAGIC {
        return Err("bad magic".into());
    }
    if u32_at(8) != IDX_VERSION {
        return Err(format!("unknown version {}", u32_at(8)));
    }
    if u64_at(16) != first_position {
        return Err(format!("belongs to segment {}, not {first_position}", u64_at(16)));
    }
    let body = &bytes[IDX_HEADER..];
    if crc32fast::hash(body) != u32_at(36) {
        return Err("checksum mismatch".into());
    }
    let count = usize::try_from(u64_at(24)).map_err(|_| "event count too large")?;
    let agg_count = u32_at(32) as usize;
    let mut at = 0usize;
    let mut names = Vec::with_capacity(agg_count.min(1 << 20));
    for _ in 0..agg_count {
        let len = *body.get(at).ok_or("names truncated")? as usize;
        let name = body.get(at + 1..at + 1 + len).ok_or("names truncated")?;
        names.push(std::str::from_utf8(name).map_err(|_| "name not UTF-8")?.to_string());
        at += 1 + len;
    }
    let entries = body.get(at..).ok_or("entries missing")?;
    if entries.len() != count.checked_mul(16).ok_or("event count too large")? {
        return Err(format!("{} entry bytes for {count} events", entries.len()));
    }
    let mut out = Vec::with_capacity(count);
    for e in entries.chunks_exact(16) {
        let n = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
        let offset = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
        let mut v = [0u8; 8];
        v.copy_from_slice(&e[8..16]);
        if n as usize >= names.len() {
            return Err("aggregate number out of range".into());
        }
        out.push((n, offset, u64::from_le_bytes(v)));
    }
    Ok(Checkpoint { names, entries: out })
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
        assert!(read_checkpoint(&p, 100).unwrap_err().contains("checksum"));
    }
}
