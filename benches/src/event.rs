//! The benchmark event: one shape shared by every engine (16-byte UUID v4 id,
//! ~10-byte aggregate id, 12-byte type, i64 timestamp, JSON-ish payload of a
//! fixed size), and the generator that makes them cheaply outside timed code.

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::{SystemTime, UNIX_EPOCH};

/// The event type written by every workload (12 bytes).
pub const EVENT_TYPE: &str = "OrderPlaced1";

/// The type of one event in [`RARE_TYPE_EVERY`] of the W4 load (as long as
/// [`EVENT_TYPE`], so logical sizes stay the same): what W9's filter selects.
pub const RARE_EVENT_TYPE: &str = "OrderRefund1";

/// One W4 event in this many has [`RARE_EVENT_TYPE`] (1%).
pub const RARE_TYPE_EVERY: u64 = 100;

/// Number of distinct payloads kept in the generator's pool.
const PAYLOAD_POOL: usize = 256;

/// One event as handed to an engine adapter.
#[derive(Clone, Debug)]
pub struct Ev {
    /// Random UUID v4 bytes.
    pub id: [u8; 16],
    /// Event type name.
    pub event_type: &'static str,
    /// Unix nanoseconds when the event "happened".
    pub occurred_at: i64,
    /// Opaque payload (JSON-ish text), exactly `--payload-bytes` long.
    pub payload: Bytes,
}

impl Ev {
    /// Bytes of user-visible content in this event for an aggregate id of
    /// `agg_len` bytes: id + aggregate id + type + timestamp + payload. This is
    /// the "logical" size used for every engine's MB/s figures.
    pub fn logical_bytes(&self, agg_len: usize) -> u64 {
        (16 + agg_len + self.event_type.len() + 8 + self.payload.len()) as u64
    }
}

/// The aggregate id for aggregate number `n`: `agg-000042` (10 bytes below a million).
pub fn aggregate_id(n: u64) -> String {
    format!("agg-{n:06}")
}

/// Cheap, deterministic event factory.
pub struct EventGen {
    rng: StdRng,
    payloads: Vec<Bytes>,
    next: usize,
}

impl EventGen {
    /// A generator whose payloads are `payload_bytes` long, seeded with `seed`.
    pub fn new(payload_bytes: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let payloads =
            (0..PAYLOAD_POOL).map(|i| Bytes::from(json_payload(payload_bytes, i as u64, &mut rng))).collect();
        EventGen { rng, payloads, next: 0 }
    }

    /// A fresh event with a random v4 id and the current time.
    pub fn event(&mut self) -> Ev {
        let id = *uuid::Builder::from_random_bytes(self.rng.gen()).into_uuid().as_bytes();
        let payload = self.payloads[self.next % self.payloads.len()].clone();
        self.next = self.next.wrapping_add(1);
        Ev { id, event_type: EVENT_TYPE, occurred_at: now_nanos(), payload }
    }

    /// `n` fresh events.
    pub fn events(&mut self, n: usize) -> Vec<Ev> {
        (0..n).map(|_| self.event()).collect()
    }

    /// Access to the generator's random source (for picking aggregates).
    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }
}

/// Current wall-clock time as unix nanoseconds (0 if the clock is before 1970).
pub fn now_nanos() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

/// A JSON-looking document of exactly `len` bytes (truncated when `len` is
/// smaller than its fixed fields), so payloads compress like real data rather
/// than like zeros.
pub fn json_payload(len: usize, seq: u64, rng: &mut impl Rng) -> Vec<u8> {
    const WORDS: [&str; 12] = [
        "express", "gift", "wrap", "fragile", "priority", "weekend", "invoice", "pickup", "store", "loyalty", "coupon",
        "return",
    ];
    let mut s = format!(
        "{{\"seq\":{seq},\"customer\":\"cust-{:05}\",\"amount_cents\":{},\"currency\":\"EUR\",\"note\":\"",
        rng.gen_range(0..100_000u32),
        rng.gen_range(100..1_000_000u32)
    );
    while s.len() + 2 < len {
        s.push_str(WORDS[rng.gen_range(0..WORDS.len())]);
        s.push(' ');
    }
    let mut bytes = s.into_bytes();
    bytes.truncate(len.saturating_sub(2));
    bytes.extend_from_slice(b"\"}");
    bytes.truncate(len);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_exact_length() {
        let mut rng = StdRng::seed_from_u64(1);
        for len in [0, 1, 2, 10, 50, 200, 4096] {
            assert_eq!(json_payload(len, 7, &mut rng).len(), len);
        }
    }

    #[test]
    fn events_are_distinct_and_sized() {
        let mut g = EventGen::new(200, 3);
        let a = g.event();
        let b = g.event();
        assert_ne!(a.id, b.id);
        assert_eq!(a.payload.len(), 200);
        assert_eq!(a.event_type.len(), 12);
        assert_eq!(aggregate_id(42).len(), 10);
        assert_eq!(a.logical_bytes(10), 16 + 10 + 12 + 8 + 200);
        assert_eq!(RARE_EVENT_TYPE.len(), EVENT_TYPE.len());
    }
}
