//! How one stored event becomes one JetStream message, and back: the
//! subject, the header names and their text forms. Owns the wire format the
//! relay writes; [`decode`] is its inverse, for consumers on other machines.
//!
//! - Subject: `<prefix>.<aggregate id>`. Bytes a subject token cannot hold
//!   (space, `*`, `>`, `%`, control and non-ASCII bytes) are written `%XX`;
//!   a `.` stays a token separator (`account.42` gives `<prefix>.account.42`,
//!   so `<prefix>.account.>` follows every account) unless it would make an
//!   empty token (leading, trailing or doubled), then it is `%2E`.
//! - Headers (one value each): `Nats-Msg-Id` the event id (UUID text), and
//!   the `Factlog-*` headers named by the constants below. Numbers are
//!   decimal, times unix nanoseconds, ids UUID text, metadata standard
//!   base64 (absent when empty). The aggregate id and event type are the
//!   text itself, except that `%`, control characters and leading or
//!   trailing spaces (which NATS headers cannot carry or would trim) are
//!   written `%XX`: percent-decode them to get the exact text.
//! - Body: the event's data, byte for byte.

use async_nats::{HeaderMap, HeaderName, HeaderValue};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use factlog::{EventId, EventRef, RecordedEvent};

use crate::error::{Error, Result};

/// The event id (JetStream's dedupe key).
pub const MSG_ID: &str = "Nats-Msg-Id";
/// The optimistic-concurrency header the relay sends with every message.
pub const EXPECTED_LAST_SEQUENCE: &str = "Nats-Expected-Last-Sequence";
/// The event's global position in the store.
pub const POSITION: &str = "Factlog-Position";
/// The aggregate id (percent-escaped where needed, see the module doc).
pub const AGGREGATE_ID: &str = "Factlog-Aggregate-Id";
/// The event's version within its aggregate.
pub const AGGREGATE_VERSION: &str = "Factlog-Aggregate-Version";
/// The event type (percent-escaped where needed).
pub const EVENT_TYPE: &str = "Factlog-Event-Type";
/// The schema version of the data.
pub const EVENT_VERSION: &str = "Factlog-Event-Version";
/// When it happened (the appender's clock), unix nanoseconds.
pub const OCCURRED_AT: &str = "Factlog-Occurred-At";
/// When the store recorded it, unix nanoseconds.
pub const RECORDED_AT: &str = "Factlog-Recorded-At";
/// The causing event or command's id, when there is one.
pub const CAUSATION_ID: &str = "Factlog-Causation-Id";
/// The correlation id, when there is one.
pub const CORRELATION_ID: &str = "Factlog-Correlation-Id";
/// The metadata bytes, standard base64, when there are any.
pub const METADATA: &str = "Factlog-Metadata-Base64";

/// The subject of an event of `aggregate_id` under `prefix`.
pub fn subject(prefix: &str, aggregate_id: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1 + aggregate_id.len());
    out.push_str(prefix);
    out.push('.');
    let bytes = aggregate_id.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let keep = match b {
            b'.' => i > 0 && i + 1 < bytes.len() && bytes.get(i + 1) != Some(&b'.') && bytes.get(i - 1) != Some(&b'.'),
            b' ' | b'*' | b'>' | b'%' | 0x7f => false,
            _ => b.is_ascii_graphic(),
        };
        push_byte(&mut out, b, keep);
    }
    out
}

/// Header text for an aggregate id or event type: the text itself, with `%`,
/// control characters and leading or trailing spaces as `%XX`.
fn escape_text(text: &str) -> String {
    let start = text.len() - text.trim_start_matches(' ').len();
    let end = text.trim_end_matches(' ').len().max(start);
    let mut out = String::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        let edge_space = c == ' ' && (i < start || i >= end);
        if c == '%' || c.is_control() || edge_space {
            let mut buf = [0; 4];
            for &b in c.encode_utf8(&mut buf).as_bytes() {
                push_byte(&mut out, b, false);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Appends `b` as itself (`keep`, an ASCII byte) or as `%XX`.
fn push_byte(out: &mut String, b: u8, keep: bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    if keep {
        out.push(char::from(b));
    } else {
        out.push('%');
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
}

/// The inverse of the `%XX` escaping (of headers and subjects).
pub fn unescape(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok())?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Appends one header; `value` is made of text the relay escaped or
/// generated, so it never holds the CR or LF a header value cannot.
fn put(headers: &mut HeaderMap, name: &'static str, value: String) {
    if value.contains(['\r', '\n']) {
        // IMPORTANT: unreachable by construction (escape_text escapes control
        // characters); a debug build says so, a release build drops the header
        // and `decode` reports it, instead of panicking in the relay.
        debug_assert!(false, "header {name} would carry CR or LF: {value:?}");
        return;
    }
    // `From<String>` moves the text in (parsing would copy it again); it
    // asserts what the check above already ensured.
    headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
}

/// The headers of `event`, as the relay publishes them, with `expected_last`
/// as the stream sequence the broker must be at to store it.
pub fn headers(event: &EventRef<'_>, expected_last: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    put(&mut h, MSG_ID, event.event_id().to_string());
    put(&mut h, EXPECTED_LAST_SEQUENCE, expected_last.to_string());
    put(&mut h, POSITION, event.position().to_string());
    put(&mut h, AGGREGATE_ID, escape_text(event.aggregate_id()));
    put(&mut h, AGGREGATE_VERSION, event.version().to_string());
    put(&mut h, EVENT_TYPE, escape_text(event.event_type()));
    put(&mut h, EVENT_VERSION, event.event_version().to_string());
    put(&mut h, OCCURRED_AT, event.occurred_at().to_string());
    put(&mut h, RECORDED_AT, event.recorded_at().to_string());
    if let Some(id) = event.causation_id() {
        put(&mut h, CAUSATION_ID, id.to_string());
    }
    if let Some(id) = event.correlation_id() {
        put(&mut h, CORRELATION_ID, id.to_string());
    }
    if !event.metadata().is_empty() {
        put(&mut h, METADATA, STANDARD.encode(event.metadata()));
    }
    h
}

/// The position a relayed message carries (its `Factlog-Position` header).
pub fn position(headers: &HeaderMap) -> Result<u64> {
    parse(headers, POSITION)
}

/// The event id a relayed message carries (its `Nats-Msg-Id` header).
pub fn event_id(headers: &HeaderMap) -> Result<EventId> {
    id(headers, MSG_ID)?.ok_or(Error::Malformed { header: MSG_ID, reason: "is missing".into() })
}

/// The stored event a message of the relay carries: every field of the
/// envelope from its headers, the data from its body. What a consumer on
/// another machine calls on each message it reads from the stream.
pub fn decode(headers: &HeaderMap, payload: &[u8]) -> Result<RecordedEvent> {
    let metadata = match text(headers, METADATA)? {
        Some(b64) => STANDARD
            .decode(b64)
            .map_err(|e| Error::Malformed { header: METADATA, reason: format!("is not base64: {e}") })?,
        None => Vec::new(),
    };
    Ok(RecordedEvent {
        event_id: event_id(headers)?,
        aggregate_id: escaped(headers, AGGREGATE_ID)?,
        version: parse(headers, AGGREGATE_VERSION)?,
        position: parse(headers, POSITION)?,
        event_type: escaped(headers, EVENT_TYPE)?,
        event_version: parse(headers, EVENT_VERSION)?,
        occurred_at: parse(headers, OCCURRED_AT)?,
        recorded_at: parse(headers, RECORDED_AT)?,
        causation_id: id(headers, CAUSATION_ID)?,
        correlation_id: id(headers, CORRELATION_ID)?,
        metadata: metadata.into(),
        data: factlog::Bytes::copy_from_slice(payload),
    })
}

fn text<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<Option<&'h str>> {
    Ok(headers.get(name).map(|v| v.as_str()))
}

fn required<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h str> {
    text(headers, name)?.ok_or(Error::Malformed { header: name, reason: "is missing".into() })
}

fn parse<T: std::str::FromStr>(headers: &HeaderMap, name: &'static str) -> Result<T> {
    let value = required(headers, name)?;
    value.parse().map_err(|_| Error::Malformed { header: name, reason: format!("{value:?} is not a number") })
}

fn escaped(headers: &HeaderMap, name: &'static str) -> Result<String> {
    let value = required(headers, name)?;
    unescape(value).ok_or_else(|| Error::Malformed { header: name, reason: format!("{value:?} has a bad %-escape") })
}

fn id(headers: &HeaderMap, name: &'static str) -> Result<Option<EventId>> {
    text(headers, name)?
        .map(|v| EventId::parse(v).map_err(|e| Error::Malformed { header: name, reason: format!("{v:?}: {e}") }))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_keep_inner_dots_and_escape_the_rest() {
        assert_eq!(subject("ev", "account-42"), "ev.account-42");
        assert_eq!(subject("ev", "account.42"), "ev.account.42");
        assert_eq!(subject("ev", ".a..b."), "ev.%2Ea%2E%2Eb%2E");
        assert_eq!(subject("ev", "a b*>%"), "ev.a%20b%2A%3E%25");
        assert_eq!(subject("ev", "é"), "ev.%C3%A9");
        assert_eq!(subject("ev", "user:7@x"), "ev.user:7@x");
        for id in ["account.42", ".a..b.", "a b*>%", "é\t\r\n", "x"] {
            let s = subject("ev", id);
            assert_eq!(unescape(s.strip_prefix("ev.").unwrap()).unwrap(), id);
            assert!(s.split('.').all(|t| !t.is_empty()), "{s}");
        }
    }

    #[test]
    fn header_text_is_plain_unless_it_cannot_be() {
        assert_eq!(escape_text("Commande validée"), "Commande validée");
        assert_eq!(escape_text("100%"), "100%25");
        assert_eq!(escape_text(" a b "), "%20a b%20");
        assert_eq!(escape_text("a\r\nb"), "a%0D%0Ab");
        assert_eq!(escape_text("   "), "%20%20%20");
        for t in ["Commande validée", "100%", " a b ", "a\r\nb", "   ", "\u{85}x"] {
            assert_eq!(unescape(&escape_text(t)).unwrap(), t);
        }
        assert_eq!(unescape("%4"), None);
        assert_eq!(unescape("%ZZ"), None);
    }
}
