//! The snapshot store's in-memory state: for each aggregate the locations of
//! its last K snapshots, the open snapshot files with their lengths, and the
//! installed dictionaries. It lives behind the store's `RwLock`, which the
//! writer thread takes (for `latest_version`) inside every group commit, so
//! this module must never do I/O, never block and never call out: every
//! method is a short in-memory operation.
//!
//! Invariants: every `Loc` names a file in `files`; each aggregate's list is
//! sorted by version, holds at most `keep` locations and at most one per
//! version; a file's `records` counts the frames in it (live or superseded).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::checkpoint::Entry;
use super::dictionary::Dictionaries;
use super::file::SnapFile;

/// Where one indexed snapshot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loc {
    pub version: u64,
    pub file_no: u64,
    pub offset: u64,
    pub len: u32,
}

/// One snapshot file and what the catalog knows of it.
pub(crate) struct FileEntry {
    pub file: Arc<SnapFile>,
    /// Bytes of header and frames (where the next frame goes, for the active file).
    pub len: u64,
    /// Frames in the file, superseded ones included.
    pub records: u64,
}

/// See the module doc.
pub(crate) struct Catalog {
    by_aggregate: HashMap<Box<str>, Vec<Loc>>,
    files: BTreeMap<u64, FileEntry>,
    pub dicts: Dictionaries,
    keep: usize,
}

impl Catalog {
    /// An empty catalog keeping `keep` (at least 1) snapshots per aggregate.
    pub(crate) fn new(keep: usize, dicts: Dictionaries) -> Catalog {
        Catalog { by_aggregate: HashMap::new(), files: BTreeMap::new(), dicts, keep: keep.max(1) }
    }

    /// Adds a file of `len` bytes holding `entries` (in file order). Files are
    /// added in number order, so a later save of a version replaces an earlier one.
    pub(crate) fn add_file(&mut self, file: Arc<SnapFile>, len: u64, entries: Vec<Entry>) {
        let no = file.no;
        debug_assert!(self.files.keys().next_back().is_none_or(|last| *last < no), "files added in order");
        let records = entries.len() as u64;
        for e in entries {
            debug_assert!(e.offset + u64::from(e.len) <= len, "entry inside its file");
            self.insert(&e.aggregate_id, Loc { version: e.version, file_no: no, offset: e.offset, len: e.len });
        }
        self.files.insert(no, FileEntry { file, len, records });
    }

    /// Records a frame appended at the end of file `loc.file_no`.
    pub(crate) fn appended(&mut self, aggregate_id: &str, loc: Loc) {
        debug_assert!(self.files.contains_key(&loc.file_no), "append to unknown snapshot file {}", loc.file_no);
        if let Some(f) = self.files.get_mut(&loc.file_no) {
            debug_assert_eq!(f.len, loc.offset, "a frame is appended where the file ends");
            f.len += u64::from(loc.len);
            f.records += 1;
            self.insert(aggregate_id, loc);
        }
    }

    /// Swaps in a compacted file: its new handle and length, and the new
    /// offsets of its live records (`moved`). Readers that looked up a
    /// location before this keep the old handle, and so read the old file.
    pub(crate) fn replace_file(&mut self, file: Arc<SnapFile>, len: u64, moved: &[Entry]) {
        let no = file.no;
        for e in moved {
            let list = self.by_aggregate.get_mut(&*e.aggregate_id);
            if let Some(l) = list.and_then(|l| l.iter_mut().find(|l| l.version == e.version && l.file_no == no)) {
                *l = Loc { version: e.version, file_no: no, offset: e.offset, len: e.len };
            }
        }
        self.files.insert(no, FileEntry { file, len, records: moved.len() as u64 });
        debug_assert!(self.by_aggregate.values().flatten().all(|l| l.file_no != no || l.offset < len));
    }

    /// Forgets a file none of whose records is live any more.
    pub(crate) fn remove_file(&mut self, no: u64) {
        debug_assert!(self.by_aggregate.values().flatten().all(|l| l.file_no != no), "removing a live file");
        self.files.remove(&no);
    }

    /// Drops every location of `aggregate_ids` (their frames stay counted in
    /// their files' `records`, as superseded ones) and returns them: reads
    /// and listings stop finding those aggregates at once.
    pub(crate) fn forget(&mut self, aggregate_ids: &HashSet<String>) -> Vec<Loc> {
        let mut dropped = Vec::new();
        for id in aggregate_ids {
            if let Some(locs) = self.by_aggregate.remove(id.as_str()) {
                dropped.extend(locs);
            }
        }
        debug_assert!(aggregate_ids.iter().all(|a| !self.by_aggregate.contains_key(a.as_str())));
        dropped
    }

    /// The files holding a live record of an aggregate whose id starts with
    /// one of `prefixes`.
    pub(crate) fn files_with_prefixes(&self, prefixes: &[String]) -> HashSet<u64> {
        self.by_aggregate
            .iter()
            .filter(|(a, _)| prefixes.iter().any(|p| a.starts_with(p.as_str())))
            .flat_map(|(_, locs)| locs.iter().map(|l| l.file_no))
            .collect()
    }

    /// Bytes of live frames per file number.
    pub(crate) fn live_bytes(&self) -> HashMap<u64, u64> {
        let mut bytes = HashMap::new();
        for loc in self.by_aggregate.values().flatten() {
            *bytes.entry(loc.file_no).or_insert(0) += u64::from(loc.len);
        }
        bytes
    }

    /// Adds a location, replacing one of the same version, keeping the last K.
    fn insert(&mut self, aggregate_id: &str, loc: Loc) {
        let list = match self.by_aggregate.get_mut(aggregate_id) {
            Some(l) => l,
            None => self.by_aggregate.entry(aggregate_id.into()).or_default(),
        };
        match list.binary_search_by_key(&loc.version, |l| l.version) {
            Ok(i) => list[i] = loc,
            Err(i) => list.insert(i, loc),
        }
        if list.len() > self.keep {
            let drop = list.len() - self.keep;
            list.drain(..drop);
        }
        debug_assert!(list.windows(2).all(|w| w[0].version < w[1].version) && list.len() <= self.keep);
    }

    /// The kept snapshots of the aggregates whose id starts with `prefix`:
    /// (aggregate, version, file number, stored bytes), by aggregate then version.
    pub(crate) fn list(&self, prefix: &str) -> Vec<(String, u64, u64, u32)> {
        let mut out: Vec<_> = self
            .by_aggregate
            .iter()
            .filter(|(a, _)| a.starts_with(prefix))
            .flat_map(|(a, locs)| locs.iter().map(move |l| (a.to_string(), l.version, l.file_no, l.len)))
            .collect();
        out.sort();
        out
    }

    /// The newest snapshot version of an aggregate.
    pub(crate) fn latest_version(&self, aggregate_id: &str) -> Option<u64> {
        self.by_aggregate.get(aggregate_id).and_then(|l| l.last()).map(|l| l.version)
    }

    /// The newest snapshot at or before `at_or_before`, with the handle of
    /// its file (`None` only if the catalog broke its invariant). The two are
    /// taken together, under one lock, so they always belong together.
    pub(crate) fn find(&self, aggregate_id: &str, at_or_before: u64) -> Option<(Loc, Option<Arc<SnapFile>>)> {
        let list = self.by_aggregate.get(aggregate_id)?;
        let n = list.partition_point(|l| l.version <= at_or_before);
        let loc = *list.get(n.checked_sub(1)?)?;
        let file = self.files.get(&loc.file_no).map(|f| Arc::clone(&f.file));
        debug_assert!(file.is_some(), "indexed snapshot file {} missing", loc.file_no);
        Some((loc, file))
    }

    /// The live records of file `no`, in file order.
    pub(crate) fn entries_of(&self, no: u64) -> Vec<Entry> {
        let mut v: Vec<Entry> = self
            .by_aggregate
            .iter()
            .flat_map(|(a, l)| {
                l.iter().filter(|l| l.file_no == no).map(move |l| Entry {
                    aggregate_id: a.clone(),
                    version: l.version,
                    offset: l.offset,
                    len: l.len,
                })
            })
            .collect();
        v.sort_by_key(|e| e.offset);
        v
    }

    /// Live records per file number.
    pub(crate) fn live_counts(&self) -> HashMap<u64, u64> {
        let mut counts = HashMap::new();
        for loc in self.by_aggregate.values().flatten() {
            *counts.entry(loc.file_no).or_insert(0) += 1;
        }
        counts
    }

    /// The file `no`.
    pub(crate) fn file(&self, no: u64) -> Option<&FileEntry> {
        self.files.get(&no)
    }

    /// Every file, in number order.
    pub(crate) fn files(&self) -> impl Iterator<Item = &FileEntry> {
        self.files.values()
    }

    /// The number the next new file gets: above every file's.
    pub(crate) fn next_file_no(&self) -> u64 {
        self.files.keys().next_back().map_or(0, |last| last + 1)
    }

    /// Snapshots indexed.
    pub(crate) fn records(&self) -> u64 {
        self.by_aggregate.values().map(|v| v.len() as u64).sum()
    }
}
