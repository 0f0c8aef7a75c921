//! `factlog verify`: opens the store read-only, checks every frame, index
//! entry, index checkpoint and snapshot ([`factlog::Store::verify`]) with a
//! progress bar on stderr, and prints a summary on stdout: what was checked,
//! the torn tail recovery found (not a problem: an unacknowledged batch that
//! a writer would cut on its next open), and every problem as
//! `problem: <file>:<offset>: <reason>`. With `--json` the summary is one
//! JSON object. When a problem is in the event log or its checkpoints, a
//! line on stderr names the `factlog repair` command that shows what a
//! repair would do about it.
//!
//! The progress bar is shared with `repair`, which verifies its dry run.
//!
//! Exit codes: 0 sound, 3 problems found — including corruption or an
//! unknown format version that keeps the store from opening at all (the
//! engine's message, naming file and offset, goes to stderr) — 1 any other
//! error (missing store, locked by a writer, I/O).

use std::path::Path;
use std::time::Duration;

use factlog::{Options, Problem, TornTail, VerifyReport};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};

use crate::error::{CliError, CliResult, EXIT_PROBLEMS};
use crate::open::{open_read_only, OpenError};
use crate::{output, repair, VerifyArgs};

/// Runs `factlog verify`.
pub fn run(args: &VerifyArgs, wait: Duration) -> CliResult {
    let store = match open_read_only(&args.dir, Options::default().lock_wait(wait)) {
        Ok(store) => store,
        Err(OpenError::Cli(e)) => return Err(e),
        Err(OpenError::Store(e)) => return Err(open_failure(&args.dir, e, args.json)),
    };
    let bar = progress_bar();
    let verified = store.verify(&mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    // Clear the bar before anything is printed, so the two never interleave.
    bar.finish_and_clear();
    let report = verified?;
    let torn_tail = store.recovery_report().torn_tail.as_ref();
    let stored = store.stats().events;
    let text = if args.json {
        render_json(&args.dir, &report, stored, torn_tail)
    } else {
        render_text(&args.dir, &report, stored, torn_tail)
    };
    output::print(&text)?;
    if report.problems.is_empty() {
        return Ok(());
    }
    // The summary already lists every problem.
    let failure = CliError::with_code(EXIT_PROBLEMS, "");
    if report.problems.iter().any(|p| in_log(&p.path)) {
        return Err(failure.with_hint(repair::hint(&args.dir)));
    }
    Err(failure)
}

/// Whether `path` is a segment or an index checkpoint: damage a repair acts on.
fn in_log(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "seg" || e == "idx")
}

/// A progress bar on stderr; indicatif draws nothing when stderr is not a
/// terminal, so piped or redirected output stays clean. `repair` uses it too.
pub fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("verifying [{bar:40}] {pos}/{len} events ({eta})")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar
}

/// The error for a store that could not be opened. Corruption and an
/// unsupported format are findings (exit 3); with `--json` they are also
/// printed as a report with one problem, so scripts see them on stdout.
fn open_failure(dir: &Path, e: factlog::Error, json: bool) -> CliError {
    let problem = match &e {
        factlog::Error::Corrupt { path, offset, reason } => {
            Problem { path: path.clone(), offset: *offset, reason: reason.clone() }
        }
        factlog::Error::UnsupportedFormat { path, .. } => {
            Problem { path: path.clone(), offset: 0, reason: e.to_string() }
        }
        _ => return CliError::from(e),
    };
    if json {
        let v = json!({
            "dir": dir.display().to_string(),
            "ok": false,
            "opened": false,
            "problems": [problem_json(&problem)],
        });
        if let Err(print_error) = output::print(&format!("{v}\n")) {
            return print_error;
        }
    }
    let failure = CliError::with_code(EXIT_PROBLEMS, format!("cannot open the store: {e}"));
    if matches!(e, factlog::Error::Corrupt { .. }) {
        failure.corruption()
    } else {
        failure
    }
}

/// The human-readable summary. `stored` is the number of events in the
/// store; verification stops checking a segment at its first bad frame, so
/// fewer may have been checked.
fn render_text(dir: &Path, r: &VerifyReport, stored: u64, torn_tail: Option<&TornTail>) -> String {
    let events = if r.events == stored { stored.to_string() } else { format!("{} checked of {stored}", r.events) };
    let mut rows: Vec<(&str, String)> = vec![
        ("events", events),
        ("aggregates", r.aggregates.to_string()),
        ("segments", r.segments.to_string()),
        ("checkpoints", format!("{} compared", r.checkpoints)),
        ("snapshots", format!("{} decoded", r.snapshots)),
    ];
    rows.push((
        "torn tail",
        match torn_tail {
            None => "none".to_string(),
            Some(t) => format!(
                "{}:{}: {}; {} frame(s) dropped (not a problem: a writer would cut it on open)",
                t.path.display(),
                t.offset,
                t.reason,
                t.frames_dropped
            ),
        },
    ));
    rows.push(("problems", r.problems.len().to_string()));
    let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    let mut text = format!("verified {}\n", dir.display());
    for (label, value) in rows {
        text.push_str(&format!("{label:<width$}  {value}\n"));
    }
    for p in &r.problems {
        text.push_str(&format!("problem: {}:{}: {}\n", p.path.display(), p.offset, p.reason));
    }
    text.push_str(&match r.problems.len() {
        0 => "result: ok\n".to_string(),
        1 => "result: 1 problem found\n".to_string(),
        n => format!("result: {n} problems found\n"),
    });
    text
}

/// The `--json` summary, one object on one line: `events` checked,
/// `events_in_store`, and the rest as in the text summary.
fn render_json(dir: &Path, r: &VerifyReport, stored: u64, torn_tail: Option<&TornTail>) -> String {
    let torn: Value = match torn_tail {
        None => Value::Null,
        Some(t) => json!({
            "path": t.path.display().to_string(),
            "offset": t.offset,
            "frames_dropped": t.frames_dropped,
            "reason": t.reason,
        }),
    };
    let v = json!({
        "dir": dir.display().to_string(),
        "ok": r.problems.is_empty(),
        "opened": true,
        "events": r.events,
        "events_in_store": stored,
        "aggregates": r.aggregates,
        "segments": r.segments,
        "checkpoints": r.checkpoints,
        "snapshots": r.snapshots,
        "torn_tail": torn,
        "problems": r.problems.iter().map(problem_json).collect::<Vec<_>>(),
    });
    format!("{v}\n")
}

/// One problem as JSON.
fn problem_json(p: &Problem) -> Value {
    json!({ "path": p.path.display().to_string(), "offset": p.offset, "reason": p.reason })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn report(problems: Vec<Problem>) -> VerifyReport {
        let mut r = VerifyReport::default();
        r.events = 7;
        r.aggregates = 2;
        r.segments = 3;
        r.checkpoints = 2;
        r.snapshots = 1;
        r.problems = problems;
        r
    }

    fn bad_frame() -> Problem {
        Problem { path: PathBuf::from("/s/00000000000000000000.seg"), offset: 64, reason: "checksum mismatch".into() }
    }

    #[test]
    fn clean_text_summary() {
        let text = render_text(Path::new("/s"), &report(vec![]), 7, None);
        assert!(text.starts_with("verified /s\n"), "{text}");
        assert!(text.contains("events       7\n"), "{text}");
        assert!(text.contains("checkpoints  2 compared\n"), "{text}");
        assert!(text.contains("snapshots    1 decoded\n"), "{text}");
        assert!(text.contains("torn tail    none\n"), "{text}");
        assert!(text.ends_with("problems     0\nresult: ok\n"), "{text}");
    }

    #[test]
    fn problems_are_listed_one_per_line() {
        let text = render_text(Path::new("/s"), &report(vec![bad_frame(), bad_frame()]), 9, None);
        assert_eq!(text.matches("problem: /s/00000000000000000000.seg:64: checksum mismatch\n").count(), 2, "{text}");
        assert!(text.ends_with("result: 2 problems found\n"), "{text}");
        assert!(text.contains("events       7 checked of 9\n"), "{text}");
    }

    #[test]
    fn json_summary() {
        let v: Value =
            serde_json::from_str(&render_json(Path::new("/s"), &report(vec![bad_frame()]), 9, None)).unwrap();
        assert_eq!(v["ok"], false);
        assert_eq!(v["events"], 7);
        assert_eq!(v["events_in_store"], 9);
        assert_eq!(v["torn_tail"], Value::Null);
        assert_eq!(
            v["problems"],
            json!([{"path": "/s/00000000000000000000.seg", "offset": 64, "reason": "checksum mismatch"}])
        );
    }
}
