//! Read-only opens and whole-store verification: inspecting a store never
//! changes a byte of it, and `verify` finds damage with file and offset.
//! Every store lives in its own temporary directory.

use std::path::Path;

use factlog::{Error, ExpectedVersion, Store};
use factlog_tests::{event, small_options};

fn snapshot_of_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.file_name().unwrap() != "LOCK")
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    v.sort();
    v
}

fn filled_store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    for n in 0..700u64 {
        store.append(&format!("agg-{}", n % 5), ExpectedVersion::Any, vec![event(n % 5, n)]).unwrap();
    }
    store.close().unwrap();
    dir
}

#[test]
fn read_only_open_shares_with_readers_and_writers_and_refuses_writes() {
    let dir = filled_store();
    let writer = Store::open(dir.path(), small_options()).unwrap();
    let beside = Store::open_read_only(dir.path(), small_options()).unwrap();
    assert_eq!(beside.last_position(), Some(699), "beside a writer: up to its durable watermark");
    writer.close().unwrap();
    let a = Store::open_read_only(dir.path(), small_options()).unwrap();
    let b = Store::open_read_only(dir.path(), small_options()).unwrap();
    let writer = Store::open(dir.path(), small_options()).expect("a writer opens beside readers");
    assert!(matches!(Store::open(dir.path(), small_options()), Err(Error::Locked { .. })));
    drop(writer);
    assert_eq!(a.read_all_owned(0, usize::MAX).unwrap(), b.read_all_owned(0, usize::MAX).unwrap());
    assert!(matches!(a.append("x", ExpectedVersion::Any, vec![event(9, 9)]), Err(Error::ReadOnly { .. })));
    assert!(matches!(a.save_snapshot("agg-1", 0, factlog::SchemaVersion(1), b"s"), Err(Error::ReadOnly { .. })));
    let missing = dir.path().join("nope");
    assert!(matches!(Store::open_read_only(&missing, small_options()), Err(Error::NotAStore { .. })));
    assert!(!missing.exists());
    // Read-only with repair is a dry run: on a sound store it plans nothing.
    let dry = Store::open_read_only(dir.path(), small_options().repair(true)).unwrap();
    assert_eq!(dry.recovery_report().repaired, None);
}

#[test]
fn read_only_open_of_a_torn_store_reports_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), small_options()).unwrap();
    store.append("a", ExpectedVersion::Any, vec![event(1, 0)]).unwrap();
    let cut = store.stats().log_bytes;
    store.append("a", ExpectedVersion::Any, vec![event(1, 1), event(1, 2)]).unwrap();
    store.close().unwrap();
    let seg = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    std::fs::OpenOptions::new().write(true).open(&seg).unwrap().set_len(cut + 50).unwrap();
    let before = snapshot_of_files(dir.path());
    let ro = Store::open_read_only(dir.path(), small_options()).unwrap();
    assert!(ro.recovery_report().torn_tail.is_some());
    assert_eq!(ro.read_all_owned(0, 10).unwrap().len(), 1);
    let report = ro.verify(&mut |_, _| {}).unwrap();
    assert_eq!(report.events, 1);
    assert!(report.problems.is_empty(), "{report:?}");
    drop(ro);
    assert_eq!(snapshot_of_files(dir.path()), before, "a read-only open changed the store");
}

#[test]
fn verify_passes_a_sound_store_and_names_damage() {
    let dir = filled_store();
    {
        let store = Store::open(dir.path(), small_options()).unwrap();
        store.save_snapshot("agg-1", 10, factlog::SchemaVersion(1), b"state").unwrap();
        store.close().unwrap();
    }
    let store = Store::open_read_only(dir.path(), small_options()).unwrap();
    let mut calls = 0;
    let report = store.verify(&mut |_, _| calls += 1).unwrap();
    assert_eq!(report.events, 700);
    assert_eq!(report.aggregates, 5);
    assert_eq!(report.snapshots, 1);
    assert!(report.checkpoints >= 2);
    assert!(report.problems.is_empty(), "{report:?}");
    assert!(calls >= 1);
    drop(store);
    // Damage a sealed segment (not reached by the dedupe window at open) and a checkpoint.
    let mut segs: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    let mut b = std::fs::read(&segs[0]).unwrap();
    b[64 + 100] ^= 0x10;
    std::fs::write(&segs[0], &b).unwrap();
    let idx = segs[1].with_extension("idx");
    let mut c = std::fs::read(&idx).unwrap();
    let n = c.len();
    c[n - 2] ^= 1;
    std::fs::write(&idx, &c).unwrap();
    let opts = small_options().dedupe_window_events(10);
    let store = Store::open_read_only(dir.path(), opts).unwrap();
    let report = store.verify(&mut |_, _| {}).unwrap();
    assert!(report.problems.iter().any(|p| p.path == segs[0] && p.offset == 64), "{:?}", report.problems);
    assert!(report.problems.iter().any(|p| p.path == idx), "{:?}", report.problems);
    assert_eq!(store.locate(0).unwrap(), (segs[0].clone(), 64));
}
