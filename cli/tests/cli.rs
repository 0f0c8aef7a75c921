//! End-to-end tests of the `factlog` binary against stores in temp dirs:
//! appends with expected versions, conflicts (exit code 2, nothing written),
//! `read --aggregate` / `read --all` JSON lines, `stats`, bad input, and
//! reading commands on a missing directory.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

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
    let cases: [(&[&str], &str); 6] = [
        (&["append", d, "--aggregate", "a", "--type", "T", "--data", "{amount: 1}"], "not valid JSON"),
        (&["append", d, "--aggregate", "a", "--type", "T", "--data", "{}", "--metadata", "x"], "not valid JSON"),
        (&["append", d, "--aggregate", "a", "--type", "T", "--data", "{}", "--event-id", "nope"], "not a valid UUID"),
        (
            &["append", d, "--aggregate", "a", "--type", "T", "--data", "{}", "--expected-version", "latest"],
            "no-stream",
        ),
        (&["read", d], "required"),
        (&["read", d, "--all", "--backward"], "--aggregate"),
    ];
    for (args, needle) in cases {
        let out = factlog(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert!(!dir.exists(), "rejected arguments must not create the store");

    // The engine's own validation (an empty aggregate id), after the store is created.
    let out = factlog(&["append", d, "--aggregate", "", "--type", "T", "--data", "{}"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("error: invalid input"), "{}", stderr(&out));
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
    let out = factlog(&["read", path(&plain), "--all"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is not a factlog store"), "{}", stderr(&out));
    assert_eq!(std::fs::read_dir(&plain).unwrap().count(), 0);
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
