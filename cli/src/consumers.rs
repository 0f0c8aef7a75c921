//! `factlog consumers` and `factlog parked`: the store's durable consumers
//! with their checkpoint, lag and parked count ([`factlog::Store::consumers`]);
//! resetting or deleting one that nobody runs; and a consumer's dead-letter
//! list: listing it, asking for parked events to be replayed (the consumer's
//! runner hands them to its handler again when it next runs: the CLI has no
//! handler of its own) and discarding them. The store is opened read-only:
//! these commands change only files under `consumers/`, never the log, and
//! the ones that change something need the consumer's own lock (so they fail
//! while the consumer runs, naming who runs it).

use std::io::{self, Write};
use std::time::Duration;

use factlog::{ConsumerInfo, ParkedEvent, ResetTo, Store};
use serde_json::json;

use crate::error::CliResult;
use crate::output::{self, Column};
use crate::{open, ConsumerAction, ConsumersArgs, ParkedAction, ParkedArgs, ParkedTarget};

const CONSUMER_COLUMNS: [Column; 6] = [
    Column { name: "consumer", right: false },
    Column { name: "next_position", right: true },
    Column { name: "lag_events", right: true },
    Column { name: "lag_bytes", right: true },
    Column { name: "parked", right: true },
    Column { name: "active", right: false },
];

const PARKED_COLUMNS: [Column; 6] = [
    Column { name: "position", right: true },
    Column { name: "aggregate", right: false },
    Column { name: "attempts", right: true },
    Column { name: "behind", right: true },
    Column { name: "replay", right: false },
    Column { name: "error", right: false },
];

/// Runs `factlog consumers`.
pub fn run_consumers(args: &ConsumersArgs, wait: Duration) -> CliResult {
    let store = open::open_existing(&args.dir, wait)?;
    match &args.action {
        None => list(&store, args),
        Some(ConsumerAction::Reset { name, to }) => {
            let next = store.reset_consumer(name, *to)?;
            eprintln!("consumer {name:?} reset: it resumes at position {next}");
            Ok(())
        }
        Some(ConsumerAction::Delete { name }) => {
            store.delete_consumer(name)?;
            eprintln!("consumer {name:?} deleted (its events stay in the log)");
            Ok(())
        }
    }
}

fn list(store: &Store, args: &ConsumersArgs) -> CliResult {
    let consumers = store.consumers()?;
    if consumers.is_empty() {
        eprintln!("note: no consumers in {}", args.dir.display());
        return Ok(());
    }
    let mut out = output::stdout();
    let written = if args.json { consumers_json(&mut out, &consumers) } else { consumers_text(&mut out, &consumers) };
    output::finish(written.and_then(|()| out.flush()))
}

fn consumers_text<W: Write>(w: &mut W, consumers: &[ConsumerInfo]) -> io::Result<()> {
    let rows: Vec<Vec<String>> = consumers
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.next_position.to_string(),
                c.lag_events.to_string(),
                c.lag_bytes.to_string(),
                c.parked.to_string(),
                if c.active { "yes" } else { "no" }.to_string(),
            ]
        })
        .collect();
    output::write_table(w, &CONSUMER_COLUMNS, &rows)
}

fn consumers_json<W: Write>(w: &mut W, consumers: &[ConsumerInfo]) -> io::Result<()> {
    for c in consumers {
        let v = json!({
            "name": c.name,
            "next_position": c.next_position,
            "checkpoint": c.checkpoint,
            "committed_at": c.committed_at,
            "lag_events": c.lag_events,
            "lag_bytes": c.lag_bytes,
            "parked": c.parked,
            "active": c.active,
        });
        writeln!(w, "{v}")?;
    }
    Ok(())
}

/// Runs `factlog parked`.
pub fn run_parked(args: &ParkedArgs, wait: Duration) -> CliResult {
    let store = open::open_existing(&args.dir, wait)?;
    let parked = store.parked_events(&args.name)?;
    let (target, replay) = match &args.action {
        None | Some(ParkedAction::List) => return list_parked(&parked, args),
        Some(ParkedAction::Replay { target }) => (target, true),
        Some(ParkedAction::Discard { target }) => (target, false),
    };
    let positions: Vec<u64> = match target {
        ParkedTarget::All => parked.iter().map(|p| p.position).collect(),
        ParkedTarget::Position(p) => vec![*p],
    };
    for &p in &positions {
        if replay {
            store.request_parked_replay(&args.name, p)?;
        } else {
            store.discard_parked(&args.name, p)?;
        }
    }
    let done = if replay {
        "marked for replay: the consumer hands them to its handler when it next runs"
    } else {
        "discarded from the dead-letter list (the events stay in the log)"
    };
    eprintln!("{} parked event(s) of consumer {:?} {done}", positions.len(), args.name);
    Ok(())
}

fn list_parked(parked: &[ParkedEvent], args: &ParkedArgs) -> CliResult {
    if parked.is_empty() {
        eprintln!("note: consumer {:?} has no parked events", args.name);
        return Ok(());
    }
    let mut out = output::stdout();
    let written = if args.json { parked_json(&mut out, parked) } else { parked_text(&mut out, parked) };
    output::finish(written.and_then(|()| out.flush()))
}

fn parked_text<W: Write>(w: &mut W, parked: &[ParkedEvent]) -> io::Result<()> {
    let rows: Vec<Vec<String>> = parked
        .iter()
        .map(|p| {
            vec![
                p.position.to_string(),
                output::cell_name(&p.aggregate_id).into_owned(),
                p.attempts.to_string(),
                p.behind.map_or_else(|| "-".to_string(), |b| b.to_string()),
                if p.replay_requested { "requested" } else { "-" }.to_string(),
                output::cell_name(&p.error).into_owned(),
            ]
        })
        .collect();
    output::write_table(w, &PARKED_COLUMNS, &rows)
}

fn parked_json<W: Write>(w: &mut W, parked: &[ParkedEvent]) -> io::Result<()> {
    for p in parked {
        let v = json!({
            "position": p.position,
            "aggregate_id": p.aggregate_id,
            "attempts": p.attempts,
            "error": p.error,
            "parked_at": p.parked_at,
            "behind": p.behind,
            "replay_requested": p.replay_requested,
        });
        writeln!(w, "{v}")?;
    }
    Ok(())
}

/// Parses `--to start|end|P` for `consumers reset`.
pub fn parse_reset_to(s: &str) -> Result<ResetTo, String> {
    match s {
        "start" => Ok(ResetTo::Start),
        "end" => Ok(ResetTo::End),
        p => p.parse::<u64>().map(ResetTo::Position).map_err(|_| "expected start, end or a position".to_string()),
    }
}

/// Parses the target of `parked replay|discard`: a position or `all`.
pub fn parse_target(s: &str) -> Result<ParkedTarget, String> {
    match s {
        "all" => Ok(ParkedTarget::All),
        p => p.parse::<u64>().map(ParkedTarget::Position).map_err(|_| "expected a position or all".to_string()),
    }
}
