//! `factlog`, the command-line tool of the factlog event store: append events
//! (one from arguments, a file or stdin, or a JSONL batch), read events as
//! JSON lines, tail (and follow) the log, show a store's counters and sizes, list its aggregates and
//! snapshots, verify a store's files, dump its records for debugging,
//! repair a damaged store, list, reset and delete durable consumers and
//! their parked events, relay the log to NATS JetStream, and manage the
//! event lifecycle: delete or erase an aggregate, set its retention rules,
//! and scavenge the space of what they hide.
//!
//! This file owns the command-line syntax (the clap definitions and the
//! parsers of argument values) and the process exit code; each command lives
//! in its own module (`append`, `read`, `tail`, `stats`, `aggregates`, `snapshots`,
//! `verify`, `dump`, `repair`, `consumers` for `consumers` and `parked`, `relay`,
//! `lifecycle` for `delete`, `erase` and `meta`, `scavenge`), the JSONL input format in `jsonl`, event
//! rendering in `json`, store opening (the lock wait, and the rule for when
//! `append` may create a store) in `open`, stdout handling in `output`,
//! durations in `duration`, the question before an irreversible change in
//! `confirm`, errors and exit codes in `error`. Every command but `append`,
//! `repair` and the lifecycle commands that change something (`delete`,
//! `erase`, `meta` with a setter, `scavenge`) opens the store read-only,
//! never changes a byte of it, and runs beside a writer process. Every command waits up to `--wait` seconds for the store's
//! lock (a writer waits for a writer, a repair for everyone).
//!
//! Exit codes: 0 success, 1 error, 2 conflict (an append refused because the
//! aggregate's version or an event id disagrees with the store), 3 `verify`
//! found the store damaged. Errors are printed as `error: <message>` on
//! stderr; a corruption error is followed by the `factlog repair` command
//! that shows what a repair would cut.

#![warn(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod aggregates;
mod append;
mod confirm;
mod consumers;
mod dump;
mod duration;
mod error;
mod json;
mod jsonl;
mod lifecycle;
mod open;
mod output;
mod read;
mod relay;
mod repair;
mod scavenge;
mod snapshots;
mod stats;
mod tail;
mod verify;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand};
use factlog::{EventId, ExpectedVersion};
use serde_json::value::RawValue;

use crate::error::{CliResult, EXIT_ERROR};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "factlog",
    version,
    about = "Append, read, inspect and repair factlog event stores",
    after_help = "Exit codes: 0 success, 1 error, 2 conflict (append refused), 3 verify found problems.\n\
                  Every command but `append`, `repair`, `delete`, `erase`, `meta` with a setter and `scavenge` \
                  opens the store read-only: it changes nothing and runs beside other readers and beside a \
                  process that has the store open for writing (it then sees what that writer has made durable). \
                  The commands that change the store wait for another writer (`repair` for every other opener), \
                  up to --wait seconds, so that they run one after another on one store."
)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
    /// How long to wait for the store's lock while another process holds
    /// it (for `append`, another writer; for `repair`, any opener; for the
    /// reading commands, a repair or a writer still recovering), before
    /// failing with a message that names that process. 0 fails at once.
    /// Fractions are allowed (0.5). At most a day.
    #[arg(
        long,
        global = true,
        value_name = "SECONDS",
        default_value = "5",
        value_parser = parse_wait,
        allow_hyphen_values = true
    )]
    pub wait: Duration,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Append one event, or a batch of events from JSON lines, to an aggregate.
    #[command(after_help = jsonl::HELP)]
    Append(AppendArgs),
    /// Print events as JSON lines, one object per event.
    #[command(after_help = json::HELP)]
    Read(ReadArgs),
    /// Print the log's durable events from a point on as JSON lines (the
    /// lines `read` prints), filtered; with --follow, keep printing new ones.
    ///
    /// Works while an application has the store open for writing: it shows
    /// what that writer has made durable, and follows it.
    #[command(after_help = json::HELP)]
    Tail(TailArgs),
    /// Print a store's counters and sizes.
    Stats(StatsArgs),
    /// List the aggregates that have events: id, version, events, last position.
    ///
    /// Sorted by id. Versions are dense: an aggregate at version V has V + 1 events.
    Aggregates(AggregatesArgs),
    /// List the snapshots in the store's files: aggregate, version, file, stored bytes.
    ///
    /// Sorted by aggregate and version; the bytes are those of the compressed
    /// frame. Older snapshots that compaction has not dropped yet are listed
    /// too (up to 1024 per aggregate): how many an application keeps is its
    /// own open option, which the store does not record.
    Snapshots(SnapshotsArgs),
    /// Check every record, index entry, checkpoint and snapshot of a store.
    #[command(after_help = "Exit codes:\n  \
        0  the store is sound (a torn tail is reported but is not a problem)\n  \
        1  error: no store, locked by a repair, I/O failure\n  \
        3  problems found, or corruption / an unknown format version keeps the store from opening")]
    Verify(VerifyArgs),
    /// Print records one per line for debugging: position, segment file,
    /// offset, envelope and a preview of the payload.
    Dump(DumpArgs),
    /// Cut a damaged log back to its last sound record, after showing what
    /// would be lost and asking for confirmation.
    #[command(after_help = repair::HELP)]
    Repair(RepairArgs),
    /// List the durable consumers (checkpoint, lag, parked count, whether one
    /// runs now), or reset or delete one that nobody runs.
    Consumers(ConsumersArgs),
    /// List a consumer's parked (dead-letter) events, mark them for replay by
    /// the consumer's next run, or discard them. Events stay in the log.
    Parked(ParkedArgs),
    /// Ship the log to a NATS JetStream stream, exactly once into the
    /// broker, until interrupted (see README, "Beyond one machine").
    ///
    /// Runs beside the application (the store is opened read-only) as the
    /// durable consumer `relay-<STREAM>`; resumes after the stream's last
    /// message; waits for the broker when it is down. Prints its lag on stderr.
    Relay(RelayArgs),
    /// Delete an aggregate: its events disappear from reads at once (a
    /// scavenge reclaims their space). Soft by default: a later append starts
    /// it again, its versions going on after the deleted ones. --hard: every
    /// later append to it is refused, forever.
    Delete(DeleteArgs),
    /// Erase an aggregate, for privacy law: a hard delete whose bytes (data,
    /// metadata, id) leave every file of the store when the next scavenge
    /// completes. Cannot be undone: asks for confirmation (or --yes).
    Erase(EraseArgs),
    /// Print an aggregate's lifecycle state (visible versions, retention
    /// rules, deletion), or set its retention rules: --max-count,
    /// --max-age, --truncate-before (rules not given keep their value;
    /// --clear drops them all first). Reads respect a change at once.
    Meta(MetaArgs),
    /// Reclaim the space of deleted, truncated, expired and erased events,
    /// with a progress bar, and report what was reclaimed.
    #[command(after_help = scavenge::HELP)]
    Scavenge(ScavengeArgs),
}

/// Where `append` takes the payload of its one event from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataArg {
    /// The JSON text given on the command line.
    Inline(String),
    /// Standard input (`--data -`).
    Stdin,
}

/// Arguments of `factlog append`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("payload").required(true).args(["data", "data_file", "jsonl"])))]
pub struct AppendArgs {
    /// Store directory. A new store is created, with a note on stderr, when
    /// the directory does not exist but its parent does, or exists and is
    /// empty; anywhere else only with --create.
    pub dir: PathBuf,
    /// Create the store even if the directory's parent is missing (parents
    /// are created too).
    #[arg(long)]
    pub create: bool,
    /// Aggregate (stream) to append to. With --jsonl it may be left out when
    /// the lines carry an `aggregate_id`.
    #[arg(long, value_name = "ID", required_unless_present = "jsonl")]
    pub aggregate: Option<String>,
    /// Event type name.
    #[arg(long = "type", value_name = "TYPE", required_unless_present = "jsonl", conflicts_with = "jsonl")]
    pub event_type: Option<String>,
    /// Event payload; must be valid JSON. Stored exactly as given. `-` reads
    /// it from standard input.
    #[arg(long, value_name = "JSON|-", value_parser = parse_data, allow_hyphen_values = true)]
    pub data: Option<DataArg>,
    /// Read the event payload from a file; it must be valid JSON, and is
    /// stored exactly as it is (up to the store's 4 MiB event limit).
    #[arg(long, value_name = "PATH")]
    pub data_file: Option<PathBuf>,
    /// Append every event of a JSON-lines file (`-`: standard input) as one
    /// atomic batch: all of them or none. See the format below.
    #[arg(
        long,
        value_name = "FILE|-",
        conflicts_with_all = ["event_id", "event_version", "metadata", "causation_id", "correlation_id"]
    )]
    pub jsonl: Option<PathBuf>,
    /// Expected current version of the aggregate: a number (0, 1, ...),
    /// `any`, `no-stream` (no events yet) or `exists` (at least one event).
    #[arg(
        long,
        value_name = "N|any|no-stream|exists",
        default_value = "any",
        value_parser = parse_expected,
        allow_hyphen_values = true
    )]
    pub expected_version: ExpectedVersion,
    /// Event metadata; must be valid JSON. Stored exactly as given.
    #[arg(long, value_name = "JSON", value_parser = parse_json)]
    pub metadata: Option<String>,
    /// Event id (a UUID); a random v4 id if not given. Re-appending the
    /// same id at the same place is an idempotent no-op.
    #[arg(long, value_name = "UUID", value_parser = parse_uuid)]
    pub event_id: Option<EventId>,
    /// Schema version of the payload [default: 1].
    #[arg(long, value_name = "N")]
    pub event_version: Option<u32>,
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
    /// Read one aggregate, in version order. An aggregate with no events
    /// prints nothing, and a note on stderr.
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

/// Arguments of `factlog tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// Store directory (must exist).
    pub dir: PathBuf,
    /// Where to start: `start` (the first event), `end` (only events that
    /// become durable from now on) or a global position.
    #[arg(long, value_name = "start|end|P", default_value = "start", value_parser = tail::parse_from)]
    pub from: factlog::StartFrom,
    /// Only events of this type (repeat for several).
    #[arg(long = "type", value_name = "T")]
    pub event_types: Vec<String>,
    /// Only events whose aggregate id starts with this (repeat for several).
    #[arg(long = "aggregate-prefix", value_name = "X")]
    pub aggregate_prefixes: Vec<String>,
    /// Keep running and print each new durable event as it comes, until
    /// interrupted (new events show within about a millisecond of being durable).
    #[arg(long)]
    pub follow: bool,
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

/// Arguments of `factlog aggregates`.
#[derive(Debug, Args)]
pub struct AggregatesArgs {
    /// Store directory (must exist).
    pub dir: PathBuf,
    /// Only the aggregates whose id starts with this.
    #[arg(long, value_name = "P", default_value = "")]
    pub prefix: String,
    /// Print one JSON object per aggregate and line.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `factlog consumers`.
#[derive(Debug, Args)]
pub struct ConsumersArgs {
    /// Store directory (must exist).
    pub dir: PathBuf,
    /// What to do; without one, list the consumers.
    #[command(subcommand)]
    pub action: Option<ConsumerAction>,
    /// Print one JSON object per consumer and line.
    #[arg(long, global = true)]
    pub json: bool,
}

/// What `factlog consumers` does to one consumer.
#[derive(Debug, Subcommand)]
pub enum ConsumerAction {
    /// Move a consumer's checkpoint: it resumes at the start, the durable
    /// end, or position P (a position past the end is refused).
    Reset {
        /// The consumer.
        name: String,
        /// start, end or a position.
        #[arg(long, value_name = "start|end|P", value_parser = consumers::parse_reset_to)]
        to: factlog::ResetTo,
    },
    /// Delete a consumer's checkpoint and dead-letter list.
    Delete {
        /// The consumer.
        name: String,
    },
}

/// Arguments of `factlog parked`.
#[derive(Debug, Args)]
pub struct ParkedArgs {
    /// Store directory (must exist).
    pub dir: PathBuf,
    /// The consumer.
    pub name: String,
    /// What to do; without one, list.
    #[command(subcommand)]
    pub action: Option<ParkedAction>,
    /// Print one JSON object per parked event and line.
    #[arg(long, global = true)]
    pub json: bool,
}

/// What `factlog parked` does.
#[derive(Debug, Subcommand)]
pub enum ParkedAction {
    /// List the parked events: position, aggregate, attempts, the position
    /// parked behind, whether a replay is requested, the last error.
    List,
    /// Mark parked events (a position, or all) for replay: the consumer's
    /// runner hands them to its handler again when it next runs.
    Replay {
        /// A position, or `all`.
        #[arg(value_parser = consumers::parse_target)]
        target: ParkedTarget,
    },
    /// Remove parked events (a position, or all) from the dead-letter list.
    Discard {
        /// A position, or `all`.
        #[arg(value_parser = consumers::parse_target)]
        target: ParkedTarget,
    },
}

/// Which parked events `parked replay|discard` acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParkedTarget {
    /// Every parked event.
    All,
    /// The one at this position.
    Position(u64),
}

/// Arguments of `factlog snapshots`.
#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    /// Store directory (must exist).
    pub dir: PathBuf,
    /// Only the snapshots of this aggregate.
    #[arg(long, value_name = "ID", conflicts_with = "prefix")]
    pub aggregate: Option<String>,
    /// Only the snapshots of the aggregates whose id starts with this.
    #[arg(long, value_name = "P")]
    pub prefix: Option<String>,
    /// Print one JSON object per snapshot and line.
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

/// Arguments of `factlog relay`.
#[derive(Debug, Args)]
pub struct RelayArgs {
    /// Store directory (must exist).
    pub dir: PathBuf,
    /// The NATS server, e.g. nats://127.0.0.1:4222.
    #[arg(long, value_name = "URL")]
    pub nats: String,
    /// The JetStream stream: created if missing, its configuration checked if not.
    #[arg(long, value_name = "NAME")]
    pub stream: String,
    /// Subjects are P.<aggregate id> [default: the stream name].
    #[arg(long, value_name = "P")]
    pub subject_prefix: Option<String>,
    /// Only events of this type (repeat for several).
    #[arg(long = "type", value_name = "T")]
    pub event_types: Vec<String>,
    /// Only events whose aggregate id starts with this (repeat for several).
    #[arg(long = "aggregate-prefix", value_name = "X")]
    pub aggregate_prefixes: Vec<String>,
    /// The store consumer that keeps the relay's checkpoint [default: relay-<STREAM>].
    #[arg(long, value_name = "NAME")]
    pub consumer: Option<String>,
    /// Seconds between status lines on stderr.
    #[arg(long, value_name = "SECONDS", default_value = "10")]
    pub report_every: u64,
    /// When retention removed events before they were shipped, resume at the
    /// log's first retained position instead of stopping (the stream keeps a gap).
    #[arg(long)]
    pub accept_retention_gap: bool,
}

/// Arguments of `factlog repair`.
#[derive(Debug, Args)]
pub struct RepairArgs {
    /// Store directory (must be a factlog store).
    pub dir: PathBuf,
    /// Repair without asking for confirmation on standard input.
    #[arg(long)]
    pub yes: bool,
}

/// Arguments of `factlog delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Store directory (must be a factlog store).
    pub dir: PathBuf,
    /// The aggregate to delete (it must have events).
    #[arg(long, value_name = "ID")]
    pub aggregate: String,
    /// A tombstone: refuse every later append to the aggregate, forever.
    #[arg(long)]
    pub hard: bool,
    /// Print the aggregate's new state as a JSON object (the keys of `meta --json`).
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `factlog erase`.
#[derive(Debug, Args)]
pub struct EraseArgs {
    /// Store directory (must be a factlog store).
    pub dir: PathBuf,
    /// The aggregate to erase.
    #[arg(long, value_name = "ID")]
    pub aggregate: String,
    /// Erase without asking for confirmation on standard input.
    #[arg(long)]
    pub yes: bool,
    /// Print the aggregate's new state as a JSON object (the keys of `meta --json`).
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `factlog meta`.
#[derive(Debug, Args)]
pub struct MetaArgs {
    /// Store directory (must be a factlog store).
    pub dir: PathBuf,
    /// The aggregate.
    #[arg(long, value_name = "ID")]
    pub aggregate: String,
    /// Keep only the newest N events (N ≥ 1; to drop them all, delete the aggregate).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), allow_hyphen_values = true)]
    pub max_count: Option<u64>,
    /// Keep only the events recorded less than this long ago: a number and
    /// a unit, d, h, m, s, ms, us or ns (30d, 12h, 15m, 90s, 500ms, 1h30m).
    #[arg(long, value_name = "DURATION", value_parser = duration::parse, allow_hyphen_values = true)]
    pub max_age: Option<Duration>,
    /// Hide every version below V.
    #[arg(long, value_name = "V", allow_hyphen_values = true)]
    pub truncate_before: Option<u64>,
    /// Drop every rule before applying the ones given (a soft delete's cut
    /// stays: deleted events never come back).
    #[arg(long)]
    pub clear: bool,
    /// Print the aggregate's state as a JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `factlog scavenge`.
#[derive(Debug, Args)]
pub struct ScavengeArgs {
    /// Store directory (must be a factlog store).
    pub dir: PathBuf,
    /// Print the report as a JSON object.
    #[arg(long)]
    pub json: bool,
}

impl Command {
    /// The store directory the command works on.
    fn dir(&self) -> &Path {
        match self {
            Command::Append(a) => &a.dir,
            Command::Read(a) => &a.dir,
            Command::Tail(a) => &a.dir,
            Command::Stats(a) => &a.dir,
            Command::Aggregates(a) => &a.dir,
            Command::Snapshots(a) => &a.dir,
            Command::Verify(a) => &a.dir,
            Command::Dump(a) => &a.dir,
            Command::Repair(a) => &a.dir,
            Command::Consumers(a) => &a.dir,
            Command::Parked(a) => &a.dir,
            Command::Relay(a) => &a.dir,
            Command::Delete(a) => &a.dir,
            Command::Erase(a) => &a.dir,
            Command::Meta(a) => &a.dir,
            Command::Scavenge(a) => &a.dir,
        }
    }
}

/// Longest `--wait`, seconds: a day.
const WAIT_SECONDS_MAX: f64 = 86_400.0;

/// Parses `--wait`: seconds, 0 to [`WAIT_SECONDS_MAX`], fractions allowed.
fn parse_wait(s: &str) -> Result<Duration, String> {
    let seconds: f64 = s.trim().parse().map_err(|_| format!("expected a number of seconds, not {s:?}"))?;
    if !(0.0..=WAIT_SECONDS_MAX).contains(&seconds) {
        return Err(format!("expected 0 to {WAIT_SECONDS_MAX} seconds"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// The spellings `--expected-version` accepts, for messages.
const EXPECTED_SPELLINGS: &str = "a version number (0, 1, ...), `any`, `no-stream` or `exists`";

/// Parses `--expected-version`: exactly the documented spellings.
fn parse_expected(s: &str) -> Result<ExpectedVersion, String> {
    match s {
        "any" => Ok(ExpectedVersion::Any),
        "no-stream" => Ok(ExpectedVersion::NoStream),
        "exists" => Ok(ExpectedVersion::StreamExists),
        n if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => n
            .parse::<u64>()
            .map(ExpectedVersion::Exact)
            .map_err(|_| format!("version {n} is too large; expected {EXPECTED_SPELLINGS}")),
        _ => Err(format!("expected {EXPECTED_SPELLINGS}")),
    }
}

/// Parses a UUID argument into the engine's 16-byte id.
fn parse_uuid(s: &str) -> Result<EventId, String> {
    EventId::parse(s).map_err(|e| e.to_string())
}

/// Checks that an argument is valid JSON, keeping the text as given.
fn parse_json(s: &str) -> Result<String, String> {
    serde_json::from_str::<&RawValue>(s).map(|_| s.to_string()).map_err(|e| format!("not valid JSON: {e}"))
}

/// Parses `--data`: `-` for standard input, otherwise valid JSON text.
fn parse_data(s: &str) -> Result<DataArg, String> {
    if s == "-" {
        Ok(DataArg::Stdin)
    } else {
        parse_json(s).map(DataArg::Inline)
    }
}

/// Runs the parsed command. A corruption error gets a last line naming the
/// command that shows what a repair would cut (but not from `repair` itself,
/// which says what it can and cannot fix).
fn run(cli: Cli) -> CliResult {
    let wait = cli.wait;
    let dir = cli.command.dir().to_path_buf();
    let repairing = matches!(cli.command, Command::Repair(_));
    let result = match cli.command {
        Command::Append(args) => append::run(args, wait),
        Command::Read(args) => read::run(&args, wait),
        Command::Tail(args) => tail::run(&args, wait),
        Command::Stats(args) => stats::run(&args, wait),
        Command::Aggregates(args) => aggregates::run(&args, wait),
        Command::Snapshots(args) => snapshots::run(&args, wait),
        Command::Verify(args) => verify::run(&args, wait),
        Command::Dump(args) => dump::run(&args, wait),
        Command::Repair(args) => repair::run(&args, wait),
        Command::Consumers(args) => consumers::run_consumers(&args, wait),
        Command::Parked(args) => consumers::run_parked(&args, wait),
        Command::Relay(args) => relay::run(&args, wait),
        Command::Delete(args) => lifecycle::run_delete(&args, wait),
        Command::Erase(args) => lifecycle::run_erase(&args, wait),
        Command::Meta(args) => lifecycle::run_meta(&args, wait),
        Command::Scavenge(args) => scavenge::run(&args, wait),
    };
    result.map_err(|e| if e.is_corruption() && !repairing { e.with_hint(repair::hint(&dir)) } else { e })
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
            let mut err = std::io::stderr().lock();
            if !message.is_empty() {
                let _ = writeln!(err, "error: {message}");
            }
            if let Some(hint) = e.hint() {
                let _ = writeln!(err, "{hint}");
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
        for bad in ["-1", "latest", "+1", " 1", "", "Any", "no_stream", "1.0"] {
            let err = parse_expected(bad).unwrap_err();
            assert!(err.contains("`any`, `no-stream` or `exists`"), "{bad:?}: {err}");
        }
        assert!(parse_expected("99999999999999999999").unwrap_err().contains("too large"));
    }

    #[test]
    fn json_arguments_are_validated_and_kept_verbatim() {
        assert_eq!(parse_json(" {\"b\": 1, \"a\": 2} ").unwrap(), " {\"b\": 1, \"a\": 2} ");
        assert!(parse_json("{amount: 1}").unwrap_err().contains("not valid JSON"));
        assert!(parse_json("").is_err());
        assert_eq!(parse_data("-"), Ok(DataArg::Stdin));
        assert_eq!(parse_data("-1"), Ok(DataArg::Inline("-1".into())));
        assert!(parse_data("--").is_err());
    }

    #[test]
    fn wait_seconds() {
        assert_eq!(parse_wait("0"), Ok(Duration::ZERO));
        assert_eq!(parse_wait("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_wait("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_wait("86400"), Ok(Duration::from_secs(86_400)));
        for bad in ["-1", "86401", "NaN", "inf", "", "5s", "soon"] {
            assert!(parse_wait(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn uuid_arguments() {
        let id = parse_uuid("0b0c0d0e-0f10-4111-8213-141516171819").unwrap();
        assert_eq!(id.0[0], 0x0b);
        assert!(parse_uuid("nope").is_err());
    }
}
