//! The disk model: what is durable, what is only in the volatile write cache,
//! and what a power cut keeps.
//!
//! This module owns every byte and every directory entry of the file system,
//! in two versions: the *durable* image (what the platters hold) and the
//! *current* view (what a running program sees). It knows nothing of FUSE,
//! requests or the kernel, and must never do I/O or block: the FUSE adapter
//! (`fs`) calls it under one lock and answers the kernel from what it returns.
//!
//! The rules, at least as strict as ext4 with a volatile disk cache:
//! * A file's data and size become durable only at `fsync`/`fdatasync` of that
//!   file (both are the same here), or at each write of a handle opened with
//!   `O_DSYNC`/`O_SYNC`.
//! * Directory entries (create, mkdir, unlink, rmdir, rename) are journaled in
//!   order. An `fsync` of a directory makes durable every journaled entry
//!   change up to and including the last one that touches that directory; a
//!   rename touches both its directories and is applied as one atomic pair.
//!   Fsyncing a *file* never makes its name durable.
//! * At a cut, the durable image is what survives, plus, depending on the
//!   [`CutMode`], some of the unsynced writes, torn at 512-byte sector
//!   boundaries of the file ([`CutMode::Bytes`]: at any byte). A torn write
//!   never changes a byte it did not write.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::time::SystemTime;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The sector size: a write may be torn only at multiples of this file offset.
pub const SECTOR_BYTES: u64 = 512;

/// The root directory's inode number (fixed by FUSE).
pub const ROOT_INO: u64 = 1;

/// Inode number reserved for the hidden control file (see `control`).
pub const CONTROL_INO: u64 = 2;

const FIRST_FREE_INO: u64 = 3;

/// What a power cut keeps of the writes that were never synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutMode {
    /// Keep nothing unsynced: the disk holds exactly the durable image.
    Now,
    /// Keep a random ordered prefix of the unsynced writes and directory
    /// changes (as a disk that writes its cache in order); the first write
    /// not wholly kept may be torn at a sector boundary. Seeded.
    Prefix(u64),
    /// Keep a random subset of the unsynced writes' sectors (each sector piece
    /// of each write, and each truncate, independently with probability 1/2),
    /// and a random prefix of the unsynced directory changes. Seeded.
    Subset(u64),
    /// Keep, for each file, a random ordered prefix of its unsynced writes,
    /// and of the first write not kept whole a random prefix of its bytes,
    /// cut at any byte, not only at a sector boundary; and a random prefix of
    /// the unsynced directory changes. A disk that writes each file in order
    /// but does not write a sector atomically: every file with unsynced
    /// writes may have one torn. Seeded.
    Bytes(u64),
}

/// Counters since the file system was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Power cuts, armed or immediate.
    pub cuts: u64,
    /// Armed cuts that fired (each returned `EIO` to the call it fired on).
    pub armed_fired: u64,
    /// Writes of which a cut kept some sectors but not all.
    pub torn_writes: u64,
    /// Unsynced writes and truncates wholly kept by a cut.
    pub kept_writes: u64,
    /// Unsynced writes and truncates wholly dropped by a cut.
    pub dropped_writes: u64,
    /// Unsynced directory changes dropped by a cut.
    pub dropped_entries: u64,
}

/// Why a call failed, as an errno the FUSE adapter returns.
pub type Errno = i32;

/// The kind of an inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
}

/// What `getattr` needs of an inode.
#[derive(Clone, Copy, Debug)]
pub struct Attr {
    /// Inode number.
    pub ino: u64,
    /// File or directory.
    pub kind: Kind,
    /// Current size in bytes (0 for a directory).
    pub size: u64,
    /// Permission bits.
    pub perm: u16,
    /// Last modification of the current view.
    pub mtime: SystemTime,
}

#[derive(Debug)]
struct Inode {
    kind: Kind,
    perm: u16,
    mtime: SystemTime,
    /// Current directory entries (directories only).
    entries: BTreeMap<OsString, u64>,
    /// Current file content (files only).
    current: Vec<u8>,
    /// Durable file content (files only).
    durable: Vec<u8>,
}

impl Inode {
    fn new(kind: Kind, perm: u16) -> Inode {
        Inode {
            kind,
            perm,
            mtime: SystemTime::now(),
            entries: BTreeMap::new(),
            current: Vec::new(),
            durable: Vec::new(),
        }
    }
}

/// A change to a file's content not yet synced.
#[derive(Clone, Debug)]
enum DataOp {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

/// A change to directory entries not yet synced.
#[derive(Clone, Debug)]
enum EntryOp {
    Link { parent: u64, name: OsString, ino: u64 },
    Unlink { parent: u64, name: OsString },
    Rename { from: u64, from_name: OsString, to: u64, to_name: OsString },
}

impl EntryOp {
    fn touches(&self, dir: u64) -> bool {
        match self {
            EntryOp::Link { parent, .. } | EntryOp::Unlink { parent, .. } => *parent == dir,
            EntryOp::Rename { from, to, .. } => *from == dir || *to == dir,
        }
    }
}

/// One unsynced change, in the order the program made them.
#[derive(Clone, Debug)]
enum Pending {
    Data { ino: u64, op: DataOp },
    Entry(EntryOp),
}

/// An open file or directory handle.
#[derive(Clone, Copy, Debug)]
struct Handle {
    ino: u64,
    /// Every write through it is durable at once (`O_DSYNC` or `O_SYNC`).
    dsync: bool,
}

/// A cut armed to fire at a later mutating call.
#[derive(Clone, Copy, Debug)]
struct Armed {
    calls_left: u64,
    mode: CutMode,
}

/// The whole disk: inodes, the durable directory tree, the unsynced changes
/// in order, open handles and the power switch.
#[derive(Debug)]
pub struct Disk {
    inodes: HashMap<u64, Inode>,
    /// Durable directory entries, per directory inode.
    durable_dirs: HashMap<u64, BTreeMap<OsString, u64>>,
    pending: Vec<Pending>,
    handles: HashMap<u64, Handle>,
    next_ino: u64,
    next_handle: u64,
    powered: bool,
    armed: Option<Armed>,
    stats: Stats,
}

impl Default for Disk {
    fn default() -> Self {
        Disk::new()
    }
}

fn apply_data(content: &mut Vec<u8>, op: &DataOp) {
    match op {
        DataOp::Write { offset, data } => write_at(content, *offset, data),
        DataOp::SetLen(len) => content.resize(to_usize(*len), 0),
    }
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn write_at(content: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = to_usize(offset);
    let end = start.saturating_add(data.len());
    if content.len() < end {
        content.resize(end, 0);
    }
    if let Some(dst) = content.get_mut(start..end) {
        dst.copy_from_slice(data);
    }
}

/// The pieces of a write at `offset` of `len` bytes cut at sector boundaries
/// of the file: `(start, end)` offsets relative to the write.
fn sector_pieces(offset: u64, len: u64) -> Vec<(u64, u64)> {
    let mut pieces = Vec::new();
    let mut at = offset;
    let end = offset + len;
    while at < end {
        let next = ((at / SECTOR_BYTES) + 1) * SECTOR_BYTES;
        let piece_end = next.min(end);
        pieces.push((at - offset, piece_end - offset));
        at = piece_end;
    }
    pieces
}

fn apply_entry(dirs: &mut HashMap<u64, BTreeMap<OsString, u64>>, kinds: &HashMap<u64, Kind>, op: &EntryOp) {
    match op {
        EntryOp::Link { parent, name, ino } => {
            if kinds.get(ino) == Some(&Kind::Dir) {
                dirs.entry(*ino).or_default();
            }
            dirs.entry(*parent).or_default().insert(name.clone(), *ino);
        }
        EntryOp::Unlink { parent, name } => {
            if let Some(d) = dirs.get_mut(parent) {
                d.remove(name);
            }
        }
        EntryOp::Rename { from, from_name, to, to_name } => {
            let moved = dirs.get_mut(from).and_then(|d| d.remove(from_name));
            if let Some(ino) = moved {
                dirs.entry(*to).or_default().insert(to_name.clone(), ino);
            }
        }
    }
}

impl Disk {
    /// An empty, powered disk holding only a durable root directory.
    pub fn new() -> Disk {
        let mut inodes = HashMap::new();
        inodes.insert(ROOT_INO, Inode::new(Kind::Dir, 0o755));
        let mut durable_dirs = HashMap::new();
        durable_dirs.insert(ROOT_INO, BTreeMap::new());
        Disk {
            inodes,
            durable_dirs,
            pending: Vec::new(),
            handles: HashMap::new(),
            next_ino: FIRST_FREE_INO,
            next_handle: 1,
            powered: true,
            armed: None,
            stats: Stats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Whether the power is on.
    pub fn powered(&self) -> bool {
        self.powered
    }

    /// Whether a cut is armed and has not fired yet.
    pub fn armed(&self) -> bool {
        self.armed.is_some()
    }

    /// Number of unsynced changes (writes, truncates, directory changes).
    pub fn unsynced(&self) -> usize {
        self.pending.len()
    }

    /// Fails with `EIO` while the power is off.
    pub fn check_power(&self) -> Result<(), Errno> {
        if self.powered {
            Ok(())
        } else {
            Err(libc::EIO)
        }
    }

    /// Counts a mutating call against an armed cut. When it is the armed
    /// call, cuts the power (the call itself is not applied) and fails with
    /// `EIO`; also fails with `EIO` while the power is off.
    pub fn before_mutation(&mut self) -> Result<(), Errno> {
        self.check_power()?;
        if let Some(armed) = self.armed.as_mut() {
            armed.calls_left = armed.calls_left.saturating_sub(1);
            if armed.calls_left == 0 {
                let mode = armed.mode;
                self.armed = None;
                self.stats.armed_fired += 1;
                self.cut(mode);
                return Err(libc::EIO);
            }
        }
        Ok(())
    }

    /// Arms a cut in `mode` at the `nth` mutating call from now (1 = the next
    /// one). Mutating calls are writes, truncates, file and directory syncs,
    /// creates, mkdirs, unlinks, rmdirs and renames. Replaces an armed cut.
    pub fn arm(&mut self, nth: u64, mode: CutMode) {
        self.armed = Some(Armed { calls_left: nth.max(1), mode });
    }

    /// Cuts the power: what survives is the durable image plus whatever
    /// `mode` keeps of the unsynced changes; every later call fails with
    /// `EIO` until [`Disk::power_on`]. Cutting a disk that is off does nothing.
    pub fn cut(&mut self, mode: CutMode) {
        if !self.powered {
            return;
        }
        self.stats.cuts += 1;
        let pending = std::mem::take(&mut self.pending);
        let kept = self.choose_kept(&pending, mode);
        let kinds: HashMap<u64, Kind> = self.inodes.iter().map(|(i, n)| (*i, n.kind)).collect();
        for (change, keep) in pending.iter().zip(kept) {
            match (change, keep) {
                (Pending::Entry(op), Keep::All) => apply_entry(&mut self.durable_dirs, &kinds, op),
                (Pending::Entry(_), _) => self.stats.dropped_entries += 1,
                (Pending::Data { ino, op }, keep) => self.keep_data(*ino, op, &keep),
            }
        }
        self.armed = None;
        self.powered = false;
        self.handles.clear();
    }

    fn keep_data(&mut self, ino: u64, op: &DataOp, keep: &Keep) {
        let Some(node) = self.inodes.get_mut(&ino) else { return };
        match (op, keep) {
            (_, Keep::None) => self.stats.dropped_writes += 1,
            (_, Keep::All) => {
                apply_data(&mut node.durable, op);
                self.stats.kept_writes += 1;
            }
            (DataOp::Write { offset, data }, Keep::Pieces(pieces)) => {
                for (start, end) in pieces {
                    if let Some(bytes) = data.get(to_usize(*start)..to_usize(*end)) {
                        write_at(&mut node.durable, offset + start, bytes);
                    }
                }
                self.stats.torn_writes += 1;
            }
            (DataOp::SetLen(_), Keep::Pieces(_)) => self.stats.dropped_writes += 1,
        }
    }

    /// Decides, for each unsynced change in order, what survives the cut.
    fn choose_kept(&self, pending: &[Pending], mode: CutMode) -> Vec<Keep> {
        let n = pending.len();
        match mode {
            CutMode::Now => vec![Keep::None; n],
            CutMode::Prefix(seed) => {
                let mut rng = StdRng::seed_from_u64(seed);
                let whole = rng.gen_range(0..=n);
                let mut keep: Vec<Keep> = (0..n).map(|i| if i < whole { Keep::All } else { Keep::None }).collect();
                if let (Some(Pending::Data { op: DataOp::Write { offset, data }, .. }), Some(slot)) =
                    (pending.get(whole), keep.get_mut(whole))
                {
                    let pieces = sector_pieces(*offset, data.len() as u64);
                    let m = rng.gen_range(0..=pieces.len());
                    *slot = Keep::from_pieces(pieces.into_iter().take(m).collect(), m, data.len() as u64);
                }
                keep
            }
            CutMode::Bytes(seed) => Self::keep_per_file_torn_anywhere(pending, seed),
            CutMode::Subset(seed) => {
                let mut rng = StdRng::seed_from_u64(seed);
                let entries = pending.iter().filter(|p| matches!(p, Pending::Entry(_))).count();
                let entries_kept = rng.gen_range(0..=entries);
                let mut seen_entries = 0;
                pending
                    .iter()
                    .map(|p| match p {
                        Pending::Entry(_) => {
                            seen_entries += 1;
                            if seen_entries <= entries_kept {
                                Keep::All
                            } else {
                                Keep::None
                            }
                        }
                        Pending::Data { op: DataOp::SetLen(_), .. } => {
                            if rng.gen_bool(0.5) {
                                Keep::All
                            } else {
                                Keep::None
                            }
                        }
                        Pending::Data { op: DataOp::Write { offset, data }, .. } => {
                            let pieces: Vec<(u64, u64)> = sector_pieces(*offset, data.len() as u64)
                                .into_iter()
                                .filter(|_| rng.gen_bool(0.5))
                                .collect();
                            let m = pieces.len();
                            Keep::from_pieces(pieces, m, data.len() as u64)
                        }
                    })
                    .collect()
            }
        }
    }

    /// [`CutMode::Bytes`]: per file an ordered prefix of its changes, the
    /// first write not kept whole cut at a random byte; a prefix of the
    /// directory changes.
    fn keep_per_file_torn_anywhere(pending: &[Pending], seed: u64) -> Vec<Keep> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut changes_per_file: HashMap<u64, usize> = HashMap::new();
        for p in pending {
            if let Pending::Data { ino, .. } = p {
                *changes_per_file.entry(*ino).or_default() += 1;
            }
        }
        let mut whole: HashMap<u64, usize> =
            changes_per_file.iter().map(|(ino, n)| (*ino, rng.gen_range(0..=*n))).collect();
        let entries = pending.iter().filter(|p| matches!(p, Pending::Entry(_))).count();
        let mut entries_left = rng.gen_range(0..=entries);
        let mut seen: HashMap<u64, usize> = HashMap::new();
        pending
            .iter()
            .map(|p| match p {
                Pending::Entry(_) if entries_left > 0 => {
                    entries_left -= 1;
                    Keep::All
                }
                Pending::Entry(_) => Keep::None,
                Pending::Data { ino, op } => {
                    let index = seen.entry(*ino).or_default();
                    let whole = whole.entry(*ino).or_default();
                    let keep = match (*index).cmp(whole) {
                        std::cmp::Ordering::Less => Keep::All,
                        std::cmp::Ordering::Equal => match op {
                            DataOp::Write { data, .. } => {
                                let len = data.len() as u64;
                                let cut = rng.gen_range(0..=len);
                                Keep::from_pieces(vec![(0, cut)], usize::from(cut > 0), len)
                            }
                            DataOp::SetLen(_) => Keep::None,
                        },
                        std::cmp::Ordering::Greater => Keep::None,
                    };
                    *index += 1;
                    keep
                }
            })
            .collect()
    }

    /// Turns the power back on: the current view becomes the durable image,
    /// every handle opened before the cut is gone (calls on it fail with
    /// `EBADF`), and inodes no durable name reaches are freed.
    pub fn power_on(&mut self) {
        if self.powered {
            return;
        }
        let mut reachable = HashSet::new();
        let mut stack = vec![ROOT_INO];
        while let Some(dir) = stack.pop() {
            if !reachable.insert(dir) {
                continue;
            }
            if let Some(entries) = self.durable_dirs.get(&dir) {
                stack.extend(entries.values().copied());
            }
        }
        self.inodes.retain(|ino, _| reachable.contains(ino));
        self.durable_dirs.retain(|ino, _| reachable.contains(ino));
        for (ino, node) in self.inodes.iter_mut() {
            node.entries = self.durable_dirs.get(ino).cloned().unwrap_or_default();
            node.current = node.durable.clone();
        }
        self.powered = true;
    }

    // ---- the calls a file system serves ----------------------------------

    /// The attributes of `ino`.
    pub fn attr(&self, ino: u64) -> Result<Attr, Errno> {
        self.check_power()?;
        let node = self.inodes.get(&ino).ok_or(libc::ENOENT)?;
        Ok(Attr { ino, kind: node.kind, size: node.current.len() as u64, perm: node.perm, mtime: node.mtime })
    }

    fn dir(&self, ino: u64) -> Result<&Inode, Errno> {
        match self.inodes.get(&ino) {
            Some(node) if node.kind == Kind::Dir => Ok(node),
            Some(_) => Err(libc::ENOTDIR),
            None => Err(libc::ENOENT),
        }
    }

    /// Looks `name` up in directory `parent`.
    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<Attr, Errno> {
        self.check_power()?;
        let ino = *self.dir(parent)?.entries.get(name).ok_or(libc::ENOENT)?;
        self.attr(ino)
    }

    /// The current entries of directory `ino`, sorted by name.
    pub fn list(&self, ino: u64) -> Result<Vec<(OsString, u64, Kind)>, Errno> {
        self.check_power()?;
        let dir = self.dir(ino)?;
        Ok(dir
            .entries
            .iter()
            .filter_map(|(name, child)| self.inodes.get(child).map(|n| (name.clone(), *child, n.kind)))
            .collect())
    }

    /// Creates `name` in `parent` (a file or a directory); the entry is
    /// unsynced until `parent` is fsynced.
    pub fn create(&mut self, parent: u64, name: &OsStr, kind: Kind, perm: u16) -> Result<Attr, Errno> {
        self.check_power()?;
        if self.dir(parent)?.entries.contains_key(name) {
            return Err(libc::EEXIST);
        }
        self.before_mutation()?;
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inodes.insert(ino, Inode::new(kind, perm));
        if let Some(dir) = self.inodes.get_mut(&parent) {
            dir.entries.insert(name.to_owned(), ino);
        }
        self.pending.push(Pending::Entry(EntryOp::Link { parent, name: name.to_owned(), ino }));
        self.attr(ino)
    }

    /// Removes `name` from `parent`; `dir` says whether it must be a
    /// directory (rmdir, which also needs it empty) or must not be (unlink).
    pub fn remove(&mut self, parent: u64, name: &OsStr, dir: bool) -> Result<(), Errno> {
        self.check_power()?;
        let ino = *self.dir(parent)?.entries.get(name).ok_or(libc::ENOENT)?;
        let node = self.inodes.get(&ino).ok_or(libc::ENOENT)?;
        match (dir, node.kind) {
            (true, Kind::File) => return Err(libc::ENOTDIR),
            (false, Kind::Dir) => return Err(libc::EISDIR),
            (true, Kind::Dir) if !node.entries.is_empty() => return Err(libc::ENOTEMPTY),
            _ => {}
        }
        self.before_mutation()?;
        if let Some(d) = self.inodes.get_mut(&parent) {
            d.entries.remove(name);
        }
        self.pending.push(Pending::Entry(EntryOp::Unlink { parent, name: name.to_owned() }));
        Ok(())
    }

    /// Renames `from/from_name` to `to/to_name`, replacing a target of the
    /// same kind (an empty directory only) unless `noreplace`.
    pub fn rename(
        &mut self,
        from: u64,
        from_name: &OsStr,
        to: u64,
        to_name: &OsStr,
        noreplace: bool,
    ) -> Result<(), Errno> {
        self.check_power()?;
        let ino = *self.dir(from)?.entries.get(from_name).ok_or(libc::ENOENT)?;
        let kind = self.inodes.get(&ino).map(|n| n.kind).ok_or(libc::ENOENT)?;
        if let Some(target) = self.dir(to)?.entries.get(to_name).copied() {
            if target == ino {
                return Ok(());
            }
            if noreplace {
                return Err(libc::EEXIST);
            }
            let t = self.inodes.get(&target).ok_or(libc::ENOENT)?;
            match (kind, t.kind) {
                (Kind::File, Kind::Dir) => return Err(libc::EISDIR),
                (Kind::Dir, Kind::File) => return Err(libc::ENOTDIR),
                (Kind::Dir, Kind::Dir) if !t.entries.is_empty() => return Err(libc::ENOTEMPTY),
                _ => {}
            }
        }
        self.before_mutation()?;
        if let Some(d) = self.inodes.get_mut(&from) {
            d.entries.remove(from_name);
        }
        if let Some(d) = self.inodes.get_mut(&to) {
            d.entries.insert(to_name.to_owned(), ino);
        }
        self.pending.push(Pending::Entry(EntryOp::Rename {
            from,
            from_name: from_name.to_owned(),
            to,
            to_name: to_name.to_owned(),
        }));
        Ok(())
    }

    /// Opens `ino`; writes through the handle are durable at once if `dsync`.
    pub fn open(&mut self, ino: u64, dsync: bool) -> Result<u64, Errno> {
        self.attr(ino)?;
        let fh = self.next_handle;
        self.next_handle += 1;
        self.handles.insert(fh, Handle { ino, dsync });
        Ok(fh)
    }

    /// Closes a handle (a handle from before a power cut is already gone).
    pub fn release(&mut self, fh: u64) {
        self.handles.remove(&fh);
    }

    fn handle(&self, fh: u64, ino: u64) -> Result<Handle, Errno> {
        self.check_power()?;
        match self.handles.get(&fh) {
            Some(h) if h.ino == ino => Ok(*h),
            _ => Err(libc::EBADF),
        }
    }

    /// Reads up to `size` bytes at `offset` through handle `fh`.
    pub fn read(&self, ino: u64, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        self.handle(fh, ino)?;
        let node = self.inodes.get(&ino).ok_or(libc::ENOENT)?;
        let start = to_usize(offset).min(node.current.len());
        let end = start.saturating_add(size as usize).min(node.current.len());
        Ok(node.current.get(start..end).map(<[u8]>::to_vec).unwrap_or_default())
    }

    /// Writes `data` at `offset` through handle `fh`; `dsync` also when the
    /// request says the write is synchronous.
    pub fn write(&mut self, ino: u64, fh: u64, offset: u64, data: &[u8], dsync: bool) -> Result<(), Errno> {
        let handle = self.handle(fh, ino)?;
        self.before_mutation()?;
        self.change_data(ino, DataOp::Write { offset, data: data.to_vec() }, dsync || handle.dsync)
    }

    /// Sets the size of file `ino` (ftruncate or truncate).
    pub fn set_len(&mut self, ino: u64, len: u64) -> Result<(), Errno> {
        self.check_power()?;
        if self.inodes.get(&ino).ok_or(libc::ENOENT)?.kind == Kind::Dir {
            return Err(libc::EISDIR);
        }
        self.before_mutation()?;
        self.change_data(ino, DataOp::SetLen(len), false)
    }

    fn change_data(&mut self, ino: u64, op: DataOp, durable_now: bool) -> Result<(), Errno> {
        let node = self.inodes.get_mut(&ino).ok_or(libc::ENOENT)?;
        apply_data(&mut node.current, &op);
        node.mtime = SystemTime::now();
        self.pending.push(Pending::Data { ino, op });
        if durable_now {
            self.sync_file(ino);
        }
        Ok(())
    }

    /// `fsync`/`fdatasync` of file `ino`: its data and size become durable.
    pub fn fsync_file(&mut self, ino: u64, fh: u64) -> Result<(), Errno> {
        self.handle(fh, ino)?;
        self.before_mutation()?;
        self.sync_file(ino);
        Ok(())
    }

    fn sync_file(&mut self, ino: u64) {
        let Some(node) = self.inodes.get_mut(&ino) else { return };
        let mut rest = Vec::with_capacity(self.pending.len());
        for change in std::mem::take(&mut self.pending) {
            match change {
                Pending::Data { ino: i, op } if i == ino => apply_data(&mut node.durable, &op),
                other => rest.push(other),
            }
        }
        self.pending = rest;
        debug_assert_eq!(node.durable, node.current, "a synced file's durable image is its current view");
    }

    /// `fsync` of directory `ino`: every unsynced directory change up to the
    /// last one touching it becomes durable, in order.
    pub fn fsync_dir(&mut self, ino: u64, fh: u64) -> Result<(), Errno> {
        self.handle(fh, ino)?;
        self.before_mutation()?;
        let last = self.pending.iter().rposition(|p| matches!(p, Pending::Entry(op) if op.touches(ino)));
        let Some(last) = last else { return Ok(()) };
        let kinds: HashMap<u64, Kind> = self.inodes.iter().map(|(i, n)| (*i, n.kind)).collect();
        let mut rest = Vec::with_capacity(self.pending.len());
        for (i, change) in std::mem::take(&mut self.pending).into_iter().enumerate() {
            match change {
                Pending::Entry(op) if i <= last => apply_entry(&mut self.durable_dirs, &kinds, &op),
                other => rest.push(other),
            }
        }
        self.pending = rest;
        Ok(())
    }
}

/// What a cut keeps of one unsynced change.
#[derive(Clone, Debug)]
enum Keep {
    None,
    All,
    /// Some sector pieces of a write (offsets relative to the write).
    Pieces(Vec<(u64, u64)>),
}

impl Keep {
    fn from_pieces(pieces: Vec<(u64, u64)>, kept: usize, len: u64) -> Keep {
        let kept_bytes: u64 = pieces.iter().map(|(s, e)| e - s).sum();
        if kept == 0 {
            Keep::None
        } else if kept_bytes == len {
            Keep::All
        } else {
            Keep::Pieces(pieces)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(d: &mut Disk, name: &str) -> (u64, u64) {
        let a = d.create(ROOT_INO, OsStr::new(name), Kind::File, 0o644).unwrap();
        let fh = d.open(a.ino, false).unwrap();
        (a.ino, fh)
    }

    fn content(d: &mut Disk, name: &str) -> Option<Vec<u8>> {
        let a = d.lookup(ROOT_INO, OsStr::new(name)).ok()?;
        let fh = d.open(a.ino, false).unwrap();
        Some(d.read(a.ino, fh, 0, u32::MAX).unwrap())
    }

    #[test]
    fn sector_pieces_follow_file_offsets() {
        assert_eq!(sector_pieces(500, 30), vec![(0, 12), (12, 30)]);
        assert_eq!(sector_pieces(0, 1024), vec![(0, 512), (512, 1024)]);
        assert!(sector_pieces(7, 0).is_empty());
    }

    #[test]
    fn synced_data_and_names_survive_and_unsynced_do_not() {
        let mut d = Disk::new();
        let root_fh = d.open(ROOT_INO, false).unwrap();
        let (ino, fh) = file(&mut d, "a");
        d.write(ino, fh, 0, b"kept", false).unwrap();
        d.fsync_file(ino, fh).unwrap();
        d.fsync_dir(ROOT_INO, root_fh).unwrap();
        d.write(ino, fh, 4, b"lost", false).unwrap();
        let _ = file(&mut d, "b");
        d.cut(CutMode::Now);
        assert_eq!(d.attr(ino).unwrap_err(), libc::EIO);
        d.power_on();
        assert_eq!(content(&mut d, "a").unwrap(), b"kept");
        assert!(content(&mut d, "b").is_none());
        assert_eq!(d.read(ino, fh, 0, 10).unwrap_err(), libc::EBADF, "old handles die with the power");
    }

    #[test]
    fn a_bytes_cut_tears_inside_a_sector_and_only_the_bytes_written() {
        let mut torn_inside = false;
        for seed in 0..32 {
            let mut d = Disk::new();
            let root_fh = d.open(ROOT_INO, false).unwrap();
            let (ino, fh) = file(&mut d, "a");
            d.write(ino, fh, 0, &[1; 1024], false).unwrap();
            d.fsync_file(ino, fh).unwrap();
            d.fsync_dir(ROOT_INO, root_fh).unwrap();
            d.write(ino, fh, 100, &[2; 36], false).unwrap();
            d.cut(CutMode::Bytes(seed));
            d.power_on();
            let data = content(&mut d, "a").unwrap();
            let twos = data.iter().filter(|b| **b == 2).count();
            assert!(data[..100].iter().chain(&data[136..]).all(|b| *b == 1), "seed {seed}: outside the write");
            assert!(data[100..100 + twos].iter().all(|b| *b == 2), "seed {seed}: a prefix of the write");
            torn_inside |= twos > 0 && twos < 36;
        }
        assert!(torn_inside, "some seed tore the write inside its sector");
    }

    #[test]
    fn armed_cut_fires_at_the_nth_mutation() {
        let mut d = Disk::new();
        let (ino, fh) = file(&mut d, "a");
        d.arm(3, CutMode::Now);
        d.write(ino, fh, 0, b"1", false).unwrap();
        d.write(ino, fh, 1, b"2", false).unwrap();
        assert_eq!(d.fsync_file(ino, fh).unwrap_err(), libc::EIO);
        assert!(!d.powered());
        assert_eq!(d.stats().armed_fired, 1);
    }
}
