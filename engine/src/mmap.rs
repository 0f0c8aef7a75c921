//! Read-only memory maps of segment files. One of the two modules allowed to
//! use `unsafe` (the other is `view`, whose one caller is `segment`). It must never map a file that may
//! shrink while mapped, and never map writable: the writer appends with
//! `pwrite`, so a full disk is an error code, not a SIGBUS.

use std::fs::File;
use std::path::Path;

use memmap2::{Mmap, MmapOptions};

use crate::error::{Error, Result};

/// Maps the first `len` bytes of `file` read-only. The caller guarantees the
/// file is at least `len` bytes long (segments are preallocated to full size
/// before their first mapping and never truncated while open).
pub(crate) fn map_readonly(file: &File, len: u64, path: &Path) -> Result<Mmap> {
    let actual = file.metadata().map_err(|e| Error::io("stat", path, e))?.len();
    if actual < len {
        return Err(Error::corrupt(path, actual, format!("file is {actual} bytes, expected {len}")));
    }
    let len = usize::try_from(len).map_err(|_| Error::corrupt(path, 0, "segment larger than address space"))?;
    // SAFETY: memmap2 requires that the mapped file is not modified in ways
    // that break Rust's aliasing rules, and not truncated while mapped (that
    // would raise SIGBUS on access). factlog (1) maps read-only and never
    // creates a `&mut` into the map, so concurrent `pwrite`s by the writer
    // only change bytes that readers do not look at until the writer publishes
    // them through an Acquire/Release watermark; (2) never truncates a segment
    // file while any map of it exists: recovery truncates before mapping, and
    // the store's exclusive directory lock keeps other factlog processes away.
    // We checked above that the file covers `len` bytes.
    let map = unsafe { MmapOptions::new().len(len).map(file) }.map_err(|e| Error::io("mmap", path, e))?;
    Ok(map)
}
