//! Runs the `factlog-bench` binary end to end at a tiny size, so the
//! README's main command cannot silently break: every workload on every
//! engine must produce a row with real figures, in both the JSON and the
//! table output, and the temporary stores must be removed afterwards.

use std::path::Path;
use std::process::Command;

const BENCH: &str = env!("CARGO_BIN_EXE_factlog-bench");

fn run(dir: &Path, extra: &[&str]) -> String {
    let out = Command::new(BENCH)
        .args(["--events", "3000", "--writers", "1,4", "--batch", "10", "--duration-secs", "0.2"])
        .args(["--replays", "50", "--w7-events", "500", "--w7-loads", "2", "--fsync-secs", "0.2"])
        .args(["--seq-write-mib", "4", "--quiet", "--dir"])
        .arg(dir)
        .args(extra)
        .output()
        .expect("run factlog-bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "factlog-bench failed: {}\n{stderr}", out.status);
    String::from_utf8(out.stdout).expect("utf-8 output")
}

#[test]
fn every_workload_on_every_engine_reports_real_figures() {
    let dir = tempfile::tempdir().unwrap();
    let doc: serde_json::Value = serde_json::from_str(&run(dir.path(), &["--json"])).expect("one JSON document");
    for key in ["fsync_per_sec", "seq_write_mb_per_sec", "memcpy_mb_per_sec"] {
        let v = doc["physical"][key].as_f64().unwrap_or(0.0);
        assert!(v > 0.0, "physical.{key} = {v}");
    }
    let rows = doc["results"].as_array().expect("results array");
    let has =
        |w: &str, engine: &str| rows.iter().filter(|r| r["workload"] == w && r["engine"] == engine).collect::<Vec<_>>();
    for engine in ["factlog", "sqlite", "fjall"] {
        for w in ["W1", "W2", "W3", "W4", "W5", "W6", "W7"] {
            let found = has(w, engine);
            assert!(!found.is_empty(), "no {w} row for {engine}");
            for r in found {
                assert!(r["events"].as_u64().unwrap_or(0) > 0, "{w}/{engine}: no events: {r}");
                assert!(r["events_per_sec"].as_f64().unwrap_or(0.0) > 0.0, "{w}/{engine}: no rate: {r}");
            }
        }
        assert_eq!(has("W2", engine).len(), 2, "W2 rows for {engine} (writers 1 and 4)");
    }
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
    // The stores were temporary.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "stores left behind");
}

#[test]
fn the_table_names_every_workload_and_the_ratios() {
    let dir = tempfile::tempdir().unwrap();
    let table = run(dir.path(), &["--engines", "factlog,sqlite", "--skip-physical"]);
    for w in ["W1", "W2", "W3", "W4", "W5", "W6", "W7"] {
        assert!(table.lines().any(|l| l.starts_with(w)), "no {w} line in:\n{table}");
    }
    assert!(table.contains("factlog/sqlite"), "no ratio column in:\n{table}");
}
