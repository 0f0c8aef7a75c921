//! A store's directory: recognising it (the `FACTLOG` marker file), creating
//! it, and the `LOCK` file that keeps a second opener out. It never reads or
//! writes segments, checkpoints or snapshots.

use std::fs::{File, OpenOptions};
use std::path::Path;

use crate::error::{Error, Result};
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

/// Takes the store's lock file: exclusive for a writer, `shared` for read-only openers.
pub(crate) fn lock_dir(dir: &Path, shared: bool) -> Result<File> {
    let path = dir.join(LOCK_NAME);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io("open lock file", &path, e))?;
    let r = if shared { f.try_lock_shared() } else { f.try_lock() };
    match r {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked { path: dir.to_path_buf() }),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io("lock store", &path, e)),
    }
}
