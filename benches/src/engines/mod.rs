//! The engine abstraction every workload drives: [`BenchEngine`] (one open
//! store) hands out per-thread [`Session`]s that append, replay and scan.
//! One submodule per engine: factlog itself and the two peers.

pub mod factlog;
pub mod fjall;
pub mod sqlite;

use crate::event::Ev;
use anyhow::Result;
use std::fmt;
use std::path::Path;

/// The engines the harness knows (serialized by [`EngineKind::name`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// factlog, the engine under test.
    Factlog,
    /// SQLite (bundled) in WAL mode.
    Sqlite,
    /// fjall 2, an LSM-tree key-value store.
    Fjall,
    /// factlog with `Options::recycle_segments(false)` also under
    /// `--retention-bytes` (where `factlog` recycles): every new segment
    /// zero-filled (the before of issue 16 §5).
    #[value(name = "factlog-zero-fill")]
    #[serde(rename = "factlog-zero-fill")]
    FactlogZeroFill,
}

impl EngineKind {
    /// Lower-case name used in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Factlog => "factlog",
            EngineKind::Sqlite => "sqlite",
            EngineKind::Fjall => "fjall",
            EngineKind::FactlogZeroFill => "factlog-zero-fill",
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How durable each append must be when it is acknowledged (serialized by
/// [`Durability::name`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Acknowledged only once on stable storage (fdatasync/fsync).
    Sync,
    /// Acknowledged once in the engine/OS buffers; flushed in the background.
    Buffered,
}

impl Durability {
    /// Lower-case name used in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Durability::Sync => "sync",
            Durability::Buffered => "buffered",
        }
    }
}

/// What an engine can tell about itself beyond what the harness measures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Events the engine says it holds.
    pub events: Option<u64>,
    /// Bytes of storage actually holding data (excluding preallocated tails).
    pub used_bytes: Option<u64>,
    /// Bytes of in-memory index.
    pub index_bytes: Option<u64>,
    /// Bytes of the engine's data files as allocated by the engine
    /// (including preallocated, not yet used space).
    pub file_bytes: Option<u64>,
    /// Number of fsync/fdatasync calls issued so far, if counted.
    pub fsyncs: Option<u64>,
    /// Number of group commits (writes shared by several appends) so far, if counted.
    pub group_commits: Option<u64>,
}

/// One open store of some engine. Shared by all writer threads.
pub trait BenchEngine: Send + Sync {
    /// Which engine this is.
    fn kind(&self) -> EngineKind;
    /// A handle for one thread (its own connection where the engine needs one).
    fn session(&self) -> Result<Box<dyn Session>>;
    /// Makes everything appended so far durable.
    fn sync(&self) -> Result<()>;
    /// Engine-reported statistics.
    fn stats(&self) -> EngineStats;
    /// Flushes and closes the store.
    fn close(self: Box<Self>) -> Result<()>;
    /// The factlog store behind this engine, for the factlog-only workloads
    /// (subscriptions, consumers); `None` for the peers.
    fn as_factlog(&self) -> Option<&factlog::FactlogEngine> {
        None
    }
}

/// One aggregate's part of [`Session::append_many`]: its id, the version it
/// must be at (`None`: it must not exist yet) and its events.
pub type ManyPart<'a> = (&'a str, Option<u64>, &'a [Ev]);

/// A per-thread handle on an open store.
pub trait Session: Send {
    /// Appends `events` to aggregate `agg` atomically, failing unless the
    /// aggregate's current last version is `expected` (`None`: it must not
    /// exist yet). Returns the aggregate's new last version.
    fn append(&mut self, agg: &str, expected: Option<u64>, events: &[Ev]) -> Result<u64>;
    /// Appends one batch to each of several distinct aggregates as one
    /// atomic unit (all or none), each with its own expected version as in
    /// [`Session::append`]: factlog's `append_many`, one transaction in
    /// SQLite, one write batch in fjall. Returns each aggregate's new last
    /// version, in order.
    fn append_many(&mut self, batches: &[ManyPart<'_>]) -> Result<Vec<u64>>;
    /// Reads aggregate `agg` in version order, handing each payload to `visit`;
    /// returns the number of events read.
    fn replay(&mut self, agg: &str, visit: &mut dyn FnMut(&[u8])) -> Result<u64>;
    /// Reads the whole store in global order, handing each payload to `visit`;
    /// returns the number of events read.
    fn scan(&mut self, visit: &mut dyn FnMut(&[u8])) -> Result<u64>;
    /// Reads the events visible now at global positions `from` and later (0
    /// is the first event ever appended), in order, handing each position
    /// and payload to `visit`; returns the number of events read. A poller
    /// calls it with one past the last position it saw.
    fn read_from(&mut self, from: u64, visit: &mut dyn FnMut(u64, &[u8])) -> Result<u64>;
}

/// Opens (creating) a store of engine `kind` in the empty directory `dir`.
pub fn open(kind: EngineKind, dir: &Path, durability: Durability) -> Result<Box<dyn BenchEngine>> {
    std::fs::create_dir_all(dir)?;
    match kind {
        EngineKind::Factlog => Ok(Box::new(factlog::FactlogEngine::open(dir, durability)?)),
        EngineKind::FactlogZeroFill => Ok(Box::new(factlog::FactlogEngine::open_zero_fill(dir, durability)?)),
        EngineKind::Sqlite => Ok(Box::new(sqlite::SqliteEngine::open(dir, durability)?)),
        EngineKind::Fjall => Ok(Box::new(fjall::FjallEngine::open(dir, durability)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventGen;

    /// W2m's promise for every engine: `append_many` writes all its parts
    /// or, when one expectation fails, none of them.
    #[test]
    fn append_many_is_all_or_nothing_on_every_engine() {
        for kind in [EngineKind::Factlog, EngineKind::Sqlite, EngineKind::Fjall] {
            let dir = tempfile::tempdir().unwrap();
            let engine = open(kind, dir.path(), Durability::Buffered).unwrap();
            let mut s = engine.session().unwrap();
            let mut gen = EventGen::new(20, 1);
            let (a, b, c, d) = (gen.events(2), gen.events(1), gen.events(1), gen.events(1));
            let versions = s.append_many(&[("agg-a", None, &a), ("agg-b", None, &b)]).unwrap();
            assert_eq!(versions, [1, 0], "{kind}");
            // agg-b is at 0, not 5: nothing of this call may land, not even agg-c's part.
            let err = s.append_many(&[("agg-c", None, &c), ("agg-b", Some(5), &d)]);
            assert!(err.is_err(), "{kind}: a wrong expectation was accepted");
            assert_eq!(s.scan(&mut |_| {}).unwrap(), 3, "{kind}: a failed append_many wrote something");
            assert_eq!(s.replay("agg-c", &mut |_| {}).unwrap(), 0, "{kind}");
            let versions = s.append_many(&[("agg-c", None, &c), ("agg-b", Some(0), &d)]).unwrap();
            assert_eq!(versions, [0, 1], "{kind}");
            let mut positions = Vec::new();
            s.read_from(0, &mut |p, _| positions.push(p)).unwrap();
            assert_eq!(positions, [0, 1, 2, 3, 4], "{kind}: one dense global order");
            drop(s);
            engine.close().unwrap();
        }
    }

    #[test]
    fn json_names_are_the_table_names() {
        for kind in [EngineKind::Factlog, EngineKind::Sqlite, EngineKind::Fjall] {
            assert_eq!(serde_json::to_value(kind).expect("serializes"), kind.name());
        }
        for d in [Durability::Sync, Durability::Buffered] {
            assert_eq!(serde_json::to_value(d).expect("serializes"), d.name());
        }
    }
}
