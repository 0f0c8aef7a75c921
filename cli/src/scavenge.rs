//! `factlog scavenge DIR`: reclaims the space of the events the lifecycle
//! rules hide ([`factlog::Store::scavenge`]) with a progress bar over the
//! bytes read on stderr, then prints the engine's report: segments scanned
//! and rewritten, events removed, bytes read, segment bytes before and
//! after and reclaimed, the wall time, the input throughput, erasures
//! completed and the aggregates whose snapshots were dropped; with `--json`,
//! one JSON object. The store is opened for writing: the command waits for
//! an application that has it open (`--wait`).
//!
//! MB are 10^6 bytes; the throughput is bytes read over the wall time of
//! the whole scavenge.

use std::time::Duration;

use factlog::ScavengeReport;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};

use crate::error::{CliError, CliResult};
use crate::{open, output, ScavengeArgs};

/// What `factlog scavenge --help` adds.
pub const HELP: &str = "The scavenge rewrites each sealed segment that holds deleted, truncated, expired or erased
events without them (crash-safely: each new file is written aside, synced and renamed over the
old one). Positions never change: reads skip the removed ones. Events in the newest (active)
segment are reclaimed once it is sealed, except an erased aggregate's, for which the scavenge
seals it first: when it returns, no file holds an erased aggregate's bytes. Deleted aggregates'
snapshots are dropped too. Sizes are in bytes; MB/s is 10^6 bytes read per second.";

/// Runs `factlog scavenge`.
pub fn run(args: &ScavengeArgs, wait: Duration) -> CliResult {
    let store = open::open_for_change(&args.dir, wait, "scavenge it")?;
    let bar = progress_bar();
    let scavenged = store.scavenge(&mut |read, total| {
        bar.set_length(total);
        bar.set_position(read);
    });
    // Clear the bar before anything is printed, so the two never interleave.
    bar.finish_and_clear();
    let report = scavenged?;
    store.close().map_err(|e| CliError::new(format!("closing the store after the scavenge: {e}")))?;
    let text = if args.json {
        format!("{}\n", render_json(&report))
    } else {
        format!("scavenged {}\n{}", args.dir.display(), render_text(&report))
    };
    output::print(&text)
}

/// A progress bar over bytes read, on stderr; indicatif draws nothing when
/// stderr is not a terminal.
fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("scavenging [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar
}

/// Bytes read per second of wall time, MB/s (10^6); 0 when no time passed.
fn input_mb_per_sec(r: &ScavengeReport) -> f64 {
    let secs = r.duration.as_secs_f64();
    if secs > 0.0 {
        r.bytes_read as f64 / 1e6 / secs
    } else {
        0.0
    }
}

/// `N (M MB)` for a byte count.
fn bytes(n: u64) -> String {
    format!("{n} ({:.1} MB)", n as f64 / 1e6)
}

/// One `label  value` line per figure, values aligned.
fn render_text(r: &ScavengeReport) -> String {
    let rows = [
        ("segments scanned", r.segments_scanned.to_string()),
        ("segments rewritten", r.segments_rewritten.to_string()),
        ("events removed", r.events_removed.to_string()),
        ("bytes read", bytes(r.bytes_read)),
        ("bytes before", bytes(r.bytes_before)),
        ("bytes after", bytes(r.bytes_after)),
        ("bytes reclaimed", bytes(r.bytes_reclaimed())),
        ("duration", format!("{:.3} s", r.duration.as_secs_f64())),
        ("throughput", format!("{:.1} MB/s of input", input_mb_per_sec(r))),
        ("erasures completed", r.erasures_completed.to_string()),
        ("snapshots dropped", format!("{} aggregate(s)", r.snapshots_dropped)),
    ];
    let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    rows.iter().map(|(label, value)| format!("{label:<width$}  {value}\n")).collect()
}

/// The report as one JSON object.
fn render_json(r: &ScavengeReport) -> Value {
    json!({
        "segments_scanned": r.segments_scanned,
        "segments_rewritten": r.segments_rewritten,
        "events_removed": r.events_removed,
        "bytes_read": r.bytes_read,
        "bytes_before": r.bytes_before,
        "bytes_after": r.bytes_after,
        "bytes_reclaimed": r.bytes_reclaimed(),
        "duration_secs": r.duration.as_secs_f64(),
        "input_mb_per_sec": input_mb_per_sec(r),
        "erasures_completed": r.erasures_completed,
        "snapshots_dropped": r.snapshots_dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> ScavengeReport {
        // `ScavengeReport` is non-exhaustive: start from the default.
        let mut r = ScavengeReport::default();
        r.segments_scanned = 4;
        r.segments_rewritten = 3;
        r.events_removed = 1000;
        r.bytes_read = 4_000_000;
        r.bytes_before = 3_000_000;
        r.bytes_after = 1_000_000;
        r.erasures_completed = 1;
        r.snapshots_dropped = 2;
        r.duration = Duration::from_millis(500);
        r
    }

    #[test]
    fn text_reports_reclaimed_bytes_and_throughput() {
        let text = render_text(&report());
        assert!(text.starts_with("segments scanned    4\n"), "{text}");
        assert!(text.contains("\nbytes reclaimed     2000000 (2.0 MB)\n"), "{text}");
        assert!(text.contains("\nthroughput          8.0 MB/s of input\n"), "{text}");
        assert!(text.contains("\nduration            0.500 s\n"), "{text}");
        assert_eq!(text.lines().count(), 11);
    }

    #[test]
    fn json_has_every_key() {
        let v = render_json(&report());
        assert_eq!(v["bytes_reclaimed"], 2_000_000);
        assert_eq!(v["input_mb_per_sec"], 8.0);
        assert_eq!(v["duration_secs"], 0.5);
        assert_eq!(v.as_object().unwrap().len(), 11);
    }

    #[test]
    fn no_time_is_no_throughput() {
        assert_eq!(input_mb_per_sec(&ScavengeReport::default()), 0.0);
    }
}
