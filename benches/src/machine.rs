//! What machine the benchmark ran on (CPU, cores, memory, kernel, the file
//! system holding the data directory) and this process's peak resident memory.

use serde::Serialize;
use std::path::Path;

/// Description of the host, printed above the table and in JSON `machine`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MachineInfo {
    /// CPU model name from /proc/cpuinfo.
    pub cpu_model: String,
    /// Logical cores available to this process.
    pub cores: usize,
    /// Total memory in bytes.
    pub mem_bytes: u64,
    /// `uname -sr`.
    pub kernel: String,
    /// File system type of the data directory (e.g. ext4).
    pub fs_type: String,
    /// Device / source mounted at the data directory's mount point.
    pub fs_source: String,
    /// Mount point holding the data directory.
    pub fs_mount: String,
}

impl MachineInfo {
    /// Collects what can be found; unknown fields stay empty or zero.
    pub fn collect(data_dir: &Path) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mem_bytes = proc_kb("/proc/meminfo", "MemTotal:").unwrap_or(0) * 1024;
        let (fs_type, fs_source, fs_mount) = mount_of(data_dir).unwrap_or_default();
        MachineInfo { cpu_model, cores, mem_bytes, kernel: kernel(), fs_type, fs_source, fs_mount }
    }

    /// One-line summary.
    pub fn one_line(&self) -> String {
        format!(
            "{} | {} cores | {:.1} GiB RAM | {} | data on {} ({} at {})",
            self.cpu_model,
            self.cores,
            self.mem_bytes as f64 / (1u64 << 30) as f64,
            self.kernel,
            self.fs_type,
            self.fs_source,
            self.fs_mount
        )
    }
}

/// A `key:   123 kB` line of a /proc file, in kB.
fn proc_kb(file: &str, key: &str) -> Option<u64> {
    std::fs::read_to_string(file).ok()?.lines().find(|l| l.starts_with(key))?.split_whitespace().nth(1)?.parse().ok()
}

/// `uname -sr`, read from /proc (what `uname(2)` returns, without unsafe code).
fn kernel() -> String {
    let read = |f: &str| std::fs::read_to_string(f).ok().map(|s| s.trim().to_owned());
    match (read("/proc/sys/kernel/ostype"), read("/proc/sys/kernel/osrelease")) {
        (Some(sys), Some(rel)) => format!("{sys} {rel}"),
        _ => "unknown".to_owned(),
    }
}

/// (fs type, source, mount point) of the longest mount point containing `path`.
fn mount_of(path: &Path) -> Option<(String, String, String)> {
    let path = path.canonicalize().ok()?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut best: Option<(usize, (String, String, String))> = None;
    for line in mountinfo.lines() {
        // id parent major:minor root mount-point opts [optional...] - fstype source superopts
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(mount), Some(fstype), Some(source)) = (fields.get(4), fields.get(sep + 1), fields.get(sep + 2))
        else {
            continue;
        };
        let mount = mount.replace("\\040", " ");
        if path.starts_with(&mount) && best.as_ref().is_none_or(|(len, _)| mount.len() >= *len) {
            best = Some((mount.len(), ((*fstype).to_owned(), (*source).to_owned(), mount)));
        }
    }
    best.map(|(_, v)| v)
}

/// Peak resident set size of this process so far (VmHWM), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    proc_kb("/proc/self/status", "VmHWM:").map(|kb| kb * 1024)
}

/// Current resident memory split into anonymous (heap, stacks) and
/// file-backed (memory-mapped files, e.g. log segments) bytes.
pub fn rss_anon_file_bytes() -> Option<(u64, u64)> {
    let anon = proc_kb("/proc/self/status", "RssAnon:")?;
    let file = proc_kb("/proc/self/status", "RssFile:")?;
    Some((anon * 1024, file * 1024))
}

/// Resets the peak-RSS watermark to the current RSS (Linux ≥ 4.0:
/// writing 5 to /proc/self/clear_refs), so each engine's peak can be read on
/// its own. Returns the resident set size right after the reset (VmRSS),
/// or `None` when the kernel refused the reset.
pub fn reset_peak_rss() -> Option<u64> {
    std::fs::write("/proc/self/clear_refs", b"5").ok()?;
    proc_kb("/proc/self/status", "VmRSS:").map(|kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_something() {
        let m = MachineInfo::collect(Path::new("."));
        assert!(m.cores >= 1);
        assert!(!m.kernel.is_empty());
        assert!(peak_rss_bytes().unwrap_or(1) > 0);
    }
}
