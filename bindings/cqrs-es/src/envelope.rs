//! How one cqrs-es event becomes one factlog event, and back.
//!
//! | cqrs-es `SerializedEvent` | factlog event |
//! |---|---|
//! | `aggregate_type`, `aggregate_id` | the aggregate id (`key` module) |
//! | `sequence` (from 1) | `version` (from 0) = `sequence - 1` |
//! | `event_type` | `event_type` |
//! | `payload` (JSON) | `data`: the JSON text |
//! | `event_version` (a string) | `metadata`: `"v"` of the envelope, verbatim; factlog's `u32` `event_version` holds its leading number (`"2.1"` → 2, else 0), a hint for other readers |
//! | `metadata` (JSON) | `metadata`: `"m"` of the envelope |
//!
//! The metadata envelope is a JSON object, `{"v":"1.0","m":{...}}`. The
//! event at which a commit's snapshot was taken also carries the snapshot:
//! `{"v":..,"m":..,"s":{"n":3,"state":{...}}}` (`n` is cqrs-es's
//! `current_snapshot`). Event ids are UUID v5 of the key, the sequence and
//! every stored byte of the event, so the same commit always has the same ids.

use cqrs_es::persist::SerializedEvent;
use factlog::{EventId, EventRef, NewEvent};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;

/// The UUID namespace of this crate's event ids.
const ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6661_6374_6c6f_6763_7172_732d_6576_7473);

/// A snapshot as this crate stores it, in the log and in the snapshot store.
#[derive(Serialize)]
pub struct SnapshotOut<'a> {
    /// cqrs-es's `current_snapshot`.
    pub n: u64,
    /// The serialized aggregate.
    pub state: &'a Value,
}

/// A stored snapshot, read back.
#[derive(Deserialize)]
pub struct SnapshotIn {
    /// cqrs-es's `current_snapshot`.
    pub n: u64,
    /// The serialized aggregate.
    pub state: Value,
}

#[derive(Serialize)]
struct EnvelopeOut<'a> {
    v: &'a str,
    m: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    s: Option<SnapshotOut<'a>>,
}

/// The envelope of an event as a replay needs it: the snapshot skipped unparsed.
#[derive(Deserialize)]
struct EnvelopeIn {
    v: String,
    m: Value,
}

/// Only the snapshot part of an envelope, its state skipped unparsed.
#[derive(Deserialize)]
struct SnapshotHead {
    s: Option<SnapshotNumber>,
}

#[derive(Deserialize)]
struct SnapshotNumber {
    n: u64,
    #[allow(dead_code)]
    state: IgnoredAny,
}

/// Only the snapshot part of an envelope, state included.
#[derive(Deserialize)]
struct SnapshotBody {
    s: Option<SnapshotIn>,
}

/// Turns one cqrs-es event into the factlog event stored for it; `snapshot`
/// rides along on the event at which it was taken.
pub fn to_new_event(key: &str, event: &SerializedEvent, snapshot: Option<SnapshotOut<'_>>) -> Result<NewEvent, Error> {
    let data = serde_json::to_vec(&event.payload).map_err(|e| Error::json("payload", key, e))?;
    let envelope = EnvelopeOut { v: &event.event_version, m: &event.metadata, s: snapshot };
    let metadata = serde_json::to_vec(&envelope).map_err(|e| Error::json("metadata", key, e))?;
    let id = event_id(key, event.sequence as u64, &event.event_type, &data, &metadata);
    Ok(NewEvent::new(id, event.event_type.as_str(), data)
        .with_event_version(version_hint(&event.event_version))
        .with_metadata(metadata))
}

/// The id of an event: UUID v5 of everything stored for it and where.
fn event_id(key: &str, sequence: u64, event_type: &str, data: &[u8], metadata: &[u8]) -> EventId {
    let mut name = Vec::with_capacity(key.len() + event_type.len() + data.len() + metadata.len() + 40);
    for part in [key.as_bytes(), &sequence.to_le_bytes(), event_type.as_bytes(), data, metadata] {
        // Length-prefixed, so that no two different events hash the same name.
        name.extend_from_slice(&(part.len() as u64).to_le_bytes());
        name.extend_from_slice(part);
    }
    EventId(*uuid::Uuid::new_v5(&ID_NAMESPACE, &name).as_bytes())
}

/// factlog's `u32` event version for a cqrs-es version string: its leading
/// decimal number, 0 if it has none (the string itself is kept in the envelope).
fn version_hint(event_version: &str) -> u32 {
    let digits = event_version.bytes().take_while(u8::is_ascii_digit).count();
    event_version.get(..digits).and_then(|d| d.parse().ok()).unwrap_or(0)
}

/// The cqrs-es event stored as `event`, of the aggregate
/// (`aggregate_type`, `aggregate_id`).
pub fn to_serialized(event: &EventRef<'_>, aggregate_type: &str, aggregate_id: &str) -> Result<SerializedEvent, Error> {
    let key = event.aggregate_id();
    let payload = serde_json::from_slice(event.data()).map_err(|e| Error::json("payload", key, e))?;
    let envelope: EnvelopeIn =
        serde_json::from_slice(event.metadata()).map_err(|e| foreign(event, format!("metadata envelope: {e}")))?;
    Ok(SerializedEvent {
        aggregate_id: aggregate_id.to_string(),
        sequence: sequence_of(event)?,
        aggregate_type: aggregate_type.to_string(),
        event_type: event.event_type().to_string(),
        event_version: envelope.v,
        payload,
        metadata: envelope.m,
    })
}

/// cqrs-es's sequence of a factlog event: its version + 1.
fn sequence_of(event: &EventRef<'_>) -> Result<usize, Error> {
    event
        .version()
        .checked_add(1)
        .and_then(|s| usize::try_from(s).ok())
        .ok_or_else(|| foreign(event, "version does not fit a cqrs-es sequence".into()))
}

/// The snapshot number `event` carries, without parsing the state.
pub fn snapshot_number(event: &EventRef<'_>) -> Result<Option<u64>, Error> {
    let head: SnapshotHead =
        serde_json::from_slice(event.metadata()).map_err(|e| foreign(event, format!("metadata envelope: {e}")))?;
    Ok(head.s.map(|s| s.n))
}

/// The snapshot `event` carries, state included.
pub fn snapshot_of(event: &EventRef<'_>) -> Result<Option<SnapshotIn>, Error> {
    let body: SnapshotBody =
        serde_json::from_slice(event.metadata()).map_err(|e| foreign(event, format!("metadata envelope: {e}")))?;
    Ok(body.s)
}

/// A snapshot-store copy's snapshot number, and its state when asked for.
pub fn parse_copy(data: &[u8], key: &str, version: u64, with_state: bool) -> Result<(u64, Option<Value>), Error> {
    let bad =
        |e: serde_json::Error| Error::Foreign { key: key.to_string(), version, reason: format!("snapshot copy: {e}") };
    if with_state {
        let copy: SnapshotIn = serde_json::from_slice(data).map_err(bad)?;
        Ok((copy.n, Some(copy.state)))
    } else {
        let copy: SnapshotNumber = serde_json::from_slice(data).map_err(bad)?;
        Ok((copy.n, None))
    }
}

fn foreign(event: &EventRef<'_>, reason: String) -> Error {
    Error::Foreign { key: event.aggregate_id().to_string(), version: event.version(), reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_hints() {
        assert_eq!(version_hint("1.0"), 1);
        assert_eq!(version_hint("23"), 23);
        assert_eq!(version_hint("v2"), 0);
        assert_eq!(version_hint(""), 0);
        assert_eq!(version_hint("99999999999"), 0);
    }

    #[test]
    fn ids_follow_every_stored_byte() {
        let base = event_id("T/a", 1, "E", b"{}", b"{}");
        assert_eq!(base, event_id("T/a", 1, "E", b"{}", b"{}"));
        for other in [
            event_id("T/b", 1, "E", b"{}", b"{}"),
            event_id("T/a", 2, "E", b"{}", b"{}"),
            event_id("T/a", 1, "F", b"{}", b"{}"),
            event_id("T/a", 1, "E", b"{ }", b"{}"),
            event_id("T/a", 1, "E", b"{}", b"{ }"),
            event_id("T/a", 1, "E{", b"}", b"{}"),
        ] {
            assert_ne!(base, other);
        }
    }
}
