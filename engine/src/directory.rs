//! A store's directory: recognising it (the `FACTLOG` marker file), creating
//! it, and the `LOCK` file that keeps a second opener out (a POSIX record
//! lock, with a registry of the stores this process holds). It never reads
//! or writes segments, checkpoints or snapshots.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg};
use nix::libc;

use crate::error::{Error, LockHolder, Result};
use crate::segment;

/// Name of the marker file that makes a directory a factlog store.
pub const MARKER_NAME: &str = "FACTLOG";
/// Name of the lock file.
pub const LOCK_NAME: &str = "LOCK";
const MARKER_TEXT: &str = "factlog store\nformat 1\n";

/// Makes `dir` a store if it is missing or empty; checks its marker otherwise.
pub(crate) fn prepare_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create store directory", dir, e))?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            segment::sync_dir(parent)?;
        }
    }
    if !dir.is_dir() {
        return Err(Error::NotAStore { path: dir.to_path_buf(), reason: "not a directory".into() });
    }
    let marker = dir.join(MARKER_NAME);
    match std::fs::read_to_string(&marker) {
        Ok(text) => {
            if text == MARKER_TEXT {
                return Ok(());
            }
            if let Some(v) = text.strip_prefix("factlog store\nformat ").and_then(|r| r.trim().parse::<u32>().ok()) {
                return Err(Error::UnsupportedFormat { path: marker, found: v, supported: segment::FORMAT_VERSION });
            }
            Err(Error::NotAStore {
                path: dir.to_path_buf(),
                reason: format!("{MARKER_NAME} file has unexpected contents"),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let others = std::fs::read_dir(dir)
                .map_err(|e| Error::io("list store directory", dir, e))?
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name() != LOCK_NAME)
                .count();
            if others > 0 {
                return Err(Error::NotAStore {
                    path: dir.to_path_buf(),
                    reason: format!("not empty and has no {MARKER_NAME} file"),
                });
            }
            crate::durable::write_file(dir, MARKER_NAME, &[MARKER_TEXT.as_bytes()], "write store marker").map(|_| ())
        }
        Err(e) => Err(Error::io("read store marker", &marker, e)),
    }
}

/// What an opener asks of the store's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockKind {
    /// A read-only open: a read lock on [`READER_BYTE`], which no writer
    /// conflicts with (only a repair).
    Reader,
    /// A read-write open: the write lock on [`WRITER_BYTE`] (one writer).
    Writer,
    /// A read-write open with `repair`: the write lock on both bytes, because
    /// a repair rewrites bytes that readers may have indexed.
    RepairWriter,
}

/// Byte of `LOCK` a writer write-locks: one writer at a time, and what
/// readers probe (`F_GETLK`) to learn whether a writer is live.
const WRITER_BYTE: i64 = 0;
/// Byte of `LOCK` readers read-lock, and a repair write-locks.
const READER_BYTE: i64 = 1;

/// The store's lock as this process holds it: one open description of the
/// `LOCK` file per store directory, shared by every handle of this process,
/// and which byte locks they hold.
struct Held {
    /// The writer handle's kind, if this process has one.
    writer: Option<LockKind>,
    /// Read-only handles.
    readers: usize,
    file: File,
}

/// Every store directory this process holds a lock on, by canonical path.
///
/// IMPORTANT: the lock is a POSIX record lock (`fcntl(F_SETLK)`), not
/// `flock`. A record lock belongs to the process and is not inherited across
/// `fork`, so a child spawned by any thread of the application (which holds
/// copies of every descriptor until it `exec`s) cannot keep the store locked
/// after its owner closed it. The price: closing *any* descriptor of the lock
/// file releases the process's lock, so this registry makes sure the file is
/// opened once per store and closed only when the last handle goes. Record
/// locks of one process never conflict with each other, so the registry also
/// decides what this process's own handles may share.
static HELD: std::sync::LazyLock<Mutex<HashMap<PathBuf, Held>>> = std::sync::LazyLock::new(Mutex::default);

/// A handle's share of its store's lock; released when the handle drops.
#[derive(Debug)]
pub(crate) struct DirLock {
    key: PathBuf,
    kind: LockKind,
}

impl DirLock {
    /// The process of a live writer of this store, if there is one (this
    /// process's own writer handle included). Asks the kernel each time.
    pub(crate) fn live_writer(&self) -> Result<Option<LockHolder>> {
        let held = HELD.lock().unwrap_or_else(|p| p.into_inner());
        let Some(h) = held.get(&self.key) else { return Ok(None) };
        if h.writer.is_some() {
            return Ok(Some(LockHolder::ThisProcess));
        }
        let mut probe = byte_lock(libc::F_WRLCK, WRITER_BYTE);
        match fcntl(&h.file, FcntlArg::F_GETLK(&mut probe)) {
            Ok(_) if probe.l_type == libc::F_UNLCK as libc::c_short => Ok(None),
            Ok(_) if probe.l_pid > 0 => Ok(Some(LockHolder::Process(probe.l_pid as u32))),
            Ok(_) => Ok(Some(LockHolder::Unknown)),
            Err(e) => Err(Error::io("probe the writer's lock", self.key.join(LOCK_NAME), e.into())),
        }
    }
}

impl DirLock {
    /// Whether a read-only handle has the store open, in this process or in
    /// another (probed with `F_GETLK` on the readers' byte; asks the kernel each time).
    pub(crate) fn readers_present(&self) -> Result<bool> {
        let held = HELD.lock().unwrap_or_else(|p| p.into_inner());
        let Some(h) = held.get(&self.key) else { return Ok(false) };
        if h.readers > 0 {
            return Ok(true);
        }
        let mut probe = byte_lock(libc::F_WRLCK, READER_BYTE);
        match fcntl(&h.file, FcntlArg::F_GETLK(&mut probe)) {
            Ok(_) => Ok(probe.l_type != libc::F_UNLCK as libc::c_short),
            Err(e) => Err(Error::io("probe the readers' lock", self.key.join(LOCK_NAME), e.into())),
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
        let Some(h) = held.get_mut(&self.key) else { return };
        match self.kind {
            LockKind::Reader => {
                h.readers -= 1;
                if h.readers == 0 && h.writer.is_some() {
                    let _ = fcntl(&h.file, FcntlArg::F_SETLK(&byte_lock(libc::F_UNLCK, READER_BYTE)));
                }
            }
            LockKind::Writer | LockKind::RepairWriter => {
                h.writer = None;
                if h.readers > 0 {
                    let _ = fcntl(&h.file, FcntlArg::F_SETLK(&byte_lock(libc::F_UNLCK, WRITER_BYTE)));
                    if self.kind == LockKind::RepairWriter {
                        // Back from the repair's write lock to the readers' read lock.
                        let _ = fcntl(&h.file, FcntlArg::F_SETLK(&byte_lock(libc::F_RDLCK, READER_BYTE)));
                    }
                }
            }
        }
        if h.readers == 0 && h.writer.is_none() {
            // Closing the file releases every record lock of this process on it.
            held.remove(&self.key);
        }
    }
}

/// Takes the store's lock as `kind` says. If it is taken, polls until `wait`
/// has passed, then fails with [`Error::Locked`] naming the holder.
pub(crate) fn lock_dir(dir: &Path, kind: LockKind, wait: Duration) -> Result<DirLock> {
    let key = std::fs::canonicalize(dir).map_err(|e| Error::io("resolve store directory", dir, e))?;
    let deadline = Instant::now() + wait;
    loop {
        match try_lock(&key, kind)? {
            Ok(lock) => return Ok(lock),
            Err(holder) => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(Error::Locked { path: dir.to_path_buf(), holder });
                }
                std::thread::sleep(LOCK_POLL.min(deadline - now));
            }
        }
    }
}

/// How often a waiting opener retries the lock.
const LOCK_POLL: Duration = Duration::from_millis(5);

/// One attempt at the lock; `Ok(Err(holder))` when someone else has it.
fn try_lock(key: &Path, kind: LockKind) -> Result<std::result::Result<DirLock, LockHolder>> {
    try_lock_file(key, &key.join(LOCK_NAME), kind)
}

/// Takes the writer's lock on the file `path` (created if missing), the way
/// [`lock_dir`] locks a store, without waiting: what keeps two handles of one
/// durable consumer apart, in this process or any other. `path` must be
/// canonical (the registry is keyed by it). Fails with [`Error::Locked`]
/// naming the holder.
pub(crate) fn lock_file(path: &Path) -> Result<DirLock> {
    match try_lock_file(path, path, LockKind::Writer)? {
        Ok(lock) => Ok(lock),
        Err(holder) => Err(Error::Locked { path: path.to_path_buf(), holder }),
    }
}

/// Who holds the writer's lock on the file `path` (canonical), if anyone,
/// asked without taking it (`F_GETLK`); `None` also when the file is missing.
pub(crate) fn file_lock_holder(path: &Path) -> Result<Option<LockHolder>> {
    // IMPORTANT: `HELD` stays locked until the probe's descriptor is closed:
    // closing a descriptor of a file drops every record lock this process
    // holds on it, so no thread of this process may lock it meanwhile.
    let held = HELD.lock().unwrap_or_else(|p| p.into_inner());
    if held.get(path).is_some_and(|h| h.writer.is_some()) {
        return Ok(Some(LockHolder::ThisProcess));
    }
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("open lock file", path, e)),
    };
    let mut probe = byte_lock(libc::F_WRLCK, WRITER_BYTE);
    let holder = match fcntl(&file, FcntlArg::F_GETLK(&mut probe)) {
        Ok(_) if probe.l_type == libc::F_UNLCK as libc::c_short => Ok(None),
        Ok(_) if probe.l_pid > 0 => Ok(Some(LockHolder::Process(probe.l_pid as u32))),
        Ok(_) => Ok(Some(LockHolder::Unknown)),
        Err(e) => Err(Error::io("probe lock", path, e.into())),
    };
    drop(file);
    drop(held);
    holder
}

/// One attempt at a record lock of `kind` on the file `path`, registered under `key`.
fn try_lock_file(key: &Path, path: &Path, kind: LockKind) -> Result<std::result::Result<DirLock, LockHolder>> {
    let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
    // IMPORTANT: made only once the lock is ours: dropping a `DirLock` takes `HELD`.
    let lock = || DirLock { key: key.to_path_buf(), kind };
    if let Some(h) = held.get_mut(key) {
        // This process's own handles: one writer; a repair beside nothing.
        let conflict = match kind {
            LockKind::Reader => h.writer == Some(LockKind::RepairWriter),
            LockKind::Writer => h.writer.is_some(),
            LockKind::RepairWriter => h.writer.is_some() || h.readers > 0,
        };
        if conflict {
            return Ok(Err(LockHolder::ThisProcess));
        }
        if kind == LockKind::Reader && h.readers > 0 {
            h.readers += 1;
            return Ok(Ok(lock()));
        }
        return match set_locks(&h.file, kind) {
            Ok(()) => {
                match kind {
                    LockKind::Reader => h.readers += 1,
                    _ => h.writer = Some(kind),
                }
                Ok(Ok(lock()))
            }
            Err(Errno::EAGAIN | Errno::EACCES) => Ok(Err(holder_of(&h.file, kind))),
            Err(e) => Err(Error::io("lock", path, e.into())),
        };
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io("open lock file", path, e))?;
    match set_locks(&file, kind) {
        Ok(()) => {
            let (writer, readers) = match kind {
                LockKind::Reader => (None, 1),
                _ => (Some(kind), 0),
            };
            held.insert(key.to_path_buf(), Held { writer, readers, file });
            Ok(Ok(lock()))
        }
        Err(Errno::EAGAIN | Errno::EACCES) => Ok(Err(holder_of(&file, kind))),
        Err(e) => Err(Error::io("lock", path, e.into())),
    }
}

/// Takes the byte locks of `kind` (none of them, if any conflicts).
fn set_locks(file: &File, kind: LockKind) -> std::result::Result<(), Errno> {
    match kind {
        LockKind::Reader => fcntl(file, FcntlArg::F_SETLK(&byte_lock(libc::F_RDLCK, READER_BYTE))).map(|_| ()),
        LockKind::Writer => fcntl(file, FcntlArg::F_SETLK(&byte_lock(libc::F_WRLCK, WRITER_BYTE))).map(|_| ()),
        LockKind::RepairWriter => {
            fcntl(file, FcntlArg::F_SETLK(&byte_lock(libc::F_WRLCK, WRITER_BYTE)))?;
            if let Err(e) = fcntl(file, FcntlArg::F_SETLK(&byte_lock(libc::F_WRLCK, READER_BYTE))) {
                let _ = fcntl(file, FcntlArg::F_SETLK(&byte_lock(libc::F_UNLCK, WRITER_BYTE)));
                return Err(e);
            }
            Ok(())
        }
    }
}

/// A record-lock request of `kind` on the one byte at `at`.
fn byte_lock(kind: i32, at: i64) -> libc::flock {
    libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: at,
        l_len: 1,
        l_pid: 0,
    }
}

/// The process whose lock conflicts with taking `kind`, if the kernel says.
fn holder_of(file: &File, kind: LockKind) -> LockHolder {
    let probes = match kind {
        LockKind::Reader => [Some((libc::F_RDLCK, READER_BYTE)), None],
        LockKind::Writer => [Some((libc::F_WRLCK, WRITER_BYTE)), None],
        LockKind::RepairWriter => [Some((libc::F_WRLCK, WRITER_BYTE)), Some((libc::F_WRLCK, READER_BYTE))],
    };
    for (t, at) in probes.into_iter().flatten() {
        let mut probe = byte_lock(t, at);
        let probed = fcntl(file, FcntlArg::F_GETLK(&mut probe)).is_ok();
        if probed && probe.l_type != libc::F_UNLCK as libc::c_short && probe.l_pid > 0 {
            return LockHolder::Process(probe.l_pid as u32);
        }
    }
    LockHolder::Unknown
}
