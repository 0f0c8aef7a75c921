//! Progress bars (stderr, via indicatif) for each benchmark phase.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::Duration;

/// A bar counting `len` units of `unit` (e.g. events), labelled `label`.
pub fn counter(label: &str, len: u64, unit: &str, quiet: bool) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(len), target(quiet));
    let template =
        format!("{{prefix:<28}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} {{per_sec}} eta {{eta}} {{msg}}");
    pb.set_style(
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> "),
    );
    pb.set_prefix(label.to_owned());
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// A bar for a phase that runs for a fixed time (`len` = milliseconds); the
/// message shows what has been done so far.
pub fn timed(label: &str, duration: Duration, quiet: bool) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(duration.as_millis() as u64), target(quiet));
    pb.set_style(
        ProgressStyle::with_template("{prefix:<28} [{bar:30}] {elapsed:>4} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_prefix(label.to_owned());
    pb
}

fn target(quiet: bool) -> ProgressDrawTarget {
    if quiet {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    }
}
