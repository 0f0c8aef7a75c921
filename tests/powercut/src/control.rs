//! The control language: the commands written to the hidden control file
//! `/.powercut` at the root of the mount, and the status read back from it.
//!
//! This module owns the text format only. It must never touch the disk model
//! itself; `fs` applies a parsed [`Command`] to the disk.
//!
//! One command per write (a trailing newline is allowed):
//!
//! | command | effect |
//! |---|---|
//! | `cut` or `cut now` | cut the power, keeping nothing unsynced |
//! | `cut prefix SEED` | cut, keeping a random ordered prefix of the unsynced changes |
//! | `cut subset SEED` | cut, keeping a random subset of the unsynced sectors |
//! | `cut bytes SEED` | cut, keeping per file an ordered prefix of its unsynced writes, the next one torn at any byte |
//! | `arm N [now \| prefix SEED \| subset SEED \| bytes SEED]` | cut at the Nth mutating call from now; that call fails with `EIO` |
//! | `on` | power back on |
//!
//! Reading the file gives `power on|off`, `armed yes|no`, `unsynced N` and the
//! counters of [`crate::Stats`], one `name value` pair per line.

use crate::model::{CutMode, Disk};

/// A parsed control command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Cut the power now.
    Cut(CutMode),
    /// Cut at the Nth mutating call from now.
    Arm(u64, CutMode),
    /// Power back on.
    On,
}

fn mode(words: &[&str]) -> Option<CutMode> {
    match words {
        [] | ["now"] => Some(CutMode::Now),
        ["prefix", seed] => seed.parse().ok().map(CutMode::Prefix),
        ["subset", seed] => seed.parse().ok().map(CutMode::Subset),
        ["bytes", seed] => seed.parse().ok().map(CutMode::Bytes),
        _ => None,
    }
}

/// Parses one command; `None` if it is not one of the table above.
pub fn parse(text: &str) -> Option<Command> {
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        ["cut", rest @ ..] => mode(rest).map(Command::Cut),
        ["arm", n, rest @ ..] => {
            let n: u64 = n.parse().ok().filter(|n| *n > 0)?;
            mode(rest).map(|m| Command::Arm(n, m))
        }
        ["on"] => Some(Command::On),
        _ => None,
    }
}

/// Applies a command to the disk.
pub fn apply(disk: &mut Disk, command: Command) {
    match command {
        Command::Cut(m) => disk.cut(m),
        Command::Arm(n, m) => disk.arm(n, m),
        Command::On => disk.power_on(),
    }
}

/// The status text read from the control file.
pub fn status(disk: &Disk) -> String {
    let s = disk.stats();
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    format!(
        "power {}\narmed {}\nunsynced {}\ncuts {}\narmed_fired {}\ntorn_writes {}\nkept_writes {}\ndropped_writes {}\ndropped_entries {}\n",
        if disk.powered() { "on" } else { "off" },
        yes_no(disk.armed()),
        disk.unsynced(),
        s.cuts,
        s.armed_fired,
        s.torn_writes,
        s.kept_writes,
        s.dropped_writes,
        s.dropped_entries,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_command_and_refuses_the_rest() {
        assert_eq!(parse("cut\n"), Some(Command::Cut(CutMode::Now)));
        assert_eq!(parse("cut now"), Some(Command::Cut(CutMode::Now)));
        assert_eq!(parse("cut prefix 7"), Some(Command::Cut(CutMode::Prefix(7))));
        assert_eq!(parse("cut subset 9\n"), Some(Command::Cut(CutMode::Subset(9))));
        assert_eq!(parse("arm 3"), Some(Command::Arm(3, CutMode::Now)));
        assert_eq!(parse("arm 5 prefix 1"), Some(Command::Arm(5, CutMode::Prefix(1))));
        assert_eq!(parse("cut bytes 4"), Some(Command::Cut(CutMode::Bytes(4))));
        assert_eq!(parse("arm 2 bytes 8"), Some(Command::Arm(2, CutMode::Bytes(8))));
        assert_eq!(parse("on"), Some(Command::On));
        for bad in ["", "cut later", "arm 0", "arm x", "cut prefix", "on now", "cut subset -1"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
