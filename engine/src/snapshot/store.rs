//! The snapshot store, [`Snapshots`]: saves, reads, file rolls, compaction
//! runs, dictionary installs, sync and verify, on top of the formats
//! (`frame`, `checkpoint`, `dictionary`), the in-memory `catalog`,
//! `compaction` and `recovery`. It never touches event segments.
//!
//! Locking. The writer thread asks [`Snapshots::latest_version`] inside every
//! group commit, so appends must never wait on snapshot I/O. The store is
//! internally synchronized (every method takes `&self`) with two locks,
//! always taken in this order and never the other way round:
//!
//! 1. `io: Mutex<IoState>` serializes everything that writes files or
//!    fsyncs: save, roll, compaction, dictionary install, forget, sync. It is held
//!    across I/O. Only its holder ever changes the catalog, so what the holder
//!    read from the catalog stays true until it lets go of the mutex.
//! 2. `catalog: RwLock<Catalog>` guards the in-memory index. It is held only
//!    for a look-up, an insert or a swap: never across I/O, never while
//!    waiting for anything else. `latest_version`, `read`, `stats` and
//!    `verify` take only this lock, briefly.
//!
//! Reads and compaction. A reader takes, under one catalog read lock, a
//! location and the `Arc` handle of the file it is in, then releases the
//! lock and reads through that handle. Compaction writes a new file and
//! renames it over the old path, then swaps the new handle and the new
//! locations into the catalog together under the write lock; a file with no
//! live record is unlinked. Either way the old inode stays alive while a
//! reader holds its handle, and its bytes never change: sealed files are
//! never written in place (a torn tail is cut only at open, before the
//! store is shared), and the active file only grows past every indexed
//! frame. So a (location, handle) pair taken together always names intact
//! bytes, at worst those of a snapshot superseded after the look-up, which
//! was the newest when the reader asked.
//!
//! Forget (erasure) is the same rewrite with the forgotten aggregates
//! dropped from the catalog first; a dictionary it retires stays in memory
//! (never in a file) so that such a pair naming it still decompresses.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::catalog::{Catalog, Loc};
use super::compaction::{self, Outcome};
use super::dictionary::{self, DictionaryInfo};
use super::error::SnapshotFormatError;
use super::file::SnapFile;
use super::frame::{self, SnapFrame, SnapMeta, CODEC_DICTIONARY, CODEC_RAW, CODEC_ZSTD, FILE_HEADER_BYTES};
use super::recovery::{self, SnapshotRecovery};
use crate::durable;
use crate::error::{Error, Result};

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

/// What only the holder of the I/O mutex may touch.
struct IoState {
    /// Sequence number of the next record.
    next_seq: u64,
    /// The file saves append to (the highest-numbered one).
    active: Option<Arc<SnapFile>>,
}

/// A kept snapshot as listed by [`crate::Store::snapshots`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnapshotEntry {
    /// The aggregate.
    pub aggregate_id: String,
    /// The aggregate version the state reflects.
    pub version: u64,
    /// The snapshot file holding it.
    pub path: PathBuf,
    /// Bytes of its frame in that file (compressed).
    pub stored_bytes: u64,
}

/// What [`Snapshots::forget`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ForgetReport {
    /// Snapshot files rewritten (or removed, when nothing live was left).
    pub files_rewritten: usize,
    /// Kept snapshots of the forgotten aggregates dropped from the index (their
    /// superseded copies in the files go too, uncounted).
    pub records_removed: u64,
    /// Snapshots of other aggregates recompressed because the dictionary
    /// they were compressed with was retired.
    pub records_recompressed: u64,
    /// Bytes by which the snapshot directory's files shrank (0 if they grew:
    /// a recompressed snapshot may take more room without its dictionary).
    pub bytes_reclaimed: u64,
    /// Dictionary files removed.
    pub dictionaries_removed: usize,
}

/// What one `forget` removes, and where the index says it is.
struct Target<'a> {
    /// The aggregates forgotten.
    aggregate_ids: &'a HashSet<String>,
    /// The retired dictionaries whose files are still there.
    dict_ids: &'a [u32],
    /// Files that held a kept snapshot of a forgotten aggregate.
    dropped_in: BTreeSet<u64>,
    /// Files holding a live record a retired dictionary may have compressed.
    prefixed_in: HashSet<u64>,
}

/// The snapshot store. Shared by the store handle and the writer thread;
/// see the module doc for its two locks.
pub(crate) struct Snapshots {
    dir: PathBuf,
    cfg: SnapshotConfig,
    io: Mutex<IoState>,
    catalog: RwLock<Catalog>,
    /// Test hook: the next save stops here, holding the I/O mutex.
    #[cfg(test)]
    save_gate: Mutex<Option<Arc<gate::Gate>>>,
    /// Test hook: `forget` fails ("crashes") after this many more durable steps.
    #[cfg(test)]
    forget_crash_after: Mutex<Option<usize>>,
}

impl Snapshots {
    /// Opens (or creates) the snapshot directory and indexes every file.
    pub(crate) fn open(store_dir: &Path, cfg: SnapshotConfig) -> Result<(Snapshots, SnapshotRecovery)> {
        let r = recovery::recover(store_dir, cfg.level, cfg.keep, cfg.read_only)?;
        let snapshots = Snapshots {
            dir: store_dir.join(recovery::SNAPSHOT_DIR),
            cfg,
            io: Mutex::new(IoState { next_seq: r.next_seq, active: r.active }),
            catalog: RwLock::new(r.catalog),
            #[cfg(test)]
            save_gate: Mutex::new(None),
            #[cfg(test)]
            forget_crash_after: Mutex::new(None),
        };
        Ok((snapshots, r.report))
    }

    fn lock_io(&self) -> MutexGuard<'_, IoState> {
        self.io.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The catalog, for a short in-memory read. Never hold it across I/O.
    fn catalog(&self) -> RwLockReadGuard<'_, Catalog> {
        self.catalog.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The catalog, for a short in-memory change, by the I/O mutex's holder.
    fn catalog_mut(&self) -> RwLockWriteGuard<'_, Catalog> {
        self.catalog.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The kept snapshots of aggregates whose id starts with `prefix`.
    pub(crate) fn list(&self, prefix: &str) -> Vec<SnapshotEntry> {
        let listed = self.catalog().list(prefix);
        let path = |no| self.dir.join(super::frame::file_name(no));
        listed
            .into_iter()
            .map(|(aggregate_id, version, no, len)| SnapshotEntry {
                aggregate_id,
                version,
                path: path(no),
                stored_bytes: u64::from(len),
            })
            .collect()
    }

    /// The newest snapshot version of an aggregate. Takes only the catalog
    /// read lock, briefly: never waits on a save, roll or compaction.
    pub(crate) fn latest_version(&self, aggregate_id: &str) -> Option<u64> {
        self.catalog().latest_version(aggregate_id)
    }

    /// Saves a snapshot (the caller has checked the version exists).
    /// Compression runs before the I/O mutex is taken, so saves of different
    /// aggregates compress in parallel and only their writes queue.
    pub(crate) fn save(
        &self,
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
        let (codec, dict_id, compressed) = self.compress(aggregate_id, data)?;
        let (codec, dict_id, payload) =
            if compressed.len() < data.len() { (codec, dict_id, &compressed[..]) } else { (CODEC_RAW, 0, data) };
        let mut io = self.lock_io();
        #[cfg(test)]
        self.pass_save_gate();
        let taken_at = crate::event::now_nanos();
        let meta = SnapMeta { seq: io.next_seq, version, schema_version, taken_at, raw_len, codec, dict_id };
        let frame = frame::encode_frame(meta, aggregate_id, payload);
        debug_assert_frame(&frame, meta, aggregate_id, payload);
        let len = u32::try_from(frame.len())
            .map_err(|_| Error::InvalidInput(format!("snapshot frame of {} bytes is too large", frame.len())))?;
        let (active, offset) = self.active_for(&mut io, u64::from(len))?;
        active.file.write_all_at(&frame, offset).map_err(|e| Error::io("write snapshot", &active.path, e))?;
        if self.cfg.sync {
            active.file.sync_data().map_err(|e| Error::io("fdatasync snapshot", &active.path, e))?;
        }
        io.next_seq += 1;
        self.catalog_mut().appended(aggregate_id, Loc { version, file_no: active.no, offset, len });
        Ok(SnapshotInfo {
            raw_bytes: data.len() as u64,
            stored_bytes: frame.len() as u64,
            payload_bytes: payload.len() as u64,
        })
    }

    /// `(codec, dictionary id, compressed)`: with the aggregate's dictionary
    /// if one applies, else plain zstd.
    fn compress(&self, aggregate_id: &str, data: &[u8]) -> Result<(u8, u32, Vec<u8>)> {
        let dict = self.catalog().dicts.for_aggregate(aggregate_id).map(|(id, d)| (id, Arc::clone(d)));
        let (codec, dict_id, compressed) = match dict {
            Some((id, d)) => (CODEC_DICTIONARY, id, d.compress(data)),
            None => (CODEC_ZSTD, 0, zstd::bulk::compress(data, self.cfg.level)),
        };
        let compressed = compressed.map_err(|e| Error::io("compress snapshot", &self.dir, e))?;
        Ok((codec, dict_id, compressed))
    }

    /// The file a frame of `frame_bytes` goes into and the offset it goes
    /// at, rolling to a new file first if the active one is full.
    fn active_for(&self, io: &mut IoState, frame_bytes: u64) -> Result<(Arc<SnapFile>, u64)> {
        let active_len = |io: &IoState| {
            let active = io.active.as_ref()?;
            self.catalog().file(active.no).map(|f| (Arc::clone(active), f.len))
        };
        let full = match active_len(io) {
            None => true,
            Some((_, len)) => len > FILE_HEADER_BYTES as u64 && len + frame_bytes > self.cfg.file_bytes,
        };
        if full {
            self.roll(io)?;
        }
        active_len(io).ok_or_else(|| Error::corrupt(&self.dir, 0, "no snapshot file"))
    }

    /// Seals the active file (synced, checkpointed) and starts the next one,
    /// then compacts what the seal made worth it.
    fn roll(&self, io: &mut IoState) -> Result<()> {
        if let Some(old) = &io.active {
            old.file.sync_all().map_err(|e| Error::io("fsync snapshot file", &old.path, e))?;
            let entries = self.catalog().entries_of(old.no);
            // NOTE: best effort: a sealed file without checkpoint is scanned at the next open.
            let _ = super::checkpoint::write(&self.dir, old.no, &entries);
        }
        let no = self.catalog().next_file_no();
        let header = frame::file_header(no);
        durable::write_file(&self.dir, &frame::file_name(no), &[&header], "create snapshot file")?;
        let file = Arc::new(SnapFile::open(&self.dir, no, true)?);
        self.catalog_mut().add_file(Arc::clone(&file), FILE_HEADER_BYTES as u64, Vec::new());
        io.active = Some(file);
        self.compact_locked(io)?;
        Ok(())
    }

    /// Compacts sealed files whose records are mostly superseded (see
    /// `compaction`). Returns the number of files compacted.
    pub(crate) fn compact(&self) -> Result<usize> {
        let io = self.lock_io();
        if !self.cfg.sync {
            // IMPORTANT: the saves that supersede what compaction drops must be
            // durable before it goes (in `Sync` mode each one already is).
            sync_active(&io)?;
        }
        self.compact_locked(&io)
    }

    fn compact_locked(&self, io: &IoState) -> Result<usize> {
        let jobs = compaction::plan(&self.catalog(), io.active.as_ref().map(|a| a.no));
        for job in &jobs {
            // Slow part (reads, writes, fsyncs) with no catalog lock held.
            let outcome = compaction::run(&self.dir, job, &compaction::verbatim)?;
            let mut catalog = self.catalog_mut();
            match outcome {
                Outcome::Removed => catalog.remove_file(job.file.no),
                Outcome::Rewritten { file, len, moved, .. } => catalog.replace_file(file, len, &moved),
            }
        }
        Ok(jobs.len())
    }

    /// Removes every snapshot record of the given aggregates from every
    /// snapshot file (sealed and active), crash-safely; afterwards no
    /// snapshot file (nor `.sidx` checkpoint, nor dictionary) holds any byte
    /// of their ids or states. Returns what it did.
    ///
    /// Reads stop finding those aggregates as soon as it starts. Every
    /// dictionary whose prefix covers one of them is retired (it may have
    /// been trained on their states): the records of other aggregates
    /// compressed with it are recompressed (with the dictionary that now
    /// applies to them, if any, else plain zstd, else raw), then its file is
    /// removed, and later saves no longer use it. Saves wait while it runs
    /// (it holds the I/O mutex, as compaction does); reads and appends do not.
    ///
    /// Crash safety: killed at any moment, a reopen finds every other
    /// aggregate's kept snapshots intact (each file is replaced atomically by
    /// one holding the same records, and a dictionary file goes only after
    /// every file naming it was replaced); a forgotten aggregate's snapshot
    /// may reappear only if this had not returned. See `docs/FORMAT.md`.
    // NOTE: names the report by its re-export, the path its callers use.
    pub(crate) fn forget(&self, aggregate_ids: &HashSet<String>) -> Result<super::ForgetReport> {
        if self.cfg.read_only {
            return Err(Error::ReadOnly { path: self.dir.clone() });
        }
        let mut io = self.lock_io();
        if !self.cfg.sync {
            // IMPORTANT: the saves that supersede what the rewrites drop must
            // be durable before they go (in `Sync` mode each one already is).
            sync_active(&io)?;
        }
        let bytes_before = self.dir_bytes()?;
        // Step 1, memory only: reads stop finding the aggregates, saves stop
        // using the dictionaries that may hold their bytes.
        let dropped = {
            let mut catalog = self.catalog_mut();
            catalog.dicts.retire_covering(aggregate_ids);
            catalog.forget(aggregate_ids)
        };
        let retired = self.catalog().dicts.pending_removal();
        if aggregate_ids.is_empty() && retired.is_empty() {
            return Ok(ForgetReport::default());
        }
        let mut report = ForgetReport { records_removed: dropped.len() as u64, ..ForgetReport::default() };
        let dict_ids: Vec<u32> = retired.iter().map(|(id, _)| *id).collect();
        let prefixes: Vec<String> = retired.into_iter().map(|(_, p)| p).collect();
        let target = Target {
            aggregate_ids,
            dict_ids: &dict_ids,
            dropped_in: dropped.iter().map(|l| l.file_no).collect(),
            prefixed_in: self.catalog().files_with_prefixes(&prefixes),
        };
        // Step 2: an active file that holds any is sealed, to be rewritten below.
        if let Some(active) = io.active.clone() {
            let live_bytes = self.catalog().live_bytes();
            if self.must_rewrite(active.no, &target, &live_bytes)? {
                self.roll(&mut io)?;
                self.forget_step()?;
            }
        }
        // Step 3: each sealed file that holds any is rewritten without them.
        let active_no = io.active.as_ref().map(|a| a.no);
        let (sealed, live_bytes) = {
            let catalog = self.catalog();
            let sealed: Vec<u64> = catalog.files().map(|f| f.file.no).filter(|no| Some(*no) != active_no).collect();
            (sealed, catalog.live_bytes())
        };
        for no in sealed {
            if self.must_rewrite(no, &target, &live_bytes)? {
                report.records_recompressed += self.rewrite_without(no, &dict_ids)?;
                report.files_rewritten += 1;
                self.forget_step()?;
            }
        }
        // Step 4, only now that no file names them: the retired dictionaries' files go.
        for id in dict_ids {
            dictionary::remove(&self.dir, id)?;
            self.catalog_mut().dicts.file_removed(id);
            report.dictionaries_removed += 1;
            self.forget_step()?;
        }
        report.bytes_reclaimed = bytes_before.saturating_sub(self.dir_bytes()?);
        Ok(report)
    }

    /// Whether file `no` must be rewritten for `target`. Checked from the
    /// cheapest evidence up: a live record that a retired dictionary may
    /// have compressed; no byte beyond the live frames (then nothing else is
    /// there); a forgotten record the index had there; and only then the
    /// file read whole, for superseded frames (known to no index).
    fn must_rewrite(&self, no: u64, target: &Target<'_>, live_bytes: &HashMap<u64, u64>) -> Result<bool> {
        let (file, len) = match self.catalog().file(no) {
            Some(f) => (Arc::clone(&f.file), f.len),
            None => return Ok(false),
        };
        if target.prefixed_in.contains(&no) {
            return Ok(true);
        }
        // NOTE: a failed save may have left bytes past `len` on disk.
        if file.disk_len()? != len {
            return Ok(true);
        }
        if len == FILE_HEADER_BYTES as u64 + live_bytes.get(&no).copied().unwrap_or(0) {
            return Ok(false);
        }
        if target.dropped_in.contains(&no) {
            return Ok(true);
        }
        compaction::holds_any(&file, len, target.aggregate_ids, target.dict_ids)
    }

    /// Rewrites sealed file `no` with only its live records (the forgotten
    /// aggregates are no longer among them), re-encoding those compressed
    /// with one of `dict_ids`; returns how many it re-encoded.
    fn rewrite_without(&self, no: u64, dict_ids: &[u32]) -> Result<u64> {
        let job = {
            let catalog = self.catalog();
            let Some(f) = catalog.file(no) else { return Ok(0) };
            compaction::Job { file: Arc::clone(&f.file), live: catalog.entries_of(no) }
        };
        let recode = |file: &SnapFile, offset: u64, f: &SnapFrame<'_>| self.recompress(file, offset, f, dict_ids);
        // Slow part (reads, writes, fsyncs) with no catalog lock held.
        let outcome = compaction::run(&self.dir, &job, &recode)?;
        let mut catalog = self.catalog_mut();
        match outcome {
            Outcome::Removed => {
                catalog.remove_file(no);
                Ok(0)
            }
            Outcome::Rewritten { file, len, moved, recoded } => {
                catalog.replace_file(file, len, &moved);
                Ok(recoded)
            }
        }
    }

    /// The frame `f` (at `offset` of `file`) recompressed without the
    /// retired dictionaries `dict_ids`, if it names one: the same record
    /// (sequence number, version, schema, time, state), checked to
    /// decompress to the same state before it is written.
    fn recompress(&self, file: &SnapFile, offset: u64, f: &SnapFrame<'_>, dict_ids: &[u32]) -> Result<Option<Vec<u8>>> {
        if f.codec != CODEC_DICTIONARY || !dict_ids.contains(&f.dict_id) {
            return Ok(None);
        }
        let data = self.decompress(f).map_err(|r| r.at(&file.path, offset))?;
        let (codec, dict_id, compressed) = self.compress(f.aggregate_id, &data)?;
        debug_assert!(!dict_ids.contains(&dict_id), "a retired dictionary is never chosen");
        let (codec, dict_id, payload) =
            if compressed.len() < data.len() { (codec, dict_id, &compressed[..]) } else { (CODEC_RAW, 0, &data[..]) };
        let meta = SnapMeta { codec, dict_id, ..f.meta() };
        let frame = frame::encode_frame(meta, f.aggregate_id, payload);
        // IMPORTANT: the other side of the disk: the new frame must give back
        // the very state, or the old one stays.
        let same = frame::decode_frame(&frame)
            .ok()
            .flatten()
            .and_then(|g| self.decompress(&g).ok())
            .is_some_and(|back| back == data);
        if !same {
            return Err(Error::corrupt(&file.path, offset, "recompressed snapshot does not read back"));
        }
        Ok(Some(frame))
    }

    /// Bytes of the snapshot directory's files.
    fn dir_bytes(&self) -> Result<u64> {
        let list = std::fs::read_dir(&self.dir).map_err(|e| Error::io("list snapshot directory", &self.dir, e))?;
        let mut total = 0;
        for entry in list {
            let entry = entry.map_err(|e| Error::io("list snapshot directory", &self.dir, e))?;
            // NOTE: a file gone between listing and stat counts as empty.
            total += entry.metadata().map_or(0, |m| m.len());
        }
        Ok(total)
    }

    /// A point between two durable steps of `forget`: where tests simulate a crash.
    fn forget_step(&self) -> Result<()> {
        #[cfg(test)]
        {
            let mut left = self.forget_crash_after.lock().unwrap_or_else(|p| p.into_inner());
            match *left {
                Some(0) => return Err(Error::InvalidInput("simulated crash in forget".into())),
                Some(n) => *left = Some(n - 1),
                None => {}
            }
        }
        Ok(())
    }

    /// Reads and decompresses the newest snapshot at or before `at_or_before`.
    pub(crate) fn read(&self, aggregate_id: &str, at_or_before: u64) -> Result<Option<Snapshot>> {
        // NOTE: location and file handle come from one look-up; the lock is
        // released before the read (see the module doc for why that is safe).
        let found = self.catalog().find(aggregate_id, at_or_before);
        let Some((loc, file)) = found else { return Ok(None) };
        let file = file.ok_or_else(|| Error::corrupt(&self.dir, 0, "indexed snapshot file missing"))?;
        let bytes = file.read_at(loc.offset, loc.len as usize, "read snapshot")?;
        let d = frame::decode_frame(&bytes)
            .map_err(|r| r.at(&file.path, loc.offset))?
            .ok_or_else(|| Error::corrupt(&file.path, loc.offset, "no snapshot frame here"))?;
        if d.aggregate_id != aggregate_id || d.version != loc.version || d.frame_len != bytes.len() {
            return Err(Error::corrupt(&file.path, loc.offset, "snapshot frame is for another aggregate or version"));
        }
        let data = self.decompress(&d).map_err(|r| r.at(&file.path, loc.offset))?;
        debug_assert!(data.len() == d.raw_len as usize && d.raw_len <= self.cfg.max_bytes, "validated size");
        Ok(Some(Snapshot {
            aggregate_id: aggregate_id.to_string(),
            version: d.version,
            schema_version: d.schema_version,
            taken_at: d.taken_at,
            data,
        }))
    }

    /// Decompresses a verified frame, with the store's dictionary for codec 2.
    fn decompress(&self, frame: &SnapFrame<'_>) -> std::result::Result<Vec<u8>, SnapshotFormatError> {
        let dict = match frame.codec {
            CODEC_DICTIONARY => self.catalog().dicts.get(frame.dict_id).cloned(),
            _ => None,
        };
        frame::decompress_with(frame, self.cfg.max_bytes, dict.as_deref())
    }

    /// Installs a trained dictionary for aggregates whose id starts with
    /// `prefix`: it is durable first, then later saves of those aggregates use it.
    pub(crate) fn install_dictionary(&self, prefix: &str, dict: &[u8]) -> Result<DictionaryInfo> {
        let _io = self.lock_io();
        let id = self.catalog().dicts.next_id()?;
        let prepared = dictionary::persist(&self.dir, id, prefix, dict, self.cfg.level)?;
        self.catalog_mut().dicts.insert(id, prepared);
        Ok(DictionaryInfo { id, prefix: prefix.to_string(), bytes: dict.len() })
    }

    /// Number of trained dictionaries.
    pub(crate) fn dictionaries(&self) -> usize {
        self.catalog().dicts.len()
    }

    /// Files, records indexed, and bytes on disk.
    pub(crate) fn stats(&self) -> (u64, u64, u64) {
        let c = self.catalog();
        (c.files().count() as u64, c.records(), c.files().map(|f| f.len).sum())
    }

    /// Syncs the active file.
    pub(crate) fn sync(&self) -> Result<()> {
        sync_active(&self.lock_io())
    }

    /// Decodes every frame of every snapshot file (checksum, lengths, and a
    /// capped decompression); returns the records checked and the problems.
    pub(crate) fn verify(&self) -> (u64, Vec<(PathBuf, u64, String)>) {
        let files: Vec<(Arc<SnapFile>, u64)> = self.catalog().files().map(|f| (Arc::clone(&f.file), f.len)).collect();
        let mut checked = 0u64;
        let mut problems = Vec::new();
        for (file, len) in files {
            match file.read_prefix(len, "read snapshot file") {
                Ok(bytes) => checked += self.verify_frames(&file.path, &bytes, len, &mut problems),
                Err(e) => problems.push((file.path.clone(), 0, format!("cannot read: {e}"))),
            }
        }
        (checked, problems)
    }

    /// Checks the frames of one file's `bytes` up to `len`; returns how many.
    fn verify_frames(&self, path: &Path, bytes: &[u8], len: u64, problems: &mut Vec<(PathBuf, u64, String)>) -> u64 {
        let mut checked = 0;
        let mut offset = FILE_HEADER_BYTES;
        while (offset as u64) < len {
            match frame::decode_frame(bytes.get(offset..).unwrap_or(&[])) {
                Ok(Some(frame)) => {
                    if let Err(r) = self.decompress(&frame) {
                        problems.push((path.to_path_buf(), offset as u64, r.to_string()));
                    }
                    checked += 1;
                    offset += frame.frame_len;
                }
                Ok(None) => break,
                Err(r) => {
                    problems.push((path.to_path_buf(), offset as u64, r.to_string()));
                    break;
                }
            }
        }
        checked
    }
}

/// `fdatasync`s the active file, if any (the caller holds the I/O mutex).
fn sync_active(io: &IoState) -> Result<()> {
    if let Some(f) = &io.active {
        f.file.sync_data().map_err(|e| Error::io("fdatasync snapshot", &f.path, e))?;
    }
    Ok(())
}

/// Asserts, before a frame goes to disk, that it reads back as what it claims.
fn debug_assert_frame(frame: &[u8], meta: SnapMeta, aggregate_id: &str, payload: &[u8]) {
    if cfg!(debug_assertions) {
        let d = frame::decode_frame(frame);
        let ok = matches!(&d, Ok(Some(d)) if d.meta() == meta && d.aggregate_id == aggregate_id
            && d.payload == payload && d.frame_len == frame.len());
        debug_assert!(ok, "snapshot frame for {aggregate_id:?} v{} does not read back", meta.version);
    }
}

#[cfg(test)]
pub(crate) mod gate {
    //! A test-only barrier that stops a save while it holds the I/O mutex.

    use std::sync::{Condvar, Mutex};

    /// `entered` once a save reached it; the save waits for `released`.
    #[derive(Default)]
    pub(crate) struct Gate {
        state: Mutex<(bool, bool)>,
        cv: Condvar,
    }

    impl Gate {
        /// Called by the save: says it is here, then waits for release.
        pub(super) fn pass(&self) {
            let mut s = self.state.lock().unwrap();
            s.0 = true;
            self.cv.notify_all();
            while !s.1 {
                s = self.cv.wait(s).unwrap();
            }
        }

        /// Waits until a save is stopped at the gate.
        pub(crate) fn wait_entered(&self) {
            let mut s = self.state.lock().unwrap();
            while !s.0 {
                s = self.cv.wait(s).unwrap();
            }
        }

        /// Lets the save go on.
        pub(crate) fn release(&self) {
            self.state.lock().unwrap().1 = true;
            self.cv.notify_all();
        }
    }
}

#[cfg(test)]
impl Snapshots {
    /// Makes the next save stop, holding the I/O mutex, until the returned
    /// gate is released.
    pub(crate) fn arm_save_gate(&self) -> Arc<gate::Gate> {
        let g = Arc::new(gate::Gate::default());
        *self.save_gate.lock().unwrap() = Some(Arc::clone(&g));
        g
    }

    fn pass_save_gate(&self) {
        let armed = self.save_gate.lock().unwrap().take();
        if let Some(g) = armed {
            g.pass();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::{ExpectedVersion, NewEvent, Options, Store};

    /// Deadlock guard only: a correct store answers in microseconds, so this
    /// bound never decides a passing run; it turns a hang into a failure.
    const DEADLOCK_GUARD: Duration = Duration::from_secs(120);

    fn event(i: u8) -> NewEvent {
        NewEvent::new([i; 16], "T", &b"x"[..])
    }

    #[test]
    fn an_append_completes_while_a_snapshot_save_holds_the_io_mutex() {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options {
            segment_bytes: crate::SEGMENT_BYTES_MIN,
            max_event_bytes: 4096,
            prepare_next_segment: false,
            snapshot_every: Some(2),
            ..Options::default()
        };
        let store = Store::open(dir.path(), opts).unwrap();
        store.append("acct", ExpectedVersion::NoStream, vec![event(1), event(2)]).unwrap();
        let gate = store.shared().snapshots.arm_save_gate();
        let saver = {
            let store = store.clone();
            std::thread::spawn(move || store.save_snapshot("acct", 1, crate::SchemaVersion(7), b"state at v1"))
        };
        // The save is now stopped inside the snapshot I/O mutex, mid-save (the
        // old design held the store-wide snapshot lock for writing here).
        gate.wait_entered();
        let (tx, rx) = mpsc::channel();
        let appender = {
            let store = store.clone();
            std::thread::spawn(move || tx.send(store.append("acct", ExpectedVersion::Exact(1), vec![event(3)])))
        };
        let appended = rx.recv_timeout(DEADLOCK_GUARD);
        if appended.is_err() {
            gate.release();
        }
        let appended = appended.expect("an append waited for a snapshot save").unwrap();
        // `snapshot_due` was computed by the writer thread from the catalog.
        assert!(appended.snapshot_due && appended.last_version == 2);
        // Reads and stats take only the catalog lock, too.
        assert_eq!(store.latest_snapshot("acct").unwrap(), None);
        assert_eq!(store.stats().snapshots, 0);
        gate.release();
        appender.join().unwrap().unwrap();
        let info = saver.join().unwrap().unwrap();
        assert_eq!(info.raw_bytes, 11);
        let snap = store.latest_snapshot("acct").unwrap().unwrap();
        assert_eq!((snap.version, snap.schema_version, &snap.data[..]), (1, 7, &b"state at v1"[..]));
        assert_eq!(store.shared().snapshots.latest_version("acct"), Some(1));
        store.close().unwrap();
    }

    /// Incompressible bytes, so each frame has a known size.
    fn noise(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn a_reader_holding_a_location_still_reads_it_after_compaction_replaced_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cfg =
            SnapshotConfig { file_bytes: 4096, keep: 1, level: 1, max_bytes: 1 << 20, sync: false, read_only: false };
        let (s, _) = Snapshots::open(dir.path(), cfg).unwrap();
        // Four 976-byte frames fill file 0: "b" three times (two superseded), then "a".
        for v in 0..3 {
            s.save("b", v, 1, &noise(v, 900)).unwrap();
        }
        s.save("a", 0, 1, &noise(9, 900)).unwrap();
        // A reader looks "a" up (location and handle together) and is then descheduled.
        let (old_loc, old_file) = s.catalog().find("a", u64::MAX).unwrap();
        let old_file = old_file.unwrap();
        // The next save rolls to file 1, which seals file 0 and compacts it:
        // half its records are superseded, so it is rewritten over its path.
        s.save("c", 0, 1, &noise(10, 900)).unwrap();
        let (new_loc, new_file) = s.catalog().find("a", u64::MAX).unwrap();
        let new_file = new_file.unwrap();
        assert_eq!((old_loc.file_no, new_loc.file_no), (0, 0));
        assert!(new_loc.offset < old_loc.offset && !Arc::ptr_eq(&old_file, &new_file), "file 0 was compacted");
        let on_disk = std::fs::metadata(&old_file.path).unwrap().len();
        assert!(on_disk <= old_loc.offset, "the path no longer holds the old location");
        // The old handle still reads the old, unchanged file.
        let bytes = old_file.read_at(old_loc.offset, old_loc.len as usize, "read").unwrap();
        let f = frame::decode_frame(&bytes).unwrap().unwrap();
        assert_eq!((f.aggregate_id, f.version, f.payload), ("a", 0, &noise(9, 900)[..]));
        assert_eq!(s.read("a", u64::MAX).unwrap().unwrap().data, noise(9, 900));
        // And the compacted store reopens to the same state.
        drop(s);
        let (s, rec) = Snapshots::open(dir.path(), cfg).unwrap();
        assert_eq!((rec.files, rec.records), (2, 3));
        assert_eq!(s.read("a", u64::MAX).unwrap().unwrap().data, noise(9, 900));
        assert_eq!(s.read("b", u64::MAX).unwrap().unwrap().data, noise(2, 900));
    }
}

#[cfg(test)]
mod forget_tests {
    //! `Snapshots::forget`: erasure leaves no byte of the aggregate in any
    //! file, keeps everything else, and survives a crash between any two of
    //! its durable steps.

    use std::collections::{BTreeMap, HashSet};
    use std::path::Path;

    use super::*;

    const GONE: &str = "acct-gone";
    const MARKER: &[u8] = b"Zq9-PII-MARKER-7fK2wX";
    const OTHERS: [&str; 3] = ["acct-a", "acct-b", "user-x"];

    fn cfg() -> SnapshotConfig {
        SnapshotConfig { file_bytes: 4096, keep: 2, level: 1, max_bytes: 1 << 20, sync: true, read_only: false }
    }

    /// Incompressible bytes (stored raw), with the marker in the middle for `GONE`.
    fn raw_state(id: &str, v: u64) -> Vec<u8> {
        let mut x = (v + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ id.len() as u64 ^ u64::from(id.as_bytes()[5]);
        let mut b: Vec<u8> = (0..300)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        if id == GONE {
            b.splice(150..150, MARKER.iter().copied());
        }
        b
    }

    /// A small JSON state (compressible, and what dictionaries are for).
    fn json_state(id: &str, v: u64) -> Vec<u8> {
        let owner = if id == GONE { String::from_utf8_lossy(MARKER).into_owned() } else { format!("owner of {id}") };
        format!(
            r#"{{"id":"{id}","owner":"{owner}","balance":{},"currency":"EUR","status":"open","limits":[100,200,300]}}"#,
            v * 7
        )
        .into_bytes()
    }

    fn state(id: &str, v: u64) -> Vec<u8> {
        if v.is_multiple_of(2) {
            raw_state(id, v)
        } else {
            json_state(id, v)
        }
    }

    /// Saves versions `from..to` of every aggregate, `GONE` last each round.
    fn save_round(s: &Snapshots, from: u64, to: u64) {
        for v in from..to {
            for id in OTHERS.iter().copied().chain([GONE]) {
                s.save(id, v, 3, &state(id, v)).unwrap();
            }
        }
    }

    /// A store whose sealed files, active file and dictionary all hold `GONE`:
    /// raw and zstd records, then (after a dictionary for `acct-` trained on
    /// states that carry the marker) dictionary-compressed ones, superseded
    /// and kept, the last of them in the active file.
    fn populate(dir: &Path) -> Snapshots {
        let (s, _) = Snapshots::open(dir, cfg()).unwrap();
        // A sealed file that compaction leaves alone (mostly live records of
        // aggregates saved once), holding superseded frames of `GONE`.
        for k in 0..6u64 {
            let id = format!("user-{k}");
            s.save(&id, 0, 3, &raw_state(&id, k)).unwrap();
            if k % 3 == 0 {
                s.save(GONE, k, 3, &raw_state(GONE, k)).unwrap();
            }
        }
        save_round(&s, 6, 8);
        let samples: Vec<Vec<u8>> =
            (0..64).flat_map(|v| [json_state(GONE, v), json_state("acct-a", v), json_state("acct-b", v)]).collect();
        let refs: Vec<&[u8]> = samples.iter().map(|v| &v[..]).collect();
        let dict = dictionary::Dictionaries::train("acct-", &refs, 1024).unwrap();
        s.install_dictionary("acct-", &dict).unwrap();
        save_round(&s, 8, 14);
        s
    }

    /// Every file of the snapshot directory, by name.
    fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(dir.join(recovery::SNAPSHOT_DIR))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name().into_string().unwrap(), std::fs::read(e.path()).unwrap())
            })
            .collect()
    }

    fn occurs(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    /// The files holding `needle`.
    fn holding(dir: &Path, needle: &[u8]) -> Vec<String> {
        files(dir).into_iter().filter(|(_, b)| occurs(b, needle)).map(|(n, _)| n).collect()
    }

    fn assert_gone_everywhere(dir: &Path, s: &Snapshots) {
        assert_eq!(holding(dir, MARKER), Vec::<String>::new(), "files still holding the marker");
        assert_eq!(holding(dir, GONE.as_bytes()), Vec::<String>::new(), "files still holding the aggregate id");
        assert_eq!((s.read(GONE, u64::MAX).unwrap(), s.latest_version(GONE)), (None, None));
        assert!(s.list("acct-g").is_empty());
    }

    /// Every kept snapshot of the other aggregates, read back whole.
    fn kept_others(s: &Snapshots) -> Vec<Snapshot> {
        let kept: Vec<Snapshot> = s
            .list("")
            .into_iter()
            .filter(|e| e.aggregate_id != GONE)
            .map(|e| s.read(&e.aggregate_id, e.version).unwrap().unwrap())
            .collect();
        assert_eq!(kept.len(), 6 + OTHERS.len() * cfg().keep);
        kept
    }

    fn assert_sound(s: &Snapshots) {
        let (checked, problems) = s.verify();
        assert!(problems.is_empty() && checked > 0, "{problems:?}");
    }

    fn gone() -> HashSet<String> {
        HashSet::from([GONE.to_string()])
    }

    #[test]
    fn forget_leaves_no_byte_of_the_aggregate_in_any_file_and_keeps_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let s = populate(dir.path());
        let before = kept_others(&s);
        // The test can fail: the marker is in raw records (sealed and active
        // files), in a checkpoint's ids and in the trained dictionary.
        let marked = holding(dir.path(), MARKER);
        assert!(marked.iter().any(|n| n.ends_with(".zdict")), "the dictionary holds the marker: {marked:?}");
        assert!(marked.iter().filter(|n| n.ends_with(".snap")).count() >= 2, "{marked:?}");
        let active = s.lock_io().active.as_ref().map(|a| a.path.clone()).unwrap();
        assert!(occurs(&std::fs::read(&active).unwrap(), GONE.as_bytes()), "the active file holds it");
        assert!(holding(dir.path(), GONE.as_bytes()).iter().any(|n| n.ends_with(".sidx")));
        assert!(s.read("acct-a", 13).unwrap().is_some() && s.dictionaries() == 1);

        let report = s.forget(&gone()).unwrap();
        assert_eq!((report.records_removed, report.dictionaries_removed), (2, 1), "{report:?}");
        assert!(report.files_rewritten >= 2 && report.records_recompressed >= 2, "{report:?}");
        assert!(report.bytes_reclaimed > 0, "{report:?}");
        assert_gone_everywhere(dir.path(), &s);
        assert_eq!(kept_others(&s), before);
        assert_sound(&s);
        assert_eq!(s.dictionaries(), 0);
        // Saves go on (without the retired dictionary), and a second forget has nothing to do.
        s.save("acct-a", 14, 3, &json_state("acct-a", 14)).unwrap();
        let again = s.forget(&gone()).unwrap();
        assert_eq!((again.files_rewritten, again.records_removed, again.dictionaries_removed), (0, 0, 0));
        drop(s);

        let (s, _) = Snapshots::open(dir.path(), cfg()).unwrap();
        assert_gone_everywhere(dir.path(), &s);
        let after = kept_others(&s);
        assert_eq!(
            after.iter().filter(|k| k.aggregate_id != "acct-a").collect::<Vec<_>>(),
            before.iter().filter(|k| k.aggregate_id != "acct-a").collect::<Vec<_>>()
        );
        assert_eq!(s.read("acct-a", u64::MAX).unwrap().unwrap().data, json_state("acct-a", 14));
        assert_eq!(
            s.read("acct-a", 13).unwrap(),
            before.iter().find(|k| k.aggregate_id == "acct-a" && k.version == 13).cloned()
        );
        assert_sound(&s);
    }

    #[test]
    fn forget_of_an_aggregate_without_snapshots_touches_no_file_and_read_only_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let s = populate(dir.path());
        let before = files(dir.path());
        let report = s.forget(&HashSet::from(["user-none".to_string()])).unwrap();
        assert_eq!(report, ForgetReport::default());
        assert_eq!(files(dir.path()), before);
        drop(s);
        let (s, _) = Snapshots::open(dir.path(), SnapshotConfig { read_only: true, ..cfg() }).unwrap();
        assert!(matches!(s.forget(&gone()), Err(Error::ReadOnly { .. })));
        assert_eq!(files(dir.path()), before);
    }

    #[test]
    fn a_reader_holding_a_record_that_forget_recompressed_still_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = populate(dir.path());
        // A record compressed with the dictionary, in a sealed file.
        let (loc, file) = s.catalog().find("acct-a", 13).unwrap();
        let file = file.unwrap();
        let old = file.read_at(loc.offset, loc.len as usize, "read").unwrap();
        assert_eq!(frame::decode_frame(&old).unwrap().unwrap().codec, CODEC_DICTIONARY);
        s.forget(&gone()).unwrap();
        // The old handle still reads the old frame, and the retired
        // dictionary (gone from disk) still decompresses it.
        let f = frame::decode_frame(&old).unwrap().unwrap();
        assert_eq!(s.decompress(&f).unwrap(), json_state("acct-a", 13));
        let (new_loc, _) = s.catalog().find("acct-a", 13).unwrap();
        assert_ne!(new_loc, loc);
        assert_eq!(s.read("acct-a", 13).unwrap().unwrap().data, json_state("acct-a", 13));
    }

    #[test]
    fn forget_runs_while_other_threads_save_and_read() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(populate(dir.path()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = OTHERS
            .iter()
            .map(|id| {
                let (s, stop) = (Arc::clone(&s), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut reads = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) || reads == 0 {
                        let snap = s.read(id, 13).unwrap().unwrap();
                        assert_eq!(snap.data, state(id, 13));
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        let saver = {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                for v in 100..140 {
                    s.save("user-y", v, 1, &json_state("user-y", v)).unwrap();
                }
            })
        };
        let report = s.forget(&gone()).unwrap();
        saver.join().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for r in readers {
            assert!(r.join().unwrap() > 0);
        }
        assert_eq!(report.dictionaries_removed, 1);
        assert_gone_everywhere(dir.path(), &s);
        assert_eq!(s.read("user-y", u64::MAX).unwrap().unwrap().data, json_state("user-y", 139));
        assert_sound(&s);
    }

    #[test]
    fn a_crash_between_any_two_steps_of_forget_loses_nothing_else_and_the_next_forget_completes() {
        let mut crashes = 0;
        for steps in 0.. {
            let dir = tempfile::tempdir().unwrap();
            let s = populate(dir.path());
            let before = kept_others(&s);
            *s.forget_crash_after.lock().unwrap() = Some(steps);
            if s.forget(&gone()).is_ok() {
                break;
            }
            crashes += 1;
            // A crash: nothing more happens; the next open sees what is on disk.
            drop(s);
            let (s, _) = Snapshots::open(dir.path(), cfg()).unwrap();
            assert_eq!(kept_others(&s), before, "after a crash at step {steps}");
            assert_sound(&s);
            s.forget(&gone()).unwrap();
            assert_gone_everywhere(dir.path(), &s);
            assert_eq!(kept_others(&s), before, "after the forget that followed a crash at step {steps}");
            drop(s);
            let (s, _) = Snapshots::open(dir.path(), cfg()).unwrap();
            assert_gone_everywhere(dir.path(), &s);
            assert_eq!(kept_others(&s), before);
        }
        // A roll, at least two file rewrites and a dictionary removal.
        assert!(crashes >= 4, "only {crashes} crash points");
    }

    #[test]
    fn a_forget_that_failed_midway_is_finished_by_the_next_one_in_the_same_process() {
        let mut failures = 0;
        for steps in 0.. {
            let dir = tempfile::tempdir().unwrap();
            let s = populate(dir.path());
            let before = kept_others(&s);
            *s.forget_crash_after.lock().unwrap() = Some(steps);
            if s.forget(&gone()).is_ok() {
                break;
            }
            failures += 1;
            // The store stays open: half done, it serves everything else, and
            // saves no longer use the dictionary retired by the failed call.
            assert_eq!(kept_others(&s), before, "after a failure at step {steps}");
            assert_eq!((s.read(GONE, u64::MAX).unwrap(), s.dictionaries()), (None, 0));
            *s.forget_crash_after.lock().unwrap() = None;
            s.forget(&gone()).unwrap();
            assert_gone_everywhere(dir.path(), &s);
            assert_eq!(kept_others(&s), before, "after the forget that followed a failure at step {steps}");
            assert_sound(&s);
            drop(s);
            let (s, _) = Snapshots::open(dir.path(), cfg()).unwrap();
            assert_gone_everywhere(dir.path(), &s);
            assert_eq!(kept_others(&s), before);
        }
        assert!(failures >= 4, "only {failures} failure points");
    }
}
