//! Kill -9 during the lifecycle: a child appends, deletes aggregates and
//! scavenges in a loop with retention on (`lifecycle_crash_child`); it is
//! killed at a random moment, the store reopened and checked, and the next
//! child goes on with the same store. After every kill: the store opens and
//! verifies clean, every acknowledged append is there intact unless a
//! delete (acknowledged or not) or retention hides it, versions never
//! restart, no batch is partial, and no byte of an aggregate hard-deleted
//! before a completed scavenge is in any segment file. Each cycle uses the
//! one temporary store of this test.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use factlog::{DeleteMode, Direction, Store};
use factlog_tests::lifecycle_crash as spec;

const CHILD: &str = env!("CARGO_BIN_EXE_lifecycle_crash_child");
const CYCLES: u64 = 12;

/// One acknowledged append.
struct Acked {
    aggregate: String,
    first_position: u64,
    first_version: u64,
    serial: u64,
}

fn run_child(store: &std::path::Path, ack: &std::path::Path, seed: u64) {
    let mut child = Command::new(CHILD)
        .arg(store)
        .arg(ack)
        .arg(seed.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the child");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line).expect("read the child's stdout");
    assert_eq!(line.trim(), "ready", "the child did not get ready");
    // 20..420 ms: enough for several scavenges and retention runs.
    std::thread::sleep(Duration::from_millis(20 + (seed * 7919) % 400));
    assert!(child.try_wait().expect("poll the child").is_none(), "the child exited on its own");
    child.kill().expect("kill the child");
    child.wait().expect("reap the child");
}

#[test]
fn sigkill_during_scavenge_retention_and_deletes_loses_nothing_and_resurrects_nothing() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("store");
    let mut acked: Vec<Acked> = Vec::new();
    let mut hard: HashMap<String, usize> = HashMap::new();
    // (aggregates hard-deleted before it, the first position that was active) per completed scavenge.
    let mut scavenged: Vec<(Vec<String>, u64)> = Vec::new();
    for cycle in 0..CYCLES {
        let ack = work.path().join(format!("ack-{cycle}.log"));
        run_child(&dir, &ack, cycle + 1);
        for line in std::fs::read_to_string(&ack).unwrap().lines() {
            let f: Vec<&str> = line.split(' ').collect();
            match f[..] {
                ["append", agg, pos, ver, "3", serial] => acked.push(Acked {
                    aggregate: agg.to_string(),
                    first_position: pos.parse().unwrap(),
                    first_version: ver.parse().unwrap(),
                    serial: serial.parse().unwrap(),
                }),
                ["delete", agg, "hard"] => {
                    hard.insert(agg.to_string(), acked.len());
                }
                ["delete", _, "soft"] => {}
                ["scavenged", active] => scavenged.push((hard.keys().cloned().collect(), active.parse().unwrap())),
                _ => panic!("cycle {cycle}: unexpected ack line {line:?}"),
            }
        }
        let store = Store::open(&dir, spec::options()).unwrap_or_else(|e| panic!("cycle {cycle}: reopen: {e}"));
        let report = store.verify(&mut |_, _| {}).unwrap();
        assert!(report.problems.is_empty(), "cycle {cycle}: {:?}", report.problems);
        let first = store.first_position().unwrap_or(0);
        // Versions only grow, per aggregate, in the order appends were acknowledged.
        let mut last_version: HashMap<&str, u64> = HashMap::new();
        for a in &acked {
            if let Some(prev) = last_version.insert(&a.aggregate, a.first_version + 2) {
                assert!(
                    a.first_version > prev,
                    "cycle {cycle}: {} restarted its versions at {}",
                    a.aggregate,
                    a.first_version
                );
            }
        }
        // Every acknowledged append is there, whole, unless hidden by a delete or retention.
        let reader = store.reader();
        for a in acked.iter().filter(|a| a.first_position >= first) {
            let state = store.stream_state(&a.aggregate);
            let hidden = state.is_some_and(|s| {
                s.deleted == Some(DeleteMode::Hard) || s.meta.truncate_before.unwrap_or(0) > a.first_version
            });
            for i in 0..3u64 {
                match reader.event_at_position(a.first_position + i) {
                    Ok(e) => {
                        assert!(!hidden, "cycle {cycle}: a deleted event of {} is visible", a.aggregate);
                        let want = spec::event(a.serial, i);
                        assert_eq!(e.event_id(), want.event_id, "cycle {cycle}: position {}", a.first_position + i);
                        assert_eq!(e.version(), a.first_version + i);
                        assert_eq!(e.data(), &want.data[..]);
                    }
                    Err(e) => {
                        assert!(hidden, "cycle {cycle}: acknowledged event {} of serial {} lost: {e}", i, a.serial)
                    }
                }
            }
        }
        // Batches are whole and versions dense among what is visible.
        for n in 0..spec::AGGREGATES {
            let events =
                reader.read_aggregate(&spec::aggregate(n), 0, Direction::Forward).collect::<Result<Vec<_>, _>>();
            let events = events.unwrap_or_else(|e| panic!("cycle {cycle}: read {}: {e}", spec::aggregate(n)));
            assert!(
                events.windows(2).all(|w| w[1].version() == w[0].version() + 1),
                "cycle {cycle}: versions not dense"
            );
            assert!(events.first().is_none_or(|e| e.event_id().0[8..12] == [0; 4]), "cycle {cycle}: a partial batch");
        }
        drop(reader);
        // What a completed scavenge removed is in no segment file: every
        // payload names its serial ("<12 digits>/<i>|"), so one pass per file
        // finds every serial the files still hold.
        let mut held = std::collections::HashSet::new();
        for f in factlog_tests::segment_files(&dir) {
            let b = std::fs::read(&f).unwrap();
            for at in 12..b.len().saturating_sub(2) {
                if &b[at..at + 3] == b"/0|" {
                    if let Some(serial) = std::str::from_utf8(&b[at - 12..at]).ok().and_then(|d| d.parse::<u64>().ok())
                    {
                        held.insert(serial);
                    }
                }
            }
        }
        for (deleted, active) in &scavenged {
            for a in acked.iter().filter(|a| deleted.contains(&a.aggregate) && a.first_position + 2 < *active) {
                assert!(
                    !held.contains(&a.serial),
                    "cycle {cycle}: a segment file still holds hard-deleted serial {}",
                    a.serial
                );
            }
        }
        store.close().unwrap();
    }
    assert!(!scavenged.is_empty() && !hard.is_empty(), "the children never scavenged after a hard delete");
}
