//! The JSON-lines input of `factlog append --jsonl`: one event per line,
//! every line of the input one atomic batch (over several aggregates, when
//! the lines name several: `Store::append_many`). This module owns the line
//! format (what each key means, which are required, which are accepted and
//! ignored so that `factlog read` output can be appended again), its limits,
//! and turning lines into [`NewEvent`]s. It reads, it never writes.

use std::io::{BufRead, Read};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use factlog::{now_nanos, EventId, ExpectedVersion, NewEvent};
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::{CliError, CliResult};

/// Most events in one batch: the store's default `max_batch_events`.
pub const EVENTS_MAX: usize = 10_000;
/// Longest line, in bytes: room for a 4 MiB payload in base64 and its envelope.
pub const LINE_BYTES_MAX: usize = 8 << 20;
/// Most bytes of input read for one batch (the whole batch is held in memory
/// until the store has it).
pub const INPUT_BYTES_MAX: u64 = 256 << 20;

/// The line format, for `factlog append --help`.
pub const HELP: &str = "JSON lines (--jsonl FILE, or - for standard input): one JSON object per line, blank lines
skipped. All the lines are appended as one atomic batch: to one aggregate, with --expected-version
checked once for the batch; or, when the lines' aggregate_id keys name several aggregates, to each of
them (every line must then name its aggregate, and each aggregate's lines must be together), all
or nothing, each aggregate with the expected_version its lines give. Keys of a line:
  type             the event type (required; `event_type` is accepted too)
  data             the payload, any JSON value, stored as its JSON text
  data_base64      or the payload as standard base64, for bytes that are not JSON
                   (exactly one of data and data_base64)
  id               the event id, a UUID (`event_id` is accepted too); absent or null: a random v4 id
  event_version    schema version of the payload; default 1
  occurred_at      unix nanoseconds, or an RFC 3339 timestamp such as 2024-05-01T12:00:00Z;
                   absent or null: now
  causation_id, correlation_id   UUIDs, or null
  metadata         JSON metadata; `metadata_base64` for bytes that are not JSON; absent or null: none
  aggregate_id     optional with one aggregate: when present it must be the batch's aggregate
                   (--aggregate, which may then be left out); required on every line with several
  expected_version with several aggregates: the aggregate's expected version (a number, \"any\",
                   \"no-stream\" or \"exists\"; default \"any\"), the same on each of its lines that gives it
  version, position, recorded_at   accepted and ignored: the store assigns them
Any other key is an error. So the lines `factlog read` prints append again as they are.
Limits: 10,000 events per batch, 8 MiB per line, 256 MiB of input, and the store's 4 MiB per event.";

/// The events of a JSONL input.
#[derive(Debug)]
pub enum Batch {
    /// One aggregate's batch.
    One {
        /// The `aggregate_id` every line that has one agrees on.
        aggregate_id: Option<String>,
        /// The events, in input order.
        events: Vec<NewEvent>,
    },
    /// Several aggregates' batches, appended together: each aggregate's
    /// events in input order, the aggregates in order of first appearance.
    Many(Vec<Part>),
}

/// One aggregate's events in a [`Batch::Many`].
#[derive(Debug)]
pub struct Part {
    /// The aggregate.
    pub aggregate_id: String,
    /// The expected version its lines give (`Any` when none does).
    pub expected: ExpectedVersion,
    /// Its events, in input order.
    pub events: Vec<NewEvent>,
}

/// One parsed line: its aggregate, expected version and event.
type Parsed = (Option<String>, Option<ExpectedVersion>, NewEvent);

/// One line as written; see [`HELP`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(rename = "type", alias = "event_type")]
    event_type: String,
    #[serde(default, deserialize_with = "present")]
    data: Option<Box<RawValue>>,
    #[serde(default)]
    data_base64: Option<String>,
    #[serde(default, rename = "id", alias = "event_id")]
    event_id: Option<String>,
    #[serde(default)]
    event_version: Option<u32>,
    #[serde(default)]
    occurred_at: Option<Value>,
    #[serde(default)]
    causation_id: Option<String>,
    #[serde(default)]
    correlation_id: Option<String>,
    #[serde(default)]
    metadata: Option<Box<RawValue>>,
    #[serde(default)]
    metadata_base64: Option<String>,
    #[serde(default)]
    aggregate_id: Option<String>,
    #[serde(default)]
    expected_version: Option<Value>,
    #[serde(default, rename = "version")]
    _version: Option<IgnoredAny>,
    #[serde(default, rename = "position")]
    _position: Option<IgnoredAny>,
    #[serde(default, rename = "recorded_at")]
    _recorded_at: Option<IgnoredAny>,
}

/// A key that is present holds a value, `null` included (`"data": null` is
/// the payload `null`, not a missing payload).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

/// Reads every line of `input` (named `source` in messages) into a batch,
/// enforcing the limits above. Fails on the first bad line, naming it.
pub fn read_batch(input: impl BufRead, source: &str) -> CliResult<Batch> {
    let mut input = input.take(INPUT_BYTES_MAX + 1);
    let mut lines: Vec<(usize, Parsed)> = Vec::new();
    let mut line = Vec::new();
    for number in 1.. {
        line.clear();
        let read = (&mut input)
            .take(LINE_BYTES_MAX as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| CliError::new(format!("reading {source}: {e}")))?;
        if read == 0 {
            break;
        }
        if input.limit() == 0 {
            return Err(CliError::new(format!("{source} is larger than {} MiB", INPUT_BYTES_MAX >> 20)));
        }
        let at = |msg: String| CliError::new(format!("{source} line {number}: {msg}"));
        if line.len() > LINE_BYTES_MAX {
            return Err(at(format!("longer than {} MiB", LINE_BYTES_MAX >> 20)));
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if lines.len() == EVENTS_MAX {
            return Err(at(format!("more than {EVENTS_MAX} events in one batch")));
        }
        lines.push((number, parse_line(&line).map_err(at)?));
    }
    if lines.is_empty() {
        return Err(CliError::new(format!("{source} has no events")));
    }
    let mut named: Vec<&str> = Vec::new();
    for (_, (id, _, _)) in &lines {
        if let Some(id) = id.as_deref().filter(|id| !named.contains(id)) {
            named.push(id);
        }
    }
    if named.len() <= 1 {
        let aggregate_id = named.first().map(|s| s.to_string());
        let mut expected = None;
        for (number, (_, x, _)) in &lines {
            agree(&mut expected, *x).map_err(|m| CliError::new(format!("{source} line {number}: {m}")))?;
        }
        if expected.is_some() {
            return Err(CliError::new(format!(
                "{source}: expected_version on the lines is for batches over several aggregates; \
                 give --expected-version for one"
            )));
        }
        return Ok(Batch::One { aggregate_id, events: lines.into_iter().map(|(_, (_, _, e))| e).collect() });
    }
    let mut parts: Vec<Part> = named
        .iter()
        .map(|id| Part { aggregate_id: id.to_string(), expected: ExpectedVersion::Any, events: Vec::new() })
        .collect();
    let mut expectations: Vec<Option<ExpectedVersion>> = vec![None; parts.len()];
    let mut previous: Option<usize> = None;
    for (number, (id, x, event)) in lines {
        let at = |msg: String| CliError::new(format!("{source} line {number}: {msg}"));
        let Some(id) = id else {
            return Err(at(format!(
                "no aggregate_id, but the lines name {} aggregates: with several, every line names its own",
                parts.len()
            )));
        };
        let k = parts.iter().position(|p| p.aggregate_id == id).unwrap_or_default();
        if previous.is_some_and(|p| p != k) && !parts[k].events.is_empty() {
            // Appending regroups the lines by aggregate: refuse input whose
            // order that would change (the global order is the input's).
            return Err(at(format!(
                "aggregate_id {id:?} again after other aggregates' lines: each aggregate's lines must be together"
            )));
        }
        previous = Some(k);
        agree(&mut expectations[k], x).map_err(at)?;
        parts[k].events.push(event);
    }
    for (part, x) in parts.iter_mut().zip(expectations) {
        part.expected = x.unwrap_or(ExpectedVersion::Any);
    }
    Ok(Batch::Many(parts))
}

/// Records a line's expected version, which must agree with the earlier ones.
fn agree(have: &mut Option<ExpectedVersion>, line: Option<ExpectedVersion>) -> Result<(), String> {
    match (*have, line) {
        (Some(a), Some(b)) if a != b => Err(format!("expected_version {b} differs from {a} on an earlier line")),
        (None, Some(b)) => {
            *have = Some(b);
            Ok(())
        }
        _ => Ok(()),
    }
}

/// One line into its aggregate id and expected version (if it names them)
/// and its event.
fn parse_line(text: &[u8]) -> Result<Parsed, String> {
    let line: Line = serde_json::from_slice(text).map_err(|e| format!("{e}"))?;
    let data = payload("data", line.data, line.data_base64)?
        .ok_or_else(|| "no payload: give `data` (JSON) or `data_base64`".to_string())?;
    let metadata = payload("metadata", line.metadata, line.metadata_base64)?.unwrap_or_default();
    let event = NewEvent {
        event_id: match line.event_id {
            Some(id) => uuid("id", &id)?,
            None => EventId::new_v7(),
        },
        event_type: line.event_type,
        event_version: line.event_version.unwrap_or(1),
        occurred_at: match line.occurred_at {
            None | Some(Value::Null) => now_nanos(),
            Some(t) => timestamp(&t)?,
        },
        causation_id: line.causation_id.map(|id| uuid("causation_id", &id)).transpose()?,
        correlation_id: line.correlation_id.map(|id| uuid("correlation_id", &id)).transpose()?,
        metadata,
        data,
    };
    let expected = line.expected_version.map(|v| expected_version(&v)).transpose()?;
    Ok((line.aggregate_id, expected, event))
}

/// `expected_version`: a number, "any", "no-stream" or "exists".
fn expected_version(value: &Value) -> Result<ExpectedVersion, String> {
    match value {
        Value::Number(n) => n.as_u64().map(ExpectedVersion::Exact),
        Value::String(s) if s == "any" => Some(ExpectedVersion::Any),
        Value::String(s) if s == "no-stream" => Some(ExpectedVersion::NoStream),
        Value::String(s) if s == "exists" => Some(ExpectedVersion::StreamExists),
        _ => None,
    }
    .ok_or_else(|| format!("`expected_version` {value}: expected a number, \"any\", \"no-stream\" or \"exists\""))
}

/// The bytes of `key` or `key_base64` (at most one of them), if either is there.
fn payload(key: &str, json: Option<Box<RawValue>>, base64: Option<String>) -> Result<Option<Bytes>, String> {
    match (json, base64) {
        (Some(_), Some(_)) => Err(format!("both `{key}` and `{key}_base64`: give one")),
        (Some(raw), None) => Ok(Some(Bytes::from(raw.get().as_bytes().to_vec()))),
        (None, Some(text)) => {
            STANDARD.decode(text).map(|b| Some(Bytes::from(b))).map_err(|e| format!("`{key}_base64`: {e}"))
        }
        (None, None) => Ok(None),
    }
}

/// A UUID string as an event id.
fn uuid(key: &str, text: &str) -> Result<EventId, String> {
    EventId::parse(text).map_err(|e| format!("`{key}`: {e}"))
}

/// `occurred_at`: unix nanoseconds, or an RFC 3339 timestamp.
fn timestamp(value: &Value) -> Result<i64, String> {
    let invalid = || format!("`occurred_at` {value}: expected unix nanoseconds or an RFC 3339 timestamp");
    match value {
        Value::Number(n) => n.as_i64().ok_or_else(invalid),
        Value::String(s) => {
            let ts: jiff::Timestamp = s.parse().map_err(|e| format!("{}: {e}", invalid()))?;
            i64::try_from(ts.as_nanosecond()).map_err(|_| invalid())
        }
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One aggregate's batch: its aggregate and events.
    #[derive(Debug)]
    struct One {
        aggregate_id: Option<String>,
        events: Vec<NewEvent>,
    }

    fn batch(text: &str) -> CliResult<One> {
        match read_batch(text.as_bytes(), "input")? {
            Batch::One { aggregate_id, events } => Ok(One { aggregate_id, events }),
            Batch::Many(parts) => Err(CliError::new(format!("{} aggregates", parts.len()))),
        }
    }

    fn error(text: &str) -> String {
        batch(text).unwrap_err().to_string()
    }

    #[test]
    fn full_lines_become_events() {
        let text = r#"{"type":"Opened","data":{"owner":"ada"},"id":"11111111-2222-4333-8444-555555555555","event_version":2,"occurred_at":"2024-05-01T12:00:00.5Z","causation_id":"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa","correlation_id":null,"metadata":{"user":"ops"},"aggregate_id":"acct-1"}

{"event_type":"Raw","data_base64":"AAH/","occurred_at":7,"metadata_base64":"bWV0YQ=="}
"#;
        let b = batch(text).unwrap();
        assert_eq!(b.aggregate_id.as_deref(), Some("acct-1"));
        assert_eq!(b.events.len(), 2);
        let e = &b.events[0];
        assert_eq!(e.event_type, "Opened");
        assert_eq!(&e.data[..], br#"{"owner":"ada"}"#);
        assert_eq!(e.event_id.to_string(), "11111111-2222-4333-8444-555555555555");
        assert_eq!(e.event_version, 2);
        assert_eq!(e.occurred_at, 1_714_564_800_500_000_000);
        let causation = uuid::Uuid::parse_str("aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa").unwrap();
        assert_eq!(e.causation_id, Some(EventId(causation.into_bytes())));
        assert_eq!(e.correlation_id, None);
        assert_eq!(&e.metadata[..], br#"{"user":"ops"}"#);
        let raw = &b.events[1];
        assert_eq!(&raw.data[..], [0, 1, 0xff]);
        assert_eq!((raw.occurred_at, raw.event_version), (7, 1));
        assert_eq!(&raw.metadata[..], b"meta");
    }

    #[test]
    fn defaults_and_json_null_payloads() {
        let b = batch("{\"type\":\"T\",\"data\":null,\"metadata\":null,\"id\":null}\r\n{\"type\":\"T\",\"data\":1}")
            .unwrap();
        assert_eq!(b.aggregate_id, None);
        assert_eq!(&b.events[0].data[..], b"null");
        assert!(b.events[0].metadata.is_empty());
        assert_ne!(b.events[0].event_id, b.events[1].event_id, "random ids");
        assert!(b.events[0].occurred_at > 1_600_000_000_000_000_000);
    }

    #[test]
    fn read_output_is_accepted() {
        let line = r#"{"event_id":"0b0c0d0e-0f10-4111-8213-141516171819","aggregate_id":"a","version":3,"position":9,"event_type":"T","event_version":1,"occurred_at":-5,"recorded_at":17,"causation_id":null,"correlation_id":null,"metadata":null,"data":[1]}"#;
        let b = batch(line).unwrap();
        assert_eq!(b.events[0].occurred_at, -5);
        assert_eq!(&b.events[0].data[..], b"[1]");
    }

    #[test]
    fn bad_lines_are_named() {
        assert!(error("").contains("input has no events"));
        assert!(error("\n  \n").contains("no events"));
        let cases = [
            (r#"{"data":1}"#, "missing field `type`"),
            (r#"{"type":"T"}"#, "no payload"),
            (r#"{"type":"T","data":1,"data_base64":"AA=="}"#, "both `data` and `data_base64`"),
            (r#"{"type":"T","data_base64":"!!"}"#, "`data_base64`"),
            (r#"{"type":"T","data":1,"id":"nope"}"#, "`id`: \"nope\" is not a UUID"),
            (r#"{"type":"T","data":1,"occurred_at":"yesterday"}"#, "RFC 3339"),
            (r#"{"type":"T","data":1,"occurred_at":1.5}"#, "unix nanoseconds"),
            (r#"{"type":"T","data":1,"colour":"red"}"#, "unknown field `colour`"),
            ("{\"type\":\"T\",\"data\":1", "EOF"),
        ];
        for (line, needle) in cases {
            let err = error(&format!("{{\"type\":\"T\",\"data\":0}}\n{line}\n"));
            assert!(err.starts_with("input line 2: "), "{line}: {err}");
            assert!(err.contains(needle), "{line}: {err}");
        }
        let err = error("{\"type\":\"T\",\"data\":0,\"aggregate_id\":\"a\"}\n{\"type\":\"T\",\"data\":0,\"aggregate_id\":\"b\"}\n{\"type\":\"T\",\"data\":0}");
        assert!(err.contains("line 3: no aggregate_id, but the lines name 2 aggregates"), "{err}");
        let err = error("{\"type\":\"T\",\"data\":0,\"expected_version\":3}");
        assert!(err.contains("for batches over several aggregates"), "{err}");
    }

    #[test]
    fn lines_naming_several_aggregates_are_one_batch_per_aggregate() {
        let text = r#"{"type":"Withdrawn","data":1,"aggregate_id":"a","expected_version":4}
{"type":"Noted","data":2,"aggregate_id":"a"}
{"type":"Deposited","data":1,"aggregate_id":"b","expected_version":"no-stream"}
"#;
        let Batch::Many(parts) = read_batch(text.as_bytes(), "input").unwrap() else { panic!("one batch") };
        let got: Vec<_> = parts
            .iter()
            .map(|p| {
                (
                    p.aggregate_id.as_str(),
                    p.expected,
                    p.events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", ExpectedVersion::Exact(4), vec!["Withdrawn", "Noted"]),
                ("b", ExpectedVersion::NoStream, vec!["Deposited"])
            ]
        );
        let clash = "{\"type\":\"T\",\"data\":0,\"aggregate_id\":\"a\",\"expected_version\":1}\n{\"type\":\"T\",\"data\":0,\"aggregate_id\":\"a\",\"expected_version\":2}\n{\"type\":\"T\",\"data\":0,\"aggregate_id\":\"b\"}";
        let err = read_batch(clash.as_bytes(), "input").unwrap_err().to_string();
        assert!(err.contains("line 2: expected_version 2 differs from 1"), "{err}");
        let interleaved = "{\"type\":\"T\",\"data\":0,\"aggregate_id\":\"a\"}\n{\"type\":\"T\",\"data\":0,\"aggregate_id\":\"b\"}\n{\"type\":\"T\",\"data\":0,\"aggregate_id\":\"a\"}";
        let err = read_batch(interleaved.as_bytes(), "input").unwrap_err().to_string();
        assert!(err.contains("line 3: aggregate_id \"a\" again after other aggregates"), "{err}");
        let bad = "{\"type\":\"T\",\"data\":0,\"aggregate_id\":\"a\",\"expected_version\":\"soon\"}";
        assert!(read_batch(bad.as_bytes(), "input").unwrap_err().to_string().contains("`expected_version`"));
    }

    #[test]
    fn limits_hold() {
        let many = "{\"type\":\"T\",\"data\":0}\n".repeat(EVENTS_MAX + 1);
        assert!(error(&many).contains(&format!("line {}: more than 10000 events", EVENTS_MAX + 1)));
        assert_eq!(batch(&"{\"type\":\"T\",\"data\":0}\n".repeat(EVENTS_MAX)).unwrap().events.len(), EVENTS_MAX);
        assert_eq!(EVENTS_MAX, factlog::Options::default().max_batch_events);
        let long = format!("{{\"type\":\"T\",\"data\":\"{}\"}}", "x".repeat(LINE_BYTES_MAX));
        assert!(error(&long).contains("line 1: longer than 8 MiB"));
    }
}
