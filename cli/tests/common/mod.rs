//! Helpers shared by the CLI's test binaries (each includes it with `mod common;`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use factlog::LOCK_NAME;

/// Every file under `dir` (recursively) with its contents, except the lock file.
pub fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if path.file_name().unwrap() != LOCK_NAME {
                files.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}
