//! End-to-end tests of the `factlog` binary against stores in temp dirs:
//! appends with expected versions, conflicts (exit code 2, nothing written),
//! payloads from a file or stdin, JSONL batches (atomic, and round-tripping
//! what `read` prints), when `append` may create a store, `read --aggregate`
//! / `read --all` JSON lines (`data_base64` for non-JSON payloads, a note
//! for an unknown aggregate), `stats`, bad input, reading commands on a
//! missing directory, `verify` on clean and damaged stores (exit codes 0 and
//! 3), `dump`, `repair` (the engine's exact dry run, which changes nothing,
//! then the cut only once confirmed), the `factlog repair` line after a
//! corruption error, `aggregates` and `snapshots` listings, read-only
//! opening (no byte of the store changes), and the lock wait (concurrent
//! appenders queue; a lock held too long is an error naming its holder;
//! readers run beside a writer process), and `tail` (`--follow` picks up a
//! live writer's appends).
//!
//! Multi-segment stores are built through the `factlog` library, since the
//! CLI has no segment-size option.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: panicking is how it fails

mod common;
use common::contents;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use bytes::Bytes;
use factlog::{ExpectedVersion, NewEvent, Options, Store};

use serde_json::{json, Value};

/// The exact keys of a `read` line.
const KEYS: [&str; 12] = [
    "event_id",
    "aggregate_id",
    "version",
    "position",
    "event_type",
    "event_version",
    "occurred_at",
    "recorded_at",
    "causation_id",
    "correlation_id",
    "metadata",
    "data",
];

fn factlog(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_factlog")).args(args).output().expect("run factlog")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

#[track_caller]
fn ok(args: &[&str]) -> String {
    let out = factlog(args);
    assert!(out.status.success(), "factlog {args:?} failed: {:?}\n{}", out.status, stderr(&out));
    stdout(&out)
}

/// Parses JSON lines, checking each object has exactly [`KEYS`].
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON line {line:?}: {e}"));
            let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
            keys.sort_unstable();
            let mut want = KEYS.to_vec();
            want.sort_unstable();
            assert_eq!(keys, want, "{line}");
            v
        })
        .collect()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Appends three events to `acct-1` (the first with full envelope options)
/// and one to `acct-2`; returns the store directory.
fn sample_store(root: &Path) -> std::path::PathBuf {
    let dir = root.join("store");
    let d = path(&dir);
    let out = ok(&[
        "append",
        d,
        "--aggregate",
        "acct-1",
        "--type",
        "AccountOpened",
        "--data",
        r#"{"owner": "ada", "limit": 100}"#,
        "--expected-version",
        "no-stream",
        "--metadata",
        r#"{"user":"ops"}"#,
        "--event-id",
        "11111111-2222-4333-8444-555555555555",
        "--event-version",
        "2",
        "--causation-id",
        "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa",
        "--correlation-id",
        "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb",
    ]);
    assert_eq!(out, "version 0 position 0\n");
    let out = ok(&[
        "append",
        d,
        "--aggregate",
        "acct-1",
        "--type",
        "FundsDeposited",
        "--data",
        r#"{"amount":5}"#,
        "--expected-version",
        "0",
    ]);
    assert_eq!(out, "version 1 position 1\n");
    let out = ok(&["append", d, "--aggregate", "acct-2", "--type", "AccountOpened", "--data", "null"]);
    assert_eq!(out, "version 0 position 2\n");
    let out = ok(&[
        "append",
        d,
        "--aggregate",
        "acct-1",
        "--type",
        "FundsWithdrawn",
        "--data",
        "[1, 2.50, \"x\"]",
        "--expected-version",
        "1",
        "--json",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (&v["aggregate_id"], &v["version"], &v["position"], &v["deduplicated"]),
        (&json!("acct-1"), &json!(2), &json!(3), &json!(false))
    );
    assert!(uuid_string(&v["event_id"]));
    dir
}

fn uuid_string(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.len() == 36 && uuid::Uuid::parse_str(s).is_ok())
}

#[test]
fn appends_with_expected_versions_and_reads_one_aggregate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = sample_store(tmp.path());
    let events = json_lines(&ok(&["read", path(&dir), "--aggregate", "acct-1"]));
    assert_eq!(events.len(), 3);
    let first = &events[0];
    assert_eq!(first["event_id"], "11111111-2222-4333-8444-555555555555");
    assert_eq!(first["aggregate_id"], "acct-1");
    assert_eq!(first["version"], 0);
    assert_eq!(first["position"], 0);
    assert_eq!(first["event_type"], "AccountOpened");
    assert_eq!(first["event_version"], 2);
    assert!(first["occurred_at"].as_i64().unwrap() > 1_600_000_000_000_000_000);
    assert!(first["recorded_at"].as_i64().unwrap() >= first["occurred_at"].as_i64().unwrap());
    assert_eq!(first["causation_id"], "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa");
    assert_eq!(first["correlation_id"], "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb");
    assert_eq!(first["metadata"], json!({"user": "ops"}));
    assert_eq!(first["data"], json!({"owner": "ada", "limit": 100}));

    let second = &events[1];
    assert_eq!((&second["version"], &second["position"]), (&json!(1), &json!(1)));
    assert_eq!(second["event_type"], "FundsDeposited");
    assert_eq!(second["event_version"], 1);
    assert!(uuid_string(&second["event_id"]));
    assert_eq!(second["causation_id"], Value::Null);
    assert_eq!(second["correlation_id"], Value::Null);
    assert_eq!(second["metadata"], Value::Null);
    assert_eq!(second["data"], json!({"amount": 5}));
    assert_eq!((&events[2]["version"], &events[2]["position"]), (&json!(2), &json!(3)));
    assert_eq!(events[2]["data"], json!([1, 2.5, "x"]));

    // --from, --limit and --backward.
    let from1 = json_lines(&ok(&["read", path(&dir), "--aggregate", "acct-1", "--from", "1", "--limit", "1"]));
    assert_eq!(from1.len(), 1);
    assert_eq!(from1[0]["version"], 1);
    let back = json_lines(&ok(&["read", path(&dir), "--aggregate", "acct-1", "--backward"]));
    assert_eq!(back.iter().map(|e| e["version"].as_u64().unwrap()).collect::<Vec<_>>(), [2, 1, 0]);
    let back = json_lines(&ok(&["read", path(&dir), "--aggregate", "acct-1", "--backward", "--from", "1"]));
    assert_eq!(back.iter().map(|e| e["version"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 0]);
    assert_eq!(ok(&["read", path(&dir), "--aggregate", "nobody"]), "");
}

#[test]
fn read_all_prints_the_log_in_position_order() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = sample_store(tmp.path());
    let events = json_lines(&ok(&["read", path(&dir), "--all"]));
    let got: Vec<(u64, &str, u64)> = events
        .iter()
        .map(|e| (e["position"].as_u64().unwrap(), e["aggregate_id"].as_str().unwrap(), e["version"].as_u64().unwrap()))
        .collect();
    assert_eq!(got, [(0, "acct-1", 0), (1, "acct-1", 1), (2, "acct-2", 0), (3, "acct-1", 2)]);
    assert_eq!(events[2]["data"], Value::Null);
    assert_eq!(events[2]["event_type"], "AccountOpened");

    let tail = json_lines(&ok(&["read", path(&dir), "--all", "--from", "2", "--limit", "1"]));
    assert_eq!(tail.len(), 1);
    assert_eq!(tail[0]["position"], 2);
    assert_eq!(ok(&["read", path(&dir), "--all", "--from", "99"]), "");
}

#[test]
fn a_conflict_exits_with_2_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = sample_store(tmp.path());
    let d = path(&dir);
    let before = ok(&["read", d, "--all"]);
    for expected in ["1", "no-stream", "7"] {
        let out = factlog(&[
            "append",
            d,
            "--aggregate",
            "acct-1",
            "--type",
            "FundsDeposited",
            "--data",
            "{}",
            "--expected-version",
            expected,
        ]);
        assert_eq!(out.status.code(), Some(2), "expected {expected}: {}", stderr(&out));
        assert!(out.stdout.is_empty());
        let err = stderr(&out);
        assert!(err.starts_with("error: wrong expected version for aggregate \"acct-1\""), "{err}");
        assert!(err.contains("actual 2"), "{err}");
    }
    let out =
        factlog(&["append", d, "--aggregate", "new", "--type", "T", "--data", "{}", "--expected-version", "exists"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(ok(&["read", d, "--all"]), before);
}

#[test]
fn re_appending_an_event_id_is_idempotent_and_elsewhere_a_conflict() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = sample_store(tmp.path());
    let d = path(&dir);
    let id = "11111111-2222-4333-8444-555555555555";
    let args = |aggregate: &'static str, expected: &'static str| {
        vec![
            "append",
            d,
            "--aggregate",
            aggregate,
            "--type",
            "T",
            "--data",
            "{}",
            "--event-id",
            id,
            "--expected-version",
            expected,
        ]
    };
    // Same id, same aggregate: a retry of the stored append, nothing written.
    let out = ok(&args("acct-1", "no-stream"));
    assert_eq!(out, "version 0 position 0 (already stored, nothing written)\n");
    // Same id at a different place: refused as a conflict.
    let out = factlog(&args("acct-9", "any"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("already stored at position 0"), "{}", stderr(&out));
    assert_eq!(json_lines(&ok(&["read", d, "--all"])).len(), 4);
}

#[test]
fn bad_input_is_a_clear_error_with_exit_code_1() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let d = path(&dir);
    let missing = tmp.path().join("missing.json");
    let not_json = tmp.path().join("not.json");
    std::fs::write(&not_json, "{amount: 1}").unwrap();
    let append = |extra: &[&'static str]| -> Vec<String> {
        let mut args: Vec<String> = ["append", d, "--aggregate", "a", "--type", "T"].map(String::from).to_vec();
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (append(&["--data", "{amount: 1}"]), "not valid JSON"),
        (append(&["--data", "{}", "--metadata", "x"]), "not valid JSON"),
        (append(&["--data", "{}", "--event-id", "nope"]), "\"nope\" is not a UUID"),
        (append(&["--data", "{}", "--expected-version", "latest"]), "`any`, `no-stream` or `exists`"),
        (append(&["--data", "{}", "--expected-version", "-1"]), "`any`, `no-stream` or `exists`"),
        (append(&["--data", "{}", "--expected-version", "no_stream"]), "`any`, `no-stream` or `exists`"),
        (append(&["--data", "{}", "--data-file", "x"]), "cannot be used with"),
        (append(&[]), "required"),
        ([&append(&["--data-file"])[..], &[path(&missing).to_string()]].concat(), "opening"),
        ([&append(&["--data-file"])[..], &[path(&not_json).to_string()]].concat(), "is not valid JSON"),
        (vec!["read".into(), d.into()], "required"),
        (vec!["read".into(), d.into(), "--all".into(), "--backward".into()], "--aggregate"),
    ];
    for (args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = factlog(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        // No clap hint to pass the value after `--`: the message names the spellings.
        assert!(!err.contains("tip:"), "{args:?}: {err}");
    }
    assert!(!dir.exists(), "rejected arguments must not create the store");

    // The engine's own validation (an empty aggregate id), after the store is created.
    let out = factlog(&["append", d, "--aggregate", "", "--type", "T", "--data", "{}"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().next(), Some(format!("note: created a new factlog store in {d}").as_str()), "{err}");
    assert!(err.lines().nth(1).is_some_and(|l| l.starts_with("error: invalid input")), "{err}");
    // A negative number is a clear error even where it is the only argument left.
    let out = factlog(&["append", d, "--aggregate", "a", "--type", "T", "--data", "{}", "--expected-version", "-1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("invalid value '-1' for '--expected-version"), "{}", stderr(&out));
}

#[test]
fn stats_reports_the_event_count() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = sample_store(tmp.path());
    let text = ok(&["stats", path(&dir)]);
    let row = |name: &str| -> u64 {
        let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in {text}"));
        line[name.len()..].trim().parse().unwrap()
    };
    assert_eq!(row("events"), 4);
    assert_eq!(row("aggregates"), 2);
    assert_eq!(row("segments"), 1);
    assert!(row("log bytes") > 0);
    assert!(row("segment file bytes") >= row("log bytes"));

    let v: Value = serde_json::from_str(&ok(&["stats", path(&dir), "--json"])).unwrap();
    assert_eq!(v["events"], 4);
    assert_eq!(v["aggregates"], 2);
    for key in [
        "segments",
        "log_bytes",
        "segment_file_bytes",
        "index_bytes",
        "index_file_bytes",
        "snapshots",
        "snapshot_files",
        "snapshot_bytes",
    ] {
        assert!(v[key].is_u64(), "{key} in {v}");
    }
}

#[test]
fn reading_commands_on_a_missing_dir_fail_without_creating_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nope");
    for args in [
        vec!["read", path(&dir), "--all"],
        vec!["read", path(&dir), "--aggregate", "a"],
        vec!["stats", path(&dir)],
        vec!["stats", path(&dir), "--json"],
        vec!["verify", path(&dir)],
        vec!["dump", path(&dir)],
    ] {
        let out = factlog(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(out.stdout.is_empty());
        let err = stderr(&out);
        assert!(err.starts_with("error: no factlog store at"), "{err}");
        assert!(err.contains("does not exist"), "{err}");
        assert!(!dir.exists(), "{args:?} created the directory");
    }
    // An existing directory that is not a store is left alone too.
    let plain = tmp.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    for args in [["read", path(&plain), "--all"], ["verify", path(&plain), "--json"]] {
        let out = factlog(&args);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("is not a factlog store"), "{}", stderr(&out));
        assert_eq!(std::fs::read_dir(&plain).unwrap().count(), 0);
    }
}

#[test]
fn a_closed_pipe_ends_read_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let d = path(&dir);
    // Like `factlog read DIR --all | head -1`: the output (about 150 KB) is
    // larger than a pipe buffer and the buffered stdout, and the consumer
    // leaves after one line.
    let data = format!("{{\"pad\":\"{}\"}}", "x".repeat(50_000));
    for _ in 0..3 {
        ok(&["append", d, "--aggregate", "a", "--type", "T", "--data", &data]);
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_factlog"))
        .args(["read", d, "--all"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert_eq!(json_lines(&first)[0]["position"], 0);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
}

/// Options of the multi-segment test stores: 64 KiB segments.
fn small_options() -> Options {
    Options::default().segment_bytes(64 * 1024).max_event_bytes(16 * 1024).dedupe_window_events(10)
}

/// Events in [`multi_segment_store`].
const MULTI_EVENTS: u64 = 200;

/// A store of [`MULTI_EVENTS`] events of about 1 KB (aggregates `agg-0` to
/// `agg-4`, appended round-robin) over several 64 KiB segments, plus one
/// snapshot; closed on return.
fn multi_segment_store(root: &Path) -> PathBuf {
    let dir = root.join("multi");
    let store = Store::open(&dir, small_options()).unwrap();
    for i in 0..MULTI_EVENTS {
        let data = format!("{{\"i\":{i},\"pad\":\"{}\"}}", "p".repeat(1000));
        let event = NewEvent::new(uuid::Uuid::new_v4().into_bytes(), "Padded", Bytes::from(data));
        store.append(&format!("agg-{}", i % 5), ExpectedVersion::Any, vec![event]).unwrap();
    }
    store.save_snapshot("agg-0", 3, factlog::SchemaVersion(1), b"state of agg-0").unwrap();
    store.close().unwrap();
    dir
}

/// The segment files of `dir`, in log order.
fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    segs
}

/// Flips the bits of the byte at `offset` of `file`.
fn flip_byte(file: &Path, offset: usize) {
    let mut bytes = std::fs::read(file).unwrap();
    bytes[offset] ^= 0xff;
    std::fs::write(file, bytes).unwrap();
}

/// The value of the `name  value` row of a text summary.
fn row<'t>(text: &'t str, name: &str) -> &'t str {
    let line = text
        .lines()
        .find(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with("  ")))
        .unwrap_or_else(|| panic!("no {name} row in {text}"));
    line[name.len()..].trim()
}

#[test]
fn verify_on_a_clean_store_exits_0_and_reports_the_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = sample_store(tmp.path());
    let text = ok(&["verify", path(&dir)]);
    assert_eq!(row(&text, "events"), "4", "{text}");
    assert_eq!(row(&text, "aggregates"), "2", "{text}");
    assert_eq!(row(&text, "segments"), "1", "{text}");
    assert_eq!(row(&text, "torn tail"), "none", "{text}");
    assert_eq!(row(&text, "problems"), "0", "{text}");
    assert!(!text.contains("problem:"), "{text}");
    assert!(text.ends_with("result: ok\n"), "{text}");

    let multi = multi_segment_store(tmp.path());
    let out = factlog(&["verify", path(&multi)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // No progress bar or anything else on a stderr that is not a terminal.
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
    let text = stdout(&out);
    let segments = segment_files(&multi).len();
    assert!(segments >= 3, "{segments} segments");
    assert_eq!(row(&text, "events"), MULTI_EVENTS.to_string(), "{text}");
    assert_eq!(row(&text, "aggregates"), "5", "{text}");
    assert_eq!(row(&text, "segments"), segments.to_string(), "{text}");
    assert_eq!(row(&text, "checkpoints"), format!("{} compared", segments - 1), "{text}");
    assert_eq!(row(&text, "snapshots"), "1 decoded", "{text}");

    let v: Value = serde_json::from_str(&ok(&["verify", path(&multi), "--json"])).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["events"], MULTI_EVENTS);
    assert_eq!(v["events_in_store"], MULTI_EVENTS);
    assert_eq!(v["segments"], segments);
    assert_eq!(v["torn_tail"], Value::Null);
    assert_eq!(v["problems"], json!([]));
}

#[test]
fn verify_finds_a_flipped_bit_in_a_sealed_segment_and_exits_3() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = multi_segment_store(tmp.path());
    let first = segment_files(&dir).remove(0);
    assert!(first.ends_with("00000000000000000000.seg"));
    flip_byte(&first, 64 + 100);
    let before = contents(&dir);

    let out = factlog(&["verify", path(&dir)]);
    assert_eq!(out.status.code(), Some(3), "{}\n{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    // The frame at offset 64 (the first of the segment) holds the flipped byte.
    let needle = format!("problem: {}:64: ", first.display());
    assert!(text.contains(&needle), "{text}");
    assert_ne!(row(&text, "problems"), "0", "{text}");
    assert!(text.lines().last().unwrap().starts_with("result: "), "{text}");
    let hint = format!("run `factlog repair {}` to see what a repair would cut\n", path(&dir));
    assert_eq!(stderr(&out), hint);

    let out = factlog(&["verify", path(&dir), "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["ok"], false);
    let problem = &v["problems"][0];
    assert_eq!(problem["path"], path(&first));
    assert_eq!(problem["offset"], 64);
    assert!(problem["reason"].as_str().is_some_and(|r| !r.is_empty()), "{v}");

    assert!(contents(&dir) == before, "verify changed the damaged store");
}

#[test]
fn verify_exits_3_when_corruption_keeps_the_store_from_opening() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = multi_segment_store(tmp.path());
    // Without its checkpoint the damaged sealed segment is scanned at open,
    // and the open itself fails on the bad frame.
    std::fs::remove_file(dir.join("00000000000000000000.idx")).unwrap();
    let first = dir.join("00000000000000000000.seg");
    flip_byte(&first, 64 + 100);
    let out = factlog(&["verify", path(&dir)]);
    assert_eq!(out.status.code(), Some(3), "{}\n{}", stdout(&out), stderr(&out));
    let err = stderr(&out);
    assert!(err.starts_with("error: cannot open the store: corrupt data in"), "{err}");
    assert!(err.contains(&format!("{} at offset 64", first.display())), "{err}");

    let out = factlog(&["verify", path(&dir), "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!((&v["ok"], &v["opened"]), (&json!(false), &json!(false)));
    assert_eq!(v["problems"][0]["path"], path(&first));
    assert_eq!(v["problems"][0]["offset"], 64);

    // Reading it is an error like any other.
    let out = factlog(&["read", path(&dir), "--all"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn inspecting_commands_change_no_byte_of_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = multi_segment_store(tmp.path());
    // Stale bytes past the end of the log in the active segment: a torn
    // tail that a writer would zero, and that readers must leave alone.
    let active = segment_files(&dir).pop().unwrap();
    let len = std::fs::metadata(&active).unwrap().len() as usize;
    let mut bytes = std::fs::read(&active).unwrap();
    bytes[len - 16..len - 8].copy_from_slice(&[0xab; 8]);
    std::fs::write(&active, bytes).unwrap();
    let before = contents(&dir);
    let d = path(&dir);
    let commands: [&[&str]; 10] = [
        &["read", d, "--all"],
        &["read", d, "--aggregate", "agg-3", "--backward"],
        &["stats", d],
        &["stats", d, "--json"],
        &["verify", d],
        &["verify", d, "--json"],
        &["dump", d],
        &["dump", d, "--json", "--segment", "0"],
        &["read", d, "--all", "--from", "150"],
        &["dump", d, "--from", "199"],
    ];
    for args in commands {
        ok(args);
        assert!(contents(&dir) == before, "factlog {args:?} changed the store");
    }
    assert_eq!(json_lines(&ok(&["read", d, "--all"])).len() as u64, MULTI_EVENTS);

    // verify reports the torn tail without counting it as a problem.
    let text = ok(&["verify", d]);
    let torn = row(&text, "torn tail");
    assert!(torn.starts_with(&format!("{}:", active.display())), "{text}");
    assert!(torn.contains("stale bytes"), "{text}");
    assert_eq!(row(&text, "problems"), "0", "{text}");
    let v: Value = serde_json::from_str(&ok(&["verify", d, "--json"])).unwrap();
    assert_eq!(v["torn_tail"]["path"], path(&active));
    assert_eq!(v["ok"], true);

    // The sample store, built by the CLI's own appends, too.
    let sample = sample_store(tmp.path());
    let before = contents(&sample);
    let s = path(&sample);
    for args in [&["read", s, "--all"][..], &["stats", s], &["verify", s], &["dump", s, "--json"]] {
        ok(args);
    }
    assert!(contents(&sample) == before, "an inspecting command changed the sample store");
}

#[test]
fn a_lock_held_past_wait_is_an_error_naming_its_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = sample_store(tmp.path());
    let d = path(&dir);
    let pid = std::process::id();
    let commands: [&[&str]; 7] = [
        &["read", d, "--all"],
        &["tail", d],
        &["stats", d],
        &["verify", d],
        &["dump", d],
        &["aggregates", d],
        &["snapshots", d],
    ];
    {
        // A live writer in another process (this one) is no obstacle to readers...
        let _writer = Store::open(&dir, Options::default()).unwrap();
        for args in commands {
            ok(&[args, &["--wait", "0"]].concat());
        }
        assert_eq!(json_lines(&ok(&["read", d, "--all", "--wait=0"])).len(), 4);
        // ...but to another writer.
        let out = factlog(&["append", d, "--aggregate", "a", "--type", "T", "--data", "{}", "--wait", "0"]);
        assert_eq!(out.status.code(), Some(1));
        let want = format!("error: store {d} is locked by process {pid} (a writer, or for a repair also a reader");
        assert!(stderr(&out).starts_with(&want), "{}", stderr(&out));
        let started = std::time::Instant::now();
        let out = factlog(&["append", d, "--aggregate", "a", "--type", "T", "--data", "{}", "--wait", "0.3"]);
        assert!(started.elapsed() >= std::time::Duration::from_millis(300));
        assert!(stderr(&out).contains(&format!("by process {pid} ")), "{}", stderr(&out));
        assert!(stderr(&out).contains("gave up after waiting 0.3 s;"), "{}", stderr(&out));
        let out = factlog(&["stats", d, "--wait", "-1"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("expected 0 to 86400 seconds"), "{}", stderr(&out));
    }
    // A repair holds the store alone: readers are refused while it runs.
    {
        let _repair = Store::open(&dir, Options::default().repair(true)).unwrap();
        for args in commands {
            for wait in [&["--wait", "0"][..], &["--wait=0"]] {
                let out = factlog(&[wait, args].concat());
                assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
                assert!(out.stdout.is_empty(), "{args:?}");
                let want = format!("error: store {d} is held by process {pid}, which is repairing it");
                assert!(stderr(&out).starts_with(&want), "{args:?}: {}", stderr(&out));
                assert!(stderr(&out).contains("did not wait for it (--wait 0)"), "{args:?}: {}", stderr(&out));
            }
        }
    }
    // Readers are no obstacle to a writer (only to a repair: tests/tests/lock.rs).
    let reader = Store::open_read_only(&dir, Options::default()).unwrap();
    ok(&["append", d, "--aggregate", "a", "--type", "T", "--data", "{}", "--wait", "0"]);
    drop(reader);
    assert_eq!(json_lines(&ok(&["read", d, "--all"])).len(), 5);
}

#[test]
fn commands_wait_for_the_lock_by_default() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = sample_store(tmp.path());
    let d = path(&dir);
    let writer = Store::open(&dir, Options::default()).unwrap();
    let spawn = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_factlog")).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()
    };
    let read = spawn(&["read", d, "--all"]).unwrap();
    let mut append = spawn(&["append", d, "--aggregate", "late", "--type", "T", "--data", "{}"]).unwrap();
    // The reader does not wait for the writer: it reads what is durable.
    let read = read.wait_with_output().unwrap();
    assert_eq!(read.status.code(), Some(0), "{}", stderr(&read));
    assert_eq!(json_lines(&stdout(&read)).len(), 4, "{}", stdout(&read));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(append.try_wait().unwrap().is_none(), "append did not wait for the writer");
    writer.close().unwrap();
    let append = append.wait_with_output().unwrap();
    assert_eq!(
        (append.status.code(), stdout(&append).as_str()),
        (Some(0), "version 0 position 4\n"),
        "{}",
        stderr(&append)
    );
}

/// Reads a child's stdout lines on a thread.
fn lines_of(out: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn tail_prints_what_a_live_writer_made_durable_and_follows_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = sample_store(tmp.path());
    let d = path(&dir);
    // This test process is the application that holds the store for writing.
    let writer = Store::open(&dir, Options::default()).unwrap();
    let all = json_lines(&ok(&["tail", d]));
    assert_eq!(all, json_lines(&ok(&["read", d, "--all"])), "tail prints read's lines");
    assert_eq!(all.len(), 4);
    let deposits = json_lines(&ok(&["tail", d, "--type", "FundsDeposited", "--from", "1"]));
    assert!(deposits.iter().all(|v| v["event_type"] == "FundsDeposited" && v["position"].as_u64() >= Some(1)));
    let none = ok(&["tail", d, "--aggregate-prefix", "no-such-", "--from", "end"]);
    assert!(none.is_empty());
    let out = factlog(&["tail", d, "--from", "later"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("expected `start`, `end` or a position"), "{}", stderr(&out));

    let mut child = Command::new(env!("CARGO_BIN_EXE_factlog"))
        .args(["tail", d, "--from", "end", "--follow", "--aggregate-prefix", "live-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(child.stdout.take().unwrap());
    std::thread::sleep(std::time::Duration::from_millis(300));
    let append = |aggregate: &str, data: &str| {
        let ev = NewEvent::new(factlog::EventId::new_v7(), "Followed", Bytes::from(data.to_string()));
        writer.append(aggregate, ExpectedVersion::Any, vec![ev]).unwrap().first_position
    };
    append("other", "{}");
    let p = append("live-1", r#"{"n":1}"#);
    let line = lines.recv_timeout(std::time::Duration::from_secs(10)).expect("tail --follow prints the new event");
    let v = &json_lines(&line)[0];
    assert_eq!((v["position"].as_u64(), &v["aggregate_id"], &v["data"]), (Some(p), &json!("live-1"), &json!({"n": 1})));
    let p = append("live-2", r#"{"n":2}"#);
    let line = lines.recv_timeout(std::time::Duration::from_secs(10)).expect("and the next one");
    assert_eq!(json_lines(&line)[0]["position"].as_u64(), Some(p));
    assert!(child.try_wait().unwrap().is_none(), "--follow keeps running");
    child.kill().unwrap();
    child.wait().unwrap();
    writer.close().unwrap();
}

#[test]
fn concurrent_appenders_all_succeed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    ok(&["append", path(&dir), "--aggregate", "setup", "--type", "T", "--data", "{}"]);
    const APPENDS: u64 = 20;
    let loops: Vec<_> = (0..2)
        .map(|writer| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                for i in 0..APPENDS {
                    let expected = if i == 0 { "no-stream".to_string() } else { (i - 1).to_string() };
                    let (aggregate, data) = (format!("writer-{writer}"), format!("{{\"i\":{i}}}"));
                    let args = ["append", path(&dir), "--aggregate", &aggregate, "--type", "T", "--data", &data];
                    let out = factlog(&[&args[..], &["--expected-version", &expected]].concat());
                    assert_eq!(out.status.code(), Some(0), "writer {writer}, append {i}: {}", stderr(&out));
                    assert!(stdout(&out).starts_with(&format!("version {i} position ")), "{}", stdout(&out));
                }
            })
        })
        .collect();
    for l in loops {
        l.join().unwrap();
    }
    let listed = ok(&["aggregates", path(&dir), "--prefix", "writer-"]);
    let rows: Vec<Vec<&str>> = listed.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.iter().map(|r| &r[..3]).collect::<Vec<_>>(), [["writer-0", "19", "20"], ["writer-1", "19", "20"]]);
    assert_eq!(json_lines(&ok(&["read", path(&dir), "--all"])).len() as u64, 2 * APPENDS + 1);
}

/// The `key=value` fields of a dump line (the data preview, last, may hold spaces).
fn dump_fields(line: &str) -> BTreeMap<&str, &str> {
    let (head, data) = line.split_once(" data=").unwrap_or_else(|| panic!("no data in {line}"));
    let mut fields: BTreeMap<&str, &str> =
        head.split(' ').map(|f| f.split_once('=').unwrap_or_else(|| panic!("{f} in {line}"))).collect();
    fields.insert("data", data);
    fields
}

#[test]
fn dump_prints_positions_offsets_and_previews() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = sample_store(tmp.path());
    let d = path(&dir);
    let text = ok(&["dump", d]);
    let lines: Vec<_> = text.lines().map(dump_fields).collect();
    assert_eq!(lines.len(), 4, "{text}");
    let first = &lines[0];
    assert_eq!(first["position"], "0");
    assert_eq!(first["segment"], "00000000000000000000.seg");
    assert_eq!(first["offset"], "64");
    assert_eq!(first["aggregate"], "\"acct-1\"");
    assert_eq!(first["version"], "0");
    assert_eq!(first["type"], "\"AccountOpened\"");
    assert_eq!(first["event_version"], "2");
    assert!(first["occurred_at"].starts_with("20") && first["occurred_at"].ends_with('Z'), "{text}");
    assert_eq!(first["data_len"], r#"{"owner": "ada", "limit": 100}"#.len().to_string());
    assert_eq!(first["data"], r#"{"owner": "ada", "limit": 100}"#);
    let positions: Vec<&str> = lines.iter().map(|l| l["position"]).collect();
    assert_eq!(positions, ["0", "1", "2", "3"]);
    let offsets: Vec<u64> = lines.iter().map(|l| l["offset"].parse().unwrap()).collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
    assert_eq!(lines[2]["data"], "null");

    let out = ok(&["dump", d, "--from", "1", "--limit", "2"]);
    assert_eq!(out.lines().map(|l| dump_fields(l)["position"]).collect::<Vec<_>>(), ["1", "2"]);

    let v: Value = serde_json::from_str(ok(&["dump", d, "--json", "--from", "3"]).trim_end()).unwrap();
    assert_eq!(v["position"], 3);
    assert_eq!(v["segment"], "00000000000000000000.seg");
    assert_eq!(v["offset"], offsets[3]);
    assert_eq!(v["aggregate_id"], "acct-1");
    assert_eq!(v["version"], 2);
    assert_eq!(v["event_type"], "FundsWithdrawn");
    assert_eq!(v["data_preview"], "[1, 2.50, \"x\"]");
    assert!(v["recorded_at"].is_i64());
}

#[test]
fn dump_segment_restricts_to_one_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = multi_segment_store(tmp.path());
    let d = path(&dir);
    let segs = segment_files(&dir);
    let firsts: Vec<u64> = segs.iter().map(|p| p.file_stem().unwrap().to_str().unwrap().parse().unwrap()).collect();
    let all = ok(&["dump", d]);
    assert_eq!(all.lines().count() as u64, MULTI_EVENTS);
    let long = dump_fields(all.lines().next().unwrap())["data"].to_string();
    assert!(long.ends_with("...") && long.len() == 63, "{long}");

    let name = segs[1].file_name().unwrap().to_str().unwrap();
    let by_name = ok(&["dump", d, "--segment", name]);
    let lines: Vec<_> = by_name.lines().map(dump_fields).collect();
    let positions: Vec<u64> = lines.iter().map(|l| l["position"].parse().unwrap()).collect();
    assert_eq!(positions, (firsts[1]..firsts[2]).collect::<Vec<_>>());
    assert!(lines.iter().all(|l| l["segment"] == name), "{by_name}");
    assert_eq!(lines[0]["offset"], "64");
    // The same segment by first position, and by path.
    assert_eq!(ok(&["dump", d, "--segment", &firsts[1].to_string()]), by_name);
    assert_eq!(ok(&["dump", d, "--segment", path(&segs[1])]), by_name);
    // With --from and --limit inside it.
    let from = (firsts[1] + 2).to_string();
    let part = ok(&["dump", d, "--segment", name, "--from", &from, "--limit", "3"]);
    let got: Vec<u64> = part.lines().map(|l| dump_fields(l)["position"].parse().unwrap()).collect();
    assert_eq!(got, [firsts[1] + 2, firsts[1] + 3, firsts[1] + 4]);
    // The last segment runs to the end of the log.
    let last = ok(&["dump", d, "--segment", &firsts[firsts.len() - 1].to_string(), "--json"]);
    let last: Vec<Value> = last.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(last.last().unwrap()["position"], MULTI_EVENTS - 1);
    assert_eq!(last[0]["position"], firsts[firsts.len() - 1]);

    let out = factlog(&["dump", d, "--segment", &(firsts[1] + 1).to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&format!("no segment starts at position {}", firsts[1] + 1)), "{}", stderr(&out));
    let out = factlog(&["dump", d, "--segment", "nonsense"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("expected a segment file name"), "{}", stderr(&out));
}

/// Runs `factlog` with `input` on its standard input.
fn factlog_with_stdin(args: &[&str], input: &[u8]) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_factlog"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // The command may stop reading early (a rejected line): ignore a closed pipe.
    let _ = stdin.write_all(input);
    drop(stdin);
    child.wait_with_output().unwrap()
}

#[test]
fn read_notes_an_unknown_aggregate_on_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = sample_store(tmp.path());
    let out = factlog(&["read", path(&dir), "--aggregate", "acct-9"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    assert_eq!(stderr(&out), format!("note: aggregate \"acct-9\" has no events in {}\n", path(&dir)));
    // A known aggregate read past its end prints nothing, and no note.
    let out = factlog(&["read", path(&dir), "--aggregate", "acct-1", "--from", "9"]);
    assert_eq!((out.status.code(), out.stdout.is_empty(), out.stderr.is_empty()), (Some(0), true, true));
}

#[test]
fn append_creates_a_store_only_where_a_typo_cannot_put_it() {
    let tmp = tempfile::tempdir().unwrap();
    let event = ["--aggregate", "a", "--type", "T", "--data", "{}"];
    let append = |dir: &Path, extra: &[&str]| factlog(&[&["append", path(dir)][..], &event, extra].concat());

    // A new directory whose parent exists: created, and said so on stderr.
    let fresh = tmp.path().join("fresh");
    let out = append(&fresh, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), format!("note: created a new factlog store in {}\n", path(&fresh)));
    // Appending to it again says nothing more.
    let out = append(&fresh, &[]);
    assert_eq!((out.status.code(), stderr(&out).as_str()), (Some(0), ""));

    // A mistyped path two levels deep: refused, nothing created.
    let typo = tmp.path().join("frseh").join("store");
    let out = append(&typo, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with(&format!("error: {} is not a factlog store", path(&typo))), "{err}");
    assert!(err.contains("pass --create"), "{err}");
    assert!(!tmp.path().join("frseh").exists());
    // With --create it is made, parents included.
    let out = append(&typo, &["--create"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).starts_with("note: created a new factlog store"), "{}", stderr(&out));
    assert_eq!(json_lines(&ok(&["read", path(&typo), "--all"])).len(), 1);

    // An empty directory is fine; a directory with other files is not.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_eq!(append(&empty, &[]).status.code(), Some(0));
    let busy = tmp.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("notes.txt"), "mine").unwrap();
    for extra in [&[][..], &["--create"]] {
        let out = append(&busy, extra);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(err.starts_with(&format!("error: {} is not a factlog store", path(&busy))), "{err}");
        assert!(err.contains("not empty"), "{err}");
    }
    assert_eq!(std::fs::read_dir(&busy).unwrap().count(), 1, "the directory was left alone");
    // A file is not a store either.
    let out = append(&busy.join("notes.txt"), &[]);
    assert!(stderr(&out).contains("is not a factlog store: not a directory"), "{}", stderr(&out));
}

#[test]
fn payloads_larger_than_argv_come_from_a_file_or_stdin() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let d = path(&dir);
    // 1 MiB: well over what one command-line argument may hold (128 KiB on Linux).
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(1 << 20));
    let file = tmp.path().join("big.json");
    std::fs::write(&file, &big).unwrap();
    let out = ok(&["append", d, "--aggregate", "a", "--type", "Big", "--data-file", path(&file)]);
    assert_eq!(out, "version 0 position 0\n");
    let out = factlog_with_stdin(&["append", d, "--aggregate", "a", "--type", "Big", "--data", "-"], big.as_bytes());
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), "version 1 position 1\n"), "{}", stderr(&out));
    let events = json_lines(&ok(&["read", d, "--aggregate", "a"]));
    assert_eq!(events.len(), 2);
    for e in &events {
        assert_eq!(e["data"]["pad"].as_str().map(str::len), Some(1 << 20));
    }
    // A negative JSON number is a payload, not an option.
    assert_eq!(ok(&["append", d, "--aggregate", "n", "--type", "T", "--data", "-1"]), "version 0 position 2\n");

    // Over the store's 4 MiB event limit, or not JSON: refused before the store is touched.
    let huge = tmp.path().join("huge.json");
    std::fs::write(&huge, format!("\"{}\"", "y".repeat(5 << 20))).unwrap();
    let out = factlog(&["append", d, "--aggregate", "a", "--type", "T", "--data-file", path(&huge)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("larger than the largest event a store takes (4 MiB)"), "{}", stderr(&out));
    let out = factlog_with_stdin(&["append", d, "--aggregate", "a", "--type", "T", "--data", "-"], b"\xff\xfe");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("error: standard input is not valid JSON"), "{}", stderr(&out));
    assert_eq!(json_lines(&ok(&["read", d, "--all"])).len(), 3);
}

#[test]
fn read_prints_non_json_payloads_under_base64_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(&dir, Options::default()).unwrap();
    let mut binary = NewEvent::new([7; 16], "Blob", Bytes::from_static(b"\x00\x01\xffnot json"));
    binary.metadata = Bytes::from_static(b"trace=1");
    let string = NewEvent::new([8; 16], "Text", Bytes::from_static(br#""AAH/bm90IGpzb24=""#));
    store.append("b", ExpectedVersion::Any, vec![binary, string]).unwrap();
    store.close().unwrap();

    let text = ok(&["read", path(&dir), "--all"]);
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["data_base64"], "AAH/bm90IGpzb24=");
    assert_eq!(lines[0]["metadata_base64"], "dHJhY2U9MQ==");
    assert!(lines[0].get("data").is_none() && lines[0].get("metadata").is_none(), "{}", lines[0]);
    // A JSON string payload that happens to look like base64 stays under "data".
    assert_eq!(lines[1]["data"], "AAH/bm90IGpzb24=");
    assert!(lines[1].get("data_base64").is_none(), "{}", lines[1]);
    assert_eq!(lines[1]["metadata"], Value::Null);

    let help = ok(&["read", "--help"]);
    assert!(help.contains("data_base64") && help.contains("metadata_base64"), "{help}");
}

#[test]
fn append_jsonl_is_one_atomic_batch_and_takes_back_what_read_prints() {
    let tmp = tempfile::tempdir().unwrap();
    let source = sample_store(tmp.path());
    let s = path(&source);
    let jsonl = tmp.path().join("batch.jsonl");
    std::fs::write(
        &jsonl,
        concat!(
            r#"{"type":"Opened","data":{"owner":"bo"},"id":"cccccccc-cccc-4ccc-8ccc-cccccccccccc","metadata":{"via":"import"}}"#,
            "\n\n",
            r#"{"type":"Raw","data_base64":"AAH/","occurred_at":"2024-05-01T12:00:00Z","event_version":3}"#,
            "\n",
            r#"{"event_type":"Noted","data":null,"causation_id":"cccccccc-cccc-4ccc-8ccc-cccccccccccc"}"#,
            "\n",
        ),
    )
    .unwrap();
    let out = ok(&["append", s, "--aggregate", "acct-3", "--jsonl", path(&jsonl), "--expected-version", "no-stream"]);
    assert_eq!(out, "3 events: versions 0-2 positions 4-6\n");
    let lines: Vec<Value> =
        ok(&["read", s, "--aggregate", "acct-3"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["event_id"], "cccccccc-cccc-4ccc-8ccc-cccccccccccc");
    assert_eq!(lines[0]["metadata"], json!({"via": "import"}));
    assert_eq!(lines[1]["data_base64"], "AAH/");
    assert_eq!(
        (&lines[1]["occurred_at"], &lines[1]["event_version"]),
        (&json!(1_714_564_800_000_000_000_i64), &json!(3))
    );
    assert_eq!((&lines[2]["event_type"], &lines[2]["data"]), (&json!("Noted"), &Value::Null));
    assert_eq!(lines[2]["causation_id"], "cccccccc-cccc-4ccc-8ccc-cccccccccccc");

    // All or nothing: a version conflict or a bad line writes none of the batch.
    let before = ok(&["read", s, "--all"]);
    let out = factlog(&["append", s, "--aggregate", "acct-3", "--jsonl", path(&jsonl), "--expected-version", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let bad = "{\"type\":\"T\",\"data\":1}\n{\"type\":\"T\",\"data\":2,\"idd\":\"x\"}\n";
    let out = factlog_with_stdin(&["append", s, "--aggregate", "acct-3", "--jsonl", "-"], bad.as_bytes());
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("error: standard input line 2: unknown field `idd`"), "{}", stderr(&out));
    assert_eq!(ok(&["read", s, "--all"]), before);

    // Round trip: what `read` prints appends again, to another store, as it was.
    let copy = tmp.path().join("copy");
    for aggregate in ["acct-1", "acct-3"] {
        let printed = ok(&["read", s, "--aggregate", aggregate]);
        let out = factlog_with_stdin(&["append", path(&copy), "--jsonl", "-", "--json"], printed.as_bytes());
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!((&v["aggregate_id"], &v["events"]), (&json!(aggregate), &json!(3)));
        let without_store_fields = |text: &str| -> Vec<Value> {
            text.lines()
                .map(|l| {
                    let mut v: Value = serde_json::from_str(l).unwrap();
                    for key in ["position", "recorded_at"] {
                        v.as_object_mut().unwrap().remove(key);
                    }
                    v
                })
                .collect()
        };
        let copied = ok(&["read", path(&copy), "--aggregate", aggregate]);
        assert_eq!(without_store_fields(&copied), without_store_fields(&printed));
    }
    // Lines for another aggregate than --aggregate are refused.
    let printed = ok(&["read", s, "--aggregate", "acct-2"]);
    let out = factlog_with_stdin(&["append", path(&copy), "--aggregate", "x", "--jsonl", "-"], printed.as_bytes());
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not --aggregate \"x\""), "{}", stderr(&out));

    let help = ok(&["append", "--help"]);
    for key in ["data_base64", "occurred_at", "causation_id", "one atomic batch", "--data-file", "--create"] {
        assert!(help.contains(key), "{key} in {help}");
    }
}

/// Flips a byte of the first frame of the second segment of a multi-segment
/// store; returns (store, that segment, its first position).
fn damaged_store(root: &Path, without_checkpoint: bool) -> (PathBuf, PathBuf, u64) {
    let dir = multi_segment_store(root);
    let second = segment_files(&dir).remove(1);
    let first: u64 = second.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    if without_checkpoint {
        std::fs::remove_file(dir.join(format!("{first:020}.idx"))).unwrap();
    }
    flip_byte(&second, 64 + 100);
    (dir, second, first)
}

#[test]
fn repair_shows_the_exact_loss_changes_nothing_unless_confirmed_then_cuts() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, second, first) = damaged_store(tmp.path(), false);
    let d = path(&dir);
    let later = segment_files(&dir).split_off(2);
    assert!(!later.is_empty());
    let lost = MULTI_EVENTS - first;
    let before = contents(&dir);

    // The dry run, then "no": nothing changes.
    for answer in ["no\n", ""] {
        let out = factlog_with_stdin(&["repair", d], answer.as_bytes());
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let text = stdout(&out);
        assert!(text.starts_with(&format!("dry run of a repair of {d} (nothing changed)\n")), "{text}");
        assert!(text.contains(&format!("damaged record at {}:64: checksum mismatch", second.display())), "{text}");
        let cut = format!("a repair cuts the log there: the {lost} event(s) from position {first} on are lost\n");
        assert!(text.contains(&cut), "{text}");
        assert!(text.contains(&format!("it removes {} later segment file(s):\n", later.len())), "{text}");
        for file in &later {
            assert!(text.contains(&format!("\n  {}\n", file.display())), "{text}");
        }
        assert!(text.ends_with(&format!("the store would then hold {first} event(s)\n")), "{text}");
        let err = stderr(&out);
        assert!(err.contains("What is listed above will be lost for good. Type yes to proceed"), "{err}");
        assert!(err.contains("error: repair cancelled: nothing was changed"), "{err}");
        assert!(contents(&dir) == before, "repair changed the store without confirmation");
    }

    // "yes": the log is cut exactly there, and the store is sound again.
    let out = factlog_with_stdin(&["repair", d], b"yes\n");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let (_, outcome) = text.split_once(&format!("repaired {d}\n")).unwrap_or_else(|| panic!("{text}"));
    assert!(outcome.starts_with(&format!("cut the log at {}:64: checksum mismatch", second.display())), "{text}");
    let removed =
        format!("lost {lost} event(s), from position {first} on; removed {} later segment file(s)\n", later.len());
    assert!(outcome.contains(&removed), "{text}");
    assert!(
        outcome.contains(&format!("the store now holds {first} event(s); `factlog verify {d}` checks it")),
        "{text}"
    );
    assert!(!outcome.contains("note: the store changed"), "{text}");
    assert!(later.iter().all(|f| !f.exists()), "later segments are removed");
    ok(&["verify", d]);
    assert_eq!(json_lines(&ok(&["read", d, "--all"])).len() as u64, first);

    // A sound store: nothing to do, nothing asked, nothing changed.
    let before = contents(&dir);
    let out = factlog_with_stdin(&["repair", d], b"");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("the event log is sound: nothing to repair"), "{}", stdout(&out));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
    assert!(contents(&dir) == before);
}

#[test]
fn repair_of_a_store_that_does_not_open_counts_the_loss_and_takes_yes() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, second, first) = damaged_store(tmp.path(), true);
    let d = path(&dir);
    assert_eq!(factlog(&["read", d, "--all"]).status.code(), Some(1), "the damage keeps the store from opening");
    let before = contents(&dir);
    let out = factlog_with_stdin(&["repair", d], b"n\n");
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains(&format!("damaged record at {}:64: ", second.display())), "{text}");
    let lost = MULTI_EVENTS - first;
    assert!(text.contains(&format!("the {lost} event(s) from position {first} on are lost\n")), "{text}");
    assert!(contents(&dir) == before);

    let out = factlog(&["repair", d, "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("lost {lost} event(s), from position {first} on")), "{}", stdout(&out));
    assert!(stdout(&out).contains(&format!("the store now holds {first} event(s)")), "{}", stdout(&out));
    ok(&["verify", d]);

    // Not a store: refused before anything is looked at.
    let out = factlog(&["repair", path(tmp.path()), "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is not a factlog store"), "{}", stderr(&out));
}

#[test]
fn repair_cannot_fix_a_damaged_segment_header_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = multi_segment_store(tmp.path());
    let d = path(&dir);
    flip_byte(&segment_files(&dir)[1], 0);
    let before = contents(&dir);
    let out = factlog(&["repair", d, "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("error: a repair cannot fix this: "), "{err}");
    assert!(!err.contains("factlog repair"), "no advice to run itself: {err}");
    assert!(contents(&dir) == before);
}

#[test]
fn repair_rebuilds_a_damaged_checkpoint_without_losing_an_event() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = multi_segment_store(tmp.path());
    let d = path(&dir);
    let checkpoint = dir.join("00000000000000000000.idx");
    flip_byte(&checkpoint, 20);
    assert_eq!(factlog(&["verify", d]).status.code(), Some(3));
    // Nothing is lost, and the question says nothing about losing.
    let out = factlog_with_stdin(&["repair", d], b"no\n");
    assert!(stderr(&out).starts_with(&format!("Repair {d}? Type yes to proceed: ")), "{}", stderr(&out));
    let out = factlog(&["repair", d, "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("nothing is cut from the log: no event is lost\n"), "{text}");
    assert!(text.contains("a repair rebuilds these damaged index checkpoints from their segments:\n"), "{text}");
    assert!(text.contains(&format!("\n  {}:0: ", checkpoint.display())), "{text}");
    assert!(text.contains("nothing was cut from the log\n"), "{text}");
    let sealed = segment_files(&dir).len() - 1;
    assert!(text.contains(&format!("rewrote {sealed} index checkpoint(s) from their segments\n")), "{text}");
    assert!(text.contains(&format!("the store now holds {MULTI_EVENTS} event(s)")), "{text}");
    ok(&["verify", d]);
}

#[test]
fn a_corruption_error_names_the_repair_command() {
    let tmp = tempfile::tempdir().unwrap();
    // Damage that keeps the store from opening: every command says what to run.
    let (dir, _, _) = damaged_store(tmp.path(), true);
    let d = path(&dir);
    let hint = format!("run `factlog repair {d}` to see what a repair would cut");
    let commands: [&[&str]; 8] = [
        &["read", d, "--all"],
        &["stats", d],
        &["verify", d],
        &["dump", d],
        &["aggregates", d],
        &["snapshots", d],
        &["append", d, "--aggregate", "a", "--type", "T", "--data", "{}"],
        &["verify", d, "--json"],
    ];
    for args in commands {
        let out = factlog(args);
        assert_ne!(out.status.code(), Some(0), "{args:?}");
        let err = stderr(&out);
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 2, "{args:?}: {err}");
        assert!(lines[0].starts_with("error: ") && lines[0].contains("corrupt data in"), "{args:?}: {err}");
        assert_eq!(lines[1], hint, "{args:?}");
    }
    // Damage found while reading a store that opened: the same line, after
    // the events read before it.
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _, first) = damaged_store(tmp.path(), false);
    let d = path(&dir);
    let out = factlog(&["read", d, "--all"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json_lines(&stdout(&out)).len() as u64, first);
    let err = stderr(&out);
    assert!(err.starts_with("error: corrupt data in"), "{err}");
    assert!(err.ends_with(&format!("\nrun `factlog repair {d}` to see what a repair would cut\n")), "{err}");
    // A path the shell would split is quoted.
    let spaced = tmp.path().join("my store");
    std::fs::rename(&dir, &spaced).unwrap();
    let err = stderr(&factlog(&["dump", path(&spaced)]));
    assert!(err.contains(&format!("run `factlog repair '{}'` to see", path(&spaced))), "{err}");
}

#[test]
fn aggregates_lists_ids_versions_and_event_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = sample_store(tmp.path());
    let d = path(&dir);
    ok(&["append", d, "--aggregate", "order 7", "--type", "T", "--data", "{}"]);
    assert_eq!(
        ok(&["aggregates", d]),
        concat!(
            "aggregate  version  events  last_position\n",
            "acct-1           2       3              3\n",
            "acct-2           0       1              2\n",
            "\"order 7\"        0       1              4\n",
        )
    );
    assert_eq!(
        ok(&["aggregates", d, "--prefix", "acct-2"]),
        "aggregate  version  events  last_position\nacct-2           0       1              2\n"
    );
    let lines: Vec<Value> =
        ok(&["aggregates", d, "--json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(
        lines,
        [
            json!({"aggregate_id": "acct-1", "version": 2, "events": 3, "last_position": 3}),
            json!({"aggregate_id": "acct-2", "version": 0, "events": 1, "last_position": 2}),
            json!({"aggregate_id": "order 7", "version": 0, "events": 1, "last_position": 4}),
        ]
    );
    let out = factlog(&["aggregates", d, "--prefix", "zz", "--json"]);
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), ""));
    assert_eq!(stderr(&out), format!("note: no aggregates with prefix \"zz\" in {d}\n"));

    // Many aggregates over several segments.
    let multi = multi_segment_store(tmp.path());
    let text = ok(&["aggregates", path(&multi)]);
    let rows: Vec<Vec<&str>> = text.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    let want: Vec<Vec<String>> = (0..5u64)
        .map(|i| vec![format!("agg-{i}"), "39".into(), "40".into(), (MULTI_EVENTS - 5 + i).to_string()])
        .collect();
    assert_eq!(rows, want);
}

#[test]
fn snapshots_lists_aggregate_version_file_and_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = multi_segment_store(tmp.path());
    let d = path(&dir);
    let store = Store::open(&dir, small_options()).unwrap();
    store.save_snapshot("agg-0", 8, factlog::SchemaVersion(1), &b"x".repeat(5000)[..]).unwrap();
    store.save_snapshot("agg-1", 5, factlog::SchemaVersion(1), b"state of agg-1").unwrap();
    store.save_snapshot("agg-3", 2, factlog::SchemaVersion(1), b"state of agg-3").unwrap();
    let listed = store.snapshots("");
    store.close().unwrap();

    let lines: Vec<Value> = ok(&["snapshots", d, "--json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let got: Vec<(&str, u64)> =
        lines.iter().map(|v| (v["aggregate_id"].as_str().unwrap(), v["version"].as_u64().unwrap())).collect();
    // Older snapshots still in the files are listed too.
    assert_eq!(got, [("agg-0", 3), ("agg-0", 8), ("agg-1", 5), ("agg-3", 2)]);
    for v in &lines {
        let file = v["file"].as_str().unwrap();
        assert!(file.starts_with("snapshots/") && dir.join(file).is_file(), "{v}");
        let engine = listed.iter().find(|e| e.aggregate_id == v["aggregate_id"] && e.version == v["version"]);
        if let Some(e) = engine {
            assert_eq!(v["stored_bytes"], e.stored_bytes, "{v}");
        }
        assert!(v["stored_bytes"].as_u64().unwrap() > 0, "{v}");
    }

    let text = ok(&["snapshots", d]);
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["aggregate", "version", "file", "stored_bytes"]);
    assert_eq!(rows.len(), 5, "{text}");
    assert_eq!((rows[2][0], rows[2][1], rows[2][2]), ("agg-0", "8", lines[1]["file"].as_str().unwrap()));
    assert_eq!(rows[2][3], lines[1]["stored_bytes"].to_string());

    let one = ok(&["snapshots", d, "--aggregate", "agg-1"]);
    assert_eq!(one.lines().count(), 2, "{one}");
    assert!(one.lines().nth(1).unwrap().starts_with("agg-1"), "{one}");
    // --aggregate is exact, --prefix is not.
    let out = factlog(&["snapshots", d, "--aggregate", "agg"]);
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), ""));
    assert_eq!(stderr(&out), format!("note: no snapshots of aggregate \"agg\" in {d}\n"));
    assert_eq!(ok(&["snapshots", d, "--prefix", "agg", "--json"]).lines().count(), 4);
    let out = factlog(&["snapshots", d, "--prefix", "agg", "--aggregate", "agg-1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot be used with"), "{}", stderr(&out));
}

/// JSON lines naming several aggregates are one `append_many`: all of them
/// or none, each aggregate with the expected version its lines give.
#[test]
fn append_jsonl_over_several_aggregates_is_all_or_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let source = sample_store(tmp.path());
    let s = path(&source);
    let before = ok(&["read", s, "--all"]);
    let transfer = |from_version: &str| {
        format!(
            concat!(
                r#"{{"type":"FundsWithdrawn","data":{{"amount":5}},"aggregate_id":"acct-1","expected_version":{}}}"#,
                "\n",
                r#"{{"type":"Noted","data":null,"aggregate_id":"acct-1"}}"#,
                "\n",
                r#"{{"type":"FundsDeposited","data":{{"amount":5}},"aggregate_id":"acct-new","expected_version":"no-stream"}}"#,
                "\n"
            ),
            from_version
        )
    };
    // A wrong expectation for acct-1: exit code 2 (conflict) and nothing of either aggregate written.
    let jsonl = tmp.path().join("transfer.jsonl");
    std::fs::write(&jsonl, transfer("99")).unwrap();
    let out = factlog(&["append", s, "--jsonl", path(&jsonl)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("acct-1"), "{}", stderr(&out));
    assert_eq!(ok(&["read", s, "--all"]), before);
    // The right one: both land, acct-1's two events together.
    let v = json_lines(&before).iter().filter(|e| e["aggregate_id"] == "acct-1").count() - 1;
    std::fs::write(&jsonl, transfer(&v.to_string())).unwrap();
    let out = ok(&["append", s, "--jsonl", path(&jsonl)]);
    let n = json_lines(&before).len();
    assert_eq!(
        out,
        format!(
            "acct-1: 2 events: versions {}-{} positions {n}-{}\nacct-new: version 0 position {}\n",
            v + 1,
            v + 2,
            n + 1,
            n + 2
        )
    );
    // --aggregate or --expected-version with several aggregates is refused.
    let out = factlog(&["append", s, "--jsonl", path(&jsonl), "--aggregate", "acct-1"]);
    assert!(!out.status.success() && stderr(&out).contains("name several aggregates"), "{}", stderr(&out));
}
