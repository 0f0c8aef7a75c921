//! The index file of a sealed segment (`<first position>.idx`, format 3):
//! immutable, checksummed, memory-mapped. It maps each position of the
//! segment to its frame offset, and each aggregate of the segment to its
//! versions' positions, sorted by (aggregate hash, aggregate id) so that a
//! lookup is a binary search over the mapped table, after a per-file Bloom
//! filter that answers "absent" for most aggregates the file does not hold
//! without touching the table. This module owns the byte layout; it never
//! reads segments. Layout and crash argument: `docs/FORMAT.md`.
//!
//! Layout (little-endian; `n` positions covered, `e` entries, `a` aggregates):
//! ```text
//!  0  8 magic b"FLOGIDX\x1a"
//!  8  4 format version (3)
//! 12  4 crc32 of every byte from 16 to the end of the file
//! 16  8 first_position of the segment
//! 24  8 positions covered n (dense: e; sparse: its end position - first)
//! 32  8 entries e (events in the segment)
//! 40  4 aggregates a
//! 44  4 filter blocks f (64 bytes each)
//! 48  8 name bytes
//! 56  4 flags (bit 0: sparse segment)
//! 60  4 reserved 0
//! 64  .. offsets: n × u32, the frame offset of each position (a removed
//!         position of a sparse segment: the next frame's, or where frames end)
//! ..  .. aggregate table: a × 32 bytes, sorted by (hash, id), each
//!         u64 hash, u64 first version, u32 run start, u32 run length,
//!         u32 name offset, u32 name length
//! ..  .. runs: e × u32 (position - first), per aggregate by version
//! ..  .. filter: f × 64 bytes (blocked Bloom filter of the hashes)
//! ..  .. names: UTF-8 ids
//! ```

use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::le::{le_u32, le_u64};

/// Magic at the start of every index file.
pub(crate) const IDX_MAGIC: [u8; 8] = *b"FLOGIDX\x1a";
/// Format version of the index files written now.
pub(crate) const IDX_VERSION: u32 = 3;

// Header offsets, each the previous plus its size (module doc).
const MAGIC_AT: usize = 0;
const VERSION_AT: usize = MAGIC_AT + 8;
/// Where the header's crc32 (of bytes `CRC_FROM..`) lies.
pub(crate) const CRC_AT: usize = VERSION_AT + 4;
/// The checksum covers every byte from here.
pub(crate) const CRC_FROM: usize = CRC_AT + 4;
const FIRST_POSITION_AT: usize = CRC_FROM;
const COVERED_AT: usize = FIRST_POSITION_AT + 8;
const ENTRIES_AT: usize = COVERED_AT + 8;
const AGGREGATES_AT: usize = ENTRIES_AT + 8;
const FILTER_BLOCKS_AT: usize = AGGREGATES_AT + 4;
const NAME_BYTES_AT: usize = FILTER_BLOCKS_AT + 4;
const FLAGS_AT: usize = NAME_BYTES_AT + 8;
const RESERVED_AT: usize = FLAGS_AT + 4;
/// Bytes of the header.
pub(crate) const HEADER_BYTES: usize = RESERVED_AT + 4;
const _: () = assert!(HEADER_BYTES == 64);

// One row of the aggregate table.
const ROW_HASH_AT: usize = 0;
const ROW_FIRST_VERSION_AT: usize = ROW_HASH_AT + 8;
const ROW_RUN_AT: usize = ROW_FIRST_VERSION_AT + 8;
const ROW_COUNT_AT: usize = ROW_RUN_AT + 4;
const ROW_NAME_AT: usize = ROW_COUNT_AT + 4;
const ROW_NAME_LEN_AT: usize = ROW_NAME_AT + 4;
const ROW_BYTES: usize = ROW_NAME_LEN_AT + 4;
const _: () = assert!(ROW_BYTES == 32);

const FLAG_SPARSE: u32 = 1;
/// Bytes of one filter block: one cache line, 512 bits.
const FILTER_BLOCK_BYTES: usize = 64;
const FILTER_BLOCK_BITS: u32 = (FILTER_BLOCK_BYTES * 8) as u32;
/// Filter bits per aggregate: about 1% false positives with 7 probes.
const FILTER_BITS_PER_KEY: usize = 10;
const FILTER_PROBES: u32 = 7;

/// The stable 64-bit hash of an aggregate id that index files sort and
/// filter by (FNV-1a, then the SplitMix64 finalizer to spread the bits).
/// Never change it: files on disk depend on it (a new one is a new format).
pub(crate) fn key_hash(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The filter block of `hash` among `blocks`, and the bits to test in it.
fn filter_probe(hash: u64, blocks: u32) -> (usize, impl Iterator<Item = u32>) {
    let block = (((hash >> 32) * u64::from(blocks)) >> 32) as usize;
    let (start, step) = (hash as u32, ((hash >> 16) as u32) | 1);
    (block, (0..FILTER_PROBES).map(move |i| start.wrapping_add(i.wrapping_mul(step)) % FILTER_BLOCK_BITS))
}

/// Why an index file cannot be used (its segment is then scanned instead
/// and the file rebuilt).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("index file {path}: {reason}")]
pub struct BadIndexFile {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

/// Whether `path` is an index file of an older format (1 or 2: read whole
/// into memory by earlier builds): not damage, only out of date. A
/// read-write open rebuilds it from its segment; a read-only one scans the
/// segment instead.
pub(crate) fn is_older_format(path: &Path) -> bool {
    let mut head = [0u8; CRC_AT];
    let read = std::fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head));
    read.is_ok()
        && head[MAGIC_AT..VERSION_AT] == IDX_MAGIC
        && le_u32(&head, VERSION_AT).is_some_and(|v| v < IDX_VERSION)
}

/// One row of the aggregate table: an aggregate's run of versions in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Row {
    /// The aggregate's hash ([`key_hash`]).
    pub hash: u64,
    /// Its first version in the file.
    pub first_version: u64,
    /// Where its run starts among the runs.
    run_at: u32,
    /// How many versions the file holds (at least 1).
    pub count: u32,
    name_at: u32,
    name_len: u32,
}

/// A validated, memory-mapped index file.
pub struct IndexFile {
    path: PathBuf,
    map: Mmap,
    first_position: u64,
    covered: u64,
    entries: u64,
    aggregates: u32,
    filter_blocks: u32,
    sparse: bool,
    offsets_at: usize,
    table_at: usize,
    runs_at: usize,
    filter_at: usize,
    names_at: usize,
}

impl std::fmt::Debug for IndexFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexFile").field("path", &self.path).field("entries", &self.entries).finish()
    }
}

/// Section offsets of a file with these counts, or `None` on overflow.
fn layout(covered: u64, entries: u64, aggregates: u32, filter_blocks: u32, name_bytes: u64) -> Option<[usize; 6]> {
    let n = |x: u64, size: usize| usize::try_from(x).ok()?.checked_mul(size);
    let offsets_at = HEADER_BYTES;
    let table_at = offsets_at.checked_add(n(covered, 4)?)?;
    let runs_at = table_at.checked_add(n(u64::from(aggregates), ROW_BYTES)?)?;
    let filter_at = runs_at.checked_add(n(entries, 4)?)?;
    let names_at = filter_at.checked_add(n(u64::from(filter_blocks), FILTER_BLOCK_BYTES)?)?;
    let end = names_at.checked_add(usize::try_from(name_bytes).ok()?)?;
    Some([offsets_at, table_at, runs_at, filter_at, names_at, end])
}

impl IndexFile {
    /// Maps and validates the index file of the segment starting at
    /// `first_position`: magic, version, checksum of every byte, section
    /// sizes, and the aggregate table (names in range and UTF-8, hashes
    /// right, sorted, runs in range and back to back). Any mismatch is an
    /// error naming the file; nothing of it is used.
    pub fn open(path: &Path, first_position: u64) -> Result<IndexFile, BadIndexFile> {
        let bad = |reason: String| BadIndexFile { path: path.to_path_buf(), reason };
        let file = std::fs::File::open(path).map_err(|e| bad(format!("cannot open: {e}")))?;
        let len = file.metadata().map_err(|e| bad(format!("cannot stat: {e}")))?.len();
        if len < HEADER_BYTES as u64 {
            return Err(bad(format!("{len} bytes, shorter than its {HEADER_BYTES}-byte header")));
        }
        let map = crate::mmap::map_index_file(&file, len, path).map_err(|e| bad(e.to_string()))?;
        let b: &[u8] = &map;
        let u32_at = |at: usize| le_u32(b, at).unwrap_or_default();
        let u64_at = |at: usize| le_u64(b, at).unwrap_or_default();
        if b.get(MAGIC_AT..VERSION_AT) != Some(&IDX_MAGIC[..]) {
            return Err(bad("bad magic".into()));
        }
        match u32_at(VERSION_AT) {
            IDX_VERSION => {}
            v => return Err(bad(format!("format version {v} (this build reads {IDX_VERSION}; rebuilt)"))),
        }
        if crc32fast::hash(b.get(CRC_FROM..).unwrap_or_default()) != u32_at(CRC_AT) {
            return Err(bad("checksum mismatch".into()));
        }
        if u64_at(FIRST_POSITION_AT) != first_position {
            return Err(bad(format!("belongs to segment {}, not {first_position}", u64_at(FIRST_POSITION_AT))));
        }
        let (covered, entries, aggregates) = (u64_at(COVERED_AT), u64_at(ENTRIES_AT), u32_at(AGGREGATES_AT));
        let (filter_blocks, name_bytes, flags) = (u32_at(FILTER_BLOCKS_AT), u64_at(NAME_BYTES_AT), u32_at(FLAGS_AT));
        if flags & !FLAG_SPARSE != 0 || u32_at(RESERVED_AT) != 0 {
            return Err(bad(format!("unknown flags {flags:#x}")));
        }
        let sparse = flags & FLAG_SPARSE != 0;
        let [offsets_at, table_at, runs_at, filter_at, names_at, end] =
            layout(covered, entries, aggregates, filter_blocks, name_bytes)
                .ok_or_else(|| bad("section sizes overflow".into()))?;
        if end as u64 != len {
            return Err(bad(format!("{len} bytes, its header says {end}")));
        }
        if entries > covered || (!sparse && entries != covered) || (aggregates == 0) != (entries == 0) {
            return Err(bad(format!("{entries} entries over {covered} positions")));
        }
        if aggregates > 0 && filter_blocks == 0 {
            return Err(bad("no filter".into()));
        }
        let f = IndexFile {
            path: path.to_path_buf(),
            map,
            first_position,
            covered,
            entries,
            aggregates,
            filter_blocks,
            sparse,
            offsets_at,
            table_at,
            runs_at,
            filter_at,
            names_at,
        };
        f.check_table().map_err(bad)?;
        Ok(f)
    }

    /// The table is sorted by (hash, name), each hash is its name's, names
    /// are in range and UTF-8, runs lie back to back and cover every entry.
    fn check_table(&self) -> Result<(), String> {
        let mut run_end: u64 = 0;
        let mut prev: Option<(u64, &str)> = None;
        for i in 0..self.aggregates as usize {
            let row = self.row(i).ok_or("aggregate table truncated")?;
            let name = self.name(&row).ok_or_else(|| format!("aggregate {i}: name out of range or not UTF-8"))?;
            if row.hash != key_hash(name) {
                return Err(format!("aggregate {name:?}: hash mismatch"));
            }
            if prev.is_some_and(|p| p >= (row.hash, name)) {
                return Err(format!("aggregate {name:?}: table out of order"));
            }
            if u64::from(row.run_at) != run_end || row.count == 0 {
                return Err(format!("aggregate {name:?}: run out of place"));
            }
            run_end += u64::from(row.count);
            prev = Some((row.hash, name));
        }
        if run_end != self.entries {
            return Err(format!("runs cover {run_end} entries of {}", self.entries));
        }
        Ok(())
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether its segment is sparse (rewritten by a scavenge).
    pub fn is_sparse(&self) -> bool {
        self.sparse
    }

    /// Positions covered (the segment's first position plus this is its end).
    pub fn covered(&self) -> u64 {
        self.covered
    }

    /// Events in the segment.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Aggregates with events in the segment.
    pub fn aggregate_count(&self) -> usize {
        self.aggregates as usize
    }

    /// The frame offset of `position` (a removed one: the next frame's).
    pub fn offset_of(&self, position: u64) -> Option<u32> {
        let k = position.checked_sub(self.first_position).filter(|k| *k < self.covered)?;
        le_u32(&self.map, self.offsets_at.checked_add(usize::try_from(k).ok()?.checked_mul(4)?)?)
    }

    /// The offset of the last position covered.
    pub fn last_offset(&self) -> Option<u32> {
        self.offset_of((self.first_position + self.covered).checked_sub(1)?)
    }

    /// Row `i` of the aggregate table.
    pub(crate) fn row(&self, i: usize) -> Option<Row> {
        let at = self.table_at.checked_add(i.checked_mul(ROW_BYTES)?)?;
        let r = self.map.get(at..at.checked_add(ROW_BYTES)?)?;
        Some(Row {
            hash: le_u64(r, ROW_HASH_AT)?,
            first_version: le_u64(r, ROW_FIRST_VERSION_AT)?,
            run_at: le_u32(r, ROW_RUN_AT)?,
            count: le_u32(r, ROW_COUNT_AT)?,
            name_at: le_u32(r, ROW_NAME_AT)?,
            name_len: le_u32(r, ROW_NAME_LEN_AT)?,
        })
    }

    /// The aggregate id of a row.
    pub(crate) fn name(&self, row: &Row) -> Option<&str> {
        let at = self.names_at.checked_add(row.name_at as usize)?;
        let bytes = self.map.get(at..at.checked_add(row.name_len as usize)?)?;
        std::str::from_utf8(bytes).ok()
    }

    /// The rows, in table order.
    pub(crate) fn rows(&self) -> impl Iterator<Item = (Row, &str)> + '_ {
        (0..self.aggregates as usize).filter_map(|i| {
            let row = self.row(i)?;
            Some((row, self.name(&row)?))
        })
    }

    /// The position of the `k`th version of a row's run.
    pub(crate) fn run_position(&self, row: &Row, k: u64) -> Option<u64> {
        if k >= u64::from(row.count) {
            return None;
        }
        let i = usize::try_from(u64::from(row.run_at) + k).ok()?;
        let delta = le_u32(&self.map, self.runs_at.checked_add(i.checked_mul(4)?)?)?;
        Some(self.first_position + u64::from(delta))
    }

    /// How many of a row's versions lie below `position`.
    pub(crate) fn run_count_below(&self, row: &Row, position: u64) -> u64 {
        let (mut lo, mut hi) = (0u64, u64::from(row.count));
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.run_position(row, mid) {
                Some(p) if p < position => lo = mid + 1,
                _ => hi = mid,
            }
        }
        lo
    }

    /// Whether the filter may hold `hash` (`false`: the file certainly does not).
    fn may_hold(&self, hash: u64) -> bool {
        if self.filter_blocks == 0 {
            return false;
        }
        let (block, mut bits) = filter_probe(hash, self.filter_blocks);
        let Some(at) = block.checked_mul(FILTER_BLOCK_BYTES).and_then(|b| b.checked_add(self.filter_at)) else {
            return false;
        };
        let Some(block) = self.map.get(at..at + FILTER_BLOCK_BYTES) else { return false };
        bits.all(|bit| block.get((bit / 8) as usize).is_some_and(|byte| byte & (1 << (bit % 8)) != 0))
    }

    /// The row of aggregate `id` (whose [`key_hash`] is `hash`): the filter,
    /// then a binary search of the table.
    pub(crate) fn find(&self, id: &str, hash: u64) -> Option<Row> {
        if !self.may_hold(hash) {
            return None;
        }
        let (mut lo, mut hi) = (0usize, self.aggregates as usize);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let row = self.row(mid)?;
            match (row.hash, self.name(&row)?).cmp(&(hash, id)) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(row),
            }
        }
        None
    }

    /// The position of `version` of aggregate `id`, if the file holds it.
    pub fn position_of(&self, id: &str, version: u64) -> Option<u64> {
        let row = self.find(id, key_hash(id))?;
        self.run_position(&row, version.checked_sub(row.first_version)?)
    }

    /// Every entry as (aggregate, version, position, frame offset), by aggregate.
    pub(crate) fn entries_by_aggregate(&self) -> impl Iterator<Item = (&str, u64, u64, u32)> + '_ {
        self.rows().flat_map(move |(row, name)| {
            (0..u64::from(row.count)).filter_map(move |k| {
                let position = self.run_position(&row, k)?;
                Some((name, row.first_version + k, position, self.offset_of(position)?))
            })
        })
    }
}

/// One aggregate's run of versions in a segment, to encode.
pub(crate) struct RunIn<'a> {
    /// The aggregate.
    pub aggregate_id: &'a str,
    /// Its first version in the segment.
    pub first_version: u64,
    /// Its positions in the segment, by version.
    pub positions: Vec<u64>,
}

/// Encodes an index file: `offsets` of every position from `first_position`
/// on, the aggregates' runs (any order). `None` if a count or a position
/// does not fit its field.
pub(crate) fn encode(first_position: u64, sparse: bool, offsets: &[u32], mut runs: Vec<RunIn<'_>>) -> Option<Vec<u8>> {
    let mut keyed: Vec<(u64, RunIn<'_>)> = runs.drain(..).map(|r| (key_hash(r.aggregate_id), r)).collect();
    keyed.sort_unstable_by(|a, b| (a.0, a.1.aggregate_id).cmp(&(b.0, b.1.aggregate_id)));
    let entries: usize = keyed.iter().map(|(_, r)| r.positions.len()).sum();
    let aggregates = u32::try_from(keyed.len()).ok()?;
    let filter_blocks = if keyed.is_empty() {
        0
    } else {
        u32::try_from((keyed.len() * FILTER_BITS_PER_KEY).div_ceil(FILTER_BLOCK_BITS as usize)).ok()?
    };
    let name_bytes: usize = keyed.iter().map(|(_, r)| r.aggregate_id.len()).sum();
    let [offsets_at, table_at, runs_at, filter_at, names_at, end] =
        layout(offsets.len() as u64, entries as u64, aggregates, filter_blocks, name_bytes as u64)?;
    let mut b = vec![0u8; end];
    b[MAGIC_AT..VERSION_AT].copy_from_slice(&IDX_MAGIC);
    crate::le::put_u32(&mut b, VERSION_AT, IDX_VERSION);
    crate::le::put_u64(&mut b, FIRST_POSITION_AT, first_position);
    crate::le::put_u64(&mut b, COVERED_AT, offsets.len() as u64);
    crate::le::put_u64(&mut b, ENTRIES_AT, entries as u64);
    crate::le::put_u32(&mut b, AGGREGATES_AT, aggregates);
    crate::le::put_u32(&mut b, FILTER_BLOCKS_AT, filter_blocks);
    crate::le::put_u64(&mut b, NAME_BYTES_AT, name_bytes as u64);
    crate::le::put_u32(&mut b, FLAGS_AT, if sparse { FLAG_SPARSE } else { 0 });
    for (i, o) in offsets.iter().enumerate() {
        crate::le::put_u32(&mut b, offsets_at + i * 4, *o);
    }
    let (mut run_at, mut name_at) = (0usize, 0usize);
    for (i, (hash, r)) in keyed.iter().enumerate() {
        let row = table_at + i * ROW_BYTES;
        crate::le::put_u64(&mut b, row + ROW_HASH_AT, *hash);
        crate::le::put_u64(&mut b, row + ROW_FIRST_VERSION_AT, r.first_version);
        crate::le::put_u32(&mut b, row + ROW_RUN_AT, u32::try_from(run_at).ok()?);
        crate::le::put_u32(&mut b, row + ROW_COUNT_AT, u32::try_from(r.positions.len()).ok()?);
        crate::le::put_u32(&mut b, row + ROW_NAME_AT, u32::try_from(name_at).ok()?);
        crate::le::put_u32(&mut b, row + ROW_NAME_LEN_AT, u32::try_from(r.aggregate_id.len()).ok()?);
        for p in &r.positions {
            let delta = u32::try_from(p.checked_sub(first_position)?).ok()?;
            crate::le::put_u32(&mut b, runs_at + run_at * 4, delta);
            run_at += 1;
        }
        b[names_at + name_at..names_at + name_at + r.aggregate_id.len()].copy_from_slice(r.aggregate_id.as_bytes());
        name_at += r.aggregate_id.len();
        let (block, bits) = filter_probe(*hash, filter_blocks);
        let at = filter_at + block * FILTER_BLOCK_BYTES;
        for bit in bits {
            b[at + (bit / 8) as usize] |= 1 << (bit % 8);
        }
    }
    let crc = crc32fast::hash(&b[CRC_FROM..]);
    crate::le::put_u32(&mut b, CRC_AT, crc);
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dir: &Path) -> PathBuf {
        let offsets: Vec<u32> = (0..40).map(|i| 64 + i * 48).collect();
        let names: Vec<String> = (0..7).map(|i| format!("agg-{i}")).collect();
        let runs = names
            .iter()
            .enumerate()
            .map(|(a, n)| RunIn {
                aggregate_id: n,
                first_version: a as u64,
                positions: (0..40u64).filter(|p| p % 7 == a as u64).map(|p| 100 + p).collect(),
            })
            .collect();
        let bytes = encode(100, false, &offsets, runs).unwrap();
        let path = dir.join("x.idx");
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn lookups_find_every_entry_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let f = IndexFile::open(&sample(dir.path()), 100).unwrap();
        for a in 0..7u64 {
            let id = format!("agg-{a}");
            let row = f.find(&id, key_hash(&id)).unwrap();
            assert_eq!(row.first_version, a);
            for k in 0..u64::from(row.count) {
                assert_eq!(f.run_position(&row, k), Some(100 + a + 7 * k));
            }
            assert_eq!(f.run_count_below(&row, 100 + a + 8), 2);
        }
        assert_eq!(f.offset_of(100), Some(64));
        assert_eq!(f.offset_of(140), None);
        assert!((0..1000).all(|i| f.find(&format!("other-{i}"), key_hash(&format!("other-{i}"))).is_none()));
        assert_eq!(f.entries_by_aggregate().count(), 40);
        assert!(IndexFile::open(&sample(dir.path()), 101).is_err());
    }

    #[test]
    fn every_cut_and_every_bit_flip_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = sample(dir.path());
        let good = std::fs::read(&path).unwrap();
        let bad = dir.path().join("bad.idx");
        for cut in 0..good.len() {
            std::fs::write(&bad, &good[..cut]).unwrap();
            assert!(IndexFile::open(&bad, 100).is_err(), "cut at {cut} accepted");
        }
        for byte in 0..good.len() {
            for bit in 0..8 {
                let mut b = good.clone();
                b[byte] ^= 1 << bit;
                std::fs::write(&bad, &b).unwrap();
                assert!(IndexFile::open(&bad, 100).is_err(), "flip of bit {bit} at {byte} accepted");
            }
        }
    }
}
