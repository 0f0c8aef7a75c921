//! `factlog`, the command-line tool of the factlog event store: append an
//! event, read events as JSON lines, show a store's counters and sizes,
//! verify a store's files, dump its records for debugging.
//!
//! This file owns the command-line syntax (the clap definitions and the
//! parsers of argument values) and the process exit code; each command lives
//! in its own module (`append`, `read`, `stats`, `verify`, `dump`), event
//! rendering in `json`, store opening in `open`, stdout handling in
//! `output`, errors and exit codes in `error`. Every command but `append`
//! opens the store read-only and never changes a byte of it.
//!
//! Exit codes: 0 success, 1 error, 2 conflict (an append refused because the
//! aggregate's version or an event id disagrees with the store), 3 `verify`
//! found the store damaged. Errors are printed as `error: <message>` on
//! stderr.

#![warn(missing_docs)]

mod append;
mod dump;
mod error;
mod json;
mod open;
mod output;
mod read;
mod stats;
mod verify;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Args, Parser, Subcommand};
use factlog::{EventId, ExpectedVersion};
use serde_json::value::RawValue;

use crate::error::{CliResult, EXIT_ERROR};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "factlog",
    version,
    about = "Append, read and inspect factlog event stores",
    after_help = "Exit codes: 0 success, 1 error, 2 conflict (append refused), 3 verify found problems.\n\
                  Every command but `append` opens the store read-only: it changes nothing and can run \
                  beside other readers, but not while a writer has the store open."
)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Append one event to an aggregate (creates the store on first append).
    Append(AppendArgs),
    /// Print events as JSON lines, one object per event.
    Read(ReadArgs),
    /// Print a store's counters and sizes.
    Stats(StatsArgs),
    /// Check every record, index entry, checkpoint and snapshot of a store.
    #[command(after_help = "Exit codes:\n  \
        0  the store is sound (a torn tail is reported but is not a problem)\n  \
        1  error: no store, locked by a writer, I/O failure\n  \
        3  problems found, or corruption / an unknown format version keeps the store from opening")]
    Verify(VerifyArgs),
    /// Print records one per line for debugging: position, segment file,
    /// offset, envelope and a preview of the payload.
    Dump(DumpArgs),
}

/// Arguments of `factlog append`.
#[derive(Debug, Args)]
pub struct AppendArgs {
    /// Store directory (created on first append).
    pub dir: PathBuf,
    /// Aggregate (stream) to append to.
    #[arg(long, value_name = "ID")]
    pub aggregate: String,
    /// Event type name.
    #[arg(long = "type", value_name = "TYPE")]
    pub event_type: String,
    /// Event payload; must be valid JSON. Stored exactly as given.
    #[arg(long, value_name = "JSON", value_parser = parse_json)]
    pub data: String,
    /// Expected current version of the aggregate: a number, `any`,
    /// `no-stream` (no events yet) or `exists` (at least one event).
    #[arg(long, value_name = "N|any|no-stream|exists", default_value = "any", value_parser = parse_expected)]
    pub expected_version: ExpectedVersion,
    /// Event metadata; must be valid JSON. Stored exactly as given.
    #[arg(long, value_name = "JSON", value_parser = parse_json)]
    pub metadata: Option<String>,
    /// Event id (a UUID); a random v4 id if not given. Re-appending the
    /// same id at the same place is an idempotent no-op.
    #[arg(long, value_name = "UUID", value_parser = parse_uuid)]
    pub event_id: Option<EventId>,
    /// Schema version of the payload.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub event_version: u32,
    /// Id of the event or command that caused this one.
    #[arg(long, value_name = "UUID", value_parser = parse_uuid)]
    pub causation_id: Option<EventId>,
    /// Id of the conversation this event belongs to.
    #[arg(long, value_name = "UUID", value_parser = parse_uuid)]
    pub correlation_id: Option<EventId>,
    /// Print the result as a JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `factlog read`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["aggregate", "all"])))]
pub struct ReadArgs {
    /// Store directory (must exist).
    pub dir: PathBuf,
    /// Read one aggregate, in version order.
    #[arg(long, value_name = "ID")]
    pub aggregate: Option<String>,
    /// Read the whole log, in position order.
    #[arg(long)]
    pub all: bool,
    /// First version (with --aggregate) or position (with --all) to print.
    /// Default: the first event, or the last one with --backward.
    #[arg(long, value_name = "N")]
    pub from: Option<u64>,
    /// Read the aggregate from the newest event back to the oldest.
    #[arg(long, conflicts_with = "all")]
    pub backward: bool,
    /// Print at most this many events.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

/// Arguments of `factlog stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Store directory (must exist).
    pub dir: PathBuf,
    /// Print the stats as a JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `factlog verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Store directory (must exist).
    pub dir: PathBuf,
    /// Print the summary as a JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `factlog dump`.
#[derive(Debug, Args)]
pub struct DumpArgs {
    /// Store directory (must exist).
    pub dir: PathBuf,
    /// First position to print.
    #[arg(long, value_name = "P")]
    pub from: Option<u64>,
    /// Print at most this many records.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Only the records of one segment, named by its file name
    /// (`00000000000000000000.seg`) or its first position.
    #[arg(long, value_name = "FILE_OR_FIRST_POSITION")]
    pub segment: Option<String>,
    /// Print the records as JSON lines.
    #[arg(long)]
    pub json: bool,
}

/// Parses `--expected-version`.
fn parse_expected(s: &str) -> Result<ExpectedVersion, String> {
    match s {
        "any" => Ok(ExpectedVersion::Any),
        "no-stream" => Ok(ExpectedVersion::NoStream),
        "exists" => Ok(ExpectedVersion::StreamExists),
        n => n
            .parse::<u64>()
            .map(ExpectedVersion::Exact)
            .map_err(|_| "expected a version number, `any`, `no-stream` or `exists`".to_string()),
    }
}

/// Parses a UUID argument into the engine's 16-byte id.
fn parse_uuid(s: &str) -> Result<EventId, String> {
    uuid::Uuid::parse_str(s).map(|u| u.into_bytes()).map_err(|e| format!("not a valid UUID: {e}"))
}

/// Checks that an argument is valid JSON, keeping the text as given.
fn parse_json(s: &str) -> Result<String, String> {
    serde_json::from_str::<&RawValue>(s).map(|_| s.to_string()).map_err(|e| format!("not valid JSON: {e}"))
}

/// Runs the parsed command.
fn run(cli: Cli) -> CliResult {
    match cli.command {
        Command::Append(args) => append::run(args),
        Command::Read(args) => read::run(&args),
        Command::Stats(args) => stats::run(&args),
        Command::Verify(args) => verify::run(&args),
        Command::Dump(args) => dump::run(&args),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and --version go to stdout and succeed; usage errors exit
            // with 1 (not clap's default 2, which means "conflict" here).
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(EXIT_ERROR) } else { ExitCode::SUCCESS };
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let message = e.to_string();
            if !message.is_empty() {
                let _ = writeln!(std::io::stderr(), "error: {message}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn expected_version_forms() {
        assert_eq!(parse_expected("any"), Ok(ExpectedVersion::Any));
        assert_eq!(parse_expected("no-stream"), Ok(ExpectedVersion::NoStream));
        assert_eq!(parse_expected("exists"), Ok(ExpectedVersion::StreamExists));
        assert_eq!(parse_expected("12"), Ok(ExpectedVersion::Exact(12)));
        assert!(parse_expected("-1").is_err());
        assert!(parse_expected("latest").is_err());
    }

    #[test]
    fn json_arguments_are_validated_and_kept_verbatim() {
        assert_eq!(parse_json(" {\"b\": 1, \"a\": 2} ").unwrap(), " {\"b\": 1, \"a\": 2} ");
        assert!(parse_json("{amount: 1}").unwrap_err().contains("not valid JSON"));
        assert!(parse_json("").is_err());
    }

    #[test]
    fn uuid_arguments() {
        let id = parse_uuid("0b0c0d0e-0f10-4111-8213-141516171819").unwrap();
        assert_eq!(id[0], 0x0b);
        assert!(parse_uuid("nope").is_err());
    }
}
