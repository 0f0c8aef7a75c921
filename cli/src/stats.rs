//! `factlog stats`: a store's counters and sizes — events, aggregates,
//! segments, log bytes (frames written) and segment file bytes (preallocated
//! on disk), index bytes in memory and in checkpoint files, snapshots,
//! snapshot files and their bytes — as aligned `name value` lines or, with
//! `--json`, one JSON object. The store is opened read-only.
//!
//! The engine's per-process counters (`fsyncs`, `group_commits`) are left
//! out: they count since the store was opened, which for this command is
//! always zero.

use std::time::Duration;

use factlog::Stats;

use crate::error::CliResult;
use crate::{open, output, StatsArgs};

/// Runs `factlog stats`.
pub fn run(args: &StatsArgs, wait: Duration) -> CliResult {
    let store = open::open_existing(&args.dir, wait)?;
    let stats = store.stats();
    let text = if args.json { render_json(&stats) } else { render_text(&stats) };
    output::print(&text)
}

/// The reported rows: label for text output, key for JSON, value.
fn rows(s: &Stats) -> [(&'static str, &'static str, u64); 11] {
    [
        ("events", "events", s.events),
        ("aggregates", "aggregates", s.aggregates),
        ("segments", "segments", s.segments),
        ("log bytes", "log_bytes", s.log_bytes),
        ("segment file bytes", "segment_file_bytes", s.segment_file_bytes),
        ("index bytes (memory)", "index_bytes", s.index_bytes),
        ("index bytes (files)", "index_file_bytes", s.index_file_bytes),
        ("snapshots", "snapshots", s.snapshots),
        ("snapshot files", "snapshot_files", s.snapshot_files),
        ("snapshot bytes", "snapshot_bytes", s.snapshot_bytes),
        ("snapshot dictionaries", "snapshot_dictionaries", s.snapshot_dictionaries),
    ]
}

/// One `label  value` line per row, values aligned.
fn render_text(s: &Stats) -> String {
    let rows = rows(s);
    let width = rows.iter().map(|(label, _, _)| label.len()).max().unwrap_or(0);
    rows.iter().map(|(label, _, value)| format!("{label:<width$}  {value}\n")).collect()
}

/// One JSON object, on one line.
fn render_json(s: &Stats) -> String {
    let map: serde_json::Map<String, serde_json::Value> =
        rows(s).iter().map(|(_, key, value)| (key.to_string(), (*value).into())).collect();
    format!("{}\n", serde_json::Value::Object(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> Stats {
        // `Stats` is non-exhaustive: start from the default. fsyncs and
        // group_commits are not reported.
        let mut s = Stats::default();
        s.events = 3;
        s.aggregates = 1;
        s.segments = 1;
        s.segment_file_bytes = 65536;
        s.log_bytes = 500;
        s.index_bytes = 100;
        s.index_file_bytes = 0;
        s.snapshots = 4;
        s.snapshot_files = 1;
        s.snapshot_bytes = 300;
        s.snapshot_dictionaries = 2;
        s
    }

    #[test]
    fn text_has_one_aligned_line_per_row() {
        let text = render_text(&stats());
        assert!(text.starts_with("events                 3\n"), "{text}");
        assert_eq!(text.lines().count(), 11);
        assert!(text.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["events", "3"]));
        assert!(text.contains("segment file bytes     65536\n"), "{text}");
    }

    #[test]
    fn json_has_every_key() {
        let v: serde_json::Value = serde_json::from_str(&render_json(&stats())).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "events": 3, "aggregates": 1, "segments": 1, "log_bytes": 500,
                "segment_file_bytes": 65536, "index_bytes": 100, "index_file_bytes": 0,
                "snapshots": 4, "snapshot_files": 1, "snapshot_bytes": 300, "snapshot_dictionaries": 2,
            })
        );
    }
}
