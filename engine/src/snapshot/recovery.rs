//! Opening the snapshot store: creates or lists `snapshots/`, removes the
//! temporary files an interrupted write left, loads the dictionaries and
//! indexes every snapshot file into a fresh catalog. A sealed file is
//! indexed from its checkpoint when that is valid, reading only the file
//! header, the checkpoint and the file's last frame; otherwise it is scanned
//! and its checkpoint rebuilt. The active (highest-numbered) file is always
//! scanned and a torn tail cut. Runs once, before the store is shared, so it
//! takes no locks. It never rewrites a record, and in read-only mode it
//! creates, truncates and writes nothing.

use std::path::Path;
use std::sync::Arc;

use super::catalog::Catalog;
use super::checkpoint::{self, Entry};
use super::dictionary::Dictionaries;
use super::file::SnapFile;
use super::frame::{self, FILE_HEADER_BYTES};
use crate::durable::{self, TMP_SUFFIX};
use crate::error::{Error, Result};

/// Name of the snapshot directory inside a store.
pub const SNAPSHOT_DIR: &str = "snapshots";

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

/// The store's starting state.
pub(crate) struct Recovered {
    pub catalog: Catalog,
    /// Above every stored record's sequence number.
    pub next_seq: u64,
    /// The file saves append to (the highest-numbered one), if any.
    pub active: Option<Arc<SnapFile>>,
    pub report: SnapshotRecovery,
}

/// What one file holds.
struct Indexed {
    /// Bytes of header and valid frames.
    len: u64,
    entries: Vec<Entry>,
    /// One past the highest sequence number seen (0 for none).
    next_seq: u64,
}

/// Opens (creating it unless `read_only`) the snapshot directory of the
/// store at `store_dir` and indexes it.
pub(crate) fn recover(store_dir: &Path, level: i32, keep: usize, read_only: bool) -> Result<Recovered> {
    let dir = store_dir.join(SNAPSHOT_DIR);
    if !dir.exists() {
        if read_only {
            let catalog = Catalog::new(keep, Dictionaries::default());
            return Ok(Recovered { catalog, next_seq: 0, active: None, report: SnapshotRecovery::default() });
        }
        std::fs::create_dir(&dir).map_err(|e| Error::io("create snapshot directory", &dir, e))?;
        durable::sync_dir(store_dir)?;
    }
    let nos = list_files(&dir, read_only)?;
    let mut catalog = Catalog::new(keep, Dictionaries::load(&dir, level)?);
    let mut report = SnapshotRecovery { files: nos.len(), ..SnapshotRecovery::default() };
    let mut next_seq = 0;
    let last = nos.last().copied();
    for no in nos {
        let (file, indexed) = index_file(&dir, no, Some(no) == last, read_only, &mut report)?;
        next_seq = next_seq.max(indexed.next_seq);
        catalog.add_file(file, indexed.len, indexed.entries);
    }
    let active = last.and_then(|no| catalog.file(no)).map(|f| Arc::clone(&f.file));
    report.records = catalog.records();
    Ok(Recovered { catalog, next_seq, active, report })
}

/// The snapshot file numbers in `dir`, ascending. Removes leftover
/// temporary files (unless `read_only`): they were never renamed into place.
fn list_files(dir: &Path, read_only: bool) -> Result<Vec<u64>> {
    let mut nos = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("list snapshot directory", dir, e))? {
        let entry = entry.map_err(|e| Error::io("list snapshot directory", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(no) = frame::parse_file_name(name) {
            nos.push(no);
        } else if name.ends_with(TMP_SUFFIX) && !read_only {
            // NOTE: an interrupted roll, compaction, checkpoint or dictionary install.
            let _ = std::fs::remove_file(entry.path());
        }
    }
    nos.sort_unstable();
    Ok(nos)
}

/// Opens and indexes snapshot file `no`; `active` if saves append to it.
fn index_file(
    dir: &Path,
    no: u64,
    active: bool,
    read_only: bool,
    report: &mut SnapshotRecovery,
) -> Result<(Arc<SnapFile>, Indexed)> {
    let file = SnapFile::open(dir, no, !read_only)?;
    let header = file.read_prefix(FILE_HEADER_BYTES as u64, "read snapshot file header")?;
    frame::check_file_header(&header, no).map_err(|r| r.at(&file.path, 0))?;
    if !active {
        if let Some(indexed) = from_checkpoint(dir, &file) {
            return Ok((Arc::new(file), indexed));
        }
    }
    let indexed = scan(&file, active, read_only, report)?;
    if !active {
        report.checkpoints_rebuilt += 1;
        if !read_only {
            // NOTE: best effort: without it the next open scans again.
            let _ = checkpoint::write(dir, no, &indexed.entries);
        }
    }
    Ok((Arc::new(file), indexed))
}

/// A sealed file's records from its checkpoint, or `None` to scan instead.
/// The checkpoint is used only if the file's last record decodes and is the
/// one the checkpoint names: its sequence number keeps `next_seq` above
/// every stored one. Nothing else of the file is read.
fn from_checkpoint(dir: &Path, file: &SnapFile) -> Option<Indexed> {
    let len = file.disk_len().ok()?;
    let entries = checkpoint::read(&dir.join(checkpoint::file_name(file.no)), len).ok()?;
    let next_seq = match entries.iter().max_by_key(|e| e.offset) {
        None => 0,
        Some(last) => {
            let bytes = file.read_at(last.offset, last.len as usize, "read snapshot").ok()?;
            let f = frame::decode_frame(&bytes).ok()??;
            let is_it = *f.aggregate_id == *last.aggregate_id && f.version == last.version;
            if !is_it || f.frame_len != bytes.len() {
                return None;
            }
            f.seq.checked_add(1)?
        }
    };
    Some(Indexed { len, entries, next_seq })
}

/// Every frame of a file, read whole. In the active file a bad or torn
/// last frame is cut off (it was never acknowledged: saves are synced one at
/// a time); anywhere else, or with a valid frame after it, it is corruption.
fn scan(file: &SnapFile, active: bool, read_only: bool, report: &mut SnapshotRecovery) -> Result<Indexed> {
    let bytes = file.read_prefix(file.disk_len()?, "read snapshot file")?;
    let path = &file.path;
    let mut offset = FILE_HEADER_BYTES;
    let mut indexed = Indexed { len: 0, entries: Vec::new(), next_seq: 0 };
    loop {
        let rest = bytes.get(offset..).unwrap_or(&[]);
        match frame::decode_frame(rest) {
            Ok(Some(f)) => {
                indexed.next_seq = indexed.next_seq.max(f.seq.saturating_add(1));
                let len = f.frame_len as u32;
                let version = f.version;
                indexed.entries.push(Entry {
                    aggregate_id: f.aggregate_id.into(),
                    version,
                    offset: offset as u64,
                    len,
                });
                offset += f.frame_len;
            }
            Ok(None) if rest.iter().all(|b| *b == 0) => break,
            Ok(None) | Err(_) if active && frame::valid_frame_after(rest).is_some() => {
                // Saves are synced one at a time, so only the last frame can be
                // torn: a bad frame with a good one after it is corruption.
                return Err(Error::corrupt(path, offset as u64, "bad snapshot frame followed by valid ones"));
            }
            Ok(None) | Err(_) if active => {
                cut_tail(file, offset as u64, bytes.len() as u64, read_only, report)?;
                break;
            }
            Ok(None) => return Err(Error::corrupt(path, offset as u64, "zeros inside a sealed snapshot file")),
            Err(reason) => return Err(reason.at(path, offset as u64)),
        }
    }
    debug_assert!(
        offset <= bytes.len() && indexed.entries.iter().all(|e| e.offset + u64::from(e.len) <= offset as u64)
    );
    indexed.len = offset as u64;
    Ok(indexed)
}

/// Cuts the torn tail `at..file_len` of the active file (it is not mapped,
/// so a plain truncate is enough) and syncs it.
fn cut_tail(file: &SnapFile, at: u64, file_len: u64, read_only: bool, report: &mut SnapshotRecovery) -> Result<()> {
    report.torn_bytes += file_len - at;
    if read_only {
        return Ok(());
    }
    let path = &file.path;
    file.file.set_len(at).map_err(|e| Error::io("truncate torn snapshot tail", path, e))?;
    file.file.sync_all().map_err(|e| Error::io("fsync snapshot file", path, e))
}
