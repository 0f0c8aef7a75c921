//! Disk usage of a store directory: apparent file sizes (what `ls` shows,
//! including preallocated space) and allocated blocks (what `du` shows).

use anyhow::Result;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Sizes summed over every regular file under a directory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Sum of file lengths.
    pub apparent_bytes: u64,
    /// Sum of allocated blocks × 512.
    pub allocated_bytes: u64,
    /// Number of regular files.
    pub files: u64,
}

/// Walks `dir` recursively (not following symlinks).
pub fn usage(dir: &Path) -> Result<DiskUsage> {
    let mut total = DiskUsage::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total.apparent_bytes += meta.len();
                total.allocated_bytes += meta.blocks() * 512;
                total.files += 1;
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("a"), [1u8; 100]).expect("write");
        std::fs::write(dir.path().join("sub/b"), [1u8; 50]).expect("write");
        let u = usage(dir.path()).expect("usage");
        assert_eq!(u.apparent_bytes, 150);
        assert_eq!(u.files, 2);
    }
}
