//! The idempotency window: event id → where it was stored, for the most
//! recent `Options::dedupe_window_events` events. Owned by the writer thread
//! alone. Rebuilt from the tail of the log on open, so it survives restarts.
//! The writer decides what a hit means (a retry, or a duplicate id), reading
//! the log for ids of a retried batch that already left the window. This
//! module never reads or writes files.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};

use crate::event::EventId;

/// Where an event id was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Global position.
    pub position: u64,
    /// Aggregate version.
    pub version: u64,
    /// Hash of the aggregate id.
    pub aggregate_hash: u64,
}

/// A bounded map of recently stored event ids.
pub struct Dedupe {
    map: HashMap<EventId, Seen, foldhash::fast::RandomState>,
    order: VecDeque<EventId>,
    capacity: usize,
}

/// Hash of an aggregate id, fixed for the life of the process (the window
/// is rebuilt from the log on open, so it never needs to match across runs).
pub fn aggregate_hash(aggregate_id: &str) -> u64 {
    static SEED: std::sync::OnceLock<foldhash::quality::FixedState> = std::sync::OnceLock::new();
    let state = SEED.get_or_init(|| foldhash::quality::FixedState::with_seed(0x5eed_f00d));
    let mut h = std::hash::BuildHasher::build_hasher(state);
    aggregate_id.hash(&mut h);
    h.finish()
}

impl Dedupe {
    /// A window remembering at most `capacity` ids.
    pub fn new(capacity: u64) -> Dedupe {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        Dedupe {
            map: HashMap::with_capacity_and_hasher(capacity.min(1 << 16), foldhash::fast::RandomState::default()),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// Where `id` was stored, if it is inside the window.
    pub fn get(&self, id: &EventId) -> Option<Seen> {
        self.map.get(id).copied()
    }

    /// Remembers `id`, evicting the oldest ids beyond the capacity.
    pub fn insert(&mut self, id: EventId, seen: Seen) {
        if self.capacity == 0 {
            return;
        }
        if self.map.insert(id, seen).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }
}
