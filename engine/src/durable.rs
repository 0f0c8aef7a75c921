//! Durable file operations: the one place that knows how to make a new
//! file's contents and its name survive a crash (write a temporary file,
//! fsync it, rename it into place, fsync the directory), how to make a
//! directory entry durable, and how to zero-fill a region. Every module that
//! creates a file goes through here, so the crash argument is made once
//! (`docs/FORMAT.md`, "Crash safety"). It never decides what a file holds.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Suffix of a temporary file not yet renamed into place. Opening a store
/// removes leftovers: they were never acknowledged.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// Bytes zero-filled per `write` call.
const ZERO_CHUNK_BYTES: usize = 1 << 20;

/// Fsyncs a directory so that file creations, renames and removals in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io("fsync directory", dir, e))
}

/// Writes `parts` (concatenated) as the file `dir/name`, crash-safely: after
/// a crash at any point the file is either absent (or its previous version)
/// or complete. `what` names the file in error messages ("index checkpoint").
pub(crate) fn write_file(dir: &Path, name: &str, parts: &[&[u8]], what: &'static str) -> Result<PathBuf> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let written = (|| {
        let mut f = File::create(&tmp)?;
        for part in parts {
            f.write_all(part)?;
        }
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(what, &tmp, e));
    }
    // IMPORTANT: rename only after the contents are durable, then fsync the directory.
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(what, &path, e))?;
    sync_dir(dir)?;
    Ok(path)
}

/// Writes zeros over `from..to` of `file` with `pwrite`, in large chunks.
/// Does not sync.
pub(crate) fn zero_fill(file: &File, path: &Path, from: u64, to: u64) -> Result<()> {
    let zeros = vec![0u8; ZERO_CHUNK_BYTES];
    let mut at = from;
    while at < to {
        let n = (to - at).min(ZERO_CHUNK_BYTES as u64) as usize;
        file.write_all_at(&zeros[..n], at).map_err(|e| Error::io("zero-fill", path, e))?;
        at += n as u64;
    }
    Ok(())
}

/// Creates (or truncates) `path`, zero-fills it to `len` bytes and syncs it
/// (not its directory). On error the file is removed.
pub(crate) fn create_zeroed(path: &Path, len: u64) -> Result<()> {
    let result = (|| {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| Error::io("create file", path, e))?;
        zero_fill(&f, path, 0, len)?;
        f.sync_all().map_err(|e| Error::io("fsync new file", path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(path);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_file_replaces_atomically_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_file(dir.path(), "a.bin", &[b"he", b"llo"], "test file").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"hello");
        write_file(dir.path(), "a.bin", &[b"bye"], "test file").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"bye");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.bin")]);
    }

    #[test]
    fn create_zeroed_makes_a_zero_file_of_the_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("z");
        std::fs::write(&p, b"old contents").unwrap();
        create_zeroed(&p, 3 * ZERO_CHUNK_BYTES as u64 / 2).unwrap();
        let b = std::fs::read(&p).unwrap();
        assert_eq!(b.len(), 3 * ZERO_CHUNK_BYTES / 2);
        assert!(b.iter().all(|x| *x == 0));
    }
}
