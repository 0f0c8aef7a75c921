//! factlog adapter: a [`factlog::Store`] opened with `Durability::Sync` for
//! durable runs and `Durability::Buffered { flush_interval_ms: 100 }` for
//! buffered ones, otherwise default options. Reads go through the zero-copy
//! [`factlog::Reader`].

use super::{BenchEngine, Durability, EngineKind, EngineStats, ManyPart, Session};
use crate::event::Ev;
use anyhow::{Context, Result};
use factlog::{Direction, ExpectedVersion, NewEvent, Options, Reader, Store};
use std::path::Path;

/// Background flush interval used for buffered runs.
pub const BUFFERED_FLUSH_MS: u64 = 100;

/// `--retention-bytes`: `Retention::max_bytes` of every factlog store the
/// run opens (set once, before any; none: no retention).
static RETENTION_BYTES: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// Sets the retention of every factlog store opened from now on (`--retention-bytes`).
pub fn set_retention_bytes(max_bytes: u64) {
    let _ = RETENTION_BYTES.set(max_bytes);
}

/// An open factlog store.
pub struct FactlogEngine {
    store: Store,
    kind: EngineKind,
}

impl FactlogEngine {
    /// Opens (creating) a store in `dir`.
    pub fn open(dir: &Path, durability: Durability) -> Result<Self> {
        FactlogEngine::open_as(dir, durability, EngineKind::Factlog)
    }

    /// [`FactlogEngine::open`] with segment recycling off
    /// ([`EngineKind::FactlogZeroFill`]).
    pub fn open_zero_fill(dir: &Path, durability: Durability) -> Result<Self> {
        FactlogEngine::open_as(dir, durability, EngineKind::FactlogZeroFill)
    }

    fn open_as(dir: &Path, durability: Durability, kind: EngineKind) -> Result<Self> {
        let mut options = Options::default()
            .durability(match durability {
                Durability::Sync => factlog::Durability::Sync,
                Durability::Buffered => factlog::Durability::Buffered { flush_interval_ms: BUFFERED_FLUSH_MS },
            })
            .recycle_segments(false);
        if let Some(max_bytes) = RETENTION_BYTES.get() {
            // With retention, `factlog` recycles the segments it removes (an
            // opt-in: Options::recycle_segments) and `factlog-zero-fill` does not.
            options = options
                .retention(factlog::Retention { max_bytes: Some(*max_bytes), ..Default::default() })
                .recycle_segments(kind == EngineKind::Factlog);
        }
        let store = Store::open(dir, options).context("factlog: open")?;
        Ok(FactlogEngine { store, kind })
    }

    /// The underlying store (for factlog-only measurements).
    pub fn store(&self) -> &Store {
        &self.store
    }
}

/// Converts a benchmark event into a factlog event (cheap: the payload is a
/// reference-counted `Bytes`).
pub fn to_new_event(ev: &Ev) -> NewEvent {
    let mut e = NewEvent::new(ev.id, ev.event_type, ev.payload.clone());
    e.occurred_at = ev.occurred_at;
    e
}

/// The harness's expectation (`None`: no such aggregate yet) as factlog's.
fn expected_version(expected: Option<u64>) -> ExpectedVersion {
    match expected {
        None => ExpectedVersion::NoStream,
        Some(v) => ExpectedVersion::Exact(v),
    }
}

impl BenchEngine for FactlogEngine {
    fn kind(&self) -> EngineKind {
        self.kind
    }

    fn session(&self) -> Result<Box<dyn Session>> {
        Ok(Box::new(FactlogSession { store: self.store.clone(), reader: None }))
    }

    fn sync(&self) -> Result<()> {
        self.store.sync().context("factlog: sync")
    }

    fn stats(&self) -> EngineStats {
        let s = self.store.stats();
        EngineStats {
            events: Some(s.events),
            used_bytes: Some(s.log_bytes + s.index_file_bytes),
            index_bytes: Some(s.index_bytes),
            file_bytes: Some(s.segment_file_bytes + s.index_file_bytes),
            fsyncs: Some(s.fsyncs),
            group_commits: Some(s.group_commits),
        }
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.store.close().context("factlog: close")
    }

    fn as_factlog(&self) -> Option<&FactlogEngine> {
        Some(self)
    }
}

/// One thread's handle: a store clone plus a reader snapshot reused across
/// reads until the next append.
struct FactlogSession {
    store: Store,
    reader: Option<Reader>,
}

impl FactlogSession {
    fn reader(&mut self) -> &Reader {
        self.reader.get_or_insert_with(|| self.store.reader())
    }
}

impl Session for FactlogSession {
    fn append(&mut self, agg: &str, expected: Option<u64>, events: &[Ev]) -> Result<u64> {
        self.reader = None;
        let batch = events.iter().map(to_new_event).collect();
        let res = self.store.append(agg, expected_version(expected), batch).context("factlog: append")?;
        Ok(res.last_version)
    }

    fn append_many(&mut self, batches: &[ManyPart<'_>]) -> Result<Vec<u64>> {
        self.reader = None;
        let parts = batches.iter().map(|&(agg, expected, events)| {
            (agg, expected_version(expected), events.iter().map(to_new_event).collect())
        });
        let res = self.store.append_many(parts).context("factlog: append_many")?;
        Ok(res.iter().map(|r| r.last_version).collect())
    }

    fn replay(&mut self, agg: &str, visit: &mut dyn FnMut(&[u8])) -> Result<u64> {
        let mut n = 0;
        for ev in self.reader().read_aggregate(agg, 0, Direction::Forward) {
            let ev = ev.context("factlog: read_aggregate")?;
            visit(ev.data());
            n += 1;
        }
        Ok(n)
    }

    fn scan(&mut self, visit: &mut dyn FnMut(&[u8])) -> Result<u64> {
        let mut n = 0;
        for ev in self.reader().read_all(0) {
            let ev = ev.context("factlog: read_all")?;
            visit(ev.data());
            n += 1;
        }
        Ok(n)
    }

    fn read_from(&mut self, from: u64, visit: &mut dyn FnMut(u64, &[u8])) -> Result<u64> {
        // A fresh reader: a poller must see what was appended since its last call.
        self.reader = None;
        let mut n = 0;
        for ev in self.reader().read_all(from) {
            let ev = ev.context("factlog: read_all")?;
            visit(ev.position(), ev.data());
            n += 1;
        }
        Ok(n)
    }
}
