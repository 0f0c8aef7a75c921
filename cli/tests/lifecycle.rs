//! `factlog delete`, `erase`, `meta` and `scavenge` against stores in temp
//! dirs: soft deletes (hidden, then restarted with versions going on) and
//! hard ones (every later append refused), retention rules set, merged,
//! cleared and respected by `read`, bad durations and counts (exit code 1,
//! nothing changed), `erase` refused without confirmation (nothing changed)
//! and then complete after a scavenge (no file holds the erased bytes), and
//! the scavenge's report on a store where half the events are deleted (the
//! exact count removed, about half the bytes reclaimed, positions kept),
//! and the lock: the commands that change a store wait for its writer, while
//! `meta` without a setter reads beside it.
//!
//! Multi-segment stores are built through the `factlog` library, since the
//! CLI has no segment-size option.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: panicking is how it fails

mod common;
use common::contents;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use bytes::Bytes;
use factlog::{ExpectedVersion, NewEvent, Options, Store};
use serde_json::Value;

fn factlog(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_factlog")).args(args).stdin(Stdio::null()).output().expect("run factlog")
}

fn factlog_with_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_factlog"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run factlog");
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[track_caller]
fn ok(args: &[&str]) -> String {
    let out = factlog(args);
    assert!(out.status.success(), "factlog {args:?} failed: {:?}\n{}", out.status, text(&out.stderr));
    text(&out.stdout)
}

/// Runs a command that must fail with exit code 1 and `needle` in its error.
#[track_caller]
fn fails(args: &[&str], needle: &str) -> String {
    let out = factlog(args);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "factlog {args:?}: {err}");
    assert!(err.contains(needle), "factlog {args:?}: wanted {needle:?} in {err}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    err
}

fn json(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("bad JSON {text:?}: {e}"))
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// (aggregate, version, position) of every event `read` prints.
fn read(args: &[&str]) -> Vec<(String, u64, u64)> {
    ok(args)
        .lines()
        .map(|l| {
            let v = json(l);
            (
                v["aggregate_id"].as_str().unwrap().to_string(),
                v["version"].as_u64().unwrap(),
                v["position"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// A store with `acct-1` at version 3 (4 events) and `acct-2` at version 0,
/// made through the CLI.
fn small_store(root: &Path) -> PathBuf {
    let dir = root.join("store");
    let d = path(&dir);
    for (aggregate, n) in [("acct-1", 4), ("acct-2", 1)] {
        for i in 0..n {
            let data = format!("{{\"i\":{i},\"owner\":\"MARKER-{aggregate}\"}}");
            ok(&["append", d, "--aggregate", aggregate, "--type", "Changed", "--data", &data]);
        }
    }
    dir
}

#[test]
fn delete_hides_an_aggregate_soft_restarts_it_and_hard_refuses_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = small_store(tmp.path());
    let d = path(&dir);

    let out = ok(&["delete", d, "--aggregate", "acct-1"]);
    assert_eq!(
        out,
        format!(
            "deleted aggregate \"acct-1\" (soft): its 4 event(s) (versions 0 to 3) are hidden from reads; a new \
             append starts it again at version 4\ntheir space is reclaimed by `factlog scavenge {d}`\n"
        )
    );
    assert!(read(&["read", d, "--aggregate", "acct-1"]).is_empty());
    assert_eq!(read(&["read", d, "--all"]), vec![("acct-2".to_string(), 0, 4)]);
    // A restart: versions go on after the deleted ones.
    let out =
        ok(&["append", d, "--aggregate", "acct-1", "--type", "T", "--data", "{}", "--expected-version", "no-stream"]);
    assert_eq!(out, "version 4 position 5\n");
    let state = json(&ok(&["meta", d, "--aggregate", "acct-1", "--json"]));
    assert_eq!(state["deleted"], "soft");
    assert_eq!(state["version_floor"], 4, "{state}");
    assert_eq!((state["first_visible_version"].as_u64(), state["visible_events"].as_u64()), (Some(4), Some(1)));

    // Hard: a tombstone, every later append refused (exit 1, nothing written).
    let state = json(&ok(&["delete", d, "--aggregate", "acct-2", "--hard", "--json"]));
    assert_eq!((state["deleted"].as_str(), state["visible_events"].as_u64()), (Some("hard"), Some(0)));
    fails(&["append", d, "--aggregate", "acct-2", "--type", "T", "--data", "{}"], "is deleted");
    fails(&["meta", d, "--aggregate", "acct-2", "--max-count", "5"], "is deleted");
    fails(&["delete", d, "--aggregate", "acct-2"], "is deleted");
    assert_eq!(read(&["read", d, "--all"]), vec![("acct-1".to_string(), 4, 5)]);
    // A hard-deleted aggregate can still be erased; an erased one not again.
    ok(&["erase", d, "--aggregate", "acct-2", "--yes"]);
    fails(&["erase", d, "--aggregate", "acct-2", "--yes"], "already erased");

    // Bad input: no such aggregate, no such store, a missing --aggregate.
    fails(&["delete", d, "--aggregate", "nobody"], "aggregate \"nobody\" has no events");
    let missing = tmp.path().join("missing");
    fails(&["delete", path(&missing), "--aggregate", "acct-1"], "directory does not exist");
    assert!(!missing.exists(), "delete must not create a store");
    fails(&["delete", d], "--aggregate");
}

#[test]
fn meta_prints_the_state_and_sets_merges_and_clears_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = small_store(tmp.path());
    let d = path(&dir);

    let before = contents(&dir);
    let out = ok(&["meta", d, "--aggregate", "acct-1"]);
    assert_eq!(
        out,
        "aggregate         acct-1\nvisible versions  0 to 3 (4 events)\nmax count         none\n\
         max age           none\ntruncate before   none\ndeleted           no\nerased            no\n"
    );
    assert!(contents(&dir) == before, "meta without a setter changes nothing");

    let out = ok(&["meta", d, "--aggregate", "acct-1", "--max-count", "3"]);
    assert!(out.contains("visible versions  1 to 3 (3 events)\nmax count         3\n"), "{out}");
    // Setters merge: the max count stays.
    let state =
        json(&ok(&["meta", d, "--aggregate", "acct-1", "--truncate-before", "2", "--max-age", "30d", "--json"]));
    assert_eq!(state["max_count"], 3);
    assert_eq!(state["truncate_before"], 2);
    assert_eq!(state["max_age"], "30d");
    assert_eq!(state["max_age_ns"], 30 * 86_400 * 1_000_000_000u64);
    assert_eq!((state["first_visible_version"].as_u64(), state["last_visible_version"].as_u64()), (Some(2), Some(3)));
    let versions: Vec<u64> = read(&["read", d, "--aggregate", "acct-1"]).iter().map(|e| e.1).collect();
    assert_eq!(versions, [2, 3], "reads respect the rules at once");
    // `aggregates` counts the events a reader sees, not the versions.
    let listed = json(&ok(&["aggregates", d, "--prefix", "acct-1", "--json"]));
    assert_eq!((listed["version"].as_u64(), listed["events"].as_u64()), (Some(3), Some(2)), "{listed}");
    // Compound durations; printed back in the largest unit that divides them.
    let state = json(&ok(&["meta", d, "--aggregate", "acct-2", "--max-age", "1h30m", "--json"]));
    assert_eq!((state["max_age"].as_str(), state["visible_events"].as_u64()), (Some("90m"), Some(1)));

    // Bad values: exit 1, a message that says why, nothing changed.
    let before = contents(&dir);
    for (bad, needle) in [
        ("30", "a number without a unit"),
        ("3x", "unit \"x\""),
        ("-5m", "not a duration"),
        ("1.5h", "not a duration"),
        ("0s", "is zero"),
        ("", "got nothing"),
    ] {
        fails(&["meta", d, "--aggregate", "acct-1", "--max-age", bad], needle);
    }
    fails(&["meta", d, "--aggregate", "acct-1", "--max-count", "0"], "--max-count");
    fails(&["meta", d, "--aggregate", "acct-1", "--truncate-before", "-1"], "--truncate-before");
    assert!(contents(&dir) == before, "a refused change changes nothing");

    // --clear drops the rules; the aggregate is whole again.
    let state = json(&ok(&["meta", d, "--aggregate", "acct-1", "--clear", "--json"]));
    assert_eq!((state["max_count"].clone(), state["max_age"].clone()), (Value::Null, Value::Null));
    assert_eq!(state["visible_events"], 4);
    // An aggregate without events: its state, and a note on stderr.
    let out = factlog(&["meta", d, "--aggregate", "nobody"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("visible versions  none\n"), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("note: a reader sees no event of aggregate \"nobody\""));
}

#[test]
fn erase_needs_confirmation_and_a_scavenge_then_removes_every_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = small_store(tmp.path());
    let d = path(&dir);
    let before = contents(&dir);

    // No confirmation (no answer, or not yes): nothing changes.
    for answer in [&b""[..], b"no\n", b"yes please\n"] {
        let out = factlog_with_stdin(&["erase", d, "--aggregate", "acct-1"], answer);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("its 4 event(s) (versions 0 to 3) are hidden at once"), "{err}");
        assert!(err.contains("Erase aggregate \"acct-1\"? This cannot be undone. Type yes to proceed"), "{err}");
        assert!(err.contains("error: erase cancelled: nothing was changed"), "{err}");
        assert!(out.stdout.is_empty());
        assert!(contents(&dir) == before, "erase changed the store without confirmation");
    }

    // "yes": erased, hidden, refused; its bytes still in the files until a scavenge.
    let out = factlog_with_stdin(&["erase", d, "--aggregate", "acct-1"], b"yes\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("erased aggregate \"acct-1\": its 4 event(s)"), "{}", text(&out.stdout));
    assert!(read(&["read", d, "--aggregate", "acct-1"]).is_empty());
    fails(&["append", d, "--aggregate", "acct-1", "--type", "T", "--data", "{}"], "is deleted");
    let holding = |needle: &str| {
        contents(&dir)
            .into_iter()
            .filter(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
            .count()
    };
    assert!(holding("MARKER-acct-1") > 0);
    // Erasing it again is refused before any question.
    fails(&["erase", d, "--aggregate", "acct-1"], "aggregate \"acct-1\" is already erased: `factlog scavenge");
    // --yes skips the question.
    let state = json(&ok(&["erase", d, "--aggregate", "gone-before-it-came", "--yes", "--json"]));
    assert_eq!(state["erased"], true);

    let report = json(&ok(&["scavenge", d, "--json"]));
    assert_eq!(report["erasures_completed"], 2, "{report}");
    assert_eq!(report["events_removed"], 4, "{report}");
    assert_eq!(holding("MARKER-acct-1"), 0, "an erased aggregate's bytes are in no file after a scavenge");
    assert_eq!(holding("acct-1"), 0, "nor is its id");
    assert!(holding("MARKER-acct-2") > 0, "the other aggregate is untouched");
    assert_eq!(read(&["read", d, "--all"]), vec![("acct-2".to_string(), 0, 4)], "positions never change");
    fails(&["append", d, "--aggregate", "acct-1", "--type", "T", "--data", "{}"], "is deleted");
    ok(&["verify", d]);
}

/// Aggregates of [`half_deleted_store`]; the even ones are deleted.
const AGGREGATES: u64 = 4;
/// Events of [`half_deleted_store`], round-robin over the aggregates.
const EVENTS: u64 = 400;

/// A store of [`EVENTS`] events of about 1 KB over many 64 KiB segments,
/// written through the library; closed on return.
fn multi_segment_store(root: &Path) -> PathBuf {
    let dir = root.join("multi");
    let options = Options::default().segment_bytes(64 * 1024).max_event_bytes(16 * 1024);
    let store = Store::open(&dir, options).unwrap();
    for i in 0..EVENTS {
        let data = format!("{{\"i\":{i},\"pad\":\"{}\"}}", "p".repeat(1000));
        let event = NewEvent::new(uuid::Uuid::new_v4().into_bytes(), "Padded", Bytes::from(data));
        store.append(&format!("agg-{}", i % AGGREGATES), ExpectedVersion::Any, vec![event]).unwrap();
    }
    store.close().unwrap();
    dir
}

/// The first position of the newest segment file: the active segment, which
/// a scavenge leaves alone (no erasure here).
fn active_first_position(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .map(|p| p.file_stem().unwrap().to_str().unwrap().parse::<u64>().unwrap())
        .max()
        .unwrap()
}

#[test]
fn scavenge_reports_what_it_reclaimed_on_a_store_half_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = multi_segment_store(tmp.path());
    let d = path(&dir);
    for a in (0..AGGREGATES).step_by(2) {
        ok(&["delete", d, "--aggregate", &format!("agg-{a}")]);
    }
    let visible = read(&["read", d, "--all"]);
    assert_eq!(visible.len() as u64, EVENTS / 2);
    let active = active_first_position(&dir);
    assert!(active > EVENTS / 2, "most of the log is in sealed segments");
    // Deleted events are those of the even aggregates: the even positions.
    let removable = (0..active).filter(|p| p % 2 == 0).count() as u64;

    let report = json(&ok(&["scavenge", d, "--json"]));
    assert_eq!(report["events_removed"], removable, "{report}");
    let n = |key: &str| report[key].as_u64().unwrap_or_else(|| panic!("{key} in {report}"));
    assert!(n("segments_rewritten") > 1 && n("segments_rewritten") <= n("segments_scanned"), "{report}");
    assert!(n("bytes_read") >= n("bytes_before"), "{report}");
    assert_eq!(n("bytes_reclaimed"), n("bytes_before") - n("bytes_after"), "{report}");
    let kept = n("bytes_after") as f64 / n("bytes_before") as f64;
    assert!((0.35..0.65).contains(&kept), "half the events deleted, about half the bytes kept: {kept} {report}");
    assert!(report["input_mb_per_sec"].as_f64().unwrap() > 0.0, "{report}");
    assert_eq!((n("erasures_completed"), n("snapshots_dropped")), (0, 0), "{report}");
    assert_eq!(read(&["read", d, "--all"]), visible, "the same events at the same positions");
    ok(&["verify", d]);

    // Again: nothing left to remove; the text report.
    let out = ok(&["scavenge", d]);
    assert!(out.starts_with(&format!("scavenged {d}\nsegments scanned    ")), "{out}");
    assert!(out.contains("\nevents removed      0\n"), "{out}");
    assert!(out.contains("\nbytes reclaimed     0 (0.0 MB)\n"), "{out}");
    assert!(out.contains(" MB/s of input\n"), "{out}");
    assert_eq!(out.lines().count(), 12, "{out}");
    fails(&["scavenge", path(&tmp.path().join("missing"))], "directory does not exist");
}

#[test]
fn changes_wait_for_a_writer_and_meta_reads_beside_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = small_store(tmp.path());
    let d = path(&dir);
    let writer = Store::open(&dir, Options::default()).unwrap();
    for args in [
        &["--wait", "0", "delete", d, "--aggregate", "acct-1"][..],
        &["--wait", "0", "erase", d, "--aggregate", "acct-1", "--yes"],
        &["--wait", "0", "meta", d, "--aggregate", "acct-1", "--max-count", "1"],
        &["--wait", "0", "scavenge", d],
    ] {
        let err = fails(args, &format!("store {d} is locked by process {}", std::process::id()));
        assert!(err.contains("did not wait for it (--wait 0)"), "{err}");
    }
    // Without a setter, `meta` opens read-only and runs beside the writer.
    assert!(ok(&["--wait", "0", "meta", d, "--aggregate", "acct-1"]).contains("visible versions  0 to 3 (4 events)"));
    writer.close().unwrap();
    assert!(
        ok(&["--wait", "0", "meta", d, "--aggregate", "acct-1", "--max-count", "1"]).contains("max count         1\n")
    );
}
