//! `factlog repair DIR`: cuts a damaged event log back to its last sound
//! record with the engine's `Options::repair`, after showing exactly what
//! that loses and asking for confirmation (or with `--yes`).
//!
//! The preview is the engine's own dry run of the repair: a read-only open
//! with `repair` ([`factlog::Store::open_read_only`]) changes nothing and
//! reports the cut a read-write open would make — file, offset, reason,
//! first position lost, events lost, later segment files removed. The
//! dry-run store is then verified, for what a repair does besides the cut:
//! damaged index checkpoints, which it rewrites from their segments (nothing
//! lost), and damage it leaves alone (snapshots). A store with nothing to cut
//! and no checkpoint to rebuild is left alone, without a question. After the
//! repair, the engine's report of what it did is printed.
//!
//! Also the line every other command adds to a corruption error ([`hint`]).

use std::io::{self, BufRead};
use std::path::{Path, PathBuf};
use std::time::Duration;

use factlog::{Options, Problem, RecoveryReport, Repair, TornTail};

use crate::error::{CliError, CliResult};
use crate::open::{self, open_read_only, OpenError};
use crate::{confirm, output, verify, RepairArgs};

/// Removed segment files listed by name in the preview; the rest are counted.
const REMOVED_LISTED_MAX: usize = 20;

/// What `factlog repair --help` adds.
pub const HELP: &str = "First, without changing anything, it runs the engine's dry run of a repair (a read-only open
with the repair option) and verifies what that leaves, and prints what the repair would do: the
file, offset and reason of the first damaged record, the first position lost, how many events are
lost, the later segment files removed, and the damaged index checkpoints it rebuilds. Then it asks
for `yes` on standard input (--yes skips the question), reopens the store for writing with the
repair option, which truncates the log at the first damaged record, and prints what the engine
reports it did. Damaged index checkpoints are rebuilt, nothing lost; damaged snapshots are not
repaired. A store with nothing to cut and no checkpoint to rebuild is left alone.";

/// What a repair would do, from the engine's dry run.
#[derive(Debug)]
struct Plan {
    /// The cut, exactly as a repair makes it.
    cut: Option<Repair>,
    /// An unacknowledged write at the end of the log, which any writer cuts.
    torn_tail: Option<TornTail>,
    /// Events in the store after the repair.
    events_kept: u64,
    /// Damaged index checkpoints, which a repair rewrites from their segments.
    checkpoints: Vec<Problem>,
    /// Damage a repair does not touch (snapshots).
    untouched: Vec<Problem>,
}

impl Plan {
    /// Whether a repair would change the log or its checkpoints.
    fn changes_anything(&self) -> bool {
        self.cut.is_some() || !self.checkpoints.is_empty()
    }
}

/// Runs `factlog repair`.
pub fn run(args: &RepairArgs, wait: Duration) -> CliResult {
    let plan = dry_run(&args.dir, wait)?;
    output::print(&describe(&args.dir, &plan))?;
    if !plan.changes_anything() {
        if plan.untouched.is_empty() {
            return Ok(());
        }
        return Err(CliError::new("repair cannot fix this: it only cuts the event log and rebuilds checkpoints"));
    }
    if !args.yes && !ask_to_repair(&args.dir, plan.cut.is_some(), io::stdin().lock())? {
        return Err(CliError::new("repair cancelled: nothing was changed"));
    }
    let store = open::open_for_repair(&args.dir, wait)?;
    let report = store.recovery_report().clone();
    store.close().map_err(|e| CliError::new(format!("closing the store after the repair: {e}")))?;
    output::print(&describe_outcome(&args.dir, &report, &plan))
}

/// The engine's dry run of a repair of `dir`, and a verify of what it leaves.
fn dry_run(dir: &Path, wait: Duration) -> CliResult<Plan> {
    let store = match open_read_only(dir, Options::default().repair(true).lock_wait(wait)) {
        Ok(store) => store,
        Err(OpenError::Cli(e)) => return Err(e),
        // NOTE: the dry run is exact: what stops it stops the repair too.
        Err(OpenError::Store(e @ (factlog::Error::Corrupt { .. } | factlog::Error::UnsupportedFormat { .. }))) => {
            return Err(CliError::new(format!("a repair cannot fix this: {e}")));
        }
        Err(OpenError::Store(e)) => return Err(CliError::from(e)),
    };
    let bar = verify::progress_bar();
    let verified = store.verify(&mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    let (checkpoints, untouched) = verified?.problems.into_iter().partition(|p| is_checkpoint(&p.path));
    let report = store.recovery_report();
    Ok(Plan {
        cut: report.repaired.clone(),
        torn_tail: report.torn_tail.clone(),
        events_kept: report.events,
        checkpoints,
        untouched,
    })
}

/// Index checkpoints (`.idx`): a repair scans every segment and rewrites them.
fn is_checkpoint(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "idx")
}

/// The preview, printed before anything changes.
fn describe(dir: &Path, plan: &Plan) -> String {
    let mut s = format!("dry run of a repair of {} (nothing changed)\n", dir.display());
    match &plan.cut {
        Some(cut) => push_cut(&mut s, cut, plan.events_kept),
        None if plan.checkpoints.is_empty() => s.push_str("the event log is sound: nothing to repair\n"),
        None => s.push_str("nothing is cut from the log: no event is lost\n"),
    }
    if !plan.checkpoints.is_empty() {
        s.push_str("a repair rebuilds these damaged index checkpoints from their segments:\n");
        push_problems(&mut s, &plan.checkpoints);
    }
    if let Some(t) = &plan.torn_tail {
        s.push_str(&format!(
            "torn tail at {}:{} ({}): an unacknowledged write that the next writer, repair included, cuts\n",
            t.path.display(),
            t.offset,
            t.reason
        ));
    }
    if !plan.untouched.is_empty() {
        s.push_str("not repaired (a repair only cuts the event log and rebuilds checkpoints):\n");
        push_problems(&mut s, &plan.untouched);
    }
    s
}

/// The cut of the dry run: where, why, and what it loses.
fn push_cut(s: &mut String, cut: &Repair, events_kept: u64) {
    s.push_str(&format!(
        "damaged record at {}:{}: {}\n\
         a repair cuts the log there: the {} event(s) from position {} on are lost\n",
        cut.path.display(),
        cut.offset,
        cut.reason,
        cut.events_lost,
        cut.lost_from_position
    ));
    push_removed(s, &cut.removed_files);
    s.push_str(&format!("the store would then hold {events_kept} event(s)\n"));
}

/// The segment files a cut removes, the first [`REMOVED_LISTED_MAX`] by name.
fn push_removed(s: &mut String, removed: &[PathBuf]) {
    if removed.is_empty() {
        return;
    }
    s.push_str(&format!("it removes {} later segment file(s):\n", removed.len()));
    for p in removed.iter().take(REMOVED_LISTED_MAX) {
        s.push_str(&format!("  {}\n", p.display()));
    }
    if removed.len() > REMOVED_LISTED_MAX {
        s.push_str(&format!("  ... and {} more\n", removed.len() - REMOVED_LISTED_MAX));
    }
}

fn push_problems(s: &mut String, problems: &[Problem]) {
    for p in problems {
        s.push_str(&format!("  {}:{}: {}\n", p.path.display(), p.offset, p.reason));
    }
}

/// Asks on stderr and reads the answer from `input` ([`confirm::ask`]).
/// `loses`: the repair loses events, and the question says so.
fn ask_to_repair(dir: &Path, loses: bool, input: impl BufRead) -> CliResult<bool> {
    let warning = if loses { " What is listed above will be lost for good." } else { "" };
    confirm::ask(&format!("Repair {}?{warning}", dir.display()), input)
}

/// What the engine reports it did, and whether that is what the dry run said.
fn describe_outcome(dir: &Path, report: &RecoveryReport, plan: &Plan) -> String {
    let mut s = format!("repaired {}\n", dir.display());
    match &report.repaired {
        Some(r) => {
            s.push_str(&format!(
                "cut the log at {}:{}: {}\nlost {} event(s), from position {} on",
                r.path.display(),
                r.offset,
                r.reason,
                r.events_lost,
                r.lost_from_position
            ));
            if !r.removed_files.is_empty() {
                s.push_str(&format!("; removed {} later segment file(s)", r.removed_files.len()));
            }
            s.push('\n');
        }
        None => s.push_str("nothing was cut from the log\n"),
    }
    if !report.checkpoints_rebuilt.is_empty() {
        s.push_str(&format!("rewrote {} index checkpoint(s) from their segments\n", report.checkpoints_rebuilt.len()));
    }
    if let Some(t) = &report.torn_tail {
        s.push_str(&format!("cut a torn tail at {}:{} ({})\n", t.path.display(), t.offset, t.reason));
    }
    if report.repaired != plan.cut {
        // NOTE: the store is unlocked between the dry run and the repair; a
        // writer may have changed it in between.
        s.push_str("note: the store changed after the dry run; what is listed here is what was done\n");
    }
    s.push_str(&format!(
        "the store now holds {} event(s); `factlog verify {}` checks it\n",
        report.events,
        shell_word(dir)
    ));
    s
}

/// The line that follows a corruption error of any other command.
pub fn hint(dir: &Path) -> String {
    format!("run `factlog repair {}` to see what a repair would cut", shell_word(dir))
}

/// `path` as one word a POSIX shell reads back as that path: as it is when
/// it is made of safe characters, otherwise in single quotes.
fn shell_word(path: &Path) -> String {
    let mut text = path.to_string_lossy().into_owned();
    if text.starts_with('-') {
        // A leading `-` would read as an option.
        text.insert_str(0, "./");
    }
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+,:@%=".contains(c);
    if !text.is_empty() && text.chars().all(safe) {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repair_question_takes_only_yes() {
        let dir = Path::new("/s");
        assert!(ask_to_repair(dir, true, "yes\n".as_bytes()).unwrap());
        assert!(!ask_to_repair(dir, false, "no\n".as_bytes()).unwrap());
    }

    #[test]
    fn file_kinds() {
        assert!(!is_checkpoint(Path::new("/s/00000000000000000040.seg")));
        assert!(is_checkpoint(Path::new("/s/00000000000000000040.idx")));
        assert!(!is_checkpoint(Path::new("/s/snapshots/00000000000000000000.snap")));
    }

    #[test]
    fn previews_list_removed_files_up_to_a_bound() {
        let removed: Vec<PathBuf> = (2..24).map(|i| PathBuf::from(format!("/s/{:020}.seg", 40 * i))).collect();
        let mut text = String::new();
        push_removed(&mut text, &removed[..1]);
        assert_eq!(text, "it removes 1 later segment file(s):\n  /s/00000000000000000080.seg\n");
        let mut text = String::new();
        push_removed(&mut text, &removed);
        assert!(text.starts_with("it removes 22 later segment file(s):\n  /s/00000000000000000080.seg\n"), "{text}");
        assert_eq!(text.lines().count(), 1 + REMOVED_LISTED_MAX + 1, "{text}");
        assert!(text.ends_with("\n  ... and 2 more\n"), "{text}");
        let plan = Plan { cut: None, torn_tail: None, events_kept: 9, checkpoints: vec![], untouched: vec![] };
        assert_eq!(
            describe(Path::new("/s"), &plan),
            "dry run of a repair of /s (nothing changed)\nthe event log is sound: nothing to repair\n"
        );
    }

    #[test]
    fn hints_quote_paths_for_the_shell() {
        assert_eq!(hint(Path::new("/tmp/store")), "run `factlog repair /tmp/store` to see what a repair would cut");
        assert_eq!(shell_word(Path::new("my store")), "'my store'");
        assert_eq!(shell_word(Path::new("it's")), r"'it'\''s'");
        assert_eq!(shell_word(Path::new("-s")), "./-s");
        assert_eq!(shell_word(Path::new("-a b")), "'./-a b'");
        assert_eq!(shell_word(Path::new("")), "''");
    }
}
