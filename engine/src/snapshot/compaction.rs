//! Compaction of sealed snapshot files: which files are worth rewriting, and
//! the crash-safe rewrite of one.
//!
//! A file is compacted when at least half of its records are superseded
//! (beyond the last `snapshots_keep` of their aggregate). It is rewritten
//! under its own number (its live records, re-verified, in their order, into
//! a temporary file renamed over it), so file order stays log order: the
//! active file stays the highest-numbered one and, for one aggregate and
//! version, a later save always sorts after an earlier one. A file with no
//! live record is removed.
//!
//! Crash safety: the old checkpoint is removed (durably) first, then the new
//! contents are written, synced and renamed over the old file, then the
//! directory is synced, and only then is a new checkpoint written. A crash
//! leaves the old file or the new one (the rename is atomic), at worst
//! without a checkpoint, which the next open rebuilds by scanning.
//!
//! `Snapshots::forget` reuses the same rewrite for erasure: the catalog has
//! already dropped the forgotten aggregates, so they are not live and are
//! not copied, and a [`Recode`] hook re-encodes the frames compressed with a
//! retired dictionary; [`holds_any`] tells which files hold such frames
//! among their superseded ones (which the catalog does not know).
//!
//! This module never touches the active file, never changes the catalog
//! (the store swaps a result in under its short lock) and only runs under
//! the store's I/O mutex, which is what keeps the plan true while it runs.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use super::catalog::Catalog;
use super::checkpoint::{self, Entry};
use super::file::SnapFile;
use super::frame::{self, SnapFrame, CODEC_DICTIONARY, FILE_HEADER_BYTES};
use crate::durable;
use crate::error::{Error, Result};

/// One sealed file to compact and its live records, in file order.
pub(crate) struct Job {
    pub file: Arc<SnapFile>,
    pub live: Vec<Entry>,
}

/// Asked for each live frame a rewrite copies, with its file and offset:
/// `Ok(None)` copies it verbatim, `Ok(Some(frame))` writes that frame (the
/// same record, re-encoded) instead.
pub(crate) type Recode<'a> = &'a dyn Fn(&SnapFile, u64, &SnapFrame<'_>) -> Result<Option<Vec<u8>>>;

/// The [`Recode`] of plain compaction: every frame verbatim.
pub(crate) fn verbatim(_: &SnapFile, _: u64, _: &SnapFrame<'_>) -> Result<Option<Vec<u8>>> {
    Ok(None)
}

/// What compacting one file did.
pub(crate) enum Outcome {
    /// The file had no live record and is gone.
    Removed,
    /// The file was replaced by one holding only its live records.
    Rewritten {
        /// The new file, opened.
        file: Arc<SnapFile>,
        /// Its length.
        len: u64,
        /// The live records at their new offsets.
        moved: Vec<Entry>,
        /// How many of them the [`Recode`] re-encoded.
        recoded: u64,
    },
}

/// The sealed files (never `active_no`) with at least half their records superseded.
pub(crate) fn plan(catalog: &Catalog, active_no: Option<u64>) -> Vec<Job> {
    let live = catalog.live_counts();
    catalog
        .files()
        .filter(|f| Some(f.file.no) != active_no && f.records > 0)
        .filter(|f| live.get(&f.file.no).copied().unwrap_or(0) * 2 <= f.records)
        .map(|f| Job { file: Arc::clone(&f.file), live: catalog.entries_of(f.file.no) })
        .collect()
}

/// Compacts one file of the snapshot directory `dir`, crash-safely,
/// passing each live frame through `recode`.
pub(crate) fn run(dir: &Path, job: &Job, recode: Recode<'_>) -> Result<Outcome> {
    let no = job.file.no;
    let sidx = dir.join(checkpoint::file_name(no));
    // IMPORTANT: the old checkpoint goes (durably) before the file it
    // describes is replaced or removed; a new one is written only after.
    match std::fs::remove_file(&sidx) {
        Ok(()) => durable::sync_dir(dir)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("remove snapshot checkpoint", &sidx, e)),
    }
    if job.live.is_empty() {
        let path = &job.file.path;
        std::fs::remove_file(path).map_err(|e| Error::io("remove superseded snapshot file", path, e))?;
        durable::sync_dir(dir)?;
        return Ok(Outcome::Removed);
    }
    let (contents, moved, recoded) = copy_live(job, recode)?;
    durable::write_file(dir, &frame::file_name(no), &[&contents], "write compacted snapshots")?;
    let file = Arc::new(SnapFile::open(dir, no, false)?);
    // NOTE: best effort: a sealed file without checkpoint is scanned at the next open.
    let _ = checkpoint::write(dir, no, &moved);
    Ok(Outcome::Rewritten { file, len: contents.len() as u64, moved, recoded })
}

/// The new file's contents (header, then each live frame, re-verified and
/// copied verbatim unless `recode` re-encodes it), the live records at
/// their new offsets, and how many were re-encoded.
fn copy_live(job: &Job, recode: Recode<'_>) -> Result<(Vec<u8>, Vec<Entry>, u64)> {
    let path = &job.file.path;
    let mut contents = frame::file_header(job.file.no).to_vec();
    let mut moved = Vec::with_capacity(job.live.len());
    let mut recoded = 0;
    for e in &job.live {
        let bytes = job.file.read_at(e.offset, e.len as usize, "read snapshot for compaction")?;
        let decoded = frame::decode_frame(&bytes).map_err(|r| r.at(path, e.offset))?;
        let d = decoded
            .filter(|d| *d.aggregate_id == *e.aggregate_id && d.version == e.version && d.frame_len == bytes.len())
            .ok_or_else(|| Error::corrupt(path, e.offset, "snapshot frame is not the record its index names"))?;
        let new = recode(&job.file, e.offset, &d)?;
        recoded += u64::from(new.is_some());
        let bytes = new.as_deref().unwrap_or(&bytes);
        let len = u32::try_from(bytes.len())
            .map_err(|_| Error::corrupt(path, e.offset, "re-encoded snapshot frame is too large"))?;
        moved.push(Entry { offset: contents.len() as u64, len, ..e.clone() });
        contents.extend_from_slice(bytes);
    }
    debug_assert_eq!(
        contents.len() as u64,
        FILE_HEADER_BYTES as u64 + moved.iter().map(|e| u64::from(e.len)).sum::<u64>(),
        "a compacted file is its header and its live frames"
    );
    Ok((contents, moved, recoded))
}

/// Whether any frame in the first `len` bytes of `file` is a record of one of
/// `aggregate_ids` or names one of `dict_ids`. Reads the file whole: its
/// superseded frames are known to no index. Bytes that do not decode as
/// frames (zeros, damage) could hold anything, so they count as a yes: a
/// rewrite keeps only the live records, each re-verified.
pub(crate) fn holds_any(file: &SnapFile, len: u64, aggregate_ids: &HashSet<String>, dict_ids: &[u32]) -> Result<bool> {
    let bytes = file.read_prefix(len, "read snapshot file")?;
    let mut offset = FILE_HEADER_BYTES;
    while offset < bytes.len() {
        let Ok(Some(f)) = frame::decode_frame(bytes.get(offset..).unwrap_or(&[])) else { return Ok(true) };
        let named_dict = f.codec == CODEC_DICTIONARY && dict_ids.contains(&f.dict_id);
        if named_dict || aggregate_ids.contains(f.aggregate_id) {
            return Ok(true);
        }
        offset += f.frame_len;
    }
    Ok((bytes.len() as u64) < len)
}
