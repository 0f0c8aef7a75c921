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

/// The store's lock as this process holds it: one open description of the
/// `LOCK` file per store directory, shared by this process's read-only
/// handles, and how many handles use it.
struct Held {
    exclusive: bool,
    handles: usize,
    _file: File,
}

/// Every store directory this process holds a lock on, by canonical path.
///
/// IMPORTANT: the lock is a POSIX record lock (`fcntl(F_SETLK)`), not
/// `flock`. A record lock belongs to the process and is not inherited across
/// `fork`, so a child spawned by any thread of the application (which holds
/// copies of every descriptor until it `exec`s) cannot keep the store locked
/// after its owner closed it. The price: closing *any* descriptor of the lock
/// file releases the process's lock, so this registry makes sure the file is
/// opened once per store and closed only when the last handle goes.
static HELD: std::sync::LazyLock<Mutex<HashMap<PathBuf, Held>>> = std::sync::LazyLock::new(Mutex::default);

/// A handle's share of its store's lock; released when the last share drops.
#[derive(Debug)]
pub(crate) struct DirLock {
    key: PathBuf,
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = held.get_mut(&self.key) {
            h.handles -= 1;
            if h.handles == 0 {
                // Closing the file releases the record lock.
                held.remove(&self.key);
            }
        }
    }
}

/// Takes the store's lock: exclusive for a writer, `shared` for read-only
/// openers (several may share it, in any processes). If it is taken, polls
/// until `wait` has passed, then fails with [`Error::Locked`] naming the holder.
pub(crate) fn lock_dir(dir: &Path, shared: bool, wait: Duration) -> Result<DirLock> {
    let key = std::fs::canonicalize(dir).map_err(|e| Error::io("resolve store directory", dir, e))?;
    let deadline = Instant::now() + wait;
    loop {
        match try_lock(&key, shared)? {
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
fn try_lock(key: &Path, shared: bool) -> Result<std::result::Result<DirLock, LockHolder>> {
    try_lock_file(key, &key.join(LOCK_NAME), shared)
}

/// Takes an exclusive lock on the file `path` (created if missing), the way
/// [`lock_dir`] locks a store, without waiting: what keeps two handles of one
/// durable consumer apart, in this process or any other. Fails with
/// [`Error::Locked`] naming the holder.
pub(crate) fn lock_file(path: &Path) -> Result<DirLock> {
    match try_lock_file(path, path, false)? {
        Ok(lock) => Ok(lock),
        Err(holder) => Err(Error::Locked { path: path.to_path_buf(), holder }),
    }
}

/// One attempt at a record lock on `path`, registered under `key`.
fn try_lock_file(key: &Path, path: &Path, shared: bool) -> Result<std::result::Result<DirLock, LockHolder>> {
    let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(h) = held.get_mut(key) {
        if shared && !h.exclusive {
            h.handles += 1;
            return Ok(Ok(DirLock { key: key.to_path_buf() }));
        }
        return Ok(Err(LockHolder::ThisProcess));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io("open lock file", path, e))?;
    let kind = if shared { libc::F_RDLCK } else { libc::F_WRLCK };
    match fcntl(&file, FcntlArg::F_SETLK(&whole_file(kind))) {
        Ok(_) => {
            held.insert(key.to_path_buf(), Held { exclusive: !shared, handles: 1, _file: file });
            Ok(Ok(DirLock { key: key.to_path_buf() }))
        }
        Err(Errno::EAGAIN | Errno::EACCES) => Ok(Err(holder_of(&file, kind))),
        Err(e) => Err(Error::io("lock", path, e.into())),
    }
}

/// A record-lock request of `kind` over the whole file.
fn whole_file(kind: i32) -> libc::flock {
    libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    }
}

/// The process whose lock conflicts with a lock of `kind`, if the kernel says.
fn holder_of(file: &File, kind: i32) -> LockHolder {
    let mut probe = whole_file(kind);
    match fcntl(file, FcntlArg::F_GETLK(&mut probe)) {
        Ok(_) if probe.l_type != libc::F_UNLCK as libc::c_short && probe.l_pid > 0 => {
            LockHolder::Process(probe.l_pid as u32)
        }
        _ => LockHolder::Unknown,
    }
}
