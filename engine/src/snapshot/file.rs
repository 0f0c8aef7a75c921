//! An open snapshot file: its number, its path (for error messages) and its
//! handle, shared through an `Arc` by the catalog and by every reader that
//! looked it up, and the positional reads made on it. Reads go through the
//! handle, never the path: after compaction renames a new file over the
//! path, a reader holding the old handle still reads the old, unchanged file.
//! This module never writes and never decides what a file holds.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::frame;
use crate::error::{Error, Result};

/// One open `.snap` file.
pub(crate) struct SnapFile {
    pub no: u64,
    pub path: PathBuf,
    pub file: File,
}

impl SnapFile {
    /// Opens snapshot file `no` of the snapshot directory `dir`, for writing
    /// too if `writable` (the active file, or a torn tail to cut at open).
    pub(crate) fn open(dir: &Path, no: u64, writable: bool) -> Result<SnapFile> {
        let path = dir.join(frame::file_name(no));
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(&path)
            .map_err(|e| Error::io("open snapshot file", &path, e))?;
        Ok(SnapFile { no, path, file })
    }

    /// The `len` bytes at `offset`.
    pub(crate) fn read_at(&self, offset: u64, len: usize, op: &'static str) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, offset).map_err(|e| Error::io(op, &self.path, e))?;
        Ok(buf)
    }

    /// The first `len` bytes, or fewer if the file is shorter.
    pub(crate) fn read_prefix(&self, len: u64, op: &'static str) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
        let mut filled = 0;
        while filled < buf.len() {
            match self.file.read_at(&mut buf[filled..], filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(op, &self.path, e)),
            }
        }
        buf.truncate(filled);
        Ok(buf)
    }

    /// The file's length on disk.
    pub(crate) fn disk_len(&self) -> Result<u64> {
        self.file.metadata().map(|m| m.len()).map_err(|e| Error::io("stat snapshot file", &self.path, e))
    }
}
