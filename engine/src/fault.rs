//! Fault injection: the narrow seam through which tests make the engine's
//! file creation, writes and syncs fail, to check that appends in flight are
//! not acknowledged, the store poisons itself after a failed write or fsync,
//! and it keeps working after a full disk is cleared. In normal use no fault
//! is armed and every check is one relaxed atomic load.

use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::error::{Error, Result};

/// Armed failures, shared between a test and the store (pass it in
/// [`crate::Options::faults`]). Each field holds an OS error number to fail
/// with (0 = disarmed); it stays armed until [`Faults::clear`].
#[derive(Debug, Default)]
pub struct Faults {
    create: AtomicI32,
    write: AtomicI32,
    sync: AtomicI32,
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
    /// Makes every `fdatasync` of a segment fail with `errno`.
    pub fn fail_syncs(&self, errno: i32) {
        self.sync.store(errno, Ordering::SeqCst);
    }
    /// Disarms every fault.
    pub fn clear(&self) {
        self.create.store(0, Ordering::SeqCst);
        self.write.store(0, Ordering::SeqCst);
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
    pub(crate) fn check_write(&self, path: &Path) -> Result<()> {
        Self::check(&self.write, "write frames", path)
    }
    pub(crate) fn check_sync(&self, path: &Path) -> Result<()> {
        Self::check(&self.sync, "fdatasync segment", path)
    }
}
