//! The checkpoint of a sealed snapshot file (`<number>.sidx`): where each of
//! its live records is, so that opening the store reads the checkpoint
//! instead of scanning the file. Owns the `.sidx` byte format and its
//! durable writing. A checkpoint is only ever a shortcut: a missing or bad one
//! is rebuilt by scanning, so this module never fails an open and never
//! touches the snapshot file it describes.
//!
//! Layout (no format version field: the magic is the only identification,
//! and a checkpoint this build cannot read is simply rebuilt):
//! ```text
//!  0 8 magic "FLOGSIDX"    8 8 entry count
//! 16 4 CRC32 of the entries   20 4 reserved (0)
//! 24 entries, each: u8 aggregate id length, aggregate id,
//!    version u64, frame offset u64, frame length u32
//! ```

use std::path::{Path, PathBuf};

use super::error::SnapshotFormatError;
use super::frame::FILE_HEADER_BYTES;
use crate::durable;
use crate::error::Result;
use crate::le::{le_u32, le_u64, put_u32, put_u64};

const MAGIC: [u8; 8] = *b"FLOGSIDX";
/// Suffix of a checkpoint file.
const SIDX_SUFFIX: &str = ".sidx";

const MAGIC_AT: usize = 0;
const COUNT_AT: usize = MAGIC_AT + MAGIC.len();
const CRC_AT: usize = COUNT_AT + 8;
const RESERVED_AT: usize = CRC_AT + 4;
const HEADER_BYTES: usize = RESERVED_AT + 4;

// Entry fields after the aggregate id, as offsets from the end of the id.
const VERSION_AT: usize = 0;
const OFFSET_AT: usize = VERSION_AT + 8;
const LEN_AT: usize = OFFSET_AT + 8;
const ENTRY_TAIL_BYTES: usize = LEN_AT + 4;

const _: () = assert!(HEADER_BYTES == 24 && ENTRY_TAIL_BYTES == 20, "checkpoint layout as written since v1");
const _: () = assert!(COUNT_AT.is_multiple_of(8) && HEADER_BYTES.is_multiple_of(8));

/// One record of a snapshot file: whose snapshot it is and where its frame is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub aggregate_id: Box<str>,
    pub version: u64,
    /// Offset of the frame in its file.
    pub offset: u64,
    /// Length of the frame, padding included.
    pub len: u32,
}

/// The name of the checkpoint of snapshot file `no`.
pub(crate) fn file_name(no: u64) -> String {
    format!("{no:020}{SIDX_SUFFIX}")
}

/// Writes the checkpoint of snapshot file `no` in the snapshot directory
/// `dir`, durably (whole or absent after a crash). `entries` are in file order.
pub(crate) fn write(dir: &Path, no: u64, entries: &[Entry]) -> Result<PathBuf> {
    debug_assert!(entries.windows(2).all(|w| w[0].offset + u64::from(w[0].len) <= w[1].offset), "in file order");
    debug_assert!(entries.iter().all(|e| e.offset >= FILE_HEADER_BYTES as u64 && e.aggregate_id.len() <= 255));
    let mut body = Vec::with_capacity(entries.len() * (1 + 32 + ENTRY_TAIL_BYTES));
    for e in entries {
        body.push(e.aggregate_id.len() as u8);
        body.extend_from_slice(e.aggregate_id.as_bytes());
        let mut tail = [0u8; ENTRY_TAIL_BYTES];
        put_u64(&mut tail, VERSION_AT, e.version);
        put_u64(&mut tail, OFFSET_AT, e.offset);
        put_u32(&mut tail, LEN_AT, e.len);
        body.extend_from_slice(&tail);
    }
    let mut header = [0u8; HEADER_BYTES];
    header[MAGIC_AT..COUNT_AT].copy_from_slice(&MAGIC);
    put_u64(&mut header, COUNT_AT, entries.len() as u64);
    put_u32(&mut header, CRC_AT, crc32fast::hash(&body));
    durable::write_file(dir, &file_name(no), &[&header, &body], "write snapshot checkpoint")
}

/// Reads the checkpoint at `path` of a snapshot file of `file_len` bytes.
/// Every entry must lie inside the file, after its header.
pub(crate) fn read(path: &Path, file_len: u64) -> std::result::Result<Vec<Entry>, SnapshotFormatError> {
    let b = std::fs::read(path).map_err(|e| SnapshotFormatError::CheckpointUnreadable(e.kind()))?;
    let (header, body) = b.split_at_checked(HEADER_BYTES).ok_or(SnapshotFormatError::CheckpointHeader)?;
    if header[MAGIC_AT..COUNT_AT] != MAGIC {
        return Err(SnapshotFormatError::CheckpointHeader);
    }
    let count = le_u64(header, COUNT_AT).ok_or(SnapshotFormatError::CheckpointHeader)?;
    if le_u32(header, CRC_AT) != Some(crc32fast::hash(body)) {
        return Err(SnapshotFormatError::CheckpointChecksum);
    }
    let mut out = Vec::new();
    let mut rest = body;
    for _ in 0..count {
        let (entry, after) = read_entry(rest)?;
        let end = entry.offset.checked_add(u64::from(entry.len));
        if entry.offset < FILE_HEADER_BYTES as u64 || end.is_none_or(|end| end > file_len) {
            return Err(SnapshotFormatError::CheckpointEntryOutside);
        }
        out.push(entry);
        rest = after;
    }
    if !rest.is_empty() {
        return Err(SnapshotFormatError::CheckpointTrailing);
    }
    debug_assert!(out.iter().all(|e| e.offset >= FILE_HEADER_BYTES as u64 && e.offset + u64::from(e.len) <= file_len));
    Ok(out)
}

/// The entry at the start of `b`, and the bytes after it.
fn read_entry(b: &[u8]) -> std::result::Result<(Entry, &[u8]), SnapshotFormatError> {
    let (&n, rest) = b.split_first().ok_or(SnapshotFormatError::CheckpointTruncated)?;
    let (id, rest) = rest.split_at_checked(usize::from(n)).ok_or(SnapshotFormatError::CheckpointTruncated)?;
    let (tail, rest) = rest.split_at_checked(ENTRY_TAIL_BYTES).ok_or(SnapshotFormatError::CheckpointTruncated)?;
    let aggregate_id = std::str::from_utf8(id).map_err(|_| SnapshotFormatError::CheckpointIdUtf8)?;
    let field = |v: Option<u64>| v.ok_or(SnapshotFormatError::CheckpointTruncated);
    let entry = Entry {
        aggregate_id: aggregate_id.into(),
        version: field(le_u64(tail, VERSION_AT))?,
        offset: field(le_u64(tail, OFFSET_AT))?,
        len: le_u32(tail, LEN_AT).ok_or(SnapshotFormatError::CheckpointTruncated)?,
    };
    Ok((entry, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, version: u64, offset: u64, len: u32) -> Entry {
        Entry { aggregate_id: id.into(), version, offset, len }
    }

    #[test]
    fn checkpoint_round_trips_and_refuses_damage() {
        let dir = tempfile::tempdir().unwrap();
        let entries = vec![entry("a", 3, 64, 80), entry("bb", 9, 144, 88)];
        let path = write(dir.path(), 5, &entries).unwrap();
        assert_eq!(path, dir.path().join(file_name(5)));
        assert_eq!(read(&path, 232).unwrap(), entries);
        assert_eq!(read(&path, 231).unwrap_err(), SnapshotFormatError::CheckpointEntryOutside);
        let good = std::fs::read(&path).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            std::fs::write(&path, &bad).unwrap();
            // The reserved field is not covered by anything but is never read.
            assert!(read(&path, 232).is_err() || (RESERVED_AT..HEADER_BYTES).contains(&i), "flip at {i} accepted");
        }
        for cut in 0..good.len() {
            std::fs::write(&path, &good[..cut]).unwrap();
            assert!(read(&path, 232).is_err(), "cut at {cut} accepted");
        }
        assert!(matches!(read(&dir.path().join("none"), 0), Err(SnapshotFormatError::CheckpointUnreadable(_))));
    }
}
