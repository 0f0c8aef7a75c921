//! `factlog consumers` and `factlog parked` against a store whose consumer
//! parked events: listing (text and JSON), reset, delete, replay marks and
//! discards, and the typed errors (unknown consumer, a reset past the end, a
//! consumer in use, bad arguments) with exit code 1. Temp stores only.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: panicking is how it fails

use std::process::{Command, Output};
use std::time::Duration;

use factlog::{ConsumerOptions, EventRef, ExpectedVersion, NewEvent, Options, RetryPolicy, Store};
use serde_json::Value;

fn factlog(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_factlog")).args(args).output().expect("run factlog")
}

#[track_caller]
fn ok(args: &[&str]) -> (String, String) {
    let out = factlog(args);
    let (stdout, stderr) = (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap());
    assert!(out.status.success(), "factlog {args:?} failed: {:?}\n{stderr}", out.status);
    (stdout, stderr)
}

#[track_caller]
fn fails(args: &[&str], needle: &str) {
    let out = factlog(args);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(needle), "{args:?}: {stderr:?} lacks {needle:?}");
}

/// Ten events on two aggregates; consumer `proj` fails on position 3 (acct-a)
/// and parks 3 plus acct-a's later events behind it; consumer `idle` is new.
fn store_with_parked(dir: &std::path::Path) {
    let store = Store::open(dir, Options::default()).unwrap();
    for n in 0..10u64 {
        let aggregate = if n % 2 == 1 { "acct-a" } else { "acct-b" };
        let ev = NewEvent::new(factlog::EventId::new_v7(), "Deposited", format!("{{\"n\":{n}}}"));
        store.append(aggregate, ExpectedVersion::Any, vec![ev]).unwrap();
    }
    let opts = ConsumerOptions::default().retry(RetryPolicy::new(2, Duration::ZERO, Duration::ZERO));
    let mut c = store.consumer("proj", opts).unwrap();
    c.run_until_caught_up(|e: &EventRef<'_>| if e.position() == 3 { Err("no account") } else { Ok(()) }).unwrap();
    drop(c);
    drop(store.consumer("idle", ConsumerOptions::default()).unwrap());
    store.close().unwrap();
}

#[test]
fn consumers_are_listed_reset_and_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    store_with_parked(&dir);
    let d = dir.to_str().unwrap();
    let (text, _) = ok(&["consumers", d]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("consumer") && lines[0].contains("lag_events"), "{text}");
    assert!(lines[1].starts_with("idle") && lines[2].starts_with("proj"), "{text}");
    let (json, _) = ok(&["consumers", d, "--json"]);
    let rows: Vec<Value> = json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!((rows[1]["name"].as_str(), rows[1]["next_position"].as_u64()), (Some("proj"), Some(10)));
    assert_eq!((rows[1]["parked"].as_u64(), rows[1]["lag_events"].as_u64()), (Some(4), Some(0)));
    assert_eq!((rows[0]["lag_events"].as_u64(), rows[0]["checkpoint"].as_u64()), (Some(10), None));

    let (_, note) = ok(&["consumers", d, "reset", "proj", "--to", "4"]);
    assert!(note.contains("resumes at position 4"), "{note}");
    fails(&["consumers", d, "reset", "proj", "--to", "11"], "position 11 is past the end of the log");
    fails(&["consumers", d, "reset", "nobody", "--to", "start"], "no consumer named \"nobody\"");
    fails(&["consumers", d, "reset", "proj", "--to", "soon"], "error: invalid value");
    ok(&["consumers", d, "reset", "proj", "--to", "end"]);
    ok(&["consumers", d, "delete", "idle"]);
    let (json, _) = ok(&["consumers", d, "--json"]);
    assert_eq!(json.lines().count(), 1);

    // A consumer that runs somewhere is not reset under its feet.
    let store = Store::open_read_only(&dir, Options::default()).unwrap();
    let running = store.consumer("proj", ConsumerOptions::default()).unwrap();
    fails(&["consumers", d, "reset", "proj", "--to", "start"], "consumer \"proj\" is in use");
    let (json, _) = ok(&["consumers", d, "--json"]);
    assert!(json.contains("\"active\":true"), "{json}");
    drop(running);
}

#[test]
fn parked_events_are_listed_marked_for_replay_and_discarded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    store_with_parked(&dir);
    let d = dir.to_str().unwrap();
    let (text, _) = ok(&["parked", d, "proj"]);
    assert!(text.lines().nth(1).unwrap().contains("no account"), "{text}");
    let (json, _) = ok(&["parked", d, "proj", "list", "--json"]);
    let rows: Vec<Value> = json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let positions: Vec<u64> = rows.iter().map(|r| r["position"].as_u64().unwrap()).collect();
    assert_eq!(positions, [3, 5, 7, 9]);
    assert_eq!((rows[0]["attempts"].as_u64(), rows[1]["behind"].as_u64()), (Some(2), Some(3)));

    ok(&["parked", d, "proj", "replay", "3"]);
    ok(&["parked", d, "proj", "discard", "9"]);
    fails(&["parked", d, "proj", "discard", "4"], "has no parked event at position 4");
    fails(&["parked", d, "proj", "replay", "some"], "error: invalid value");
    fails(&["parked", d, "nobody"], "no consumer named \"nobody\"");
    let (json, _) = ok(&["parked", d, "proj", "--json"]);
    assert!(json.lines().next().unwrap().contains("\"replay_requested\":true"), "{json}");
    assert_eq!(json.lines().count(), 3);

    // The consumer's next run replays what was marked (3), then the rest once asked.
    let store = Store::open(&dir, Options::default()).unwrap();
    let mut c = store.consumer("proj", ConsumerOptions::default()).unwrap();
    let s = c.run_until_caught_up(|_: &EventRef<'_>| -> Result<(), String> { Ok(()) }).unwrap();
    assert_eq!(s.replayed, 1);
    drop(c);
    store.close().unwrap();
    ok(&["parked", d, "proj", "discard", "all"]);
    let (out, note) = ok(&["parked", d, "proj"]);
    assert!(out.is_empty() && note.contains("no parked events"), "{note}");
}
