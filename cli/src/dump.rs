//! `factlog dump`: the log's records in a form for debugging, one line per
//! event, in position order: where the frame lives (segment file and byte
//! offset), the envelope (aggregate, version, type, schema version, both
//! timestamps) and the payload's length with a short preview of its first
//! bytes. `--segment` restricts the dump to one segment file; `--json`
//! prints the same fields as JSON lines.
//!
//! A text line looks like
//!
//! ```text
//! position=3 segment=00000000000000000000.seg offset=612 aggregate="acct-1" version=2 type="FundsWithdrawn" event_version=1 occurred_at=2024-05-01T12:00:00.000000000Z recorded_at=2024-05-01T12:00:00.000012000Z data_len=14 data=[1, 2.50, "x"]
//! ```
//!
//! Timestamps are RFC 3339 in UTC with nanoseconds (formatted by `jiff`).
//! The preview is the last field, up to [`PREVIEW_BYTES`] bytes with
//! printable ASCII kept and everything else escaped (`\n`, `\t`, `\r`, `\\`,
//! `\xNN`), followed by `...` when the payload is longer.

use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

use factlog::{EventRef, Store};
use serde_json::json;

use crate::error::{CliError, CliResult};
use crate::{open, output, DumpArgs};

/// Bytes of the payload shown in the preview.
pub const PREVIEW_BYTES: usize = 60;

/// Runs `factlog dump`.
pub fn run(args: &DumpArgs, wait: Duration) -> CliResult {
    let store = open::open_existing(&args.dir, wait)?;
    let (start, end) = match &args.segment {
        None => (args.from.unwrap_or(0), u64::MAX),
        Some(segment) => {
            let (first, next) = segment_range(&list_segments(&args.dir)?, segment, &args.dir)?;
            (args.from.unwrap_or(0).max(first), next)
        }
    };
    let limit = args.limit.unwrap_or(usize::MAX);
    let reader = store.reader();
    let mut out = output::stdout();
    let mut failure = None;
    for event in reader.read_all(start).take(limit) {
        let event = match event {
            Ok(event) if event.position() < end => event,
            Ok(_) => break,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        let written =
            if args.json { write_json(&mut out, &store, &event) } else { write_text(&mut out, &store, &event) };
        if let Err(e) = written {
            return output::finish(Err(e));
        }
    }
    output::finish(out.flush())?;
    match failure {
        None => Ok(()),
        Some(e) => Err(CliError::from(e)),
    }
}

/// The segment files in `dir` (names of 20 digits and `.seg`), as first
/// positions in ascending order.
fn list_segments(dir: &Path) -> CliResult<Vec<u64>> {
    let entries = std::fs::read_dir(dir).map_err(|e| CliError::new(format!("listing {}: {e}", dir.display())))?;
    let mut firsts = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| CliError::new(format!("listing {}: {e}", dir.display())))?;
        if let Some(first) = entry.file_name().to_str().and_then(parse_segment_name) {
            firsts.push(first);
        }
    }
    firsts.sort_unstable();
    Ok(firsts)
}

/// The first position named by a segment file name (`00000000000000000000.seg`).
fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The positions `[first, next)` of the segment `wanted` names — a file name
/// (or a path to it), or the segment's first position — among the segments
/// whose first positions are `firsts` (ascending). The last segment runs to
/// the end of the log (`next` is `u64::MAX`).
fn segment_range(firsts: &[u64], wanted: &str, dir: &Path) -> CliResult<(u64, u64)> {
    let name = Path::new(wanted).file_name().and_then(|n| n.to_str()).unwrap_or(wanted);
    let first = match (parse_segment_name(name), name.parse::<u64>()) {
        (Some(first), _) | (None, Ok(first)) => first,
        (None, Err(_)) => {
            return Err(CliError::new(format!(
                "--segment {wanted:?}: expected a segment file name like 00000000000000000000.seg or a first position"
            )))
        }
    };
    let i = firsts.binary_search(&first).map_err(|_| {
        let known: Vec<String> = firsts.iter().map(|f| format!("{f:020}.seg")).collect();
        let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
        CliError::new(format!("no segment starts at position {first} in {} (segments: {known})", dir.display()))
    })?;
    Ok((first, firsts.get(i + 1).copied().unwrap_or(u64::MAX)))
}

/// Where `event`'s frame lives: segment file name and byte offset.
fn location(store: &Store, event: &EventRef<'_>) -> (String, Option<u64>) {
    match store.locate(event.position()) {
        Some((path, offset)) => {
            let name =
                path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
            (name, Some(offset))
        }
        None => ("?".to_string(), None),
    }
}

/// Writes one text line.
fn write_text<W: Write>(w: &mut W, store: &Store, ev: &EventRef<'_>) -> io::Result<()> {
    let (segment, offset) = location(store, ev);
    let offset = offset.map_or_else(|| "?".to_string(), |o| o.to_string());
    writeln!(
        w,
        "position={} segment={segment} offset={offset} aggregate={:?} version={} type={:?} event_version={} \
         occurred_at={} recorded_at={} data_len={} data={}",
        ev.position(),
        ev.aggregate_id(),
        ev.version(),
        ev.event_type(),
        ev.event_version(),
        fmt_timestamp(ev.occurred_at()),
        fmt_timestamp(ev.recorded_at()),
        ev.data().len(),
        preview(ev.data()),
    )
}

/// Writes one JSON line (timestamps as unix nanoseconds, like `read`).
fn write_json<W: Write>(w: &mut W, store: &Store, ev: &EventRef<'_>) -> io::Result<()> {
    let (segment, offset) = location(store, ev);
    let v = json!({
        "position": ev.position(),
        "segment": segment,
        "offset": offset,
        "aggregate_id": ev.aggregate_id(),
        "version": ev.version(),
        "event_type": ev.event_type(),
        "event_version": ev.event_version(),
        "occurred_at": ev.occurred_at(),
        "recorded_at": ev.recorded_at(),
        "data_len": ev.data().len(),
        "data_preview": preview(ev.data()),
    });
    writeln!(w, "{v}")
}

/// The first [`PREVIEW_BYTES`] bytes of `data`, escaped onto one line.
fn preview(data: &[u8]) -> String {
    let shown = &data[..data.len().min(PREVIEW_BYTES)];
    let mut s = String::with_capacity(shown.len() + 3);
    for &b in shown {
        match b {
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            0x20..=0x7e => s.push(char::from(b)),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    if data.len() > shown.len() {
        s.push_str("...");
    }
    s
}

/// Unix nanoseconds as an RFC 3339 UTC timestamp with nanoseconds; the
/// plain number if it is outside the calendar's range.
fn fmt_timestamp(nanos: i64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(nanos)).map_or_else(|_| nanos.to_string(), |ts| format!("{ts:.9}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_escape_and_truncate() {
        assert_eq!(preview(b"{\"a\": 1}"), "{\"a\": 1}");
        assert_eq!(preview(b"a\nb\t\\\x00\xff"), "a\\nb\\t\\\\\\x00\\xff");
        assert_eq!(preview(b""), "");
        let long = vec![b'x'; 100];
        assert_eq!(preview(&long), format!("{}...", "x".repeat(PREVIEW_BYTES)));
        assert_eq!(preview(&long[..PREVIEW_BYTES]), "x".repeat(PREVIEW_BYTES));
    }

    #[test]
    fn timestamps() {
        assert_eq!(fmt_timestamp(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(fmt_timestamp(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(fmt_timestamp(1_700_000_000_123_456_789), "2023-11-14T22:13:20.123456789Z");
        assert_eq!(fmt_timestamp(951_782_400_000_000_000), "2000-02-29T00:00:00.000000000Z");
        assert_eq!(fmt_timestamp(i64::MIN), "1677-09-21T00:12:43.145224192Z");
        assert_eq!(fmt_timestamp(i64::MAX), "2262-04-11T23:47:16.854775807Z");
    }

    #[test]
    fn segment_names_and_ranges() {
        assert_eq!(parse_segment_name("00000000000000000123.seg"), Some(123));
        assert_eq!(parse_segment_name("00000000000000000123.idx"), None);
        assert_eq!(parse_segment_name("123.seg"), None);
        let dir = Path::new("/s");
        let firsts = [0, 40, 95];
        assert_eq!(segment_range(&firsts, "00000000000000000000.seg", dir).unwrap(), (0, 40));
        assert_eq!(segment_range(&firsts, "/s/00000000000000000040.seg", dir).unwrap(), (40, 95));
        assert_eq!(segment_range(&firsts, "95", dir).unwrap(), (95, u64::MAX));
        let err = segment_range(&firsts, "41", dir).unwrap_err().to_string();
        assert!(err.contains("no segment starts at position 41"), "{err}");
        assert!(err.contains("00000000000000000040.seg"), "{err}");
        assert!(segment_range(&firsts, "first", dir).is_err());
    }
}
