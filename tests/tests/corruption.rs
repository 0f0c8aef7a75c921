//! Torn tails at every byte, bit flips in sealed segments, repair, unknown
//! formats and missing checkpoints: recovery must cut exactly the unfinished
//! batch, and must refuse (or, with `repair`, report) corruption before it.
//! It damages only stores it created in its own temporary directories.

use std::path::{Path, PathBuf};

use factlog::{Direction, Error, ExpectedVersion, Store};
use factlog_tests::{event, small_options};

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

#[test]
fn cutting_the_last_batch_at_every_byte_never_shows_a_partial_batch() {
    let pristine = tempfile::tempdir().unwrap();
    let store = Store::open(pristine.path(), small_options()).unwrap();
    for n in 0..4u64 {
        store.append("a", ExpectedVersion::Any, vec![event(1, n)]).unwrap();
    }
    let start = store.stats().log_bytes;
    let last = vec![event(2, 0), event(2, 1), event(2, 2)];
    store.append("b", ExpectedVersion::NoStream, last).unwrap();
    let end = store.stats().log_bytes;
    let full = store.read_all_owned(0, 100).unwrap();
    store.close().unwrap();
    let cuts = factlog_tests::for_each_cut(pristine.path(), start, end, |c| {
        let (cut, truncate) = (c.at, c.truncated);
        let store = Store::open(c.dir.path(), small_options()).unwrap();
        let got = store.read_all_owned(0, 100).unwrap();
        // A cut inside the zero padding after the last body changes no byte: the batch is whole.
        let expect = if c.intact { &full[..] } else { &full[..4] };
        assert_eq!(got, expect, "cut at {cut} (truncate={truncate}) left a partial or lost batch");
        let report = store.recovery_report();
        if !c.intact && (cut > start || truncate) {
            assert!(report.torn_tail.is_some(), "cut at {cut}: no torn tail reported: {report:?}");
            assert_eq!(store.aggregate_version("b"), None);
        }
        // The store keeps working and the new batch lands right after what survived.
        let r = store.append("c", ExpectedVersion::NoStream, vec![event(3, 0)]).unwrap();
        assert_eq!(r.first_position, expect.len() as u64);
        store.close().unwrap();
        let store = Store::open(c.dir.path(), small_options()).unwrap();
        assert_eq!(store.read_all_owned(0, 100).unwrap().len(), expect.len() + 1, "cut at {cut}");
        assert!(store.recovery_report().torn_tail.is_none(), "cut at {cut}: tail not cleaned");
    });
    assert!(cuts > 500, "only {cuts} cuts tried");
}

fn store_with_sealed_segments() -> (tempfile::TempDir, Vec<factlog::RecordedEvent>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    for n in 0..700u64 {
        store.append(&format!("agg-{}", n % 5), ExpectedVersion::Any, vec![event(n % 5, n)]).unwrap();
    }
    let all = store.read_all_owned(0, usize::MAX).unwrap();
    store.close().unwrap();
    assert!(files(dir.path(), "seg").len() >= 3);
    (dir, all)
}

fn flip_in_first_segment(dir: &Path) -> (PathBuf, usize) {
    let seg = files(dir, "seg").remove(0);
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = 64 + 32 * 1024;
    // Find a non-zero byte near the middle of the frames and flip one bit of it.
    let at = (at..bytes.len()).find(|i| bytes[*i] != 0).unwrap();
    bytes[at] ^= 0x04;
    std::fs::write(&seg, &bytes).unwrap();
    (seg, at)
}

#[test]
fn bit_flip_in_sealed_segment_is_detected_on_read_with_checkpoint() {
    let (dir, all) = store_with_sealed_segments();
    let (seg, _) = flip_in_first_segment(dir.path());
    // The idempotency window is rebuilt from the log on open; when it covers the
    // damaged segment, open itself fails, naming the file.
    match Store::open(dir.path(), small_options()) {
        Err(Error::Corrupt { path, .. }) => assert_eq!(path, seg),
        other => panic!("open should fail: {other:?}"),
    }
    // With a window that does not reach it, open succeeds and the read fails.
    let store = Store::open(dir.path(), small_options().dedupe_window_events(10)).unwrap();
    match store.read_all_owned(0, usize::MAX) {
        Err(Error::Corrupt { path, .. }) => assert_eq!(path, seg),
        other => panic!("flip not detected: {:?}", other.map(|v| v.len())),
    }
    // Events in other segments still read fine.
    let later = all.last().unwrap().position;
    let got = store.read_all_owned(later, 1);
    assert_eq!(got.unwrap()[0], *all.last().unwrap());
}

#[test]
fn bit_flip_in_sealed_segment_fails_open_without_checkpoint_and_repair_truncates() {
    let (dir, all) = store_with_sealed_segments();
    for idx in files(dir.path(), "idx") {
        std::fs::remove_file(idx).unwrap();
    }
    let (seg, _) = flip_in_first_segment(dir.path());
    match Store::open(dir.path(), small_options()) {
        Err(e @ Error::Corrupt { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(seg.file_name().unwrap().to_str().unwrap()), "{msg}");
        }
        other => panic!("open should fail: {other:?}"),
    }
    let store = Store::open(dir.path(), small_options().repair(true)).unwrap();
    let rep = store.recovery_report().repaired.clone().expect("repair reported");
    let kept = store.read_all_owned(0, usize::MAX).unwrap();
    assert_eq!(kept.len() as u64, rep.lost_from_position);
    assert_eq!(kept, all[..kept.len()]);
    assert!(!rep.removed_files.is_empty());
    store.append("agg-0", ExpectedVersion::Any, vec![event(99, 0)]).unwrap();
    drop(store);
    let store = Store::open(dir.path(), small_options()).unwrap();
    assert_eq!(store.read_all_owned(0, usize::MAX).unwrap().len(), kept.len() + 1);
}

#[test]
fn corrupt_checkpoint_is_rebuilt_and_reads_are_identical() {
    let (dir, all) = store_with_sealed_segments();
    let idx = files(dir.path(), "idx").remove(0);
    let mut b = std::fs::read(&idx).unwrap();
    let n = b.len();
    b[n / 2] ^= 0xff;
    std::fs::write(&idx, &b).unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    assert_eq!(store.recovery_report().checkpoints_rebuilt, vec![idx]);
    assert_eq!(store.read_all_owned(0, usize::MAX).unwrap(), all);
    assert_eq!(store.read_aggregate_owned("agg-2", 0, Direction::Forward, 1000).unwrap().len(), 140);
}

#[test]
fn unknown_format_version_and_foreign_files_are_clear_errors() {
    let (dir, _) = store_with_sealed_segments();
    let seg = files(dir.path(), "seg").remove(0);
    let mut b = std::fs::read(&seg).unwrap();
    b[8] = 99;
    std::fs::write(&seg, &b).unwrap();
    match Store::open(dir.path(), small_options()) {
        Err(Error::UnsupportedFormat { found: 99, path, .. }) => assert_eq!(path, seg),
        other => panic!("{other:?}"),
    }
    b[0] = b'X';
    std::fs::write(&seg, &b).unwrap();
    assert!(matches!(Store::open(dir.path(), small_options()), Err(Error::Corrupt { .. })));
    std::fs::write(dir.path().join("FACTLOG"), "factlog store\nformat 7\n").unwrap();
    assert!(matches!(Store::open(dir.path(), small_options()), Err(Error::UnsupportedFormat { found: 7, .. })));
}

/// Fuzz finding F2: a header with a valid checksum declaring an absurd
/// segment size must be refused, not padded to (recovery pads a short active
/// segment up to its header's size).
#[test]
fn a_segment_header_declaring_an_absurd_size_or_position_is_refused() {
    let (dir, _) = store_with_sealed_segments();
    let active = files(dir.path(), "seg").pop().unwrap();
    let original = std::fs::read(&active).unwrap();
    for (at, value) in [(24usize, 1u64 << 40), (24, 65 * 1024 + 1), (16, u64::MAX)] {
        let mut b = original.clone();
        b[at..at + 8].copy_from_slice(&value.to_le_bytes());
        let crc = crc32fast::hash(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&active, &b[..4096]).unwrap();
        match Store::open(dir.path(), small_options()) {
            Err(Error::Corrupt { path, offset, .. }) => assert_eq!((path, offset), (active.clone(), at as u64)),
            other => panic!("header field at {at} = {value}: {:?}", other.map(|s| s.last_position())),
        }
        assert_eq!(std::fs::metadata(&active).unwrap().len(), 4096, "the refused file was written to");
    }
    std::fs::write(&active, &original).unwrap();
    Store::open(dir.path(), small_options()).unwrap();
}

#[test]
fn garbage_after_the_last_batch_is_cut_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    store.append("a", ExpectedVersion::Any, vec![event(1, 0), event(1, 1)]).unwrap();
    let end = store.stats().log_bytes as usize;
    store.close().unwrap();
    let seg = files(dir.path(), "seg").remove(0);
    let mut b = std::fs::read(&seg).unwrap();
    // A stale frame-looking blob far past the end, separated by zeros.
    b[end + 4096..end + 4096 + 100].fill(0xAB);
    std::fs::write(&seg, &b).unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    let tail = store.recovery_report().torn_tail.clone().expect("stale bytes reported");
    assert_eq!(tail.offset as usize, end);
    assert!(tail.bytes_zeroed >= 100);
    assert_eq!(store.read_all_owned(0, 10).unwrap().len(), 2);
}

#[test]
fn damage_in_synced_data_of_the_active_segment_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    let mut ends = Vec::new();
    for n in 0..10u64 {
        store.append("a", ExpectedVersion::Any, vec![event(1, n)]).unwrap();
        ends.push(store.stats().log_bytes);
    }
    let all = store.read_all_owned(0, 100).unwrap();
    store.close().unwrap();
    let seg = files(dir.path(), "seg").remove(0);
    let mut b = std::fs::read(&seg).unwrap();
    // Flip a bit inside the body of the 4th event: six later appends were each
    // synced on their own, so this cannot be a torn write.
    b[ends[2] as usize + 40] ^= 0x01;
    std::fs::write(&seg, &b).unwrap();
    match Store::open(dir.path(), small_options()) {
        Err(Error::Corrupt { path, offset, .. }) => {
            assert_eq!(path, seg);
            assert_eq!(offset, ends[2]);
        }
        other => panic!("acknowledged events would be dropped silently: {other:?}"),
    }
    let store = Store::open(dir.path(), small_options().repair(true)).unwrap();
    let rep = store.recovery_report().repaired.clone().expect("repair reported");
    assert_eq!(rep.lost_from_position, 3);
    assert_eq!(store.read_all_owned(0, 100).unwrap(), all[..3]);
}

#[test]
fn damage_to_the_first_frame_of_the_last_write_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    store.append("a", ExpectedVersion::Any, vec![event(1, 0)]).unwrap();
    let start = store.stats().log_bytes as usize;
    // One write of three frames; its later frames reach the disk, its first does not.
    store.append("a", ExpectedVersion::Any, vec![event(1, 1), event(1, 2), event(1, 3)]).unwrap();
    store.close().unwrap();
    let seg = files(dir.path(), "seg").remove(0);
    let mut b = std::fs::read(&seg).unwrap();
    b[start..start + 64].fill(0);
    std::fs::write(&seg, &b).unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    assert!(store.recovery_report().torn_tail.is_some());
    assert_eq!(store.read_all_owned(0, 100).unwrap().len(), 1);
}
