//! SIGKILL during snapshot saves, file rolls and compactions: after every
//! kill, each aggregate's newest snapshot is at least as new as the last
//! acknowledged save and byte-identical to what was saved. The same on the
//! power-cut file system (`tests/powercut`), cutting the power before each
//! kill, with tiny files compacted at every roll and, on a second store, with
//! every snapshot kept (rolls with no compaction after them). It kills only the child it spawned, and works in its own temporary
//! directory (and, for the power cut, its own mount point).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use factlog::Store;
use factlog_powercut::{Outcome, Plan};
use factlog_tests::random;
use factlog_tests::snapshot_crash as spec;
use rand::Rng;

/// An armed cut fires at one of the child's next 1..=this mutating calls
/// (a save is a `pwrite` and an `fdatasync`, its append three calls more).
const ARMED_NTH_MAX: u64 = 100;

#[test]
fn sigkill_during_snapshot_compaction_loses_no_acknowledged_snapshot() {
    let cycles: u64 = std::env::var("FACTLOG_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(30) / 2;
    let work = tempfile::tempdir().unwrap();
    torture(&work.path().join("store"), work.path(), cycles, None, false);
}

/// The same with the store on the power-cut file system and the ack log on
/// the real disk: `FACTLOG_POWERCUT_CYCLES / 3` cycles (60 / 3 by default);
/// `FACTLOG_POWERCUT=0` skips it (as the event-log suites in `crash.rs`).
#[test]
fn power_cut_during_snapshot_saves_loses_no_acknowledged_snapshot() {
    if std::env::var_os("FACTLOG_POWERCUT").is_some_and(|v| v == "0") {
        eprintln!("skipped: FACTLOG_POWERCUT=0");
        return;
    }
    let cycles = std::env::var("FACTLOG_POWERCUT_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(60u64) / 3;
    let mount_dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("powercut-crash-snapshots");
    std::fs::create_dir_all(&mount_dir).expect("create the mount point");
    let Some(mount) = factlog_powercut::mount_or_skip(&mount_dir) else { return };
    let work = tempfile::tempdir().unwrap();
    torture(&mount.path().join("store"), work.path(), cycles, Some(&mount), false);
    // IMPORTANT: compaction syncs the directory right after most rolls, which
    // hides a new snapshot file whose own directory fsync is missing. With
    // every snapshot kept nothing is compacted, and that fsync is all there is.
    let keep_all = work.path().join("keep-all");
    std::fs::create_dir_all(&keep_all).unwrap();
    torture(&mount.path().join("store-keeping-all"), &keep_all, cycles, Some(&mount), true);
    eprintln!("snapshot crash on the power-cut file system: {:?}", mount.stats());
}

/// Kill cycles against the store in `dir`, acks in `work`; with `power`, the
/// power is cut before each kill (now or armed, see `Plan::random`) and
/// restored after. With `keep_all`, every snapshot is kept
/// (`spec::options_keeping_all`), so nothing is compacted.
fn torture(
    dir: &std::path::Path,
    work: &std::path::Path,
    cycles: u64,
    power: Option<&factlog_powercut::PowerCutMount>,
    keep_all: bool,
) {
    let options = if keep_all { spec::options_keeping_all() } else { spec::options() };
    let dir = dir.to_path_buf();
    let acks = work.join("acks.log");
    let mut verified = 0u64;
    let mut max_files = 0u64;
    let (mut armed, mut armed_fired) = (0u64, 0u64);
    for cycle in 0..cycles.max(3) {
        // The child's stderr goes to a file: after an armed cut it panics on `EIO`, as it should.
        let stderr_path = work.join("child.stderr");
        let mut child = Command::new(env!("CARGO_BIN_EXE_snapshot_crash_child"))
            .arg(&dir)
            .arg(&acks)
            .args(keep_all.then_some("keep-all"))
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).expect("create the child's stderr file"))
            .spawn()
            .expect("spawn child");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("read ready");
        assert_eq!(
            line.trim(),
            "ready",
            "cycle {cycle}: child did not start; stderr:\n{}",
            std::fs::read_to_string(&stderr_path).unwrap_or_default()
        );
        let mut rng = random::rng(&[cycle, u64::from(keep_all)]);
        std::thread::sleep(Duration::from_millis(rng.gen_range(20..320)));
        if let Some(mount) = power {
            // Cut (now, or armed at one of the child's next calls), kill, power on.
            let plan = Plan::random(&mut rng, ARMED_NTH_MAX);
            let outcome = mount.cut_and_kill(plan, &mut child).unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
            armed += u64::from(matches!(plan, Plan::Arm(..)));
            armed_fired += u64::from(outcome == Outcome::ArmedFired);
        } else {
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
        }
        let store = Store::open(&dir, options.clone()).unwrap_or_else(|e| panic!("cycle {cycle}: reopen failed: {e}"));
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
        "snapshot crash{}: {} kills, {saves} acknowledged saves, {verified} newest-snapshot checks, at most {max_files} snapshot files{}",
        if keep_all { " (every snapshot kept)" } else { "" },
        cycles.max(3),
        if power.is_some() {
            format!("; {armed} cuts armed at one of the next 1..={ARMED_NTH_MAX} calls, {armed_fired} fired")
        } else {
            String::new()
        }
    );
    // Without compaction, thousands of saves in 4 KiB files would leave hundreds of files.
    assert!(keep_all || max_files < 40, "compaction is not keeping up: {max_files} files");
}
