//! Scratch stores: the options every fuzz check opens a store with, the
//! temporary directory it lives in, and reading a store's files back. A
//! check never opens a store anywhere else, so no check can touch files it
//! did not create.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use factlog::Options;

/// Segment size of every store the fuzz checks build.
pub const SEGMENT_BYTES: u64 = 64 * 1024;
/// `max_event_bytes` of every store the fuzz checks build.
pub const MAX_EVENT_BYTES: u32 = 16 * 1024;
/// `max_snapshot_bytes`, and the cap used when decompressing fuzzed snapshot frames.
pub const MAX_SNAPSHOT_BYTES: u32 = 1 << 20;
/// Contents of the `FACTLOG` marker file of a store.
pub(super) const MARKER_TEXT: &str = "factlog store\nformat 1\n";

/// Options of every store the fuzz checks open: small segments (so stores
/// roll), small snapshot files (so they seal and get checkpoints).
pub fn fuzz_options() -> Options {
    Options::default()
        .segment_bytes(SEGMENT_BYTES)
        .max_event_bytes(MAX_EVENT_BYTES)
        .snapshot_file_bytes(4096)
        .snapshots_keep(2)
        .max_snapshot_bytes(MAX_SNAPSHOT_BYTES)
}

/// A fresh scratch directory (removed on drop) under `$FACTLOG_FUZZ_TMPDIR`,
/// else `/dev/shm` when it is writable, else the system temp directory.
pub fn scratch_dir() -> tempfile::TempDir {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    let base = BASE.get_or_init(|| {
        if let Some(p) = std::env::var_os("FACTLOG_FUZZ_TMPDIR") {
            return PathBuf::from(p);
        }
        let shm = Path::new("/dev/shm");
        if shm.is_dir() && tempfile::tempdir_in(shm).is_ok() {
            return shm.to_path_buf();
        }
        std::env::temp_dir()
    });
    tempfile::Builder::new().prefix("factlog-fuzz-").tempdir_in(base).expect("create scratch directory")
}

/// Whether `FACTLOG_FUZZ_VERBOSE` asks the checks to say what they do.
pub(super) fn verbose() -> bool {
    std::env::var_os("FACTLOG_FUZZ_VERBOSE").is_some()
}

/// The files of a store (top level and `snapshots/`, `LOCK` excluded) by
/// path relative to `dir`, sorted.
pub(super) fn read_tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for sub in ["", "snapshots"] {
        let Ok(rd) = std::fs::read_dir(dir.join(sub)) else { continue };
        for e in rd {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "LOCK" || e.path().is_dir() {
                continue;
            }
            let rel = if sub.is_empty() { name } else { format!("{sub}/{name}") };
            files.push((rel, std::fs::read(e.path()).unwrap()));
        }
    }
    files.sort();
    files
}
