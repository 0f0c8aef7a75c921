//! Shared helpers for factlog's black-box integration tests: deterministic
//! event builders and a small in-memory model of what a store must contain.

use bytes::Bytes;
use factlog::{NewEvent, Options};

/// A deterministic 16-byte id from two numbers.
pub fn id(a: u64, b: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&a.to_le_bytes());
    out[8..].copy_from_slice(&b.to_le_bytes());
    out
}

/// An event whose every field is derived from `(stream, n)`.
pub fn event(stream: u64, n: u64) -> NewEvent {
    NewEvent {
        event_id: id(stream, n),
        event_type: format!("Thing{}Happened", n % 3),
        event_version: (n % 4) as u32 + 1,
        occurred_at: 1_700_000_000_000_000_000 + n as i64,
        causation_id: n.is_multiple_of(2).then(|| id(stream + 1000, n)),
        correlation_id: n.is_multiple_of(3).then(|| id(stream + 2000, n)),
        metadata: Bytes::from(format!("{{\"n\":{n}}}")),
        data: Bytes::from(format!("payload-{stream}-{n}-").repeat((n % 5 + 1) as usize)),
    }
}

/// Small segments so that tests roll often.
pub fn small_options() -> Options {
    Options { segment_bytes: 64 * 1024, max_event_bytes: 16 * 1024, prepare_next_segment: true, ..Options::default() }
}
