//! How one stored event becomes one JetStream message, and back: the
//! subject, the header names and their text forms. Owns the wire format the
//! relay writes; [`decode`] is its inverse, for consumers on other machines.
//!
//! - Subject: `<prefix>.<aggregate id>`. Bytes a subject token cannot hold
//!   (space, `*`, `>`, `%`, control and non-ASCII bytes) are written `%XX`;
//!   a `.` stays a token separator (`account.42` gives `<prefix>.account.42`,
//!   so `<prefix>.account.>` follows every account) unless it would make an
//!   empty token (leading, trailing or doubled), then it is `%2E`.
//! - Headers (one value each): `Nats-Msg-Id` the event id (UUID text),
//!   `Nats-Expected-Last-Sequence` (where the message must land, see
//!   [`crate::relay`]), `Factlog-Position` the event's position (decimal),
//!   and [`ENVELOPE`], the rest of the envelope in one line of
//!   space-separated fields: the envelope format version (`1`), the
//!   aggregate version, the event's schema version, occurred-at and
//!   recorded-at (unix nanoseconds), the causation id, the correlation id
//!   (UUID text, empty when absent), the metadata (standard base64, empty
//!   when there is none), the event type and the aggregate id. The type and
//!   the id are the text itself except that `%`, spaces and control
//!   characters are written `%XX`: percent-decode them to get the exact text.
//!   One header instead of ten: each header costs the client an allocation
//!   or two and a hash-map insert, and the broker a parse (README, "Beyond
//!   one machine", has the figures). An unknown format version is an error,
//!   never a guess.
//! - Messages written before the envelope header (one `Factlog-*` header per
//!   field, named by the `LEGACY_*` constants) still decode.
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
/// The envelope in one header (see the module doc for its fields).
pub const ENVELOPE: &str = "Factlog-Envelope";
/// The [`ENVELOPE`] format this relay writes: the value's first field.
pub const ENVELOPE_VERSION: u32 = 1;
/// Before [`ENVELOPE`]: the aggregate id (percent-escaped where needed).
pub const LEGACY_AGGREGATE_ID: &str = "Factlog-Aggregate-Id";
/// Before [`ENVELOPE`]: the event's version within its aggregate.
pub const LEGACY_AGGREGATE_VERSION: &str = "Factlog-Aggregate-Version";
/// Before [`ENVELOPE`]: the event type (percent-escaped where needed).
pub const LEGACY_EVENT_TYPE: &str = "Factlog-Event-Type";
/// Before [`ENVELOPE`]: the schema version of the data.
pub const LEGACY_EVENT_VERSION: &str = "Factlog-Event-Version";
/// Before [`ENVELOPE`]: when it happened (the appender's clock), unix nanoseconds.
pub const LEGACY_OCCURRED_AT: &str = "Factlog-Occurred-At";
/// Before [`ENVELOPE`]: when the store recorded it, unix nanoseconds.
pub const LEGACY_RECORDED_AT: &str = "Factlog-Recorded-At";
/// Before [`ENVELOPE`]: the causing event or command's id, when there is one.
pub const LEGACY_CAUSATION_ID: &str = "Factlog-Causation-Id";
/// Before [`ENVELOPE`]: the correlation id, when there is one.
pub const LEGACY_CORRELATION_ID: &str = "Factlog-Correlation-Id";
/// Before [`ENVELOPE`]: the metadata bytes, standard base64, when there are any.
pub const LEGACY_METADATA: &str = "Factlog-Metadata-Base64";

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

/// An aggregate id or event type as one field of [`ENVELOPE`]: the text
/// itself, with `%`, spaces and control characters as `%XX`.
fn escape_field(out: &mut String, text: &str) {
    for c in text.chars() {
        if c == '%' || c == ' ' || c.is_control() {
            let mut buf = [0; 4];
            for &b in c.encode_utf8(&mut buf).as_bytes() {
                push_byte(out, b, false);
            }
        } else {
            out.push(c);
        }
    }
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

/// The header names the relay writes, made once: `HeaderName::from_static`
/// matches the text against the standard names each time it runs.
const MSG_ID_NAME: HeaderName = HeaderName::from_static(MSG_ID);
const EXPECTED_LAST_SEQUENCE_NAME: HeaderName = HeaderName::from_static(EXPECTED_LAST_SEQUENCE);
const POSITION_NAME: HeaderName = HeaderName::from_static(POSITION);
const ENVELOPE_NAME: HeaderName = HeaderName::from_static(ENVELOPE);

/// Appends one header the relay generated (digits, hex, hyphens, base64,
/// and escaped text: never the CR or LF a header value cannot hold).
fn put(headers: &mut HeaderMap, name: HeaderName, value: String) {
    if value.contains(['\r', '\n']) {
        // IMPORTANT: unreachable by construction (escape_field escapes control
        // characters); a debug build says so, a release build drops the header
        // and `decode` reports it, instead of panicking in the relay.
        debug_assert!(false, "header {name} would carry CR or LF: {value:?}");
        return;
    }
    // `From<String>` moves the text in (parsing would copy it again); it
    // asserts what the check above already ensured.
    headers.insert(name, HeaderValue::from(value));
}

/// `n` in decimal (no formatting machinery: this runs several times per event).
fn push_decimal(out: &mut String, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut rest = n;
    loop {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            *d = b'0' + (rest % 10) as u8;
        }
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend(digits.get(i..).unwrap_or_default().iter().map(|&b| char::from(b)));
}

/// `n` in decimal, in a string of its exact size.
fn decimal(n: u64) -> String {
    let mut out = String::with_capacity(20);
    push_decimal(&mut out, n);
    out
}

/// `n` (a signed time) in decimal.
fn push_signed(out: &mut String, n: i64) {
    if n < 0 {
        out.push('-');
    }
    push_decimal(out, n.unsigned_abs());
}

/// The id as hyphenated lower-case UUID text, as `EventId`'s `Display` writes it.
fn push_uuid(out: &mut String, id: EventId) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in id.0.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
}

/// The id as UUID text, in a string of its exact size.
fn uuid_text(id: EventId) -> String {
    let mut out = String::with_capacity(36);
    push_uuid(&mut out, id);
    out
}

/// The headers of `event`, as the relay publishes them, with `expected_last`
/// as the stream sequence the broker must be at to store it.
pub fn headers(event: &EventRef<'_>, expected_last: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    put(&mut h, MSG_ID_NAME, uuid_text(event.event_id()));
    put(&mut h, EXPECTED_LAST_SEQUENCE_NAME, decimal(expected_last));
    put(&mut h, POSITION_NAME, decimal(event.position()));
    put(&mut h, ENVELOPE_NAME, envelope(event));
    h
}

/// The [`ENVELOPE`] header's value for `event`.
fn envelope(event: &EventRef<'_>) -> String {
    let metadata = event.metadata();
    let mut out = String::with_capacity(
        2 + 3 * 21
            + 21
            + 2 * 37
            + metadata.len().div_ceil(3) * 4
            + event.event_type().len()
            + event.aggregate_id().len()
            + 8,
    );
    push_decimal(&mut out, u64::from(ENVELOPE_VERSION));
    out.push(' ');
    push_decimal(&mut out, event.version());
    out.push(' ');
    push_decimal(&mut out, u64::from(event.event_version()));
    out.push(' ');
    push_signed(&mut out, event.occurred_at());
    out.push(' ');
    push_signed(&mut out, event.recorded_at());
    out.push(' ');
    if let Some(id) = event.causation_id() {
        push_uuid(&mut out, id);
    }
    out.push(' ');
    if let Some(id) = event.correlation_id() {
        push_uuid(&mut out, id);
    }
    out.push(' ');
    if !metadata.is_empty() {
        STANDARD.encode_string(metadata, &mut out);
    }
    out.push(' ');
    escape_field(&mut out, event.event_type());
    out.push(' ');
    escape_field(&mut out, event.aggregate_id());
    out
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
/// another machine calls on each message it reads from the stream. Reads
/// both the [`ENVELOPE`] header and the one-header-per-field messages
/// relays wrote before it.
pub fn decode(headers: &HeaderMap, payload: &[u8]) -> Result<RecordedEvent> {
    let Some(line) = text(headers, ENVELOPE)? else { return decode_legacy(headers, payload) };
    let bad = |reason: String| Error::Malformed { header: ENVELOPE, reason };
    // The aggregate id is the last field: an empty one may have lost its
    // separator to the header's trimming.
    let mut fields = line.splitn(10, ' ');
    let mut field = |what: &str| fields.next().ok_or_else(|| bad(format!("{line:?} has no {what} field")));
    let version = field("format version")?;
    if version != ENVELOPE_VERSION.to_string() {
        return Err(bad(format!(
            "has format version {version:?}; this build reads version {ENVELOPE_VERSION} (a newer relay wrote it?)"
        )));
    }
    let number = |what: &str, v: &str| v.parse::<i64>().map_err(|_| bad(format!("{what} {v:?} is not a number")));
    let unsigned = |what: &str, v: &str| v.parse::<u64>().map_err(|_| bad(format!("{what} {v:?} is not a number")));
    let version = unsigned("aggregate version", field("aggregate version")?)?;
    let event_version = field("event version")?;
    let event_version =
        event_version.parse::<u32>().map_err(|_| bad(format!("event version {event_version:?} is not a number")))?;
    let occurred_at = number("occurred-at", field("occurred-at")?)?;
    let recorded_at = number("recorded-at", field("recorded-at")?)?;
    let optional_id = |what: &str, v: &str| {
        (!v.is_empty()).then(|| EventId::parse(v).map_err(|e| bad(format!("{what} {v:?}: {e}")))).transpose()
    };
    let causation_id = optional_id("causation id", field("causation id")?)?;
    let correlation_id = optional_id("correlation id", field("correlation id")?)?;
    let metadata = STANDARD.decode(field("metadata")?).map_err(|e| bad(format!("metadata is not base64: {e}")))?;
    let unescaped = |what: &str, v: &str| unescape(v).ok_or_else(|| bad(format!("{what} {v:?} has a bad %-escape")));
    let event_type = unescaped("event type", field("event type")?)?;
    let aggregate_id = unescaped("aggregate id", fields.next().unwrap_or(""))?;
    Ok(RecordedEvent {
        event_id: event_id(headers)?,
        aggregate_id,
        version,
        position: parse(headers, POSITION)?,
        event_type,
        event_version,
        occurred_at,
        recorded_at,
        causation_id,
        correlation_id,
        metadata: metadata.into(),
        data: factlog::Bytes::copy_from_slice(payload),
    })
}

/// [`decode`] of a message written before [`ENVELOPE`]: one header per field.
fn decode_legacy(headers: &HeaderMap, payload: &[u8]) -> Result<RecordedEvent> {
    let metadata = match text(headers, LEGACY_METADATA)? {
        Some(b64) => STANDARD
            .decode(b64)
            .map_err(|e| Error::Malformed { header: LEGACY_METADATA, reason: format!("is not base64: {e}") })?,
        None => Vec::new(),
    };
    Ok(RecordedEvent {
        event_id: event_id(headers)?,
        aggregate_id: escaped(headers, LEGACY_AGGREGATE_ID)?,
        version: parse(headers, LEGACY_AGGREGATE_VERSION)?,
        position: parse(headers, POSITION)?,
        event_type: escaped(headers, LEGACY_EVENT_TYPE)?,
        event_version: parse(headers, LEGACY_EVENT_VERSION)?,
        occurred_at: parse(headers, LEGACY_OCCURRED_AT)?,
        recorded_at: parse(headers, LEGACY_RECORDED_AT)?,
        causation_id: id(headers, LEGACY_CAUSATION_ID)?,
        correlation_id: id(headers, LEGACY_CORRELATION_ID)?,
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
    fn generated_header_text_is_what_display_writes() {
        for n in [0, 1, 9, 10, 99, 100, 12_345, u64::MAX] {
            assert_eq!(decimal(n), n.to_string());
        }
        for n in [0, 1, -1, 1_700_000_000_000_000_000, i64::MIN, i64::MAX] {
            let mut s = String::new();
            push_signed(&mut s, n);
            assert_eq!(s, n.to_string());
        }
        let id = EventId::new_v7();
        assert_eq!(uuid_text(id), id.to_string());
    }

    #[test]
    fn envelope_fields_are_plain_text_unless_they_cannot_be() {
        let escaped = |t: &str| {
            let mut s = String::new();
            escape_field(&mut s, t);
            s
        };
        assert_eq!(escaped("Commandevalidée"), "Commandevalidée");
        assert_eq!(escaped("100%"), "100%25");
        assert_eq!(escaped(" a b "), "%20a%20b%20");
        assert_eq!(escaped("a\r\nb"), "a%0D%0Ab");
        for t in ["Commande validée", "100%", " a b ", "a\r\nb", "   ", "\u{85}x", ""] {
            assert_eq!(unescape(&escaped(t)).unwrap(), t);
            assert!(!escaped(t).contains([' ', '\r', '\n']));
        }
        assert_eq!(unescape("%4"), None);
        assert_eq!(unescape("%ZZ"), None);
    }

    fn message(line: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(MSG_ID, "0190b6f0-0000-7000-8000-000000000001");
        h.insert(POSITION, "7");
        h.insert(ENVELOPE, line);
        h
    }

    #[test]
    fn an_envelope_decodes_with_empty_optional_fields_and_an_unknown_version_is_refused() {
        let e = decode(&message("1 3 2 -5 10    Opened%20x acct%25 1"), b"{}").unwrap();
        assert_eq!((e.position, e.version, e.event_version, e.occurred_at, e.recorded_at), (7, 3, 2, -5, 10));
        assert_eq!((e.event_type.as_str(), e.aggregate_id.as_str()), ("Opened x", "acct% 1"));
        assert_eq!((e.causation_id, e.correlation_id, e.metadata.len()), (None, None, 0));
        // An empty aggregate id, its separator trimmed away.
        assert_eq!(decode(&message("1 3 2 -5 10    T"), b"").unwrap().aggregate_id, "");
        for (line, says) in [
            ("2 3 2 -5 10    T a", "format version \"2\""),
            ("1 x 2 -5 10    T a", "aggregate version"),
            ("1 3 2", "no occurred-at"),
        ] {
            let err = decode(&message(line), b"").unwrap_err().to_string();
            assert!(err.contains(ENVELOPE) && err.contains(says), "{line}: {err}");
        }
    }

    #[test]
    fn messages_with_one_header_per_field_still_decode() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            (MSG_ID, "0190b6f0-0000-7000-8000-000000000001"),
            (POSITION, "7"),
            (LEGACY_AGGREGATE_ID, "acct%25 1"),
            (LEGACY_AGGREGATE_VERSION, "3"),
            (LEGACY_EVENT_TYPE, "Opened x"),
            (LEGACY_EVENT_VERSION, "2"),
            (LEGACY_OCCURRED_AT, "-5"),
            (LEGACY_RECORDED_AT, "10"),
            (LEGACY_METADATA, "bQ=="),
        ] {
            h.insert(k, v);
        }
        let e = decode(&h, b"{}").unwrap();
        assert_eq!(
            (e.aggregate_id.as_str(), e.event_type.as_str(), e.version, e.position),
            ("acct% 1", "Opened x", 3, 7)
        );
        assert_eq!(&e.metadata[..], b"m");
    }
}
