//! Convenience constructors in the style of postgres-es's `postgres_cqrs`
//! family, and the type aliases that name what they build.

use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, CqrsFramework, Query};

use crate::repository::FactlogEventRepository;

/// cqrs-es's persisted event store on factlog (postgres-es's
/// `PersistedEventStore<PostgresEventRepository, A>`).
pub type FactlogEventStore<A> = PersistedEventStore<FactlogEventRepository, A>;

/// A `CqrsFramework` on factlog (postgres-es's `PostgresCqrs<A>`).
pub type FactlogCqrs<A> = CqrsFramework<A, FactlogEventStore<A>>;

/// A framework whose events are the only source of truth (no snapshots).
pub fn factlog_cqrs<A: Aggregate>(
    repo: FactlogEventRepository,
    queries: Vec<Box<dyn Query<A>>>,
    services: A::Services,
) -> FactlogCqrs<A> {
    CqrsFramework::new(PersistedEventStore::new_event_store(repo), queries, services)
}

/// A framework that snapshots every `snapshot_size` events and loads the
/// newest snapshot plus the events after it. Tells the repository the size,
/// so snapshots are recorded at the sequence they were taken at.
pub fn factlog_snapshot_cqrs<A: Aggregate>(
    repo: FactlogEventRepository,
    queries: Vec<Box<dyn Query<A>>>,
    snapshot_size: usize,
    services: A::Services,
) -> FactlogCqrs<A> {
    let repo = repo.with_snapshot_size(snapshot_size);
    CqrsFramework::new(PersistedEventStore::new_snapshot_store(repo, snapshot_size), queries, services)
}

/// A framework whose serialized aggregate, saved with every commit, is the
/// source of truth (events are stored too, and replayed only when the
/// aggregate no longer deserializes).
pub fn factlog_aggregate_cqrs<A: Aggregate>(
    repo: FactlogEventRepository,
    queries: Vec<Box<dyn Query<A>>>,
    services: A::Services,
) -> FactlogCqrs<A> {
    CqrsFramework::new(PersistedEventStore::new_aggregate_store(repo), queries, services)
}
