//! Progress on stderr for each benchmark phase. On a terminal: indicatif
//! bars, cleared when their phase ends. Redirected (a CI log, `2> file`): no
//! bars, but one line per finished phase (physical limits, each workload of
//! each engine), so a long run shows it is alive. `--quiet`: nothing.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::report::fmt_num;

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Live bars (stderr is a terminal).
    Bars,
    /// One line per finished phase (stderr is not a terminal).
    Lines,
    /// Nothing (`--quiet`).
    Off,
}

/// Where progress goes, and when the run started (for the elapsed time
/// printed with each line).
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// How progress is shown.
    pub mode: Mode,
    /// Start of the run.
    pub started: Instant,
}

impl Progress {
    /// Bars on a terminal, lines otherwise, nothing when `quiet`.
    pub fn detect(quiet: bool) -> Progress {
        let mode = if quiet {
            Mode::Off
        } else if std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        };
        Progress { mode, started: Instant::now() }
    }

    /// Progress of the given mode, starting now.
    pub fn new(mode: Mode) -> Progress {
        Progress { mode, started: Instant::now() }
    }

    /// A bar counting `len` units of `unit` (e.g. events), labelled `label`.
    pub fn counter(&self, label: &str, len: u64, unit: &str) -> ProgressBar {
        let pb = ProgressBar::with_draw_target(Some(len), self.target());
        let template =
            format!("{{prefix:<28}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} {{rate}} eta {{eta}} {{msg}}");
        pb.set_style(style(&template));
        pb.set_prefix(label.to_owned());
        if self.mode == Mode::Bars {
            pb.enable_steady_tick(Duration::from_millis(200));
        }
        pb
    }

    /// A bar for a phase that runs for a fixed time (`len` = milliseconds);
    /// the message shows what has been done so far.
    pub fn timed(&self, label: &str, duration: Duration) -> ProgressBar {
        let pb = ProgressBar::with_draw_target(Some(duration.as_millis() as u64), self.target());
        pb.set_style(style("{prefix:<28} [{bar:30}] {elapsed:>4} {msg}"));
        pb.set_prefix(label.to_owned());
        pb
    }

    /// Prints `factlog-bench [m:ss] <text>` on stderr in [`Mode::Lines`].
    pub fn line(&self, text: &str) {
        if self.mode == Mode::Lines {
            let secs = self.started.elapsed().as_secs();
            eprintln!("factlog-bench [{}:{:02}] {text}", secs / 60, secs % 60);
        }
    }

    fn target(&self) -> ProgressDrawTarget {
        match self.mode {
            Mode::Bars => ProgressDrawTarget::stderr(),
            Mode::Lines | Mode::Off => ProgressDrawTarget::hidden(),
        }
    }
}

/// A bar style from `template`, with `{rate}`: units per second rounded to
/// three significant figures (indicatif's `{per_sec}` prints four decimals).
fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("rate", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{}/s", fmt_num(state.per_sec()));
        })
        .progress_chars("=> ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_is_off_and_hidden_bars_accept_updates() {
        let p = Progress::detect(true);
        assert_eq!(p.mode, Mode::Off);
        let pb = p.counter("x", 10, "events");
        pb.set_position(5);
        pb.finish_and_clear();
        p.line("not printed");
    }
}
