//! Event → JSON rendering, the output format of `factlog read`: one event as
//! one line of JSON, written straight into any [`Write`] without building an
//! intermediate value tree.
//!
//! The object has exactly these keys, in this order: `event_id`,
//! `aggregate_id`, `version`, `position`, `event_type`, `event_version`,
//! `occurred_at`, `recorded_at`, `causation_id`, `correlation_id`,
//! `metadata` (or `metadata_base64`), `data` (or `data_base64`). Ids are
//! hyphenated lowercase UUID strings (`null` when absent), timestamps are
//! integers (unix nanoseconds). A payload whose bytes are valid JSON is
//! printed under `data` as that JSON itself (whitespace removed so the event
//! stays on one line, key order and number spelling kept); any other payload
//! (binary, invalid UTF-8, empty) is printed under `data_base64` as a
//! standard, padded base64 string, so the two can never be confused. The
//! same goes for `metadata` / `metadata_base64`, except that empty metadata
//! is `"metadata": null`. `factlog append --jsonl` takes these lines back.

use std::io::{self, Write};

use base64::engine::general_purpose::STANDARD;
use base64::write::EncoderWriter;
use factlog::{EventId, EventRef, RecordedEvent};
use serde_json::value::RawValue;

/// The `read` output format, for `factlog read --help`.
pub const HELP: &str = "Output: one JSON object per event and line, with the keys event_id, aggregate_id, version,
position, event_type, event_version, occurred_at, recorded_at (unix nanoseconds), causation_id,
correlation_id (UUIDs or null), metadata and data.

A payload that is valid JSON is printed as that JSON value under \"data\". Any other payload
(binary, not UTF-8, empty) is printed as standard base64 under \"data_base64\" instead, so a JSON
string payload and a binary one never look alike. Metadata likewise: \"metadata\" (null when there
is none) or \"metadata_base64\".

These lines are what `factlog append --jsonl` reads: `factlog read A --aggregate x |
factlog append B --jsonl -` copies an aggregate.";

/// The fields of one stored event, borrowed. Built from the engine's
/// zero-copy [`EventRef`] (or an owned [`RecordedEvent`]), so the renderer can
/// be tested on events the engine would never produce.
#[derive(Debug, Clone, Copy)]
pub struct EventFields<'a> {
    /// The event's id.
    pub event_id: EventId,
    /// The aggregate it belongs to.
    pub aggregate_id: &'a str,
    /// Version within the aggregate.
    pub version: u64,
    /// Global position.
    pub position: u64,
    /// Type name.
    pub event_type: &'a str,
    /// Schema version of `data`.
    pub event_version: u32,
    /// Caller's timestamp, unix nanoseconds.
    pub occurred_at: i64,
    /// Engine's timestamp, unix nanoseconds.
    pub recorded_at: i64,
    /// Causing event or command.
    pub causation_id: Option<EventId>,
    /// Correlation id.
    pub correlation_id: Option<EventId>,
    /// Metadata bytes.
    pub metadata: &'a [u8],
    /// Payload bytes.
    pub data: &'a [u8],
}

impl<'a> From<&EventRef<'a>> for EventFields<'a> {
    fn from(ev: &EventRef<'a>) -> Self {
        EventFields {
            event_id: ev.event_id(),
            aggregate_id: ev.aggregate_id(),
            version: ev.version(),
            position: ev.position(),
            event_type: ev.event_type(),
            event_version: ev.event_version(),
            occurred_at: ev.occurred_at(),
            recorded_at: ev.recorded_at(),
            causation_id: ev.causation_id(),
            correlation_id: ev.correlation_id(),
            metadata: ev.metadata(),
            data: ev.data(),
        }
    }
}

impl<'a> From<&'a RecordedEvent> for EventFields<'a> {
    fn from(ev: &'a RecordedEvent) -> Self {
        EventFields {
            event_id: ev.event_id,
            aggregate_id: &ev.aggregate_id,
            version: ev.version,
            position: ev.position,
            event_type: &ev.event_type,
            event_version: ev.event_version,
            occurred_at: ev.occurred_at,
            recorded_at: ev.recorded_at,
            causation_id: ev.causation_id,
            correlation_id: ev.correlation_id,
            metadata: &ev.metadata,
            data: &ev.data,
        }
    }
}

/// Writes `ev` as one JSON object followed by a newline.
pub fn write_event_line<W: Write>(w: &mut W, ev: &EventFields<'_>) -> io::Result<()> {
    w.write_all(b"{\"event_id\":")?;
    write_id(w, &ev.event_id)?;
    w.write_all(b",\"aggregate_id\":")?;
    write_str(w, ev.aggregate_id)?;
    write!(w, ",\"version\":{},\"position\":{},\"event_type\":", ev.version, ev.position)?;
    write_str(w, ev.event_type)?;
    write!(
        w,
        ",\"event_version\":{},\"occurred_at\":{},\"recorded_at\":{},\"causation_id\":",
        ev.event_version, ev.occurred_at, ev.recorded_at
    )?;
    write_opt_id(w, ev.causation_id.as_ref())?;
    w.write_all(b",\"correlation_id\":")?;
    write_opt_id(w, ev.correlation_id.as_ref())?;
    if ev.metadata.is_empty() {
        w.write_all(b",\"metadata\":null")?;
    } else {
        write_payload(w, "metadata", ev.metadata)?;
    }
    write_payload(w, "data", ev.data)?;
    w.write_all(b"}\n")
}

/// Writes `,"<key>":<value>` for payload bytes: the bytes themselves (minus
/// insignificant whitespace) if they are valid JSON, otherwise
/// `,"<key>_base64":"<base64>"` (standard alphabet, padded). Empty bytes are
/// not JSON: they render as `,"<key>_base64":""`.
pub fn write_payload<W: Write>(w: &mut W, key: &str, bytes: &[u8]) -> io::Result<()> {
    match serde_json::from_slice::<&RawValue>(bytes) {
        Ok(raw) => {
            write!(w, ",\"{key}\":")?;
            write_minified(w, raw.get().as_bytes())
        }
        Err(_) => {
            write!(w, ",\"{key}_base64\":\"")?;
            {
                let mut enc = EncoderWriter::new(&mut *w, &STANDARD);
                enc.write_all(bytes)?;
                enc.finish()?;
            }
            w.write_all(b"\"")
        }
    }
}

/// Copies valid JSON text, dropping whitespace outside strings. Valid JSON
/// has no raw control characters inside strings, so the result is one line.
fn write_minified<W: Write>(w: &mut W, json: &[u8]) -> io::Result<()> {
    let mut in_string = false;
    let mut escaped = false;
    let mut run_start = 0;
    for (i, &b) in json.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            w.write_all(&json[run_start..i])?;
            run_start = i + 1;
        }
    }
    w.write_all(&json[run_start..])
}

/// Writes a string as a JSON string literal (escaped as needed).
fn write_str<W: Write>(w: &mut W, s: &str) -> io::Result<()> {
    serde_json::to_writer(w, s).map_err(io::Error::from)
}

/// An id as a hyphenated lowercase UUID string.
pub fn uuid_string(id: &EventId) -> String {
    id.to_string()
}

/// Writes an id as a quoted hyphenated lowercase UUID.
fn write_id<W: Write>(w: &mut W, id: &EventId) -> io::Result<()> {
    let mut buf = uuid::Uuid::encode_buffer();
    let text = uuid::Uuid::from_bytes(id.0).hyphenated().encode_lower(&mut buf);
    w.write_all(b"\"")?;
    w.write_all(text.as_bytes())?;
    w.write_all(b"\"")
}

/// Writes an optional id, `null` when absent.
fn write_opt_id<W: Write>(w: &mut W, id: Option<&EventId>) -> io::Result<()> {
    match id {
        Some(id) => write_id(w, id),
        None => w.write_all(b"null"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use serde_json::{json, Value};

    fn fields<'a>(metadata: &'a [u8], data: &'a [u8]) -> EventFields<'a> {
        EventFields {
            event_id: factlog::EventId(
                *uuid::Uuid::parse_str("0b0c0d0e-0f10-4111-8213-141516171819").unwrap().as_bytes(),
            ),
            aggregate_id: "acct-\"1\"\n",
            version: 7,
            position: 42,
            event_type: "FundsDeposited",
            event_version: 3,
            occurred_at: -5,
            recorded_at: 1_700_000_000_123_456_789,
            causation_id: Some(factlog::EventId([0xab; 16])),
            correlation_id: None,
            metadata,
            data,
        }
    }

    fn render(ev: &EventFields<'_>) -> String {
        let mut out = Vec::new();
        write_event_line(&mut out, ev).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_payload_renders_as_a_value_with_every_key() {
        let line = render(&fields(b"", b"{ \"b\": 1,\n  \"a\": [1.0, \"x y\\\" \"] }"));
        assert!(line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1, "one line: {line}");
        // Key order and number spelling of the stored payload are kept.
        assert!(line.contains(r#""data":{"b":1,"a":[1.0,"x y\" "]}}"#), "{line}");
        let v: Value = serde_json::from_str(&line).unwrap();
        let expected = json!({
            "event_id": "0b0c0d0e-0f10-4111-8213-141516171819",
            "aggregate_id": "acct-\"1\"\n",
            "version": 7,
            "position": 42,
            "event_type": "FundsDeposited",
            "event_version": 3,
            "occurred_at": -5,
            "recorded_at": 1_700_000_000_123_456_789_i64,
            "causation_id": "abababab-abab-abab-abab-abababababab",
            "correlation_id": null,
            "metadata": null,
            "data": {"b": 1, "a": [1.0, "x y\" "]},
        });
        assert_eq!(v, expected);
    }

    #[test]
    fn non_json_payload_round_trips_as_base64_under_its_own_key() {
        let data: Vec<u8> = (0..=255u8).chain([0xff, 0xfe, b'{']).collect();
        let metadata = b"not json at all";
        let line = render(&fields(metadata, &data));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert!(v.get("data").is_none() && v.get("metadata").is_none(), "{line}");
        let decoded = STANDARD.decode(v["data_base64"].as_str().unwrap()).unwrap();
        assert_eq!(decoded, data);
        let meta = STANDARD.decode(v["metadata_base64"].as_str().unwrap()).unwrap();
        assert_eq!(meta, metadata);
        assert!(line.ends_with(&format!(",\"data_base64\":\"{}\"}}\n", STANDARD.encode(&data))), "{line}");
    }

    #[test]
    fn a_json_string_payload_and_a_non_json_one_look_different() {
        let json_string = render(&fields(b"", b"\"aGVsbG8=\""));
        let bytes = render(&fields(b"", b"hello"));
        let (a, b): (Value, Value) =
            (serde_json::from_str(&json_string).unwrap(), serde_json::from_str(&bytes).unwrap());
        assert_eq!((&a["data"], a.get("data_base64")), (&json!("aGVsbG8="), None));
        assert_eq!((b.get("data"), &b["data_base64"]), (None, &json!("aGVsbG8=")));
    }

    #[test]
    fn invalid_utf8_and_empty_payloads_are_base64() {
        let mut out = Vec::new();
        write_payload(&mut out, "data", b"\"\xff\"").unwrap();
        assert_eq!(out, format!(",\"data_base64\":\"{}\"", STANDARD.encode(b"\"\xff\"")).as_bytes());
        out.clear();
        write_payload(&mut out, "data", b"").unwrap();
        assert_eq!(out, b",\"data_base64\":\"\"");
    }

    #[test]
    fn scalar_json_payloads_render_as_scalars() {
        for (input, want) in [("  12 ", "12"), ("null", "null"), ("\"a b\"", "\"a b\""), ("[ ]", "[]")] {
            let mut out = Vec::new();
            write_payload(&mut out, "data", input.as_bytes()).unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), format!(",\"data\":{want}"));
        }
    }

    #[test]
    fn owned_events_render_like_borrowed_ones() {
        let ev = RecordedEvent {
            event_id: factlog::EventId([1; 16]),
            aggregate_id: "a".into(),
            version: 0,
            position: 0,
            event_type: "T".into(),
            event_version: 1,
            occurred_at: 1,
            recorded_at: 2,
            causation_id: None,
            correlation_id: Some(factlog::EventId([2; 16])),
            metadata: bytes::Bytes::from_static(b"{\"k\":true}"),
            data: bytes::Bytes::from_static(b"[]"),
        };
        let v: Value = serde_json::from_str(&render(&EventFields::from(&ev))).unwrap();
        assert_eq!(v["metadata"], json!({"k": true}));
        assert_eq!(v["correlation_id"], "02020202-0202-0202-0202-020202020202");
    }
}
