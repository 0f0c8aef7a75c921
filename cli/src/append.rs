//! `factlog append`: gathers the events to append — one built from the
//! arguments with its payload from `--data`, standard input (`--data -`) or
//! `--data-file`, or a batch from JSON lines (`--jsonl`, format in
//! [`crate::jsonl`]) — reads and checks all of it before the store is
//! touched, appends it as one atomic batch with the caller's expected
//! version, and prints where it landed (`version V position P`, or a JSON
//! object with `--json`). Payloads read from a file or stdin are bounded by
//! the store's event size limit.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use factlog::{now_nanos, AppendResult, EventId, NewEvent, Options};
use serde_json::value::RawValue;

use crate::error::{CliError, CliResult};
use crate::json::uuid_string;
use crate::{jsonl, open, output, AppendArgs, DataArg};

/// Runs `factlog append`.
pub fn run(args: AppendArgs, wait: Duration) -> CliResult {
    let (aggregate, events) = match gather(&args)? {
        Gathered::One(aggregate, events) => (aggregate, events),
        Gathered::Many(parts) => return run_many(&args, parts, wait),
    };
    let event_ids: Vec<EventId> = events.iter().map(|e| e.event_id).collect();
    let store = open::open_for_append(&args.dir, args.create, wait)?;
    let result = store.append(&aggregate, args.expected_version, events)?;
    let landed = Landed::new(&result, event_ids.len());
    let text = if args.json { render_json(&aggregate, &event_ids, &landed) } else { render_text(&landed) };
    output::print(&text)?;
    store.close().map_err(|e| CliError::new(format!("closing the store after the append: {e}")))
}

/// `factlog append --jsonl` with lines naming several aggregates: one
/// `append_many`, printed as one line (or JSON object) per aggregate.
fn run_many(args: &AppendArgs, parts: Vec<jsonl::Part>, wait: Duration) -> CliResult {
    if args.aggregate.is_some() || args.expected_version != factlog::ExpectedVersion::Any {
        return Err(CliError::new(
            "the JSON lines name several aggregates: leave out --aggregate and --expected-version, and give each \
             aggregate's expected_version on its lines",
        ));
    }
    let ids: Vec<Vec<EventId>> = parts.iter().map(|p| p.events.iter().map(|e| e.event_id).collect()).collect();
    let names: Vec<String> = parts.iter().map(|p| p.aggregate_id.clone()).collect();
    let store = open::open_for_append(&args.dir, args.create, wait)?;
    let results = store.append_many(parts.into_iter().map(|p| (p.aggregate_id, p.expected, p.events)))?;
    let mut text = String::new();
    for ((name, ids), r) in names.iter().zip(&ids).zip(&results) {
        let landed = Landed::new(r, ids.len());
        if args.json {
            text.push_str(&render_json(name, ids, &landed));
        } else {
            text.push_str(&format!("{name}: {}", render_text(&landed)));
        }
    }
    output::print(&text)?;
    store.close().map_err(|e| CliError::new(format!("closing the store after the append: {e}")))
}

/// What `factlog append` appends: one aggregate's events, or (JSON lines
/// naming several aggregates) one batch per aggregate.
enum Gathered {
    One(String, Vec<NewEvent>),
    Many(Vec<jsonl::Part>),
}

/// The events to append, all input read and checked.
fn gather(args: &AppendArgs) -> CliResult<Gathered> {
    if let Some(path) = &args.jsonl {
        let batch = if path == Path::new("-") {
            jsonl::read_batch(io::stdin().lock(), "standard input")?
        } else {
            let file = File::open(path).map_err(|e| CliError::new(format!("opening {}: {e}", path.display())))?;
            jsonl::read_batch(BufReader::new(file), &path.display().to_string())?
        };
        let (aggregate_id, events) = match batch {
            jsonl::Batch::One { aggregate_id, events } => (aggregate_id, events),
            jsonl::Batch::Many(parts) => return Ok(Gathered::Many(parts)),
        };
        let aggregate = match (&args.aggregate, aggregate_id) {
            (Some(arg), Some(lines)) if *arg != lines => {
                return Err(CliError::new(format!(
                    "the JSON lines are for aggregate {lines:?}, not --aggregate {arg:?}: a batch goes to one aggregate"
                )))
            }
            (Some(arg), _) => arg.clone(),
            (None, Some(lines)) => lines,
            (None, None) => {
                return Err(CliError::new("no aggregate: pass --aggregate, or give aggregate_id on the JSON lines"))
            }
        };
        return Ok(Gathered::One(aggregate, events));
    }
    let (Some(aggregate), Some(event_type)) = (&args.aggregate, &args.event_type) else {
        return Err(CliError::new("--aggregate and --type are required without --jsonl"));
    };
    let data = match (&args.data, &args.data_file) {
        (Some(DataArg::Inline(json)), _) => Bytes::from(json.clone().into_bytes()),
        (Some(DataArg::Stdin), _) => json_payload(io::stdin().lock(), "standard input")?,
        (None, Some(path)) => {
            let file = File::open(path).map_err(|e| CliError::new(format!("opening {}: {e}", path.display())))?;
            json_payload(file, &path.display().to_string())?
        }
        (None, None) => return Err(CliError::new("no payload: pass --data, --data-file or --jsonl")),
    };
    let event = NewEvent {
        event_id: args.event_id.unwrap_or_else(EventId::new_v7),
        event_type: event_type.clone(),
        event_version: args.event_version.unwrap_or(1),
        occurred_at: now_nanos(),
        causation_id: args.causation_id,
        correlation_id: args.correlation_id,
        metadata: args.metadata.as_ref().map(|m| Bytes::from(m.clone().into_bytes())).unwrap_or_default(),
        data,
    };
    Ok(Gathered::One(aggregate.clone(), vec![event]))
}

/// Reads a payload of at most the store's event size limit from `input`
/// (named `source` in messages) and checks that it is valid JSON.
fn json_payload(input: impl Read, source: &str) -> CliResult<Bytes> {
    let limit = u64::from(Options::default().max_event_bytes);
    let mut bytes = Vec::new();
    input.take(limit + 1).read_to_end(&mut bytes).map_err(|e| CliError::new(format!("reading {source}: {e}")))?;
    if bytes.len() as u64 > limit {
        return Err(CliError::new(format!(
            "{source} is larger than the largest event a store takes ({} MiB)",
            limit >> 20
        )));
    }
    serde_json::from_slice::<&RawValue>(&bytes).map_err(|e| {
        CliError::new(format!("{source} is not valid JSON: {e} (store other bytes with --jsonl and `data_base64`)"))
    })?;
    Ok(Bytes::from(bytes))
}

/// Where the appended events landed: what the command prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Landed {
    /// Events in the batch.
    events: usize,
    /// Version of the first event within its aggregate.
    first_version: u64,
    /// Version of the last event (the aggregate's version now).
    version: u64,
    /// Global position of the first event.
    first_position: u64,
    /// Global position of the last event.
    position: u64,
    /// The events were already stored there (an idempotent retry).
    deduplicated: bool,
}

impl Landed {
    fn new(r: &AppendResult, events: usize) -> Self {
        Landed {
            events,
            first_version: r.first_version,
            version: r.last_version,
            first_position: r.first_position,
            position: r.last_position,
            deduplicated: r.deduplicated,
        }
    }
}

/// The human-readable result line.
fn render_text(r: &Landed) -> String {
    let dedup = if r.deduplicated { " (already stored, nothing written)" } else { "" };
    if r.events == 1 {
        format!("version {} position {}{dedup}\n", r.version, r.position)
    } else {
        format!(
            "{} events: versions {}-{} positions {}-{}{dedup}\n",
            r.events, r.first_version, r.version, r.first_position, r.position
        )
    }
}

/// The `--json` result object, on one line. One event: its id, version and
/// position. A batch: every id, and first and last versions and positions
/// (`version` and `position` are the last event's).
fn render_json(aggregate_id: &str, event_ids: &[EventId], r: &Landed) -> String {
    let v = match event_ids {
        [event_id] => serde_json::json!({
            "aggregate_id": aggregate_id,
            "event_id": uuid_string(event_id),
            "version": r.version,
            "position": r.position,
            "deduplicated": r.deduplicated,
        }),
        _ => serde_json::json!({
            "aggregate_id": aggregate_id,
            "events": r.events,
            "event_ids": event_ids.iter().map(uuid_string).collect::<Vec<_>>(),
            "first_version": r.first_version,
            "version": r.version,
            "first_position": r.first_position,
            "position": r.position,
            "deduplicated": r.deduplicated,
        }),
    };
    format!("{v}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(events: usize, deduplicated: bool) -> Landed {
        Landed {
            events,
            first_version: 3 + 1 - events as u64,
            version: 3,
            first_position: 15,
            position: 17,
            deduplicated,
        }
    }

    #[test]
    fn text_result() {
        assert_eq!(render_text(&result(1, false)), "version 3 position 17\n");
        assert!(render_text(&result(1, true)).starts_with("version 3 position 17 (already stored"));
        assert_eq!(render_text(&result(3, false)), "3 events: versions 1-3 positions 15-17\n");
    }

    #[test]
    fn json_result() {
        let v: serde_json::Value =
            serde_json::from_str(&render_json("a-1", &[EventId([0x11; 16])], &result(1, false))).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "aggregate_id": "a-1",
                "event_id": "11111111-1111-1111-1111-111111111111",
                "version": 3,
                "position": 17,
                "deduplicated": false,
            })
        );
        let v: serde_json::Value = serde_json::from_str(&render_json(
            "a-1",
            &[EventId([1; 16]), EventId([2; 16]), EventId([3; 16])],
            &result(3, true),
        ))
        .unwrap();
        assert_eq!(v["events"], 3);
        assert_eq!(v["event_ids"][2], "03030303-0303-0303-0303-030303030303");
        assert_eq!((&v["first_version"], &v["version"]), (&serde_json::json!(1), &serde_json::json!(3)));
        assert_eq!((&v["first_position"], &v["position"]), (&serde_json::json!(15), &serde_json::json!(17)));
        assert_eq!(v["deduplicated"], true);
    }

    #[test]
    fn payloads_are_bounded_and_checked() {
        assert_eq!(&json_payload(&b" {\"a\": 1}\n"[..], "f").unwrap()[..], b" {\"a\": 1}\n");
        let err = json_payload(&b"{a: 1}"[..], "f").unwrap_err().to_string();
        assert!(err.starts_with("f is not valid JSON: "), "{err}");
        let big = format!("\"{}\"", "x".repeat(4 << 20));
        let err = json_payload(big.as_bytes(), "big.json").unwrap_err().to_string();
        assert!(err.contains("big.json is larger than the largest event a store takes (4 MiB)"), "{err}");
    }
}
