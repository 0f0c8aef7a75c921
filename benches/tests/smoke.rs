//! Runs the `factlog-bench` binary end to end at a tiny size, so the
//! README's main command cannot silently break: every workload on every
//! engine that has it must produce a row with real figures (W9 and the
//! subscribed W2 are factlog's), in both the JSON and the
//! table output; the table must fit in 100 columns with rounded figures; a
//! run whose stderr is not a terminal must report each finished workload on
//! its own stderr line (and `--quiet` none); the temporary stores must be
//! removed afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or benchmark: panicking is how it fails

use std::path::Path;
use std::process::Command;

const BENCH: &str = env!("CARGO_BIN_EXE_factlog-bench");

/// Runs the benchmark at a tiny size; returns (stdout, stderr). Its stderr
/// is a pipe, not a terminal.
fn run(dir: &Path, extra: &[&str]) -> (String, String) {
    let out = Command::new(BENCH)
        .args(["--events", "3000", "--writers", "1,4", "--batch", "10", "--duration-secs", "0.2"])
        .args(["--replays", "50", "--w7-events", "500", "--w7-loads", "2", "--fsync-secs", "0.2"])
        .args(["--w8-secs", "0.2", "--seq-write-mib", "4", "--dir"])
        .arg(dir)
        .args(extra)
        .output()
        .expect("run factlog-bench");
    let stderr = String::from_utf8(out.stderr).expect("utf-8 stderr");
    assert!(out.status.success(), "factlog-bench failed: {}\n{stderr}", out.status);
    (String::from_utf8(out.stdout).expect("utf-8 output"), stderr)
}

#[test]
fn every_workload_on_every_engine_reports_real_figures() {
    let dir = tempfile::tempdir().unwrap();
    let (json, stderr) = run(dir.path(), &["--json", "--quiet"]);
    assert_eq!(stderr, "", "--quiet prints nothing on stderr");
    let doc: serde_json::Value = serde_json::from_str(&json).expect("one JSON document");
    for key in ["fsync_per_sec", "seq_write_mb_per_sec", "memcpy_mb_per_sec"] {
        let v = doc["physical"][key].as_f64().unwrap_or(0.0);
        assert!(v > 0.0, "physical.{key} = {v}");
    }
    let rows = doc["results"].as_array().expect("results array");
    let has =
        |w: &str, engine: &str| rows.iter().filter(|r| r["workload"] == w && r["engine"] == engine).collect::<Vec<_>>();
    for engine in ["factlog", "sqlite", "fjall"] {
        for w in ["W1", "W2", "W2m", "W3", "W4", "W5", "W6", "W7", "W8"] {
            let found = has(w, engine);
            assert!(!found.is_empty(), "no {w} row for {engine}");
            for r in found {
                assert!(r["events"].as_u64().unwrap_or(0) > 0, "{w}/{engine}: no events: {r}");
                assert!(r["events_per_sec"].as_f64().unwrap_or(0.0) > 0.0, "{w}/{engine}: no rate: {r}");
            }
        }
        let plain_w2 = has("W2", engine).into_iter().filter(|r| r["subscribers"].is_null()).count();
        assert_eq!(plain_w2, 2, "W2 rows for {engine} (writers 1 and 4)");
        // W2m: the largest writer count, each append_many one event to each of 8 aggregates.
        let w2m = has("W2m", engine);
        assert_eq!(w2m.len(), 1, "{engine}: {w2m:?}");
        let w2m = w2m[0];
        assert_eq!((w2m["writers"].as_u64(), w2m["batch"].as_u64()), (Some(4), Some(8)), "{engine}: {w2m}");
        assert_eq!(w2m["aggregates_per_append"].as_u64(), Some(8), "{engine}: {w2m}");
        assert_eq!(w2m["events"].as_u64().unwrap() % 8, 0, "whole append_many calls only: {w2m}");
        assert!(w2m["ratio_to_w2"].as_f64().unwrap_or(0.0) > 0.0, "{engine}: {w2m}");
        assert!(w2m["p50_us"].as_f64().unwrap_or(0.0) > 0.0, "{engine}: {w2m}");
        // W8: 1 and 16 subscribers, each receiving every event.
        let w8 = has("W8", engine);
        let subs: Vec<u64> = w8.iter().map(|r| r["subscribers"].as_u64().unwrap_or(0)).collect();
        assert_eq!(subs, [1, 16], "{engine}: {w8:?}");
        for r in w8 {
            assert_eq!(r["ops"].as_u64(), Some(r["events"].as_u64().unwrap() * r["subscribers"].as_u64().unwrap()));
            // ack→receipt is 0 when every receipt came before the appender's ack
            // (a loaded machine schedules the subscriber first); submit→receipt never is.
            assert!(r["p99_us"].as_f64().is_some_and(|v| v >= 0.0), "{engine}: {r}");
            assert!(r["submit_to_receipt_p99_us"].as_f64().unwrap_or(0.0) > 0.0, "{engine}: {r}");
            assert!(r["receipts_before_ack_share"].as_f64().is_some(), "{engine}: {r}");
        }
    }
    // Subscriptions are factlog's: W9 and the subscribed W2 have no peer rows.
    for engine in ["sqlite", "fjall"] {
        assert!(has("W9", engine).is_empty() && has("W10", engine).is_empty(), "{engine} has W9/W10 rows");
        assert!(has("W2", engine).iter().all(|r| r["subscribers"].is_null()), "{engine}: subscribed W2");
    }
    let subscribed: Vec<_> = has("W2", "factlog").into_iter().filter(|r| !r["subscribers"].is_null()).collect();
    assert_eq!(subscribed.len(), 1, "{subscribed:?}");
    let subscribed = subscribed[0];
    assert_eq!((subscribed["subscribers"].as_u64(), subscribed["writers"].as_u64()), (Some(16), Some(4)));
    assert!(subscribed["ratio_to_w2"].as_f64().unwrap_or(0.0) > 0.0, "{subscribed}");
    assert_eq!(subscribed["events_per_subscriber"], subscribed["events"], "{subscribed}");
    let w9 = has("W9", "factlog");
    assert_eq!(w9.len(), 2, "{w9:?}");
    for r in &w9 {
        assert_eq!(r["events"].as_u64(), Some(3000), "{r}");
        assert!(r["ratio_to_w6"].as_f64().unwrap_or(0.0) > 0.0, "{r}");
    }
    let filtered = w9.iter().find(|r| r["filtered"] == true).expect("a filtered W9 row");
    assert_eq!(filtered["delivered_events"].as_u64(), Some(30), "1% of 3,000: {filtered}");
    assert!(filtered["ratio_to_unfiltered"].as_f64().unwrap_or(0.0) > 0.0, "{filtered}");
    let w10 = has("W10", "factlog");
    assert_eq!(w10.len(), 1, "{w10:?}");
    assert_eq!(w10[0]["events"].as_u64(), Some(3000), "{}", w10[0]);
    assert!(w10[0]["ratio_to_w6"].as_f64().unwrap_or(0.0) > 0.0, "{}", w10[0]);
    let w7: Vec<_> = has("W7", "factlog");
    assert!(w7.iter().any(|r| r["snapshot"] == true) && w7.iter().any(|r| r["snapshot"] == false), "{w7:?}");
    let snap = w7.iter().find(|r| r["snapshot"] == true).unwrap();
    let ratio = |k: &str| snap[k].as_f64().unwrap_or(0.0);
    assert!(
        ratio("small_snapshot_payload_ratio_dict") > ratio("small_snapshot_payload_ratio_plain"),
        "the trained dictionary did not pay on small states: {snap}"
    );
    let w4 = &has("W4", "factlog")[0];
    assert_eq!(w4["events"].as_u64(), Some(3000));
    assert!(w4["index_bytes_per_event"].as_f64().unwrap_or(0.0) > 0.0, "{w4}");
    // The fields docs/bench/ relies on are all still there.
    for key in ["writers", "batch", "durability", "secs", "mb_per_sec", "p50_us", "p99_us", "mean_us", "max_us", "ops"]
    {
        assert!(!rows[0][key].is_null(), "{key} in {}", rows[0]);
    }
    for key in ["events", "aggregates", "payload_bytes", "writers", "batch", "durability", "duration_secs"] {
        assert!(!doc["params"][key].is_null(), "params.{key} in {doc}");
    }
    assert!(doc["machine"]["kernel"].as_str().is_some_and(|k| !k.is_empty()), "{doc}");
    assert!(doc["wall_secs"].as_f64().unwrap_or(0.0) > 0.0);
    // The stores were temporary.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "stores left behind");
}

#[test]
fn the_table_fits_in_100_columns_and_progress_goes_to_stderr_line_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let (table, stderr) = run(dir.path(), &["--engines", "factlog,sqlite"]);
    for w in ["W1", "W2", "W2m", "W3", "W4", "W5", "W6", "W7", "W8", "W9", "W10"] {
        assert!(table.lines().any(|l| l.starts_with(w)), "no {w} line in:\n{table}");
    }
    assert!(table.contains("W2m append_many 1 ev × 8 aggregates, 4 writers, sync"), "no W2m title in:\n{table}");
    assert!(table.contains("16 subscribers attached (factlog)"), "no subscribed W2 in:\n{table}");
    assert!(table.contains("÷ sqlite"), "no ratio column in:\n{table}");
    assert!(table.contains("factlog at ") && table.contains("% of fsync/s"), "no physical share in:\n{table}");
    for line in table.lines() {
        let width = line.chars().count();
        assert!(width <= 100, "{width} columns: {line:?}\n{table}");
    }
    // Rounded figures: no four-decimal rates, no long unrounded integers.
    let events_per_sec = table.lines().find(|l| l.trim_start().starts_with("events/s")).expect("an events/s line");
    for figure in events_per_sec.split_whitespace().filter(|f| f.starts_with(|c: char| c.is_ascii_digit())) {
        let digits = figure.chars().take_while(|c| c.is_ascii_digit() || *c == ',' || *c == '.');
        let significant: String = digits.filter(char::is_ascii_digit).collect();
        assert!(significant.trim_start_matches('0').trim_end_matches('0').len() <= 3, "{figure} in {events_per_sec}");
    }

    // stderr is a pipe here: no bars, no control characters, one line per
    // finished workload of each engine, and one for the physical limits.
    assert!(!stderr.contains('\r') && !stderr.contains('\u{1b}'), "terminal control in:\n{stderr}");
    let progress: Vec<&str> = stderr.lines().filter(|l| l.starts_with("factlog-bench [")).collect();
    assert!(progress.iter().any(|l| l.contains("] physical limits: ")), "{stderr}");
    for engine in ["factlog", "sqlite"] {
        for w in [
            "W1",
            "W2 (1 writer)",
            "W2 (4 writers)",
            "W2m (4 writers × 8 aggregates)",
            "W3",
            "W4",
            "W5",
            "W6",
            "W7 (no snapshot)",
            "W8 (1 subscriber)",
            "W8 (16 subscribers)",
        ] {
            let prefix = format!("{engine} {w}:");
            assert!(
                progress.iter().any(|l| l.split_once("] ").is_some_and(|(_, rest)| rest.starts_with(&prefix))),
                "no progress line for {prefix} in:\n{stderr}"
            );
        }
    }
    for line in
        ["factlog W7 (snapshot)", "factlog W2 (4 writers, 16 subscribers)", "factlog W9 (type filter)", "factlog W10"]
    {
        assert!(progress.iter().any(|l| l.contains(&format!("] {line}: "))), "no {line} in:\n{stderr}");
    }
    assert!(progress.iter().all(|l| l.contains(" events/s") || l.contains("physical")), "{stderr}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "stores left behind");
}
