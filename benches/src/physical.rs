//! Physical limits of this machine measured in the same run, so every engine
//! figure can be read against what the hardware allows: durable small writes
//! per second (pwrite 4 KiB + fdatasync), sequential buffered write bandwidth
//! (1 MiB writes, one fdatasync at the end, time included) and memory copy
//! bandwidth (a 64 MiB buffer copied repeatedly). The syncs are
//! [`std::fs::File::sync_data`], which is `fdatasync(2)` on Linux.

use crate::progress::Progress;
use crate::report::fmt_num;
use anyhow::{Context, Result};
use serde::Serialize;
use std::fs::OpenOptions;
use std::hint::black_box;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Measured limits (the JSON report's `physical`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Physical {
    /// 4 KiB overwrite + fdatasync round trips per second.
    pub fsync_per_sec: f64,
    /// Median latency of one such round trip, µs.
    pub fsync_p50_us: f64,
    /// Buffered sequential write bandwidth including the final fdatasync, MB/s (10^6).
    pub seq_write_mb_per_sec: f64,
    /// Bytes written for the sequential-write figure.
    pub seq_write_bytes: u64,
    /// Memory copy bandwidth, MB/s (10^6).
    pub memcpy_mb_per_sec: f64,
}

impl Physical {
    /// One-line summary, figures to three significant digits.
    pub fn one_line(&self) -> String {
        format!(
            "physical limits: {} fsync/s (4 KiB pwrite + fdatasync, p50 {} µs) | seq write {} MB/s \
             ({} MiB + fdatasync) | memcpy {} MB/s",
            fmt_num(self.fsync_per_sec),
            fmt_num(self.fsync_p50_us),
            fmt_num(self.seq_write_mb_per_sec),
            self.seq_write_bytes >> 20,
            fmt_num(self.memcpy_mb_per_sec)
        )
    }
}

/// Runs all three measurements in `dir` (files are removed afterwards).
pub fn measure(dir: &Path, fsync_time: Duration, seq_write_mib: u64, progress: &Progress) -> Result<Physical> {
    std::fs::create_dir_all(dir)?;
    let (fsync_per_sec, fsync_p50_us) = fsync_rate(&dir.join("physical-fsync.dat"), fsync_time, progress)?;
    let seq_write_mb_per_sec = seq_write(&dir.join("physical-seq.dat"), seq_write_mib, progress)?;
    let memcpy_mb_per_sec = memcpy(progress);
    Ok(Physical {
        fsync_per_sec,
        fsync_p50_us,
        seq_write_mb_per_sec,
        seq_write_bytes: seq_write_mib << 20,
        memcpy_mb_per_sec,
    })
}

/// 4 KiB pwrite over a preallocated, synced 1 MiB file, each followed by
/// fdatasync, cycling through the file like a log; for `time`.
fn fsync_rate(path: &Path, time: Duration, progress: &Progress) -> Result<(f64, f64)> {
    const BLOCK: usize = 4096;
    const BLOCKS: u64 = 256;
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)
        .context(format!("creating {}", path.display()))?;
    let block = vec![0x5Au8; BLOCK];
    for i in 0..BLOCKS {
        file.write_all_at(&block, i * BLOCK as u64)?;
    }
    file.sync_all()?;
    let pb = progress.timed("physical: fsync/s", time);
    let mut lat = crate::latency::Samples::with_capacity(4096);
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < time {
        let t = Instant::now();
        file.write_all_at(&block, (n % BLOCKS) * BLOCK as u64)?;
        file.sync_data().context("fdatasync")?;
        lat.record(t.elapsed());
        n += 1;
        if n.is_multiple_of(64) {
            pb.set_position(start.elapsed().as_millis() as u64);
            pb.set_message(format!("{n} syncs"));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    pb.finish_and_clear();
    drop(file);
    std::fs::remove_file(path)?;
    Ok((n as f64 / secs, lat.summarize().p50_us))
}

/// `mib` buffered 1 MiB writes to a new file plus one fdatasync, timed together.
fn seq_write(path: &Path, mib: u64, progress: &Progress) -> Result<f64> {
    let buf: Vec<u8> = (0..1usize << 20).map(|i| (i * 31 % 251) as u8).collect();
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)
        .context(format!("creating {}", path.display()))?;
    let pb = progress.counter("physical: seq write", mib, "MiB");
    let start = Instant::now();
    for i in 0..mib {
        file.write_all(&buf)?;
        if i % 16 == 0 {
            pb.set_position(i);
        }
    }
    file.sync_data().context("fdatasync")?;
    let secs = start.elapsed().as_secs_f64();
    pb.finish_and_clear();
    drop(file);
    std::fs::remove_file(path)?;
    Ok((mib << 20) as f64 / secs / 1e6)
}

/// Copies a 64 MiB buffer into another for about a second (after one warm-up
/// copy that faults the pages in).
fn memcpy(progress: &Progress) -> f64 {
    const LEN: usize = 64 << 20;
    let time = Duration::from_secs(1);
    let src: Vec<u8> = (0..LEN).map(|i| i as u8).collect();
    let mut dst = vec![0u8; LEN];
    dst.copy_from_slice(&src);
    let pb = progress.timed("physical: memcpy", time);
    let start = Instant::now();
    let mut copies = 0u64;
    while start.elapsed() < time {
        dst.copy_from_slice(black_box(&src));
        black_box(&mut dst);
        copies += 1;
        pb.set_position(start.elapsed().as_millis() as u64);
    }
    let secs = start.elapsed().as_secs_f64();
    pb.finish_and_clear();
    (copies * LEN as u64) as f64 / secs / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_measurement_is_positive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = measure(dir.path(), Duration::from_millis(50), 4, &Progress::detect(true)).expect("measure");
        assert!(p.fsync_per_sec > 0.0);
        assert!(p.seq_write_mb_per_sec > 0.0);
        assert!(p.memcpy_mb_per_sec > 0.0);
    }
}
