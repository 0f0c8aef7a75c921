//! SIGKILL during snapshot saves, file rolls and compactions: after every
//! kill, each aggregate's newest snapshot is at least as new as the last
//! acknowledged save and byte-identical to what was saved. It kills only
//! the child it spawned, and works in its own temporary directory.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use factlog::Store;
use factlog_tests::random;
use factlog_tests::snapshot_crash as spec;
use rand::Rng;

#[test]
fn sigkill_during_snapshot_compaction_loses_no_acknowledged_snapshot() {
    let cycles: u64 = std::env::var("FACTLOG_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(30) / 2;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("store");
    let acks = work.path().join("acks.log");
    let mut verified = 0u64;
    let mut max_files = 0u64;
    for cycle in 0..cycles.max(3) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_snapshot_crash_child"))
            .arg(&dir)
            .arg(&acks)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn child");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("read ready");
        assert_eq!(line.trim(), "ready", "cycle {cycle}: child did not start");
        std::thread::sleep(Duration::from_millis(random::rng(&[cycle]).gen_range(20..320)));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        let store = Store::open(&dir, spec::options()).unwrap_or_else(|e| panic!("cycle {cycle}: reopen failed: {e}"));
        let mut last: HashMap<String, u64> = HashMap::new();
        for l in std::fs::read_to_string(&acks).unwrap().lines() {
            let mut w = l.split_whitespace().skip(1);
            let (Some(agg), Some(v)) = (w.next(), w.next().and_then(|v| v.parse().ok())) else { continue };
            let e = last.entry(agg.to_string()).or_insert(v);
            *e = (*e).max(v);
        }
        for (agg, acked) in &last {
            let snap = store
                .latest_snapshot(agg)
                .unwrap_or_else(|e| panic!("cycle {cycle}: {agg}: {e}"))
                .unwrap_or_else(|| panic!("cycle {cycle}: acknowledged snapshot of {agg} v{acked} LOST"));
            assert!(
                snap.version >= *acked,
                "cycle {cycle}: {agg} snapshot v{} older than acked v{acked}",
                snap.version
            );
            assert_eq!(snap.data, spec::state(agg, snap.version), "cycle {cycle}: {agg} v{} altered", snap.version);
            verified += 1;
        }
        max_files = max_files.max(store.stats().snapshot_files);
        store.close().unwrap();
    }
    let saves = std::fs::read_to_string(&acks).unwrap().lines().count();
    eprintln!(
        "snapshot crash: {} kills, {saves} acknowledged saves, {verified} newest-snapshot checks, at most {max_files} snapshot files",
        cycles.max(3)
    );
    // Without compaction, thousands of saves in 4 KiB files would leave hundreds of files.
    assert!(max_files < 40, "compaction is not keeping up: {max_files} files");
}
