//! `factlog append`: builds one [`NewEvent`] from the arguments, appends it
//! with the caller's expected version, and prints where it landed
//! (`version V position P`, or a JSON object with `--json`).

use bytes::Bytes;
use factlog::{fmt_id, now_nanos, AppendResult, EventId, NewEvent};

use crate::error::{CliError, CliResult};
use crate::{open, output, AppendArgs};

/// Runs `factlog append`.
pub fn run(args: AppendArgs) -> CliResult {
    let event_id = args.event_id.unwrap_or_else(|| uuid::Uuid::new_v4().into_bytes());
    let event = NewEvent {
        event_id,
        event_type: args.event_type,
        event_version: args.event_version,
        occurred_at: now_nanos(),
        causation_id: args.causation_id,
        correlation_id: args.correlation_id,
        metadata: args.metadata.map(|m| Bytes::from(m.into_bytes())).unwrap_or_default(),
        data: Bytes::from(args.data.into_bytes()),
    };
    let store = open::open_or_create(&args.dir)?;
    let result = store.append(&args.aggregate, args.expected_version, vec![event])?;
    let landed = Landed::from(&result);
    let text = if args.json { render_json(&args.aggregate, &event_id, &landed) } else { render_text(&landed) };
    output::print(&text)?;
    store.close().map_err(|e| CliError::new(format!("closing the store after the append: {e}")))
}

/// Where the appended event landed: what the command prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Landed {
    /// The event's version within its aggregate.
    version: u64,
    /// The event's global position.
    position: u64,
    /// The event was already stored there (an idempotent retry).
    deduplicated: bool,
}

impl From<&AppendResult> for Landed {
    fn from(r: &AppendResult) -> Self {
        Landed { version: r.last_version, position: r.last_position, deduplicated: r.deduplicated }
    }
}

/// The human-readable result line.
fn render_text(r: &Landed) -> String {
    let dedup = if r.deduplicated { " (already stored, nothing written)" } else { "" };
    format!("version {} position {}{dedup}\n", r.version, r.position)
}

/// The `--json` result object, on one line.
fn render_json(aggregate_id: &str, event_id: &EventId, r: &Landed) -> String {
    let v = serde_json::json!({
        "aggregate_id": aggregate_id,
        "event_id": fmt_id(event_id),
        "version": r.version,
        "position": r.position,
        "deduplicated": r.deduplicated,
    });
    format!("{v}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(deduplicated: bool) -> Landed {
        Landed { version: 3, position: 17, deduplicated }
    }

    #[test]
    fn text_result() {
        assert_eq!(render_text(&result(false)), "version 3 position 17\n");
        assert!(render_text(&result(true)).starts_with("version 3 position 17 (already stored"));
    }

    #[test]
    fn json_result() {
        let v: serde_json::Value = serde_json::from_str(&render_json("a-1", &[0x11; 16], &result(false))).unwrap();
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
    }
}
