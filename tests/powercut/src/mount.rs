//! Mounting: the guard that owns a mount and always takes it down, the
//! skip-or-fail decision when this machine cannot mount, and a timeout for
//! calls that could block on the mount.
//!
//! This module owns the mount's lifetime. It must never leave a mount behind
//! (the guard's `Drop` unmounts, lazily if the mount is busy, and a mount
//! left by an earlier crashed run at the same path is detached first), and
//! must never block without a bound.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use fuser::{BackgroundSession, Config, MountOption};
use nix::mount::{umount2, MntFlags};

use crate::fs::{PowerCutFs, CONTROL_NAME};
use crate::model::{CutMode, Stats};

/// Why the file system could not be mounted.
#[derive(Debug)]
pub enum MountError {
    /// This process cannot mount FUSE here (not root, or no `/dev/fuse`).
    Unsupported(String),
    /// The mount itself failed.
    Io(io::Error),
}

impl fmt::Display for MountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MountError::Unsupported(why) => write!(f, "cannot mount FUSE here: {why}"),
            MountError::Io(e) => write!(f, "FUSE mount failed: {e}"),
        }
    }
}

impl std::error::Error for MountError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MountError::Io(e) => Some(e),
            MountError::Unsupported(_) => None,
        }
    }
}

/// A mounted power-cut file system. Dropping it unmounts it.
#[derive(Debug)]
pub struct PowerCutMount {
    session: Option<BackgroundSession>,
    path: PathBuf,
    fs: PowerCutFs,
}

/// Undoes `/proc/self/mountinfo`'s octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let mut out = Vec::new();
    let bytes = field.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let code = bytes.get(i + 1..i + 4).and_then(|d| std::str::from_utf8(d).ok());
        match (b, code.and_then(|c| u8::from_str_radix(c, 8).ok())) {
            (b'\\', Some(c)) => {
                out.push(c);
                i += 4;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether something is mounted at `path` (by `/proc/self/mountinfo`).
fn is_mount_point(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    info.lines().filter_map(|l| l.split(' ').nth(4)).any(|m| Path::new(&unescape(m)) == path)
}

/// Detaches whatever is mounted at `path`, however busy (`MNT_DETACH`).
fn detach(path: &Path) {
    if is_mount_point(path) {
        let _ = umount2(path, MntFlags::MNT_DETACH);
    }
}

fn can_mount() -> Result<(), MountError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(MountError::Unsupported("not running as root".into()));
    }
    if !Path::new("/dev/fuse").exists() {
        return Err(MountError::Unsupported("/dev/fuse does not exist".into()));
    }
    Ok(())
}

impl PowerCutMount {
    /// Mounts a new, empty, powered file system at `path` (an existing
    /// directory). A stale mount at the same path is detached first.
    pub fn mount(path: &Path) -> Result<PowerCutMount, MountError> {
        can_mount()?;
        let path = std::path::absolute(path).map_err(MountError::Io)?;
        detach(&path);
        let fs = PowerCutFs::new();
        let mut config = Config::default();
        config.mount_options = vec![MountOption::FSName("powercut".into()), MountOption::Subtype("powercut".into())];
        let session = fuser::spawn_mount(fs.clone(), &path, &config).map_err(MountError::Io)?;
        Ok(PowerCutMount { session: Some(session), path, fs })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The hidden control file (see `control` for its commands).
    pub fn control_path(&self) -> PathBuf {
        self.path.join(CONTROL_NAME)
    }

    /// Cuts the power now. Every call on the mount fails with `EIO` until
    /// [`PowerCutMount::power_on`].
    pub fn cut(&self, mode: CutMode) {
        self.fs.disk().cut(mode);
    }

    /// Arms a cut at the `nth` mutating call from now (that call fails with `EIO`).
    pub fn arm(&self, nth: u64, mode: CutMode) {
        self.fs.disk().arm(nth, mode);
    }

    /// Powers back on. IMPORTANT: first kill every process that used the
    /// mount before the cut: a surviving mapping would show stale pages.
    pub fn power_on(&self) {
        self.fs.disk().power_on();
    }

    /// Whether the power is on (an armed cut may have turned it off).
    pub fn powered(&self) -> bool {
        self.fs.disk().powered()
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.fs.disk().stats()
    }

    /// Unmounts now, reporting a failure instead of falling back to a lazy
    /// unmount as `Drop` does.
    pub fn unmount(mut self) -> io::Result<()> {
        match self.session.take() {
            Some(session) => session.umount_and_join(),
            None => Ok(()),
        }
    }
}

impl Drop for PowerCutMount {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            // A clean unmount fails with EBUSY while a file is open on the
            // mount (a failed test may leak one): detach lazily then. The
            // server thread keeps answering until the last user is gone.
            if session.umount_and_join().is_err() {
                detach(&self.path);
            }
        }
    }
}

/// Mounts at `path`, or, when this machine cannot mount FUSE, prints why and
/// returns `None` so that the test can skip.
///
/// # Panics
/// When the environment variable `CI` is `true` and the mount fails: in CI,
/// not running the power-cut tests is a failure.
pub fn mount_or_skip(path: &Path) -> Option<PowerCutMount> {
    match PowerCutMount::mount(path) {
        Ok(m) => Some(m),
        Err(e) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("CI=true and the power-cut file system cannot run: {e}");
            }
            eprintln!("skipped: {e}");
            None
        }
    }
}

/// A call that did not finish within its limit (it is left running).
#[derive(Debug)]
pub struct TimedOut {
    /// What was being done.
    pub what: String,
    /// The limit.
    pub limit: Duration,
}

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} did not finish within {:?}", self.what, self.limit)
    }
}

impl std::error::Error for TimedOut {}

/// Runs `f` on its own thread and waits at most `limit` for it, so that a
/// test never hangs on a stuck mount. On a timeout the thread is abandoned.
pub fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, TimedOut> {
    let (tx, rx) = mpsc::sync_channel(1);
    let spawned = thread::Builder::new().name(format!("within: {what}")).spawn(move || {
        let _ = tx.send(f());
    });
    let timed_out = || TimedOut { what: what.to_owned(), limit };
    if spawned.is_err() {
        return Err(timed_out());
    }
    // A panic in `f` drops the sender: report it as the panic it was.
    match rx.recv_timeout(limit) {
        Ok(v) => Ok(v),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(timed_out()),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what} panicked"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape(r"/x\"), r"/x\");
    }
}
