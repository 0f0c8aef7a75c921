//! Read-only memory maps of segment files. One of the two modules allowed to
//! use `unsafe` (the other is `view`, whose one caller is `segment`). It must never map a file that may
//! shrink while mapped, and never map writable: the writer (in this process
//! or, for a read-only store, another one) appends with `pwrite`, so a full
//! disk is an error code, not a SIGBUS.

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
    // creates a `&mut` into the map. The writer, in this process or another
    // one, appends with `pwrite` only at or past its write offset, which is
    // at or past every end it has published; a reader looks at a byte only
    // below a published end: in-process through the Acquire/Release
    // watermark, across processes through the `WATERMARK` file (whose end
    // covers only synced bytes, see `watermark`). Published bytes are never
    // written again: recovery (a restarted writer) zeroes only past the end
    // of the complete batches, which is at or past every published end, and
    // a repair, which may rewrite below it, takes the `LOCK` byte that every
    // read-only store holds, so it runs only when no reader exists. (2) No
    // code shrinks a segment file: segments are created at full size and
    // never truncated (recovery only pads a short one, before mapping it),
    // and repair removes files with `unlink`, which leaves existing maps
    // intact. We checked above that the file covers `len` bytes.
    let map = unsafe { MmapOptions::new().len(len).map(file) }.map_err(|e| Error::io("mmap", path, e))?;
    Ok(map)
}

/// Maps a whole index file (`index_file`) read-only; `len` is its length.
pub(crate) fn map_index_file(file: &File, len: u64, path: &Path) -> Result<Mmap> {
    let len = usize::try_from(len).map_err(|_| Error::corrupt(path, 0, "index file larger than address space"))?;
    // SAFETY: an index file is immutable once it has its name: it is written
    // whole to a temporary file, fsynced and renamed into place
    // (`durable::write_file`), and no code ever opens one for writing again.
    // A newer version of it is a new file renamed over the name, and removal
    // is `unlink`: both leave this inode, and so this map, intact. Nothing
    // truncates it, so no access past its end can fault; `len` is its length
    // as stat'ed on this open file. The map is read-only and no `&mut` into
    // it is ever made. Its bytes are only used after `IndexFile::open` checked
    // their checksum (and every read is bounds-checked).
    let map = unsafe { MmapOptions::new().len(len).map(file) }.map_err(|e| Error::io("mmap index file", path, e))?;
    Ok(map)
}
