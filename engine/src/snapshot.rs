//! Snapshot segments: zstd-compressed aggregate states in their own
//! append-only files under `snapshots/`, never interleaved with events. Owns
//! the snapshot file format, its index (aggregate → the last K snapshots),
//! checkpoints of sealed files, torn-tail recovery and crash-safe compaction.
//! It never touches event segments and never decompresses more than the
//! record's declared (and capped) size.
//!
//! File header, 64 bytes: magic `b"FLOGSNAP"`, format version u32, header size
//! u32 (64), file number u64, created at i64, 32 reserved bytes, CRC32 of
//! bytes 0..60 at 60.
//!
//! Record frame (8-byte aligned):
//! ```text
//!  0 4 magic "FLSN"        4 4 body length
//!  8 8 sequence number    16 8 reserved (0)
//! 24 4 crc32 of 0..24 ++ body                28 4 reserved (0)
//! 32 body: version u64, taken_at i64, schema_version u32,
//!          uncompressed length u32, codec u8 (0 raw, 1 zstd, 2 zstd with a
//!          trained dictionary), aggregate id length u8, reserved u16,
//!          payload length u32, dictionary id u32 (codec 2 only, else 0),
//!          reserved u32, aggregate id, payload
//! ```
//! Dictionaries (`*.zdict`) live in the same directory; see `dictionary`.
//! Sealed-file checkpoint (`.sidx`): magic `b"FLOGSIDX"`, entry count u64,
//! CRC32 u32 of the entries, reserved u32, then per record: u8 id length, id,
//! version u64, offset u64, length u32.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::dictionary::{Dictionaries, Dictionary, DictionaryInfo};
use crate::error::{Error, Result};
use crate::segment::sync_dir;

const FILE_MAGIC: [u8; 8] = *b"FLOGSNAP";
const FILE_VERSION: u32 = 1;
const FILE_HEADER: u64 = 64;
const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"FLSN");
const FRAME_HEADER: usize = 32;
const BODY_FIXED: usize = 40;
const SIDX_MAGIC: [u8; 8] = *b"FLOGSIDX";
/// Name of the snapshot directory inside a store.
pub const SNAPSHOT_DIR: &str = "snapshots";

/// A decompressed snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The aggregate.
    pub aggregate_id: String,
    /// The aggregate version the state reflects (events `0..=version` folded).
    pub version: u64,
    /// The caller's schema version of the state bytes.
    pub schema_version: u32,
    /// When it was saved, unix nanos.
    pub taken_at: i64,
    /// The state bytes, decompressed.
    pub data: Vec<u8>,
}

/// What a save wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnapshotInfo {
    /// Uncompressed bytes.
    pub raw_bytes: u64,
    /// Bytes on disk, frame included.
    pub stored_bytes: u64,
    /// Bytes of the stored payload (compressed, or raw when that is smaller).
    pub payload_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Loc {
    version: u64,
    file_no: u64,
    offset: u64,
    len: u32,
}

struct SnapFile {
    no: u64,
    path: PathBuf,
    file: Arc<File>,
    len: u64,
    records: u64,
}

/// Snapshot settings, from [`crate::Options`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct SnapshotConfig {
    pub file_bytes: u64,
    pub keep: usize,
    pub level: i32,
    pub max_bytes: u32,
    pub sync: bool,
    /// Inspect only: create, truncate and rewrite nothing.
    pub read_only: bool,
}

/// What opening the snapshot store found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnapshotRecovery {
    /// Snapshot files.
    pub files: usize,
    /// Records indexed.
    pub records: u64,
    /// Bytes cut from a torn tail of the active file.
    pub torn_bytes: u64,
    /// Checkpoints rebuilt by scanning.
    pub checkpoints_rebuilt: usize,
}

/// The snapshot store. Guarded by a mutex in `Store`.
pub(crate) struct Snapshots {
    dir: PathBuf,
    cfg: SnapshotConfig,
    files: Vec<SnapFile>,
    index: HashMap<Box<str>, Vec<Loc>>,
    next_seq: u64,
    /// Number of the file appended to (the highest number at open).
    active_no: Option<u64>,
    /// Trained dictionaries, by id.
    dicts: Dictionaries,
}

fn file_name(no: u64) -> String {
    format!("{no:020}.snap")
}

fn sidx_name(no: u64) -> String {
    format!("{no:020}.sidx")
}

/// The little-endian u32 at `at` (the caller has checked the bounds).
pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn file_header(no: u64) -> [u8; FILE_HEADER as usize] {
    let mut h = [0u8; FILE_HEADER as usize];
    h[0..8].copy_from_slice(&FILE_MAGIC);
    h[8..12].copy_from_slice(&FILE_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(FILE_HEADER as u32).to_le_bytes());
    h[16..24].copy_from_slice(&no.to_le_bytes());
    h[24..32].copy_from_slice(&crate::event::now_nanos().to_le_bytes());
    let crc = crc32fast::hash(&h[0..60]);
    h[60..64].copy_from_slice(&crc.to_le_bytes());
    h
}

fn check_file_header(path: &Path, h: &[u8], no: u64) -> Result<()> {
    if h.len() < FILE_HEADER as usize || h[0..8] != FILE_MAGIC {
        return Err(Error::corrupt(path, 0, "not a factlog snapshot file (bad magic)"));
    }
    let version = u32_at(h, 8);
    if version != FILE_VERSION {
        return Err(Error::UnsupportedFormat { path: path.to_path_buf(), found: version, supported: FILE_VERSION });
    }
    if crc32fast::hash(&h[0..60]) != u32_at(h, 60) || u64_at(h, 16) != no {
        return Err(Error::corrupt(path, 0, "snapshot file header checksum or number mismatch"));
    }
    Ok(())
}

/// A decoded, checksum-verified snapshot frame.
pub struct SnapFrame<'a> {
    /// Sequence number.
    pub seq: u64,
    /// Aggregate version.
    pub version: u64,
    /// Save time.
    pub taken_at: i64,
    /// Caller's schema version.
    pub schema_version: u32,
    /// Declared uncompressed length.
    pub raw_len: u32,
    /// 0 raw, 1 zstd, 2 zstd with dictionary `dict_id`.
    pub codec: u8,
    /// The dictionary of codec 2 (0 otherwise).
    pub dict_id: u32,
    /// Aggregate id.
    pub aggregate_id: &'a str,
    /// Stored payload.
    pub payload: &'a [u8],
    /// Frame length, padding included.
    pub frame_len: usize,
}

/// The fixed fields of a snapshot record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapMeta {
    /// Sequence number.
    pub seq: u64,
    /// Aggregate version.
    pub version: u64,
    /// Caller's schema version.
    pub schema_version: u32,
    /// Save time, unix nanos.
    pub taken_at: i64,
    /// Uncompressed length.
    pub raw_len: u32,
    /// 0 raw, 1 zstd, 2 zstd with dictionary `dict_id`.
    pub codec: u8,
    /// The dictionary of codec 2 (0 otherwise).
    pub dict_id: u32,
}

/// Encodes one snapshot frame.
pub fn encode_frame(meta: SnapMeta, aggregate_id: &str, payload: &[u8]) -> Vec<u8> {
    let SnapMeta { seq, version, schema_version, taken_at, raw_len, codec, dict_id } = meta;
    let body_len = BODY_FIXED + aggregate_id.len() + payload.len();
    let total = (FRAME_HEADER + body_len).div_ceil(8) * 8;
    let mut f = vec![0u8; total];
    f[0..4].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
    f[4..8].copy_from_slice(&(body_len as u32).to_le_bytes());
    f[8..16].copy_from_slice(&seq.to_le_bytes());
    let b = FRAME_HEADER;
    f[b..b + 8].copy_from_slice(&version.to_le_bytes());
    f[b + 8..b + 16].copy_from_slice(&taken_at.to_le_bytes());
    f[b + 16..b + 20].copy_from_slice(&schema_version.to_le_bytes());
    f[b + 20..b + 24].copy_from_slice(&raw_len.to_le_bytes());
    f[b + 24] = codec;
    f[b + 25] = aggregate_id.len() as u8;
    f[b + 28..b + 32].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    f[b + 32..b + 36].copy_from_slice(&dict_id.to_le_bytes());
    f[b + BODY_FIXED..b + BODY_FIXED + aggregate_id.len()].copy_from_slice(aggregate_id.as_bytes());
    f[b + BODY_FIXED + aggregate_id.len()..b + body_len].copy_from_slice(payload);
    let mut h = crc32fast::Hasher::new();
    h.update(&f[0..24]);
    h.update(&f[b..b + body_len]);
    f[24..28].copy_from_slice(&h.finalize().to_le_bytes());
    f
}

/// Decodes and verifies the frame at the start of `bytes`. `Ok(None)` for
/// zeros or an empty slice (clean end).
pub fn decode_frame(bytes: &[u8]) -> std::result::Result<Option<SnapFrame<'_>>, String> {
    if bytes.is_empty() || (bytes.len() < FRAME_HEADER && bytes.iter().all(|b| *b == 0)) {
        return Ok(None);
    }
    let h = bytes.get(..FRAME_HEADER).ok_or("truncated snapshot frame header")?;
    if u32_at(h, 0) != FRAME_MAGIC {
        if h.iter().all(|b| *b == 0) {
            return Ok(None);
        }
        return Err("bad snapshot frame magic".into());
    }
    let body_len = u32_at(h, 4) as usize;
    if body_len < BODY_FIXED || u64_at(h, 16) != 0 || u32_at(h, 28) != 0 {
        return Err("snapshot frame header invalid".into());
    }
    let frame_len = (FRAME_HEADER + body_len).div_ceil(8) * 8;
    if bytes.len() < frame_len {
        return Err("snapshot frame runs past end of file".into());
    }
    let body = &bytes[FRAME_HEADER..FRAME_HEADER + body_len];
    let mut c = crc32fast::Hasher::new();
    c.update(&h[0..24]);
    c.update(body);
    if c.finalize() != u32_at(h, 24) {
        return Err("snapshot frame checksum mismatch".into());
    }
    if body[26..28].iter().chain(&body[36..BODY_FIXED]).any(|b| *b != 0) {
        return Err("snapshot frame reserved bytes not zero".into());
    }
    let (codec, dict_id) = (body[24], u32_at(body, 32));
    if codec > 2 || (codec == 2) != (dict_id != 0) {
        return Err(format!("snapshot frame codec {codec} with dictionary id {dict_id}"));
    }
    let agg_len = body[25] as usize;
    let payload_len = u32_at(body, 28) as usize;
    if BODY_FIXED + agg_len + payload_len != body_len || agg_len == 0 {
        return Err("snapshot frame lengths inconsistent".into());
    }
    let aggregate_id =
        std::str::from_utf8(&body[BODY_FIXED..BODY_FIXED + agg_len]).map_err(|_| "aggregate id not UTF-8")?;
    Ok(Some(SnapFrame {
        seq: u64_at(h, 8),
        version: u64_at(body, 0),
        taken_at: u64_at(body, 8) as i64,
        schema_version: u32_at(body, 16),
        raw_len: u32_at(body, 20),
        codec,
        dict_id,
        aggregate_id,
        payload: &body[BODY_FIXED + agg_len..],
        frame_len,
    }))
}

/// Decompresses a frame's payload, refusing anything over `max_bytes` or not
/// exactly its declared size (a decompression bomb or a lie is an error). A
/// frame compressed with a dictionary (codec 2) is an error here: the store
/// decompresses those with its dictionaries.
pub fn decompress(frame: &SnapFrame<'_>, max_bytes: u32) -> std::result::Result<Vec<u8>, String> {
    decompress_with(frame, max_bytes, None)
}

fn decompress_with(
    frame: &SnapFrame<'_>,
    max_bytes: u32,
    dict: Option<&Dictionary>,
) -> std::result::Result<Vec<u8>, String> {
    if frame.raw_len > max_bytes {
        return Err(format!("snapshot declares {} bytes, over the limit of {max_bytes}", frame.raw_len));
    }
    let cap = frame.raw_len as usize;
    let data = match (frame.codec, dict) {
        (0, _) => frame.payload.to_vec(),
        (1, _) => zstd::bulk::decompress(frame.payload, cap).map_err(|e| format!("zstd: {e}"))?,
        (_, Some(d)) => d.decompress(frame.payload, cap).map_err(|e| format!("zstd with dictionary: {e}"))?,
        (_, None) => return Err(format!("snapshot needs dictionary {}, which the store does not have", frame.dict_id)),
    };
    if data.len() != frame.raw_len as usize {
        return Err(format!("snapshot decompressed to {} bytes, declared {}", data.len(), frame.raw_len));
    }
    Ok(data)
}

impl Snapshots {
    /// Opens (or creates) the snapshot directory and indexes every file.
    pub(crate) fn open(store_dir: &Path, cfg: SnapshotConfig) -> Result<(Snapshots, SnapshotRecovery)> {
        let dir = store_dir.join(SNAPSHOT_DIR);
        if !dir.exists() && cfg.read_only {
            let dicts = Dictionaries::default();
            let empty =
                Snapshots { dir, cfg, files: Vec::new(), index: HashMap::new(), next_seq: 0, active_no: None, dicts };
            return Ok((empty, SnapshotRecovery::default()));
        }
        if !dir.exists() {
            std::fs::create_dir(&dir).map_err(|e| Error::io("create snapshot directory", &dir, e))?;
            sync_dir(store_dir)?;
        }
        let mut nos = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io("list snapshot directory", &dir, e))? {
            let entry = entry.map_err(|e| Error::io("list snapshot directory", &dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(no) = name.strip_suffix(".snap").and_then(|d| d.parse::<u64>().ok()) {
                nos.push(no);
            } else if name.ends_with(".tmp") && !cfg.read_only {
                // NOTE: an interrupted compaction or checkpoint; never renamed into place.
                let _ = std::fs::remove_file(entry.path());
            }
        }
        nos.sort_unstable();
        let dicts = Dictionaries::load(&dir, cfg.level)?;
        let mut s =
            Snapshots { dir, cfg, files: Vec::new(), index: HashMap::new(), next_seq: 0, active_no: None, dicts };
        let mut rec = SnapshotRecovery { files: nos.len(), ..SnapshotRecovery::default() };
        let last = nos.last().copied();
        for no in nos {
            s.load_file(no, Some(no) == last, &mut rec)?;
        }
        s.active_no = last;
        rec.records = s.index.values().map(|v| v.len() as u64).sum();
        Ok((s, rec))
    }

    fn load_file(&mut self, no: u64, active: bool, rec: &mut SnapshotRecovery) -> Result<()> {
        let path = self.dir.join(file_name(no));
        let file = OpenOptions::new()
            .read(true)
            .write(!self.cfg.read_only)
            .open(&path)
            .map_err(|e| Error::io("open snapshot file", &path, e))?;
        let bytes = std::fs::read(&path).map_err(|e| Error::io("read snapshot file", &path, e))?;
        check_file_header(&path, &bytes, no)?;
        if !active {
            // The checkpoint is used only if the file's last record decodes: its
            // sequence number keeps `next_seq` above every stored one.
            let last_seq = |entries: &[(String, Loc)]| {
                let Some((_, last)) = entries.iter().max_by_key(|(_, l)| l.offset) else { return Some(None) };
                let frame = bytes.get(last.offset as usize..)?;
                Some(Some(decode_frame(frame).ok()??.seq))
            };
            if let Some((entries, seq)) = read_sidx(&self.dir.join(sidx_name(no)), bytes.len() as u64)
                .ok()
                .and_then(|e| last_seq(&e).map(|s| (e, s)))
            {
                if let Some(seq) = seq {
                    self.next_seq = self.next_seq.max(seq + 1);
                }
                let records = entries.len() as u64;
                for (agg, loc) in entries {
                    self.insert(&agg, Loc { file_no: no, ..loc });
                }
                self.files.push(SnapFile { no, path, file: Arc::new(file), len: bytes.len() as u64, records });
                return Ok(());
            }
        }
        let mut offset = FILE_HEADER as usize;
        let mut entries = Vec::new();
        loop {
            let rest = bytes.get(offset..).unwrap_or(&[]);
            match decode_frame(rest) {
                Ok(Some(f)) => {
                    self.next_seq = self.next_seq.max(f.seq + 1);
                    entries.push((
                        f.aggregate_id.to_string(),
                        Loc { version: f.version, file_no: no, offset: offset as u64, len: f.frame_len as u32 },
                    ));
                    offset += f.frame_len;
                }
                Ok(None) if offset >= bytes.len() || bytes[offset..].iter().all(|b| *b == 0) => break,
                Ok(None) | Err(_) if active && valid_frame_after(rest).is_some() => {
                    // Saves are synced one at a time, so only the last frame can be
                    // torn: a bad frame with a good one after it is corruption.
                    return Err(Error::corrupt(&path, offset as u64, "bad snapshot frame followed by valid ones"));
                }
                Ok(None) | Err(_) if active => {
                    // A torn tail of the active file: cut it (this file is not mapped).
                    rec.torn_bytes += (bytes.len() - offset) as u64;
                    if self.cfg.read_only {
                        break;
                    }
                    file.set_len(offset as u64).map_err(|e| Error::io("truncate torn snapshot tail", &path, e))?;
                    file.sync_all().map_err(|e| Error::io("fsync snapshot file", &path, e))?;
                    break;
                }
                Ok(None) => return Err(Error::corrupt(&path, offset as u64, "zeros inside a sealed snapshot file")),
                Err(reason) => return Err(Error::corrupt(&path, offset as u64, reason)),
            }
        }
        if !active {
            rec.checkpoints_rebuilt += 1;
            if !self.cfg.read_only {
                let _ = write_sidx(&self.dir, no, &entries);
            }
        }
        let records = entries.len() as u64;
        for (agg, loc) in entries {
            self.insert(&agg, loc);
        }
        self.files.push(SnapFile { no, path, file: Arc::new(file), len: offset as u64, records });
        Ok(())
    }

    /// Adds a location, replacing one of the same version, keeping the last K.
    fn insert(&mut self, aggregate_id: &str, loc: Loc) {
        let list = match self.index.get_mut(aggregate_id) {
            Some(l) => l,
            None => self.index.entry(aggregate_id.into()).or_default(),
        };
        match list.binary_search_by_key(&loc.version, |l| l.version) {
            Ok(i) => list[i] = loc,
            Err(i) => list.insert(i, loc),
        }
        let keep = self.cfg.keep.max(1);
        if list.len() > keep {
            let drop = list.len() - keep;
            list.drain(..drop);
        }
    }

    /// The newest snapshot version of an aggregate.
    pub(crate) fn latest_version(&self, aggregate_id: &str) -> Option<u64> {
        self.index.get(aggregate_id).and_then(|l| l.last()).map(|l| l.version)
    }

    /// Saves a snapshot (the caller has checked the version exists).
    pub(crate) fn save(
        &mut self,
        aggregate_id: &str,
        version: u64,
        schema_version: u32,
        data: &[u8],
    ) -> Result<SnapshotInfo> {
        let raw_len = u32::try_from(data.len()).ok().filter(|n| *n <= self.cfg.max_bytes).ok_or_else(|| {
            Error::InvalidInput(format!(
                "snapshot of {} bytes for {aggregate_id:?} is over the limit of {}",
                data.len(),
                self.cfg.max_bytes
            ))
        })?;
        let (codec, dict_id, compressed) = match self.dicts.for_aggregate(aggregate_id) {
            Some((id, d)) => (2u8, id, d.compress(data)),
            None => (1u8, 0, zstd::bulk::compress(data, self.cfg.level)),
        };
        let compressed = compressed.map_err(|e| Error::io("compress snapshot", &self.dir, e))?;
        let (codec, dict_id, payload) =
            if compressed.len() < data.len() { (codec, dict_id, &compressed[..]) } else { (0u8, 0, data) };
        let meta = SnapMeta {
            seq: self.next_seq,
            version,
            schema_version,
            taken_at: crate::event::now_nanos(),
            raw_len,
            codec,
            dict_id,
        };
        let frame = encode_frame(meta, aggregate_id, payload);
        let payload_bytes = payload.len() as u64;
        let need_roll = match self.active_index() {
            None => true,
            Some(i) => {
                let f = &self.files[i];
                f.len > FILE_HEADER && f.len + frame.len() as u64 > self.cfg.file_bytes
            }
        };
        if need_roll {
            self.roll()?;
        }
        let i = self.active_index().ok_or_else(|| Error::corrupt(&self.dir, 0, "no snapshot file"))?;
        let active = &mut self.files[i];
        let offset = active.len;
        active.file.write_all_at(&frame, offset).map_err(|e| Error::io("write snapshot", &active.path, e))?;
        if self.cfg.sync {
            active.file.sync_data().map_err(|e| Error::io("fdatasync snapshot", &active.path, e))?;
        }
        active.len += frame.len() as u64;
        active.records += 1;
        let no = active.no;
        self.next_seq += 1;
        self.insert(aggregate_id, Loc { version, file_no: no, offset, len: frame.len() as u32 });
        Ok(SnapshotInfo { raw_bytes: data.len() as u64, stored_bytes: frame.len() as u64, payload_bytes })
    }

    fn active_index(&self) -> Option<usize> {
        let no = self.active_no?;
        self.files.iter().position(|f| f.no == no)
    }

    fn next_file_no(&self) -> u64 {
        self.files.iter().map(|f| f.no + 1).max().unwrap_or(0)
    }

    fn roll(&mut self) -> Result<()> {
        if let Some(i) = self.active_index() {
            let f = &self.files[i];
            f.file.sync_all().map_err(|e| Error::io("fsync snapshot file", &f.path, e))?;
            let entries = self.entries_of(f.no);
            let _ = write_sidx(&self.dir, f.no, &entries);
        }
        let no = self.next_file_no();
        let path = self.dir.join(file_name(no));
        let tmp = self.dir.join(format!("{}.tmp", file_name(no)));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| Error::io("create snapshot file", &tmp, e))?;
        file.write_all_at(&file_header(no), 0).map_err(|e| Error::io("write snapshot header", &tmp, e))?;
        file.sync_all().map_err(|e| Error::io("fsync snapshot file", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename snapshot file", &path, e))?;
        sync_dir(&self.dir)?;
        self.files.push(SnapFile { no, path, file: Arc::new(file), len: FILE_HEADER, records: 0 });
        self.active_no = Some(no);
        self.compact()?;
        Ok(())
    }

    fn entries_of(&self, no: u64) -> Vec<(String, Loc)> {
        let mut v: Vec<(String, Loc)> = self
            .index
            .iter()
            .flat_map(|(a, l)| l.iter().filter(|l| l.file_no == no).map(move |l| (a.to_string(), *l)))
            .collect();
        v.sort_by_key(|(_, l)| l.offset);
        v
    }

    /// Rewrites sealed files whose records are mostly superseded. A file is
    /// rewritten under its own number (its live records, in their order, into
    /// a temporary file renamed over it), so file order stays log order: the
    /// active file stays the highest-numbered one and, for one aggregate and
    /// version, a later save always sorts after an earlier one. Crash-safe:
    /// the rename is atomic (old file or new file, never neither), and the
    /// old checkpoint is removed before it, so a crash in between leaves a
    /// sealed file without checkpoint, which the next open scans.
    pub(crate) fn compact(&mut self) -> Result<usize> {
        let active_no = self.active_no;
        let candidates: Vec<u64> = self
            .files
            .iter()
            .filter(|f| Some(f.no) != active_no && f.records > 0)
            .filter(|f| (self.entries_of(f.no).len() as u64) * 2 <= f.records)
            .map(|f| f.no)
            .collect();
        let mut done = 0;
        for no in candidates {
            let live = self.entries_of(no);
            let Some(pos) = self.files.iter().position(|f| f.no == no) else { continue };
            let path = self.files[pos].path.clone();
            let old_file = Arc::clone(&self.files[pos].file);
            let sidx = self.dir.join(sidx_name(no));
            if live.is_empty() {
                // Nothing live: the file simply goes.
                std::fs::remove_file(&path).map_err(|e| Error::io("remove superseded snapshot file", &path, e))?;
                let _ = std::fs::remove_file(&sidx);
                sync_dir(&self.dir)?;
                self.files.remove(pos);
                done += 1;
                continue;
            }
            let tmp = self.dir.join(format!("{}.tmp", file_name(no)));
            let mut buf = file_header(no).to_vec();
            let mut moved = Vec::with_capacity(live.len());
            for (agg, loc) in &live {
                let mut frame = vec![0u8; loc.len as usize];
                old_file
                    .read_exact_at(&mut frame, loc.offset)
                    .map_err(|e| Error::io("read snapshot for compaction", &path, e))?;
                decode_frame(&frame).map_err(|r| Error::corrupt(&path, loc.offset, r))?;
                moved.push((agg.clone(), Loc { offset: buf.len() as u64, ..*loc }));
                buf.extend_from_slice(&frame);
            }
            std::fs::write(&tmp, &buf).map_err(|e| Error::io("write compacted snapshots", &tmp, e))?;
            File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| Error::io("fsync compacted snapshots", &tmp, e))?;
            // IMPORTANT: the old checkpoint goes (durably) before the file it
            // describes is replaced; the new one is written after.
            match std::fs::remove_file(&sidx) {
                Ok(()) => sync_dir(&self.dir)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove snapshot checkpoint", &sidx, e)),
            }
            std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename compacted snapshots", &path, e))?;
            sync_dir(&self.dir)?;
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| Error::io("open compacted snapshots", &path, e))?;
            let _ = write_sidx(&self.dir, no, &moved);
            for (agg, loc) in &moved {
                if let Some(list) = self.index.get_mut(agg.as_str()) {
                    if let Some(l) = list.iter_mut().find(|l| l.version == loc.version && l.file_no == no) {
                        *l = *loc;
                    }
                }
            }
            self.files[pos] =
                SnapFile { no, path, file: Arc::new(file), len: buf.len() as u64, records: moved.len() as u64 };
            done += 1;
        }
        Ok(done)
    }

    /// The location of the newest snapshot at or before `version`.
    fn find(&self, aggregate_id: &str, at_or_before: u64) -> Option<Loc> {
        let list = self.index.get(aggregate_id)?;
        let n = list.partition_point(|l| l.version <= at_or_before);
        n.checked_sub(1).map(|i| list[i])
    }

    /// Reads and decompresses the newest snapshot at or before `version`.
    pub(crate) fn read(&self, aggregate_id: &str, at_or_before: u64) -> Result<Option<Snapshot>> {
        let Some(loc) = self.find(aggregate_id, at_or_before) else { return Ok(None) };
        let f = self
            .files
            .iter()
            .find(|f| f.no == loc.file_no)
            .ok_or_else(|| Error::corrupt(&self.dir, 0, "indexed snapshot file missing"))?;
        let mut frame = vec![0u8; loc.len as usize];
        f.file.read_exact_at(&mut frame, loc.offset).map_err(|e| Error::io("read snapshot", &f.path, e))?;
        let d = decode_frame(&frame)
            .map_err(|r| Error::corrupt(&f.path, loc.offset, r))?
            .ok_or_else(|| Error::corrupt(&f.path, loc.offset, "no snapshot frame here"))?;
        if d.aggregate_id != aggregate_id || d.version != loc.version {
            return Err(Error::corrupt(&f.path, loc.offset, "snapshot frame is for another aggregate or version"));
        }
        let data = self.decompress(&d).map_err(|r| Error::corrupt(&f.path, loc.offset, r))?;
        Ok(Some(Snapshot {
            aggregate_id: aggregate_id.to_string(),
            version: d.version,
            schema_version: d.schema_version,
            taken_at: d.taken_at,
            data,
        }))
    }

    /// Decompresses a verified frame, with the store's dictionary for codec 2.
    fn decompress(&self, frame: &SnapFrame<'_>) -> std::result::Result<Vec<u8>, String> {
        decompress_with(frame, self.cfg.max_bytes, self.dicts.get(frame.dict_id).map(|d| &**d))
    }

    /// Installs a trained dictionary for aggregates whose id starts with
    /// `prefix`: later saves of those aggregates use it.
    pub(crate) fn install_dictionary(&mut self, prefix: &str, dict: &[u8]) -> Result<DictionaryInfo> {
        self.dicts.install(&self.dir, prefix, dict, self.cfg.level)
    }

    /// Number of trained dictionaries.
    pub(crate) fn dictionaries(&self) -> usize {
        self.dicts.len()
    }

    /// Files, records indexed, and bytes on disk.
    pub(crate) fn stats(&self) -> (u64, u64, u64) {
        (
            self.files.len() as u64,
            self.index.values().map(|v| v.len() as u64).sum(),
            self.files.iter().map(|f| f.len).sum(),
        )
    }

    /// Syncs the active file.
    pub(crate) fn sync(&self) -> Result<()> {
        if let Some(f) = self.active_index().map(|i| &self.files[i]) {
            f.file.sync_data().map_err(|e| Error::io("fdatasync snapshot", &f.path, e))?;
        }
        Ok(())
    }
}

/// Offset of the first valid frame after the start of `bytes` (8-byte steps).
fn valid_frame_after(bytes: &[u8]) -> Option<usize> {
    let magic = FRAME_MAGIC.to_le_bytes();
    (8..bytes.len())
        .step_by(8)
        .find(|&at| bytes[at..].starts_with(&magic) && matches!(decode_frame(&bytes[at..]), Ok(Some(_))))
}

fn write_sidx(dir: &Path, no: u64, entries: &[(String, Loc)]) -> Result<()> {
    let mut body = Vec::with_capacity(entries.len() * 40);
    for (agg, loc) in entries {
        body.push(agg.len() as u8);
        body.extend_from_slice(agg.as_bytes());
        body.extend_from_slice(&loc.version.to_le_bytes());
        body.extend_from_slice(&loc.offset.to_le_bytes());
        body.extend_from_slice(&loc.len.to_le_bytes());
    }
    let mut out = Vec::with_capacity(24 + body.len());
    out.extend_from_slice(&SIDX_MAGIC);
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&body);
    let path = dir.join(sidx_name(no));
    let tmp = dir.join(format!("{}.tmp", sidx_name(no)));
    std::fs::write(&tmp, &out).map_err(|e| Error::io("write snapshot checkpoint", &tmp, e))?;
    File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| Error::io("fsync snapshot checkpoint", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename snapshot checkpoint", &path, e))?;
    sync_dir(dir)
}

fn read_sidx(path: &Path, file_len: u64) -> std::result::Result<Vec<(String, Loc)>, String> {
    let b = std::fs::read(path).map_err(|e| e.to_string())?;
    if b.len() < 24 || b[0..8] != SIDX_MAGIC {
        return Err("bad checkpoint header".into());
    }
    let count = u64_at(&b, 8);
    let body = &b[24..];
    if crc32fast::hash(body) != u32_at(&b, 16) {
        return Err("checkpoint checksum mismatch".into());
    }
    let mut out = Vec::new();
    let mut at = 0usize;
    for _ in 0..count {
        let n = *body.get(at).ok_or("truncated")? as usize;
        let agg = std::str::from_utf8(body.get(at + 1..at + 1 + n).ok_or("truncated")?).map_err(|_| "id not UTF-8")?;
        let rest = body.get(at + 1 + n..at + 1 + n + 20).ok_or("truncated")?;
        let loc = Loc { version: u64_at(rest, 0), file_no: 0, offset: u64_at(rest, 8), len: u32_at(rest, 16) };
        if loc.offset < FILE_HEADER || loc.offset + u64::from(loc.len) > file_len {
            return Err("checkpoint entry outside its file".into());
        }
        out.push((agg.to_string(), loc));
        at += 1 + n + 20;
    }
    if at != body.len() {
        return Err("checkpoint has trailing bytes".into());
    }
    Ok(out)
}

impl Snapshots {
    /// Decodes every frame of every snapshot file (checksum, lengths, and a
    /// capped decompression); returns the records checked and the problems.
    pub(crate) fn verify(&self) -> (u64, Vec<(PathBuf, u64, String)>) {
        let mut checked = 0u64;
        let mut problems = Vec::new();
        for f in &self.files {
            let bytes = match std::fs::read(&f.path) {
                Ok(b) => b,
                Err(e) => {
                    problems.push((f.path.clone(), 0, format!("cannot read: {e}")));
                    continue;
                }
            };
            let mut offset = FILE_HEADER as usize;
            while (offset as u64) < f.len {
                match decode_frame(bytes.get(offset..).unwrap_or(&[])) {
                    Ok(Some(frame)) => {
                        if let Err(r) = self.decompress(&frame) {
                            problems.push((f.path.clone(), offset as u64, r));
                        }
                        checked += 1;
                        offset += frame.frame_len;
                    }
                    Ok(None) => break,
                    Err(r) => {
                        problems.push((f.path.clone(), offset as u64, r));
                        break;
                    }
                }
            }
        }
        (checked, problems)
    }
}
