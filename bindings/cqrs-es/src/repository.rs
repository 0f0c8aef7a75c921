//! [`FactlogEventRepository`]: cqrs-es's `PersistedEventRepository` on a
//! factlog [`Store`]. The crate docs explain the mapping and why a commit is
//! atomic; this module is the algorithm.

use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayFeed, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use factlog::{AppendResult, Direction, EventId, ExpectedVersion, Filter, NewEvent, Options, SchemaVersion, Store};
use serde_json::Value;

use crate::envelope::{self, SnapshotOut};
use crate::error::Error;
use crate::key;
use crate::workers::{block_on, Workers};

/// Events a replay stream buffers ahead of its reader, unless
/// [`FactlogEventRepository::with_streaming_channel_size`] says otherwise
/// (postgres-es's default).
pub const DEFAULT_STREAM_CHANNEL_SIZE: usize = 200;

/// Commits whose outcome a caller may not have seen that are remembered, so
/// that a retry of one is told apart from another caller's identical commit.
pub const UNCERTAIN_COMMITS_MAX: usize = 4096;

/// Events a read reserves room for before it starts (more are read all the same).
const PREALLOCATE_EVENTS_MAX: usize = 1 << 16;

/// The schema version this crate gives its snapshot copies in the snapshot
/// store (their bytes are `{"n":<current_snapshot>,"state":<aggregate>}`).
pub const SNAPSHOT_COPY_SCHEMA: SchemaVersion = SchemaVersion(1);

/// A cqrs-es event repository on a factlog store: events in the log, one
/// factlog aggregate per cqrs-es aggregate, snapshots in the log (atomically
/// with their events) and copied to factlog's snapshot store for fast loads.
///
/// Cheap to clone; clones share the store, the worker threads and the record
/// of commits whose outcome is uncertain (retry a failed `persist` through
/// this repository or a clone of it).
///
/// ```no_run
/// # async fn demo() -> Result<(), factlog_cqrs::Error> {
/// use cqrs_es::persist::PersistedEventStore;
/// # use cqrs_es::doc::MyAggregate;
/// let repo = factlog_cqrs::FactlogEventRepository::open("/var/lib/app/events")?; // was: PostgresEventRepository::new(pool)
/// let store = PersistedEventStore::<_, MyAggregate>::new_event_store(repo);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct FactlogEventRepository {
    shared: Arc<Shared>,
    snapshot_size: Option<usize>,
    stream_channel_size: usize,
}

struct Shared {
    store: Store,
    workers: Workers,
    /// Shared with the worker jobs on their own, not through `Shared`: a job
    /// must not keep the store open after its caller has its result.
    uncertain: Arc<Mutex<Uncertain>>,
    snapshot_copy_errors: AtomicU64,
}

impl std::fmt::Debug for FactlogEventRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FactlogEventRepository")
            .field("store", &self.shared.store)
            .field("snapshot_size", &self.snapshot_size)
            .field("stream_channel_size", &self.stream_channel_size)
            .finish()
    }
}

impl FactlogEventRepository {
    /// A repository on an open store (share the store with the rest of the
    /// application by cloning it: one process opens a store once).
    pub fn new(store: Store) -> FactlogEventRepository {
        let shared = Shared {
            store,
            workers: Workers::new(),
            uncertain: Arc::new(Mutex::new(Uncertain::default())),
            snapshot_copy_errors: AtomicU64::new(0),
        };
        FactlogEventRepository {
            shared: Arc::new(shared),
            snapshot_size: None,
            stream_channel_size: DEFAULT_STREAM_CHANNEL_SIZE,
        }
    }

    /// Opens (creating it if needed) the store in `dir` with the default
    /// options (`Durability::Sync`: a command returns once its events are on
    /// disk) and makes a repository on it.
    pub fn open(dir: impl AsRef<Path>) -> Result<FactlogEventRepository, Error> {
        Ok(FactlogEventRepository::new(Store::open(dir, Options::default())?))
    }

    /// Replay streams buffer up to `size` events ahead of their reader (at least 1).
    pub fn with_streaming_channel_size(mut self, size: usize) -> FactlogEventRepository {
        self.stream_channel_size = size.max(1);
        self
    }

    /// Tells the repository that it serves a cqrs-es snapshot store that
    /// snapshots every `size` events (`PersistedEventStore::new_snapshot_store(repo, size)`;
    /// [`crate::factlog_snapshot_cqrs`] sets it). cqrs-es hands `persist` the
    /// snapshot but not the sequence it was taken at: with a snapshot size
    /// that is the last multiple of `size` in the commit, without one the
    /// commit's last sequence (what postgres-es records). They differ only when
    /// one command's events cross a multiple of `size`, and then only this
    /// setting is right. Leave it unset for `new_aggregate_store`.
    pub fn with_snapshot_size(mut self, size: usize) -> FactlogEventRepository {
        self.snapshot_size = Some(size).filter(|s| *s > 0);
        self
    }

    /// The factlog store underneath (for its own reads, stats, subscriptions).
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Snapshot copies that could not be saved to the snapshot store since
    /// this repository was made. Such a commit still succeeded: its snapshot
    /// is in the log, and loads find it there.
    pub fn snapshot_copy_errors(&self) -> u64 {
        self.shared.snapshot_copy_errors.load(Ordering::Relaxed)
    }

    fn read_events(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        from_version: u64,
    ) -> Result<Vec<SerializedEvent>, Error> {
        let key = key::encode(aggregate_type, aggregate_id)?;
        let reader = self.shared.store.reader();
        // Sized up front: growing a vector of 10,000 events by doubling copies it 14 times.
        let count = self.shared.store.aggregate_version(&key).map_or(0, |v| (v + 1).saturating_sub(from_version));
        let mut out = Vec::with_capacity(usize::try_from(count).unwrap_or(0).min(PREALLOCATE_EVENTS_MAX));
        for event in reader.read_aggregate(&key, from_version, Direction::Forward) {
            out.push(envelope::to_serialized(&event?, aggregate_type, aggregate_id)?);
        }
        Ok(out)
    }

    fn snapshot(&self, aggregate_type: &str, aggregate_id: &str) -> Result<Option<SerializedSnapshot>, Error> {
        let key = key::encode(aggregate_type, aggregate_id)?;
        let version = self.shared.store.aggregate_version(&key);
        let Some(found) = self.shared.newest_snapshot(&key, version, true)? else { return Ok(None) };
        let too_big = || Error::Foreign {
            key: key.clone(),
            version: found.version,
            reason: "snapshot number or sequence does not fit usize".into(),
        };
        Ok(Some(SerializedSnapshot {
            aggregate_id: aggregate_id.to_string(),
            aggregate: found.state.unwrap_or(Value::Null),
            current_sequence: usize::try_from(found.version + 1).map_err(|_| too_big())?,
            current_snapshot: usize::try_from(found.n).map_err(|_| too_big())?,
        }))
    }

    /// Checks a `persist` call and turns it into one factlog batch.
    fn prepare(
        &self,
        aggregate_type: &str,
        events: &[SerializedEvent],
        snapshot: Option<&(String, Value, usize)>,
    ) -> Result<Option<Commit>, Error> {
        let Some(first) = events.first() else {
            return match snapshot {
                Some(_) => Err(Error::InvalidBatch("a snapshot update without events to commit it with".into())),
                None => Ok(None),
            };
        };
        let key = key::encode(aggregate_type, &first.aggregate_id)?;
        for e in events {
            if e.aggregate_id != first.aggregate_id || e.aggregate_type != aggregate_type {
                return Err(Error::InvalidBatch(format!(
                    "events of {:?}/{:?} and {:?}/{:?} in one commit of a {aggregate_type:?}",
                    first.aggregate_type, first.aggregate_id, e.aggregate_type, e.aggregate_id
                )));
            }
        }
        if let Some((id, _, _)) = snapshot.filter(|(id, _, _)| *id != first.aggregate_id) {
            return Err(Error::InvalidBatch(format!("a snapshot of {id:?} with events of {:?}", first.aggregate_id)));
        }
        let first_sequence = first.sequence;
        let dense = events.iter().enumerate().all(|(i, e)| first_sequence.checked_add(i) == Some(e.sequence));
        if first_sequence == 0 || !dense {
            return Err(Error::conflict(&key, "the events' sequences are not 1-based and consecutive"));
        }
        let last_sequence = first_sequence + events.len() - 1;
        let snapshot_at = self.snapshot_sequence(first_sequence, last_sequence);
        let mut batch = Vec::with_capacity(events.len());
        let mut copy = None;
        for e in events {
            let carried = snapshot.filter(|_| e.sequence == snapshot_at);
            let carried = carried.map(|(_, state, n)| SnapshotOut { n: *n as u64, state });
            if let Some(out) = &carried {
                let bytes = serde_json::to_vec(out).map_err(|err| Error::json("snapshot", &key, err))?;
                copy = Some(SnapshotCopy { n: out.n, version: e.sequence as u64 - 1, bytes });
            }
            batch.push(envelope::to_new_event(&key, e, carried)?);
        }
        let expected = match first_sequence {
            1 => ExpectedVersion::NoStream,
            s => ExpectedVersion::Exact(s as u64 - 2),
        };
        Ok(Some(Commit { key, expected, first_sequence, events: batch, snapshot: copy }))
    }

    /// The sequence at which a commit's snapshot was taken (see
    /// [`FactlogEventRepository::with_snapshot_size`]).
    fn snapshot_sequence(&self, first: usize, last: usize) -> usize {
        match self.snapshot_size {
            Some(size) if last - last % size >= first => last - last % size,
            _ => last,
        }
    }

    /// Writes a prepared commit: all of it, or nothing and an error.
    async fn commit(&self, commit: Commit) -> Result<(), Error> {
        let first_id = commit.events.first().map(|e| e.event_id).ok_or_else(|| Error::InvalidBatch("empty".into()))?;
        let retry = self.shared.uncertain().contains(&first_id);
        if !retry {
            // IMPORTANT: before anything is written. A retry skips it: its
            // first attempt may have moved the aggregate, and the engine's
            // idempotency (or its version check) decides instead.
            self.shared.check_next(&commit)?;
        }
        let key = commit.key.clone();
        let job_shared = Arc::clone(&self.shared);
        let uncertain = Arc::clone(&self.shared.uncertain);
        let rx = self
            .shared
            .workers
            .run(move || job_shared.write(commit), move |outcome| note_uncertain(&uncertain, first_id, &outcome))?;
        let outcome = rx.await.map_err(|_| Error::Unavailable("a worker thread ended mid-commit".into()))?;
        match outcome {
            Ok(written) if !written.deduplicated || retry => {
                self.shared.uncertain().remove(&first_id);
                Ok(())
            }
            // Every id already stored exactly here, and this repository never
            // lost track of such a commit: another caller made the same one.
            Ok(_) => Err(Error::conflict(&key, "an identical commit by another caller holds these sequences")),
            Err(e) => {
                let e = Error::Engine(e);
                if e.is_conflict() {
                    self.shared.uncertain().remove(&first_id);
                } else {
                    self.shared.uncertain().insert(first_id);
                }
                Err(e)
            }
        }
    }

    fn stream(&self, aggregate_type: &str, only_id: Option<&str>) -> Result<ReplayStream, Error> {
        let (feed, stream) = ReplayStream::new(self.stream_channel_size);
        let store = self.shared.store.clone();
        let aggregate_type = aggregate_type.to_string();
        let prefix = key::type_prefix(&aggregate_type);
        let key = only_id.map(|id| key::encode(&aggregate_type, id)).transpose()?;
        let replay = move || match key {
            Some(key) => replay_aggregate(&store, &key, feed),
            None => replay_type(&store, &aggregate_type, &prefix, feed),
        };
        std::thread::Builder::new()
            .name("factlog-cqrs-replay".into())
            .spawn(replay)
            .map_err(|e| Error::Unavailable(format!("cannot start a replay thread: {e}")))?;
        Ok(stream)
    }
}

/// Feeds one aggregate's events to a replay stream, reading the log as the
/// reader takes them (at most the channel's size ahead).
fn replay_aggregate(store: &Store, key: &str, mut feed: ReplayFeed) {
    let Some((aggregate_type, aggregate_id)) = key::decode(key) else { return };
    let reader = store.reader();
    for event in reader.read_aggregate(key, 0, Direction::Forward) {
        let item = event.map_err(Error::from).and_then(|e| envelope::to_serialized(&e, &aggregate_type, aggregate_id));
        if block_on(feed.push(item.map_err(PersistenceError::from))).is_err() {
            return; // The stream was dropped.
        }
    }
}

/// Feeds every event of one aggregate type to a replay stream, in log order.
fn replay_type(store: &Store, aggregate_type: &str, prefix: &str, mut feed: ReplayFeed) {
    let reader = store.reader();
    let filter = Filter::all().aggregate_prefixes([prefix]);
    for event in reader.read_all_filtered(reader.first_position(), &filter) {
        let item = event.map_err(Error::from).and_then(|e| {
            let key = e.aggregate_id();
            let (_, aggregate_id) = key::decode(key).ok_or_else(|| Error::Foreign {
                key: key.to_string(),
                version: e.version(),
                reason: "not a key this crate makes".into(),
            })?;
            envelope::to_serialized(&e, aggregate_type, aggregate_id)
        });
        if block_on(feed.push(item.map_err(PersistenceError::from))).is_err() {
            return;
        }
    }
}

impl Shared {
    fn uncertain(&self) -> MutexGuard<'_, Uncertain> {
        lock(&self.uncertain)
    }

    /// Refuses a commit whose first sequence or snapshot number is not the next one.
    fn check_next(&self, commit: &Commit) -> Result<(), Error> {
        let current = self.store.aggregate_version(&commit.key);
        if !commit.expected.matches(current) {
            let have = current.map_or(0, |v| v + 1);
            let reason =
                format!("sequence {} is not the next one: the aggregate has {have} events", commit.first_sequence);
            return Err(Error::conflict(&commit.key, reason));
        }
        if let Some(copy) = &commit.snapshot {
            let newest = self.newest_snapshot(&commit.key, current, false)?.map_or(0, |f| f.n);
            if newest.checked_add(1) != Some(copy.n) {
                let reason = format!("snapshot number {} is not the next one: the newest is {newest}", copy.n);
                return Err(Error::conflict(&commit.key, reason));
            }
        }
        Ok(())
    }

    /// Appends a commit's batch, then copies its snapshot to the snapshot
    /// store. Runs on a worker thread.
    fn write(&self, commit: Commit) -> Result<AppendResult, factlog::Error> {
        let written = self.store.append(&commit.key, commit.expected, commit.events)?;
        if let (Some(copy), false) = (commit.snapshot, written.deduplicated) {
            // NOTE: the commit is complete without the copy (the log holds the
            // snapshot), so a failed copy is counted, not returned.
            if self.store.save_snapshot(&commit.key, copy.version, SNAPSHOT_COPY_SCHEMA, &copy.bytes).is_err() {
                self.snapshot_copy_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(written)
    }

    /// The newest snapshot of an aggregate at or before version `until`: the
    /// newest event of the log that carries one. The snapshot store's copy
    /// says where to look; the log decides.
    fn newest_snapshot(&self, key: &str, until: Option<u64>, with_state: bool) -> Result<Option<Found>, Error> {
        let Some(until) = until else { return Ok(None) };
        let reader = self.store.reader();
        let copy = self.store.snapshot_at_or_before(key, until)?;
        let from = copy.as_ref().map_or(0, |c| c.version + 1);
        // 1. A carrier after the copy: the copy was not saved yet, or a crash
        //    came between the commit and the copy.
        let mut found = last_carrier(&reader, key, from, until)?;
        // 2. The copy, if the log's event at its version carries that snapshot.
        if let (None, Some(copy)) = (&found, copy) {
            if copy.schema_version != SNAPSHOT_COPY_SCHEMA.0 {
                let reason =
                    format!("snapshot schema {} is not this crate's {}", copy.schema_version, SNAPSHOT_COPY_SCHEMA.0);
                return Err(Error::Foreign { key: key.to_string(), version: copy.version, reason });
            }
            let (n, state) = envelope::parse_copy(&copy.data, key, copy.version, with_state)?;
            let at = reader.read_aggregate_until(key, copy.version, copy.version, Direction::Forward).next();
            let carried = at.transpose()?.map(|e| envelope::snapshot_number(&e)).transpose()?.flatten();
            if carried == Some(n) {
                return Ok(Some(Found { version: copy.version, n, state }));
            }
            // The copy belongs to a log a repair cut: only the log counts.
            found = last_carrier(&reader, key, 0, copy.version)?;
        }
        let Some((version, n)) = found else { return Ok(None) };
        let state = match with_state {
            false => None,
            true => {
                let event = reader.read_aggregate_until(key, version, version, Direction::Forward).next();
                let event = event.transpose()?.ok_or_else(|| Error::Foreign {
                    key: key.to_string(),
                    version,
                    reason: "the event carrying the snapshot is gone".into(),
                })?;
                envelope::snapshot_of(&event)?.map(|s| s.state)
            }
        };
        Ok(Some(Found { version, n, state }))
    }
}

fn lock(uncertain: &Mutex<Uncertain>) -> MutexGuard<'_, Uncertain> {
    // A panic elsewhere cannot leave the set half-changed: every change is one call.
    uncertain.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A commit's caller went away before its outcome arrived: remember a commit
/// that may be stored, so that a retry of it counts as one.
fn note_uncertain(uncertain: &Mutex<Uncertain>, first_id: EventId, outcome: &Result<AppendResult, factlog::Error>) {
    let conflict =
        matches!(outcome, Err(factlog::Error::WrongExpectedVersion { .. } | factlog::Error::DuplicateEventId { .. }));
    if !conflict {
        lock(uncertain).insert(first_id);
    }
}

/// The last event of versions `from..=until` that carries a snapshot: its
/// version and snapshot number.
fn last_carrier(reader: &factlog::Reader, key: &str, from: u64, until: u64) -> Result<Option<(u64, u64)>, Error> {
    let mut last = None;
    if from > until {
        return Ok(None);
    }
    for event in reader.read_aggregate_until(key, from, until, Direction::Forward) {
        let event = event?;
        if let Some(n) = envelope::snapshot_number(&event)? {
            last = Some((event.version(), n));
        }
    }
    Ok(last)
}

/// A snapshot found for an aggregate.
struct Found {
    /// The factlog version it was taken at.
    version: u64,
    /// cqrs-es's `current_snapshot`.
    n: u64,
    /// The aggregate, when asked for.
    state: Option<Value>,
}

/// One `persist` call as one factlog batch.
struct Commit {
    key: String,
    expected: ExpectedVersion,
    first_sequence: usize,
    events: Vec<NewEvent>,
    snapshot: Option<SnapshotCopy>,
}

/// The snapshot-store copy of a commit's snapshot.
struct SnapshotCopy {
    n: u64,
    version: u64,
    bytes: Vec<u8>,
}

/// First event ids of commits that may be stored though their caller was
/// not told so, oldest first, at most [`UNCERTAIN_COMMITS_MAX`].
#[derive(Default)]
struct Uncertain {
    ids: HashSet<EventId>,
    order: VecDeque<EventId>,
}

impl Uncertain {
    fn contains(&self, id: &EventId) -> bool {
        self.ids.contains(id)
    }

    fn insert(&mut self, id: EventId) {
        if self.ids.insert(id) {
            self.order.push_back(id);
        }
        while self.order.len() > UNCERTAIN_COMMITS_MAX {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
    }

    fn remove(&mut self, id: &EventId) {
        if self.ids.remove(id) {
            self.order.retain(|o| o != id);
        }
    }
}

impl PersistedEventRepository for FactlogEventRepository {
    async fn get_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<Vec<SerializedEvent>, PersistenceError> {
        Ok(self.read_events(A::TYPE, aggregate_id, 0)?)
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        // Sequence s is version s - 1: sequences after `last_sequence` start at version `last_sequence`.
        Ok(self.read_events(A::TYPE, aggregate_id, last_sequence as u64)?)
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        Ok(self.snapshot(A::TYPE, aggregate_id)?)
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        let Some(commit) = self.prepare(A::TYPE, events, snapshot_update.as_ref())? else { return Ok(()) };
        Ok(self.commit(commit).await?)
    }

    async fn stream_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<ReplayStream, PersistenceError> {
        Ok(self.stream(A::TYPE, Some(aggregate_id))?)
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        Ok(self.stream(A::TYPE, None)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(sequence: usize, amount: i64) -> SerializedEvent {
        let payload = json!({ "amount": amount });
        SerializedEvent::new("a".into(), sequence, "T".into(), "E".into(), "1".into(), payload, json!({}))
    }

    fn commit(repo: &FactlogEventRepository, events: &[SerializedEvent]) -> Result<(), Error> {
        let prepared = repo.prepare("T", events, None)?.expect("events");
        block_on(repo.commit(prepared))
    }

    fn first_id(repo: &FactlogEventRepository, events: &[SerializedEvent]) -> EventId {
        repo.prepare("T", events, None).unwrap().unwrap().events[0].event_id
    }

    #[test]
    fn a_retry_of_an_uncertain_commit_is_deduplicated_and_nothing_else_is() {
        let dir = tempfile::tempdir().unwrap();
        let repo = FactlogEventRepository::open(dir.path()).unwrap();
        let c = [event(1, 1), event(2, 2)];
        commit(&repo, &c).unwrap();
        // The same commit again, from a caller that was told it succeeded: a conflict.
        assert!(commit(&repo, &c).unwrap_err().is_conflict());
        // Its outcome lost (an I/O error, a dropped future): the retry succeeds, writing nothing.
        repo.shared.uncertain().insert(first_id(&repo, &c));
        commit(&repo, &c).unwrap();
        assert_eq!(repo.store().stats().events, 2);
        assert!(!repo.shared.uncertain().contains(&first_id(&repo, &c)));
        // An uncertain commit whose sequence another commit took: a conflict.
        let (d, e) = ([event(3, 3)], [event(3, 4)]);
        repo.shared.uncertain().insert(first_id(&repo, &d));
        commit(&repo, &e).unwrap();
        assert!(commit(&repo, &d).unwrap_err().is_conflict());
        // An uncertain commit that never reached the log: written now.
        let f = [event(4, 5)];
        repo.shared.uncertain().insert(first_id(&repo, &f));
        commit(&repo, &f).unwrap();
        assert_eq!(repo.store().stats().events, 4);
    }

    #[test]
    fn the_uncertain_record_is_bounded() {
        let mut u = Uncertain::default();
        for i in 0..UNCERTAIN_COMMITS_MAX as u128 + 10 {
            u.insert(EventId(i.to_le_bytes()));
        }
        assert_eq!((u.ids.len(), u.order.len()), (UNCERTAIN_COMMITS_MAX, UNCERTAIN_COMMITS_MAX));
        assert!(!u.contains(&EventId(0u128.to_le_bytes())));
        u.remove(&EventId(20u128.to_le_bytes()));
        assert_eq!(u.order.len(), UNCERTAIN_COMMITS_MAX - 1);
    }
}
