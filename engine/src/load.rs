//! What a caller asks of a load ([`crate::Store::load_with`]): the point to
//! load as of, and which snapshot schema version it can fold, with what to
//! do about a snapshot in another one ([`StaleSnapshot`]). This module only
//! describes and decides; it never reads a file (the store fetches the
//! snapshot) and never removes a snapshot it judges stale.

use crate::error::{Error, Result};
use crate::event::{AsOf, SchemaVersion};
use crate::snapshot::Snapshot;

/// What a load does with a snapshot whose schema version is not the one
/// asked for (see [`LoadOptions::snapshot_schema`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StaleSnapshot {
    /// Fail the load with [`Error::StaleSnapshot`]. The default.
    #[default]
    Refuse,
    /// Leave the snapshot out and replay the aggregate from its first
    /// event (the log is the truth; save a new snapshot afterwards).
    Skip,
}

/// Options of [`crate::Store::load_with`]. `LoadOptions::default()` loads
/// the newest state with any snapshot, as [`crate::Store::load`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LoadOptions {
    /// Load the aggregate as it stood at this point (as
    /// [`crate::Store::load_as_of`]); `None`: as it stands now.
    pub as_of: Option<AsOf>,
    /// The snapshot schema version the caller can fold; a snapshot in any
    /// other is stale. `None`: every snapshot is accepted.
    pub snapshot_schema: Option<SchemaVersion>,
    /// What to do with a stale snapshot.
    pub on_stale_snapshot: StaleSnapshot,
}

impl LoadOptions {
    /// Sets [`LoadOptions::as_of`].
    pub fn as_of(mut self, as_of: AsOf) -> LoadOptions {
        self.as_of = Some(as_of);
        self
    }

    /// Accepts only snapshots of schema version `current`, and treats any
    /// other as `on_stale` says.
    pub fn snapshot_schema(mut self, current: SchemaVersion, on_stale: StaleSnapshot) -> LoadOptions {
        self.snapshot_schema = Some(current);
        self.on_stale_snapshot = on_stale;
        self
    }

    /// The snapshot to fold, of the one found: it, if its schema version is
    /// accepted; none, if it is stale and to be skipped; an
    /// [`Error::StaleSnapshot`] if it is stale and to be refused.
    pub(crate) fn accept(&self, aggregate_id: &str, snapshot: Option<Snapshot>) -> Result<Option<Snapshot>> {
        let (Some(expected), Some(s)) = (self.snapshot_schema, snapshot.as_ref()) else {
            return Ok(snapshot);
        };
        let found = SchemaVersion(s.schema_version);
        if found == expected {
            return Ok(snapshot);
        }
        match self.on_stale_snapshot {
            StaleSnapshot::Skip => Ok(None),
            StaleSnapshot::Refuse => Err(Error::StaleSnapshot {
                aggregate_id: aggregate_id.to_string(),
                version: s.version,
                found,
                expected,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(schema_version: u32) -> Option<Snapshot> {
        Some(Snapshot { aggregate_id: "a".into(), version: 4, schema_version, taken_at: 0, data: vec![1] })
    }

    #[test]
    fn only_another_schema_version_is_stale() {
        let any = LoadOptions::default();
        assert_eq!(any.accept("a", snapshot(1)).unwrap(), snapshot(1));
        let skip = LoadOptions::default().snapshot_schema(SchemaVersion(2), StaleSnapshot::Skip);
        assert_eq!(skip.accept("a", snapshot(2)).unwrap(), snapshot(2));
        assert_eq!(skip.accept("a", snapshot(1)).unwrap(), None);
        assert_eq!(skip.accept("a", snapshot(3)).unwrap(), None, "a newer schema is not foldable either");
        assert_eq!(skip.accept("a", None).unwrap(), None);
        let refuse = LoadOptions::default().snapshot_schema(SchemaVersion(2), StaleSnapshot::Refuse);
        match refuse.accept("a", snapshot(1)) {
            Err(Error::StaleSnapshot { version: 4, found: SchemaVersion(1), expected: SchemaVersion(2), .. }) => {}
            other => panic!("{other:?}"),
        }
    }
}
