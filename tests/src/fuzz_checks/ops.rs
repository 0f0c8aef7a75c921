//! The `ops` target: a sequence of appends, reads, reopens, snapshot saves,
//! lifecycle changes (soft deletes, `truncate_before`, scavenges) and
//! simulated crashes against a fresh store, checked after every step
//! against an in-memory model of what the store must hold. Owns the
//! operation language ([`op`]), the model and the crash simulation. A crash
//! damages only bytes written after the last clean point of the scratch
//! store; it never touches anything else.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use factlog::snapshot as snap;
use factlog::{DeleteMode, Direction, Error, ExpectedVersion, NewEvent, RecordedEvent, Store, StreamMeta};

use super::input::Input;
use super::layout::{frames_of, snap_frames_of, SEG_HEADER};
use super::scratch::{fuzz_options, scratch_dir, verbose};
use crate::random;

/// Operation kinds of [`ops`]: the first byte of each operation, modulo 9
/// below [`op::LIFECYCLE`]; from it on, a lifecycle operation (the byte
/// modulo 3: [`op::DELETE`], [`op::TRUNCATE`], [`op::SCAVENGE`]).
pub mod op {
    /// First bytes from here on are lifecycle operations (rare, so older
    /// corpus inputs keep their meaning).
    pub const LIFECYCLE: u8 = 240;
    /// Soft delete: aggregate.
    pub const DELETE: u8 = 0;
    /// `StreamMeta::truncate_before`: aggregate, version selector.
    pub const TRUNCATE: u8 = 1;
    /// A scavenge (removes what the rules hide from sealed segments).
    pub const SCAVENGE: u8 = 2;
    /// Append: aggregate, expectation, events (1 + n % 5), size.
    pub const APPEND: u8 = 0;
    /// Append (a second tag so appends are frequent).
    pub const APPEND2: u8 = 1;
    /// Re-append an earlier batch (idempotent retry): how far back.
    pub const RETRY: u8 = 2;
    /// Append an existing event id: position u16, aggregate, whether a new event comes first.
    pub const DUP_ID: u8 = 3;
    /// Read an aggregate: aggregate, from, flags (bit 0 backward), limit.
    pub const READ_AGG: u8 = 4;
    /// Read the log: from u16, limit.
    pub const READ_ALL: u8 = 5;
    /// Close and reopen cleanly.
    pub const REOPEN: u8 = 6;
    /// Crash: in-flight events (n % 6), aggregate, size, mode, cut u32, mask u32.
    /// Mode: bits 0-1 truncate / zero a suffix / zero some blocks / garbage;
    /// bit 2 4 KiB blocks (else 512 B); bit 3 undo a roll; bit 4 drop the
    /// sealed segment's checkpoint; bit 5 also tear an in-flight snapshot save.
    pub const CRASH: u8 = 7;
    /// Save a snapshot: aggregate, version selector, size, then read it back.
    pub const SNAPSHOT: u8 = 8;
}

const AGGS: [&str; 4] = ["acct-a", "acct-b", "cart-42", "ünï-💥"];

/// A snapshot's schema version and state bytes.
type SnapState = (u32, Vec<u8>);

/// What the store must contain.
#[derive(Default)]
struct Model {
    /// Aggregate and event, by position.
    events: Vec<(usize, NewEvent)>,
    /// Positions by aggregate.
    by_agg: [Vec<u64>; 4],
    /// Batches stored: aggregate, events, first position, first version.
    batches: Vec<(usize, Vec<NewEvent>, u64, u64)>,
    /// Snapshots: aggregate → version → (schema, data); the highest `keep` are kept.
    snapshots: [BTreeMap<u64, SnapState>; 4],
    /// Every save ever acknowledged: aggregate → version → (schema, data) (for finding F4).
    saved: [BTreeMap<u64, Vec<SnapState>>; 4],
    /// Lifecycle rules per aggregate: reads show versions from `cut` on.
    cut: [u64; 4],
    /// Soft-deleted (then a `truncate_before` never lowers the cut).
    soft: [bool; 4],
    /// Aggregates a lifecycle operation touched: retries, duplicate ids and
    /// snapshots leave them alone (their rules are the lifecycle tests').
    touched: [bool; 4],
    /// Positions a scavenge removed.
    removed: BTreeSet<u64>,
}

impl Model {
    fn current(&self, agg: usize) -> Option<u64> {
        (self.by_agg[agg].len() as u64).checked_sub(1)
    }

    fn push_batch(&mut self, agg: usize, evs: &[NewEvent]) {
        let first_position = self.events.len() as u64;
        let first_version = self.by_agg[agg].len() as u64;
        for e in evs {
            self.by_agg[agg].push(self.events.len() as u64);
            self.events.push((agg, e.clone()));
        }
        self.batches.push((agg, evs.to_vec(), first_position, first_version));
    }

    /// The version of the event at `position`.
    fn version_of(&self, position: u64) -> u64 {
        let agg = self.events[position as usize].0;
        self.by_agg[agg].iter().position(|p| *p == position).unwrap_or(usize::MAX) as u64
    }

    /// Whether reads show the event at `position`.
    fn visible(&self, position: u64) -> bool {
        let agg = self.events[position as usize].0;
        !self.removed.contains(&position) && self.version_of(position) >= self.cut[agg]
    }

    /// The positions reads show, in order.
    fn visible_positions(&self) -> Vec<u64> {
        (0..self.events.len() as u64).filter(|p| self.visible(*p)).collect()
    }

    fn check_event(&self, e: &RecordedEvent, what: &str) {
        let (agg, ne) = self.events.get(e.position as usize).unwrap_or_else(|| panic!("{what}: event {e:?} unknown"));
        let version = self.by_agg[*agg].iter().position(|p| *p == e.position).unwrap() as u64;
        assert!(
            e.aggregate_id == AGGS[*agg]
                && e.version == version
                && e.event_id == ne.event_id
                && e.event_type == ne.event_type
                && e.event_version == ne.event_version
                && e.occurred_at == ne.occurred_at
                && e.causation_id == ne.causation_id
                && e.correlation_id == ne.correlation_id
                && e.metadata == ne.metadata
                && e.data == ne.data,
            "{what}: event at position {} differs from the model",
            e.position
        );
    }

    fn keep_snapshot(&mut self, agg: usize, version: u64, schema: u32, state: Vec<u8>) {
        self.saved[agg].entry(version).or_default().push((schema, state.clone()));
        let snaps = &mut self.snapshots[agg];
        snaps.insert(version, (schema, state));
        while snaps.len() > 2 {
            snaps.pop_first();
        }
    }
}

fn op_event(serial: u64, size: u8) -> NewEvent {
    let k = (size >> 2) as usize;
    let len = match size % 4 {
        0 => k % 64,
        1 => k * 8,
        2 => k * 32,
        _ => 6000 + k * 100,
    };
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&serial.to_le_bytes());
    id[8..].copy_from_slice(b"fuzz-ops");
    NewEvent {
        event_id: factlog::EventId(id),
        event_type: format!("Happened{}", serial % 5),
        event_version: (serial % 4) as u32,
        occurred_at: serial as i64 * 1000,
        causation_id: (serial % 2 == 1).then_some(factlog::EventId([serial as u8; 16])),
        correlation_id: None,
        metadata: Bytes::from(format!("m{serial}")),
        data: Bytes::from(vec![serial as u8; len]),
    }
}

fn open_ops(dir: &Path) -> Store {
    Store::open(dir, fuzz_options()).expect("open the ops store")
}

fn verify_all(store: &Store, m: &Model, what: &str) {
    let all = store.read_all_owned(0, usize::MAX).unwrap_or_else(|e| panic!("{what}: read_all failed: {e}"));
    let got: Vec<u64> = all.iter().map(|e| e.position).collect();
    assert_eq!(got, m.visible_positions(), "{what}: the positions read_all shows");
    for e in &all {
        m.check_event(e, what);
    }
    for (i, name) in AGGS.iter().enumerate() {
        assert_eq!(store.aggregate_version(name), m.current(i), "{what}: version of {name}");
    }
}

/// Decodes up to 48 operations (see [`op`]) and runs them against a fresh
/// store (64 KiB segments, Sync mode) and an in-memory model: append results
/// (positions, versions, conflicts, retries, duplicate ids), reads, the last
/// position, snapshots, and the whole log after every reopen and crash.
///
/// A crash appends an in-flight batch (maybe none), closes the store, then
/// damages only bytes written after the last clean point: it truncates the
/// active segment, zeroes a suffix or a random subset of 512 B / 4 KiB blocks
/// of the in-flight write, or writes garbage after it, and may undo a segment
/// roll or drop the new checkpoint. The reopened store must hold every
/// earlier event, and the in-flight batch entirely (always, if its bytes are
/// intact) or not at all.
pub fn ops(data: &[u8]) {
    let mut run = Run { dir: scratch_dir(), m: Model::default(), serial: 0, verbose: verbose() };
    let mut store = open_ops(run.dir.path());
    let mut inp = Input::new(data);
    let mut n_ops = 0;
    while !inp.is_empty() && n_ops < 48 {
        n_ops += 1;
        let first = inp.u8();
        let tag = if first >= op::LIFECYCLE { 9 + first % 3 } else { first % 9 };
        if run.verbose {
            eprintln!("ops: op {tag}, {} events", run.m.events.len());
        }
        match tag {
            9 => run.delete(&store, &mut inp),
            10 => run.truncate(&store, &mut inp),
            11 => run.scavenge(&store),
            op::APPEND | op::APPEND2 => run.append(&store, &mut inp),
            op::RETRY => run.retry(&store, &mut inp),
            op::DUP_ID => run.dup_id(&store, &mut inp),
            op::READ_AGG => run.read_aggregate(&store, &mut inp),
            op::READ_ALL => run.read_all(&store, &mut inp),
            op::REOPEN => store = run.reopen(store),
            op::CRASH => store = run.crash(store, &mut inp),
            _ => run.snapshot(&store, &mut inp),
        }
        assert_eq!(store.last_position(), (run.m.events.len() as u64).checked_sub(1), "last_position");
    }
    verify_all(&store, &run.m, "at the end");
    for agg in (0..4).filter(|a| !run.m.touched[*a]) {
        check_snapshots(&store, &run.m, agg, u64::MAX);
    }
    store.close().expect("close");
}

/// One run of [`ops`]: its scratch directory and model.
struct Run {
    dir: tempfile::TempDir,
    m: Model,
    /// Events made so far (event ids derive from it).
    serial: u64,
    verbose: bool,
}

impl Run {
    fn next_event(&mut self, size: u8) -> NewEvent {
        self.serial += 1;
        op_event(self.serial, size)
    }

    /// [`op::APPEND`]: succeeds exactly when the expectation matches the model.
    fn append(&mut self, store: &Store, inp: &mut Input<'_>) {
        let agg = inp.u8() as usize % 4;
        let expect = inp.u8();
        let n = 1 + inp.u8() as u64 % 5;
        let size = inp.u8();
        let current = self.m.current(agg);
        let expected = match expect % 5 {
            0 => ExpectedVersion::Any,
            1 => ExpectedVersion::NoStream,
            2 => ExpectedVersion::StreamExists,
            3 => ExpectedVersion::Exact(current.unwrap_or(0)),
            _ => ExpectedVersion::Exact(current.map_or(1, |v| v + 1)),
        };
        let evs: Vec<NewEvent> = (0..n).map(|i| self.next_event(size.wrapping_add(i as u8 * 4))).collect();
        let r = store.append(AGGS[agg], expected, evs.clone());
        // `NoStream` also starts a soft-deleted aggregate again while it has
        // no event since its deletion.
        let restart = expected == ExpectedVersion::NoStream
            && self.m.soft[agg]
            && self.m.by_agg[agg].len() as u64 <= self.m.cut[agg];
        if expected.matches(current) || restart {
            let r = r.unwrap_or_else(|e| panic!("append {expected:?} to {} at {current:?}: {e}", AGGS[agg]));
            let first = self.m.events.len() as u64;
            assert_eq!(
                (r.first_position, r.first_version, r.last_position, r.deduplicated),
                (first, current.map_or(0, |v| v + 1), first + n - 1, false),
                "append result"
            );
            self.m.push_batch(agg, &evs);
        } else {
            match r {
                Err(Error::WrongExpectedVersion { actual, .. }) => assert_eq!(actual, current),
                other => panic!("append {expected:?} at {current:?} should conflict: {other:?}"),
            }
        }
    }

    /// [`op::RETRY`]: a stored batch appended again is deduplicated to its first result.
    fn retry(&mut self, store: &Store, inp: &mut Input<'_>) {
        let back = inp.u8() as usize;
        if self.m.batches.is_empty() {
            return;
        }
        let (agg, evs, pos, ver) = self.m.batches[self.m.batches.len() - 1 - back % self.m.batches.len()].clone();
        if self.m.touched[agg] {
            return;
        }
        let r = store.append(AGGS[agg], ExpectedVersion::Any, evs).expect("retry of a stored batch");
        assert!(r.deduplicated, "retry not deduplicated: {r:?}");
        assert_eq!((r.first_position, r.first_version), (pos, ver), "retry result");
    }

    /// [`op::DUP_ID`]: a stored event alone, to its own aggregate, is a
    /// deduplicated retry; anything else with its id is refused.
    fn dup_id(&mut self, store: &Store, inp: &mut Input<'_>) {
        let k = inp.u16() as usize;
        let agg = inp.u8() as usize % 4;
        let new_first = inp.u8() % 2 == 1;
        if self.m.events.is_empty() {
            return;
        }
        let k = k % self.m.events.len();
        let (owner, old) = self.m.events[k].clone();
        if self.m.touched[owner] {
            return;
        }
        let mut batch = Vec::new();
        if new_first {
            batch.push(self.next_event(0));
        }
        batch.push(old.clone());
        let r = store.append(AGGS[agg], ExpectedVersion::Any, batch);
        if !new_first && agg == owner {
            let r = r.expect("re-append of one stored event");
            let version = self.m.by_agg[owner].iter().position(|p| *p == k as u64).unwrap() as u64;
            assert!(r.deduplicated && r.first_position == k as u64 && r.first_version == version, "{r:?}");
        } else {
            match r {
                Err(Error::DuplicateEventId { event_id, existing_position, existing_aggregate, .. }) => {
                    assert_eq!((event_id, existing_position), (old.event_id, k as u64));
                    assert_eq!(existing_aggregate, AGGS[owner]);
                }
                other => panic!("duplicate id of position {k} accepted: {other:?}"),
            }
        }
    }

    /// [`op::READ_AGG`]: the positions and events the model has for that range.
    fn read_aggregate(&mut self, store: &Store, inp: &mut Input<'_>) {
        let agg = inp.u8() as usize % 4;
        let from = u64::from(inp.u8());
        let backward = inp.u8() % 2 == 1;
        let limit = 1 + inp.u8() as usize;
        let dir = if backward { Direction::Backward } else { Direction::Forward };
        let got = store.read_aggregate_owned(AGGS[agg], from, dir, limit).expect("read_aggregate");
        let ps: Vec<u64> = self.m.by_agg[agg].iter().copied().filter(|p| self.m.visible(*p)).collect();
        let want: Vec<u64> = if backward {
            ps.iter().rev().filter(|p| self.m.version_of(**p) <= from).take(limit).copied().collect()
        } else {
            ps.iter().filter(|p| self.m.version_of(**p) >= from).take(limit).copied().collect()
        };
        assert_eq!(got.iter().map(|e| e.position).collect::<Vec<_>>(), want, "read_aggregate positions");
        for e in &got {
            self.m.check_event(e, "read_aggregate");
        }
    }

    /// [`op::READ_ALL`]: the events the model has from that position.
    fn read_all(&mut self, store: &Store, inp: &mut Input<'_>) {
        let from = u64::from(inp.u16()) % (self.m.events.len() as u64 + 3);
        let limit = 1 + inp.u8() as usize;
        let got = store.read_all_owned(from, limit).expect("read_all");
        let want: Vec<u64> = self.m.visible_positions().into_iter().filter(|p| *p >= from).take(limit).collect();
        assert_eq!(got.iter().map(|e| e.position).collect::<Vec<_>>(), want, "read_all({from}, {limit}) positions");
        for e in &got {
            self.m.check_event(e, "read_all");
        }
    }

    /// [`op::REOPEN`]: a clean reopen finds no damage and the whole model.
    fn reopen(&mut self, store: Store) -> Store {
        store.close().expect("close");
        let store = open_ops(self.dir.path());
        let rep = store.recovery_report();
        assert!(rep.torn_tail.is_none() && rep.repaired.is_none(), "clean reopen found damage: {rep:?}");
        assert_eq!(rep.events, self.m.events.len() as u64);
        verify_all(&store, &self.m, "after reopen");
        store
    }

    /// [`op::SNAPSHOT`]: a save at or below the current version is kept, one
    /// ahead of it refused; then reads at and before it match the model.
    fn snapshot(&mut self, store: &Store, inp: &mut Input<'_>) {
        let agg = inp.u8() as usize % 4;
        let vsel = u64::from(inp.u8());
        let size = inp.u8();
        if self.m.touched[agg] {
            return;
        }
        let version = vsel % (self.m.by_agg[agg].len() as u64 + 2);
        let (schema, state) = snapshot_state(version, agg, size);
        let r = store.save_snapshot(AGGS[agg], version, factlog::SchemaVersion(schema), &state);
        if self.verbose {
            eprintln!("  snapshot {} v{version} schema {schema} {} bytes: {r:?}", AGGS[agg], state.len());
        }
        match self.m.current(agg) {
            Some(c) if version <= c => {
                r.expect("save snapshot");
                self.m.keep_snapshot(agg, version, schema, state);
            }
            _ => assert!(matches!(r, Err(Error::SnapshotAhead { .. })), "snapshot ahead accepted: {r:?}"),
        }
        check_snapshots(store, &self.m, agg, vsel);
    }
}

impl Run {
    /// [`op::DELETE`]: a soft delete hides every event the aggregate has;
    /// one without events is `UnknownAggregate`.
    fn delete(&mut self, store: &Store, inp: &mut Input<'_>) {
        let agg = inp.u8() as usize % 4;
        let r = store.delete_aggregate(AGGS[agg], DeleteMode::Soft);
        if self.m.by_agg[agg].is_empty() {
            assert!(matches!(r, Err(Error::UnknownAggregate { .. })), "delete of an empty aggregate: {r:?}");
            return;
        }
        r.unwrap_or_else(|e| panic!("soft delete of {}: {e}", AGGS[agg]));
        self.m.touched[agg] = true;
        self.m.soft[agg] = true;
        self.m.cut[agg] = self.m.cut[agg].max(self.m.by_agg[agg].len() as u64);
    }

    /// [`op::TRUNCATE`]: `truncate_before` hides the versions below it (never
    /// below a soft delete's cut), at once.
    fn truncate(&mut self, store: &Store, inp: &mut Input<'_>) {
        let agg = inp.u8() as usize % 4;
        let v = u64::from(inp.u8()) % (self.m.by_agg[agg].len() as u64 + 2);
        store
            .set_stream_meta(AGGS[agg], StreamMeta { truncate_before: Some(v), ..Default::default() })
            .unwrap_or_else(|e| panic!("truncate_before {v} of {}: {e}", AGGS[agg]));
        self.m.touched[agg] = true;
        self.m.cut[agg] = if self.m.soft[agg] { v.max(self.m.cut[agg]) } else { v };
    }

    /// [`op::SCAVENGE`]: what the rules hide in sealed segments is removed
    /// for good (positions stay); reads are unchanged.
    fn scavenge(&mut self, store: &Store) {
        let report = store.scavenge(&mut |_, _| {}).unwrap_or_else(|e| panic!("scavenge: {e}"));
        let active_first = crate::segment_files(self.dir.path())
            .iter()
            .filter_map(|p| p.file_stem()?.to_str()?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        let gone: Vec<u64> =
            (0..active_first.min(self.m.events.len() as u64)).filter(|p| !self.m.visible(*p)).collect();
        let new = gone.iter().filter(|p| !self.m.removed.contains(p)).count() as u64;
        assert_eq!(
            report.events_removed, new,
            "scavenge removed {} events, the model hides {new} more",
            report.events_removed
        );
        self.m.removed.extend(gone);
        verify_all(store, &self.m, "after a scavenge");
    }
}

/// Schema version and state bytes of a snapshot: compressible for even
/// `size`, incompressible for odd.
fn snapshot_state(version: u64, agg: usize, size: u8) -> (u32, Vec<u8>) {
    let state: Vec<u8> = if size.is_multiple_of(2) {
        format!("state {version} of {agg};").repeat(size as usize / 2).into_bytes()
    } else {
        random::noise(&[version, agg as u64, u64::from(size)], size as usize * 8)
    };
    (u32::from(size % 3), state)
}

fn check_snapshots(store: &Store, m: &Model, agg: usize, at_or_before: u64) {
    let want = |v: u64| m.snapshots[agg].range(..=v).next_back();
    for v in [u64::MAX, at_or_before] {
        let got = store.snapshot_at_or_before(AGGS[agg], v).expect("read snapshot");
        match (got, want(v)) {
            (None, None) => {}
            (Some(s), Some((wv, (schema, data)))) => {
                if verbose() {
                    eprintln!(
                        "  check {} <= {v}: store v{} schema {} {} bytes; model v{wv} schema {schema} {} bytes",
                        AGGS[agg],
                        s.version,
                        s.schema_version,
                        s.data.len(),
                        data.len()
                    );
                }
                assert!(
                    s.aggregate_id == AGGS[agg] && s.version == *wv && s.schema_version == *schema && s.data == *data,
                    "snapshot of {} at or before {v} differs from the model",
                    AGGS[agg]
                );
            }
            (got, want) => panic!(
                "snapshot of {} at or before {v}: store has {:?}, model {:?}",
                AGGS[agg],
                got.map(|s| s.version),
                want.map(|w| w.0)
            ),
        }
    }
}

/// The parameters of one [`op::CRASH`].
struct Crash {
    /// Events in flight (0..=5).
    n: u64,
    agg: usize,
    /// Size selector of the in-flight events and snapshot.
    size: u8,
    /// See [`op::CRASH`].
    mode: u8,
    cut: u32,
    mask: u32,
}

impl Crash {
    fn read(inp: &mut Input<'_>) -> Crash {
        let n = inp.u8() as u64 % 6;
        let agg = inp.u8() as usize % 4;
        let size = inp.u8();
        let mode = inp.u8();
        let cut = inp.u32();
        let mask = inp.u32();
        Crash { n, agg, size, mode, cut, mask }
    }
}

/// A snapshot save in flight at a crash: version, schema, state.
type InFlightSave = (u64, u32, Vec<u8>);

impl Run {
    /// [`op::CRASH`]: appends (and maybe saves) in flight, closes, damages
    /// what was in flight, reopens and checks that recovery kept every
    /// earlier event and the in-flight batch whole or not at all.
    fn crash(&mut self, store: Store, inp: &mut Input<'_>) -> Store {
        let c = Crash::read(inp);
        let inflight_first = self.m.events.len() as u64;
        let inflight: Vec<NewEvent> = (0..c.n).map(|i| self.next_event(c.size.wrapping_add(i as u8 * 4))).collect();
        if c.n > 0 {
            let r = store.append(AGGS[c.agg], ExpectedVersion::Any, inflight.clone()).expect("in-flight append");
            assert_eq!(r.first_position, inflight_first);
        }
        let torn_save = self.save_in_flight(&store, &c);
        store.close().expect("close before crash");
        if let Some(save) = torn_save {
            self.tear_snapshot_save(c.agg, save, c.mask);
        }
        let intact = damage_active_segment(self.dir.path(), &c, inflight_first);
        self.check_recovery(&c, inflight_first, &inflight, intact)
    }

    /// Mode bit 32: a snapshot save of the aggregate's current version is in
    /// flight too, and is torn (or, cut at its very end, complete).
    fn save_in_flight(&self, store: &Store, c: &Crash) -> Option<InFlightSave> {
        match self.m.current(c.agg) {
            Some(version) if c.mode & 32 != 0 && !self.m.touched[c.agg] => {
                let (schema, state) = snapshot_state(version, c.agg, c.size);
                store
                    .save_snapshot(AGGS[c.agg], version, factlog::SchemaVersion(schema), &state)
                    .expect("in-flight snapshot save");
                Some((version, schema, state))
            }
            _ => None,
        }
    }

    /// Cuts the newest snapshot frame at `mask` modulo its length plus one;
    /// the model keeps the save only if it is whole.
    fn tear_snapshot_save(&mut self, agg: usize, (version, schema, state): InFlightSave, mask: u32) {
        let dir = self.dir.path();
        let (path, off, len) = last_snapshot_frame(dir).expect("the in-flight snapshot frame");
        let c = off + mask as usize % (len + 1);
        let highest = std::fs::read_dir(dir.join("snapshots"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "snap"))
            .max();
        // Fixed finding F5: saves go to the highest-numbered file, always.
        assert_eq!(highest.as_ref(), Some(&path), "the in-flight snapshot save is not in the newest file");
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(c as u64).unwrap();
        if c == off + len {
            self.m.keep_snapshot(agg, version, schema, state);
        }
    }

    /// Reopens after the crash: no repair, the store ends before or after
    /// the whole in-flight batch (after it, if its bytes are intact), and
    /// log and snapshots match the model.
    fn check_recovery(&mut self, c: &Crash, inflight_first: u64, inflight: &[NewEvent], intact: bool) -> Store {
        let n = c.n;
        let store =
            Store::open(self.dir.path(), fuzz_options()).unwrap_or_else(|e| panic!("reopen after a crash failed: {e}"));
        let rep = store.recovery_report().clone();
        assert!(rep.repaired.is_none(), "crash recovery repaired: {rep:?}");
        let end = store.reader().end_position();
        if n > 0 && end == inflight_first + n {
            self.m.push_batch(c.agg, inflight);
        } else {
            assert_eq!(
                end,
                inflight_first,
                "after a crash with {n} events in flight the store ends at {end}, expected {inflight_first} or {}",
                inflight_first + n
            );
            assert!(!intact || n == 0, "in-flight batch with intact bytes lost in recovery: {rep:?}");
        }
        verify_all(&store, &self.m, "after crash");
        for agg in (0..4).filter(|a| !self.m.touched[*a]) {
            check_snapshots(&store, &self.m, agg, u64::MAX);
        }
        store
    }
}

/// The snapshot frame with the highest sequence number: (file, offset, length).
fn last_snapshot_frame(dir: &Path) -> Option<(PathBuf, usize, usize)> {
    let mut best: Option<(u64, PathBuf, usize, usize)> = None;
    for e in std::fs::read_dir(dir.join("snapshots")).ok()? {
        let path = e.ok()?.path();
        if path.extension().is_none_or(|x| x != "snap") {
            continue;
        }
        let bytes = std::fs::read(&path).ok()?;
        for off in snap_frames_of(&bytes) {
            let f = snap::decode_frame(&bytes[off..]).ok()??;
            if best.as_ref().is_none_or(|b| f.seq > b.0) {
                best = Some((f.seq, path.clone(), off, f.frame_len));
            }
        }
    }
    best.map(|(_, p, o, l)| (p, o, l))
}

/// Damages what the in-flight append wrote as the crash's mode says (see
/// [`op::CRASH`]). Returns whether the in-flight bytes are still intact.
fn damage_active_segment(dir: &Path, c: &Crash, inflight_first: u64) -> bool {
    let segs = crate::segment_files(dir);
    let active = segs.last().expect("a segment").clone();
    let mut bytes = std::fs::read(&active).unwrap();
    let orig = bytes.clone();
    let frames = frames_of(&bytes);
    let clean_end =
        frames.iter().filter(|f| f.2 < inflight_first).map(|f| f.0 + f.1).max().unwrap_or(SEG_HEADER).max(SEG_HEADER);
    let log_end = frames.last().map_or(SEG_HEADER, |f| f.0 + f.1).max(clean_end);
    let rolled = c.n > 0 && frames.first().is_some_and(|f| f.2 == inflight_first);
    let mut deleted = false;
    if rolled && c.mode & 8 != 0 {
        // Crash between sealing the old segment and installing the new one.
        std::fs::remove_file(&active).unwrap();
        deleted = true;
    }
    if rolled && c.mode & 16 != 0 && segs.len() >= 2 {
        // Crash before the sealed segment's checkpoint was renamed into place.
        let _ = std::fs::remove_file(segs[segs.len() - 2].with_extension("idx"));
    }
    if !deleted {
        damage_bytes(&mut bytes, c, clean_end, log_end);
        std::fs::write(&active, &bytes).unwrap();
    }
    !deleted && (clean_end..log_end).all(|i| bytes.get(i).copied().unwrap_or(0) == orig[i])
}

/// Damages `bytes` from `clean_end` (the end of the last frame before the
/// crash) on: truncate anywhere after it, zero a suffix of the in-flight
/// write up to `log_end`, zero a subset of its blocks, or write garbage.
fn damage_bytes(bytes: &mut Vec<u8>, c: &Crash, clean_end: usize, log_end: usize) {
    let (mode, cut, mask) = (c.mode, c.cut, c.mask);
    let len = bytes.len();
    match mode % 4 {
        0 => {
            let at = clean_end + cut as usize % (len - clean_end + 1);
            bytes.truncate(at);
        }
        1 => {
            let at = clean_end + cut as usize % (log_end - clean_end + 1);
            bytes[at..log_end].fill(0);
        }
        2 => {
            // Any subset of the in-flight write's blocks reached the disk.
            let block = if mode & 4 != 0 { 4096 } else { 512 };
            let mut b = clean_end / block * block;
            let mut bit = 0;
            while b < log_end {
                if (mask >> (bit % 32)) & 1 == 0 {
                    bytes[b.max(clean_end)..(b + block).min(log_end)].fill(0);
                }
                b += block;
                bit += 1;
            }
        }
        _ if clean_end < len => {
            let at = clean_end + cut as usize % (len - clean_end);
            let k = (1 + (cut >> 16) as usize % 256).min(len - at);
            for (i, x) in bytes[at..at + k].iter_mut().enumerate() {
                *x = (mask.rotate_left(i as u32 * 8) as u8) | 1;
            }
        }
        _ => {}
    }
}
