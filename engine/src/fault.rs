//! Fault injection: the narrow seam through which tests make the engine's
//! file creation, writes and syncs fail, to check that appends in flight are
//! not acknowledged, the store poisons itself after a failed write or fsync,
//! and it keeps working after a full disk is cleared. In normal use no fault
//! is armed and every check is one relaxed atomic load.

use std::path::Path;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use crate::error::{Error, Result};

/// Armed failures, shared between a test and the store (pass it in
/// [`crate::Options::faults`]). Each field holds an OS error number to fail
/// with (0 = disarmed); it stays armed until [`Faults::clear`].
#[derive(Debug)]
pub struct Faults {
    create: AtomicI32,
    write: AtomicI32,
    /// With `write` armed: bytes of the failing write that reach the file
    /// first (a short write), `usize::MAX` for none.
    short_write: AtomicUsize,
    sync: AtomicI32,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            create: AtomicI32::new(0),
            write: AtomicI32::new(0),
            short_write: AtomicUsize::new(usize::MAX),
            sync: AtomicI32::new(0),
        }
    }
}

impl Faults {
    /// Makes every segment creation fail with `errno` (e.g. `libc::ENOSPC`).
    pub fn fail_creates(&self, errno: i32) {
        self.create.store(errno, Ordering::SeqCst);
    }
    /// Makes every frame write fail with `errno`.
    pub fn fail_writes(&self, errno: i32) {
        self.write.store(errno, Ordering::SeqCst);
    }
    /// Makes every frame write a short write: its first `bytes` bytes (at most
    /// the whole write) reach the file, then it fails with `errno`, as a
    /// write cut off by a full disk or a failing device does.
    pub fn fail_writes_after(&self, bytes: usize, errno: i32) {
        self.short_write.store(bytes, Ordering::SeqCst);
        self.write.store(errno, Ordering::SeqCst);
    }
    /// Makes every `fdatasync` of a segment fail with `errno`.
    pub fn fail_syncs(&self, errno: i32) {
        self.sync.store(errno, Ordering::SeqCst);
    }
    /// Disarms every fault.
    pub fn clear(&self) {
        self.create.store(0, Ordering::SeqCst);
        self.write.store(0, Ordering::SeqCst);
        self.short_write.store(usize::MAX, Ordering::SeqCst);
        self.sync.store(0, Ordering::SeqCst);
    }

    fn check(slot: &AtomicI32, op: &'static str, path: &Path) -> Result<()> {
        match slot.load(Ordering::Relaxed) {
            0 => Ok(()),
            errno => Err(Error::io(op, path, std::io::Error::from_raw_os_error(errno))),
        }
    }
    pub(crate) fn check_create(&self, path: &Path) -> Result<()> {
        Self::check(&self.create, "create segment", path)
    }
    /// `Err((n, e))`: write the first `n` bytes (0 = none) of the write, then fail with `e`.
    pub(crate) fn check_write(&self, path: &Path) -> std::result::Result<(), (usize, Error)> {
        Self::check(&self.write, "write frames", path).map_err(|e| {
            let short = self.short_write.load(Ordering::Relaxed);
            (if short == usize::MAX { 0 } else { short }, e)
        })
    }
    pub(crate) fn check_sync(&self, path: &Path) -> Result<()> {
        Self::check(&self.sync, "fdatasync segment", path)
    }
}
