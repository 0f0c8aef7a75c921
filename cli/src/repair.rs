//! `factlog repair DIR`: cuts a damaged event log back to its last sound
//! record with the engine's `Options::repair`, after saying what that loses
//! and asking for confirmation (or with `--yes`).
//!
//! The engine has no dry run of its repair, so the preview is assembled from
//! what a read-only look can tell, changing nothing: a read-only open and
//! `verify` when the store still opens, or the corruption error that keeps it
//! from opening. It names the record where the log will be cut and, when the
//! store opens, the first position lost and how many events go. After the
//! repair, the engine's own report of what it cut is printed. What the
//! preview cannot know, it says: a record in the middle of an atomic batch
//! takes the earlier records of its batch with it, and a store that does not
//! open at all cannot count the events after the damage.
//!
//! Only the event log is repaired: damaged index checkpoints are rebuilt from
//! the log (nothing lost), damaged snapshots are reported and left alone.

use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

use factlog::{Problem, RecoveryReport, Store, TornTail};

use crate::error::{CliError, CliResult};
use crate::open::{self, open_read_only, OpenError};
use crate::{output, verify, RepairArgs};

/// Longest confirmation answer read from stdin, bytes.
const ANSWER_BYTES_MAX: u64 = 256;

/// What `factlog repair --help` adds.
pub const HELP: &str = "First, without changing anything, it opens the store read-only and verifies it (or reads the
corruption error that keeps it from opening), and prints what the repair would cut: the file and
offset of the first damaged record and, when the store opens, the first position lost and how many
events go. Then it asks for `yes` on standard input (--yes skips the question), reopens the store
for writing with the engine's repair option, which truncates the log at the first damaged record,
and prints what the engine reports it cut. Damaged index checkpoints are rebuilt, nothing lost;
damaged snapshots are not repaired. A store that verify finds sound is left alone.";

/// The damage a read-only look found, and what a repair would do about it.
#[derive(Debug)]
enum Damage {
    /// Nothing for a repair to cut. `problems` are the ones it would not
    /// touch (snapshots), `rebuilt` checkpoints it would rebuild.
    Sound { torn_tail: Option<TornTail>, rebuilt: Vec<Problem>, problems: Vec<Problem> },
    /// The store opens, and verify found a damaged record in the log.
    Record { problem: Problem, lost: Lost, rebuilt: Vec<Problem>, problems: Vec<Problem> },
    /// The store does not open: corruption at `path`:`offset`.
    Unopenable { path: PathBuf, offset: u64, reason: String, later_segments: Vec<PathBuf> },
}

/// Events a cut loses, as far as the read-only look can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lost {
    /// First position lost.
    from_position: u64,
    /// Events from there to the end of the log.
    events: u64,
}

/// Runs `factlog repair`.
pub fn run(args: &RepairArgs) -> CliResult {
    let damage = assess(&args.dir)?;
    output::print(&describe(&args.dir, &damage))?;
    let cannot_fix = || CliError::new("repair cannot fix this: it only cuts the event log and rebuilds checkpoints");
    match &damage {
        Damage::Sound { rebuilt, problems, .. } if rebuilt.is_empty() => {
            return if problems.is_empty() { Ok(()) } else { Err(cannot_fix()) };
        }
        Damage::Unopenable { path, .. } if !is_segment(path) && !is_rebuilt_by_repair(path) => return Err(cannot_fix()),
        _ => {}
    }
    if !args.yes && !confirm(&args.dir, io::stdin().lock())? {
        return Err(CliError::new("repair cancelled: nothing was changed"));
    }
    let store = open::open_for_repair(&args.dir)?;
    let report = store.recovery_report().clone();
    let events = store.last_position().map_or(0, |p| p + 1);
    store.close().map_err(|e| CliError::new(format!("closing the store after the repair: {e}")))?;
    output::print(&describe_outcome(&args.dir, &report, events))
}

/// Looks at the store in `dir` read-only and says what a repair would cut.
fn assess(dir: &Path) -> CliResult<Damage> {
    let store = match open_read_only(dir) {
        Ok(store) => store,
        Err(OpenError::Cli(e)) => return Err(e),
        Err(OpenError::Store(factlog::Error::Corrupt { path, offset, reason })) => {
            let later_segments = later_segments(dir, &path)?;
            return Ok(Damage::Unopenable { path, offset, reason, later_segments });
        }
        Err(OpenError::Store(e @ factlog::Error::UnsupportedFormat { .. })) => {
            return Err(CliError::new(format!("repair cannot help: {e}")));
        }
        Err(OpenError::Store(e)) => return Err(CliError::from(e)),
    };
    let bar = verify::progress_bar();
    let verified = store.verify(&mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    let report = verified?;
    let torn_tail = store.recovery_report().torn_tail.clone();
    let (mut cut, mut rebuilt, mut problems) = (None, Vec::new(), Vec::new());
    for p in report.problems {
        if is_segment(&p.path) && !is_index_disagreement(&p) {
            if cut.is_none() {
                cut = Some(p);
            }
        } else if is_rebuilt_by_repair(&p.path) || is_index_disagreement(&p) {
            rebuilt.push(p);
        } else {
            problems.push(p);
        }
    }
    Ok(match cut {
        None => Damage::Sound { torn_tail, rebuilt, problems },
        Some(problem) => {
            let lost = lost_from(&store, dir, &problem)?;
            Damage::Record { problem, lost, rebuilt, problems }
        }
    })
}

/// The first position at or after the damaged record, and the events from
/// there to the end of the log.
fn lost_from(store: &Store, dir: &Path, problem: &Problem) -> CliResult<Lost> {
    let end = store.last_position().map_or(0, |p| p + 1);
    let first = segment_first_position(&problem.path).unwrap_or(0);
    let next = segment_firsts(dir)?.into_iter().find(|&f| f > first).unwrap_or(end).min(end);
    // Positions of one segment lie at increasing offsets: the first lost one
    // is the first whose frame starts at or after the damaged offset.
    let (mut lo, mut hi) = (first.min(next), next);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match store.locate(mid) {
            Some((_, offset)) if offset < problem.offset => lo = mid + 1,
            _ => hi = mid,
        }
    }
    Ok(Lost { from_position: lo, events: end - lo })
}

/// Whether `path` is a segment file (`<20 digits>.seg`).
fn is_segment(path: &Path) -> bool {
    segment_first_position(path).is_some()
}

/// The first position in a segment file's name.
fn segment_first_position(path: &Path) -> Option<u64> {
    let digits = path.file_name()?.to_str()?.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Index checkpoints (`.idx`): a repair scans every segment and rewrites them.
fn is_rebuilt_by_repair(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "idx")
}

/// A segment problem where the frames are sound but an index disagrees with
/// them: what a bad checkpoint causes, and what a repair's scan rebuilds.
// NOTE: this reads the engine's wording (verify.rs); the engine offers no
// problem kind to match on.
fn is_index_disagreement(p: &Problem) -> bool {
    p.reason.starts_with("index places position") || p.reason.starts_with("aggregate index has")
}

/// First positions of the segment files in `dir`, ascending.
fn segment_firsts(dir: &Path) -> CliResult<Vec<u64>> {
    let entries = std::fs::read_dir(dir).map_err(|e| CliError::new(format!("listing {}: {e}", dir.display())))?;
    let mut firsts: Vec<u64> =
        entries.filter_map(Result::ok).filter_map(|e| segment_first_position(&e.path())).collect();
    firsts.sort_unstable();
    Ok(firsts)
}

/// The segment files after the one holding `path`, which a cut there removes.
fn later_segments(dir: &Path, path: &Path) -> CliResult<Vec<PathBuf>> {
    let Some(first) = segment_first_position(path) else {
        return Ok(Vec::new());
    };
    Ok(segment_firsts(dir)?.into_iter().filter(|&f| f > first).map(|f| dir.join(format!("{f:020}.seg"))).collect())
}

/// The preview, printed before anything changes.
fn describe(dir: &Path, damage: &Damage) -> String {
    let mut s = format!("checked {} (read-only, nothing changed)\n", dir.display());
    match damage {
        Damage::Sound { torn_tail, rebuilt, problems } => {
            if rebuilt.is_empty() {
                s.push_str("the event log is sound: nothing to repair\n");
            } else {
                s.push_str("no event is lost; a repair rebuilds these index checkpoints from the log:\n");
                push_problems(&mut s, rebuilt);
            }
            if let Some(t) = torn_tail {
                s.push_str(&format!(
                    "torn tail at {}:{} ({}): an unacknowledged write that the next writer, repair included, cuts\n",
                    t.path.display(),
                    t.offset,
                    t.reason
                ));
            }
            push_untouched(&mut s, problems);
        }
        Damage::Record { problem, lost, rebuilt, problems } => {
            s.push_str(&format!(
                "damaged record at {}:{}: {}\n\
                 a repair cuts the log there: the {} event(s) from position {} to the end are lost\n\
                 (if the damaged record is not the first of its atomic batch, the batch's earlier events too)\n",
                problem.path.display(),
                problem.offset,
                problem.reason,
                lost.events,
                lost.from_position
            ));
            if !rebuilt.is_empty() {
                s.push_str("it also rebuilds these index checkpoints from the log:\n");
                push_problems(&mut s, rebuilt);
            }
            push_untouched(&mut s, problems);
        }
        Damage::Unopenable { path, offset, reason, later_segments } => {
            s.push_str(&format!("the store does not open: corruption at {}:{offset}: {reason}\n", path.display()));
            if is_segment(path) {
                s.push_str(&format!(
                    "a repair cuts the log there: every event from that record on is lost, the rest of {} and \
                     {} later segment file(s){}; how many events that is cannot be counted without opening the store\n",
                    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned()),
                    later_segments.len(),
                    if later_segments.is_empty() { String::new() } else { format!(" ({} ...)", list(later_segments)) }
                ));
            } else if is_rebuilt_by_repair(path) {
                s.push_str(
                    "a repair ignores this index checkpoint and rebuilds it from its segment: no event is lost\n",
                );
            } else {
                s.push_str("this is not in the event log or its checkpoints: a repair does not change it\n");
            }
        }
    }
    s
}

fn push_problems(s: &mut String, problems: &[Problem]) {
    for p in problems {
        s.push_str(&format!("  {}:{}: {}\n", p.path.display(), p.offset, p.reason));
    }
}

fn push_untouched(s: &mut String, problems: &[Problem]) {
    if !problems.is_empty() {
        s.push_str("not repaired (a repair only cuts the event log):\n");
        push_problems(s, problems);
    }
}

/// The first few file names of `paths`, comma-separated.
fn list(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths
        .iter()
        .take(3)
        .map(|p| p.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned()))
        .collect();
    names.join(", ")
}

/// Asks on stderr and reads the answer from `input`: only `yes` (or `y`) proceeds.
fn confirm(dir: &Path, input: impl BufRead) -> CliResult<bool> {
    eprint!("Repair {}? What is listed above will be lost for good. Type yes to proceed: ", dir.display());
    let _ = io::stderr().flush();
    let mut answer = String::new();
    input
        .take(ANSWER_BYTES_MAX)
        .read_line(&mut answer)
        .map_err(|e| CliError::new(format!("reading the answer from standard input: {e}")))?;
    let answer = answer.trim().to_ascii_lowercase();
    if answer.is_empty() {
        eprintln!();
    }
    Ok(answer == "yes" || answer == "y")
}

/// What the engine reports it did.
fn describe_outcome(dir: &Path, report: &RecoveryReport, events: u64) -> String {
    let mut s = format!("repaired {}\n", dir.display());
    match &report.repaired {
        Some(r) => {
            s.push_str(&format!(
                "cut the log at {}:{}: {}\nevents from position {} on are gone",
                r.path.display(),
                r.offset,
                r.reason,
                r.lost_from_position
            ));
            if !r.removed_files.is_empty() {
                s.push_str(&format!("; removed {} later segment file(s)", r.removed_files.len()));
            }
            s.push('\n');
        }
        None => s.push_str("nothing was cut from the log\n"),
    }
    for p in &report.checkpoints_rebuilt {
        s.push_str(&format!("rebuilt checkpoint {}\n", p.display()));
    }
    if let Some(t) = &report.torn_tail {
        s.push_str(&format!("cut a torn tail at {}:{} ({})\n", t.path.display(), t.offset, t.reason));
    }
    s.push_str(&format!("the store now holds {events} event(s); `factlog verify` checks it\n"));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_yes_confirms() {
        let dir = Path::new("/s");
        for (answer, want) in [("yes\n", true), ("Y\n", true), (" YES \n", true), ("no\n", false), ("", false)] {
            assert_eq!(confirm(dir, answer.as_bytes()).unwrap(), want, "{answer:?}");
        }
        let long = format!("{}yes\n", " ".repeat(1000));
        assert!(!confirm(dir, long.as_bytes()).unwrap());
    }

    #[test]
    fn file_kinds() {
        assert_eq!(segment_first_position(Path::new("/s/00000000000000000040.seg")), Some(40));
        assert!(!is_segment(Path::new("/s/00000000000000000040.idx")));
        assert!(is_rebuilt_by_repair(Path::new("/s/00000000000000000040.idx")));
        assert!(!is_rebuilt_by_repair(Path::new("/s/snapshots/00000000000000000000.snap")));
    }

    #[test]
    fn previews_name_the_cut_and_the_loss() {
        let problem =
            Problem { path: PathBuf::from("/s/00000000000000000040.seg"), offset: 64, reason: "bad checksum".into() };
        let damage = Damage::Record {
            problem,
            lost: Lost { from_position: 40, events: 160 },
            rebuilt: Vec::new(),
            problems: Vec::new(),
        };
        let text = describe(Path::new("/s"), &damage);
        assert!(text.contains("damaged record at /s/00000000000000000040.seg:64: bad checksum"), "{text}");
        assert!(text.contains("the 160 event(s) from position 40 to the end are lost"), "{text}");
        let damage = Damage::Unopenable {
            path: PathBuf::from("/s/00000000000000000040.seg"),
            offset: 64,
            reason: "bad".into(),
            later_segments: vec![PathBuf::from("/s/00000000000000000080.seg")],
        };
        let text = describe(Path::new("/s"), &damage);
        assert!(text.contains("the rest of 00000000000000000040.seg and 1 later segment file(s)"), "{text}");
    }
}
