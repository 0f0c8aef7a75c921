//! Stream metadata: the per-aggregate rules of the event lifecycle
//! (`max_count`, `max_age`, `truncate_before`, soft and hard deletion,
//! erasure), their durable file `STREAMS`, and the cut they make in what a
//! reader sees ([`Visibility`]). The writer thread alone changes the rules,
//! between group commits, so a change is ordered with appends; readers take
//! an immutable copy. This module never reads or writes segments, and never
//! removes an event: reads skip what the rules hide, and the scavenge
//! reclaims the space.
//!
//! The rules live in a checkpointed file rather than in the log as system
//! events: a rule must be readable without replaying the log (open reads one
//! small file), erasing an aggregate must be able to remove its id from every
//! file (a log record naming it would be one more copy to scrub), and the
//! log keeps holding only what applications appended.
//!
//! `STREAMS` layout (little-endian), rewritten whole and crash-safely
//! (`durable::write_file`) on every change:
//! ```text
//!  0  8 magic b"FLOGSTRM"
//!  8  4 format version (1)
//! 12  4 entry count
//! 16  4 tombstone count
//! 20  8 log start: the first position retention kept (0: none removed)
//! 28  .. entries: u8 id length (1..=255), id bytes, u8 flags, u64 max_count,
//!         u64 max_age (nanoseconds), u64 truncate_before, u64 version floor
//! ..  .. tombstones: 16-byte id hashes of erased aggregates whose events are gone
//! end-4 4 crc32 of every byte before it
//! ```
//! Flags: 1 `max_count` set, 2 `max_age` set, 4 `truncate_before` set,
//! 8 soft-deleted, 16 hard-deleted, 32 erased, 64 version floor set (the
//! version the aggregate's next event gets when the log holds none of its
//! events any more).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::index::IndexState;
use crate::le::{le_u32, le_u64};

/// Name of the stream metadata file.
pub const STREAMS_NAME: &str = "STREAMS";

const MAGIC: [u8; 8] = *b"FLOGSTRM";
const VERSION: u32 = 1;
const HEADER_BYTES: usize = 28;
const ENTRY_FIXED_BYTES: usize = 1 + 8 + 8 + 8 + 8;

const FLAG_MAX_COUNT: u8 = 1;
const FLAG_MAX_AGE: u8 = 2;
const FLAG_TRUNCATE: u8 = 4;
const FLAG_SOFT: u8 = 8;
const FLAG_HARD: u8 = 16;
const FLAG_ERASED: u8 = 32;
const FLAG_FLOOR: u8 = 64;
const FLAGS_KNOWN: u8 = 127;

/// Retention rules of one aggregate: what reads hide and the scavenge
/// removes. Each is a prefix of the aggregate's versions, so the versions a
/// reader sees stay contiguous.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamMeta {
    /// Keep only the newest `max_count` events.
    pub max_count: Option<u64>,
    /// Keep only events recorded less than this long ago.
    pub max_age: Option<Duration>,
    /// Hide every version below this one.
    pub truncate_before: Option<u64>,
}

/// How [`crate::Store::delete_aggregate`] deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteMode {
    /// The events disappear from reads; a later append starts the aggregate
    /// again and its versions continue after the deleted ones (as in
    /// EventStoreDB), so an old `Exact` expectation can never match by accident.
    Soft,
    /// A tombstone: the events disappear, and any later append to the id
    /// fails with [`Error::AggregateDeleted`], forever.
    Hard,
}

/// Everything the store holds about one aggregate's lifecycle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamState {
    /// Its retention rules (a soft delete raises `truncate_before`).
    pub meta: StreamMeta,
    /// Whether, and how, it was deleted. A soft-deleted aggregate appended
    /// to again keeps `Some(Soft)` here; it has visible events again.
    pub deleted: Option<DeleteMode>,
    /// Whether it was erased ([`crate::Store::erase`]): hard-deleted, and
    /// its bytes leave every file at the next scavenge.
    pub erased: bool,
    /// The version its next event gets when the log holds none of its
    /// events any more (set by a soft delete, and by a scavenge before it
    /// removes all of them): versions never restart.
    pub version_floor: Option<u64>,
}

impl StreamState {
    fn flags(&self) -> u8 {
        let mut f = 0;
        if self.meta.max_count.is_some() {
            f |= FLAG_MAX_COUNT;
        }
        if self.meta.max_age.is_some() {
            f |= FLAG_MAX_AGE;
        }
        if self.meta.truncate_before.is_some() {
            f |= FLAG_TRUNCATE;
        }
        match self.deleted {
            Some(DeleteMode::Soft) => f |= FLAG_SOFT,
            Some(DeleteMode::Hard) => f |= FLAG_HARD,
            None => {}
        }
        if self.erased {
            f |= FLAG_ERASED;
        }
        if self.version_floor.is_some() {
            f |= FLAG_FLOOR;
        }
        f
    }

    /// Whether appends to the aggregate are refused.
    pub fn refuses_appends(&self) -> bool {
        self.deleted == Some(DeleteMode::Hard) || self.erased
    }

    /// The first version a reader sees, before `max_count` and `max_age`.
    fn static_first_version(&self) -> u64 {
        if self.refuses_appends() {
            return u64::MAX;
        }
        self.meta.truncate_before.unwrap_or(0)
    }
}

/// One change of an aggregate's lifecycle, applied by the writer thread.
#[derive(Debug, Clone)]
pub(crate) enum StreamChange {
    /// Replace the retention rules (a soft delete's cut is kept).
    SetMeta(StreamMeta),
    /// Delete the aggregate.
    Delete(DeleteMode),
    /// Erase the aggregate.
    Erase,
    /// The scavenge is about to remove every event of the aggregate (up to
    /// `last_version`): its versions must go on after it even when no event
    /// in the log says so any more. Set before the events go.
    Floor { last_version: u64 },
    /// The scavenge removed every event of an erased aggregate: the erasure
    /// completes, its id leaves the file and a tombstone of its hash stays.
    ErasureDone,
}

/// Every aggregate's rules: an immutable value, replaced whole on a change.
#[derive(Debug, Default, Clone)]
pub(crate) struct Rules {
    streams: HashMap<Box<str>, StreamState, foldhash::quality::RandomState>,
    /// Hashes of erased aggregates whose events are gone (their ids are in no file).
    tombstones: HashSet<[u8; 16]>,
    /// Whether any rule depends on the aggregate's length or the clock.
    dynamic: bool,
    /// The first position retention kept: recovery refuses a log that
    /// starts later (its head is missing) and completes a retention that
    /// crashed before removing every segment below it.
    log_start: u64,
}

impl Rules {
    /// The first position retention kept (0 until it removed anything).
    pub fn log_start(&self) -> u64 {
        self.log_start
    }

    /// The rules with the log's start moved to `start` (retention, before
    /// it removes the segments below it).
    pub fn with_log_start(&self, start: u64) -> Rules {
        Rules { log_start: self.log_start.max(start), ..self.clone() }
    }

    /// Whether no aggregate has a rule that hides events (tombstones only
    /// refuse appends).
    pub fn hides_nothing(&self) -> bool {
        self.streams.is_empty()
    }

    /// The version floor of the aggregate (the version its next event gets
    /// when the log holds none of its events), if it has one.
    pub fn version_floor(&self, aggregate_id: &str) -> Option<u64> {
        self.streams.get(aggregate_id)?.version_floor
    }

    /// The aggregate's state, if it has any rule.
    pub fn get(&self, aggregate_id: &str) -> Option<&StreamState> {
        self.streams.get(aggregate_id)
    }

    /// Every aggregate with a rule.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &StreamState)> + '_ {
        self.streams.iter().map(|(k, v)| (&**k, v))
    }

    /// Why an append to `aggregate_id` is refused, if it is.
    pub fn refusal(&self, aggregate_id: &str) -> Option<Error> {
        let refused = self.streams.get(aggregate_id).is_some_and(StreamState::refuses_appends)
            || (!self.tombstones.is_empty() && self.tombstones.contains(&id_hash(aggregate_id)));
        refused.then(|| Error::AggregateDeleted { aggregate_id: aggregate_id.to_string() })
    }

    /// Whether a soft-deleted aggregate with last version `current` has had
    /// no event since its deletion (then `NoStream` matches it).
    pub fn soft_deleted_empty(&self, aggregate_id: &str, current: Option<u64>) -> bool {
        self.streams.get(aggregate_id).is_some_and(|s| {
            s.deleted == Some(DeleteMode::Soft) && current.is_none_or(|c| c < s.meta.truncate_before.unwrap_or(0))
        })
    }

    /// The aggregate's last version for appends: the index's (`current`),
    /// or, when the log holds none of its events (a scavenge removed them
    /// all), the last version before its cut: versions never restart.
    pub fn current_version(&self, aggregate_id: &str, current: Option<u64>) -> Option<u64> {
        // Only when the log holds none of its events: a cut beyond the last
        // version of a live aggregate does not move its versions.
        if current.is_some() {
            return current;
        }
        self.streams.get(aggregate_id)?.version_floor?.checked_sub(1)
    }

    /// The rules with these version floors raised (aggregate, last version
    /// the log will no longer hold): what retention records before it
    /// removes every event of an aggregate. Hard-deleted aggregates need none.
    pub fn with_floors(&self, floors: &[(&str, u64)]) -> Rules {
        let mut next = self.clone();
        for (id, last_version) in floors {
            if self.refusal(id).is_some() {
                continue;
            }
            let state = next.streams.entry((*id).into()).or_default();
            state.version_floor = Some(state.version_floor.unwrap_or(0).max(last_version + 1));
        }
        next
    }

    /// The rules after `change` to `aggregate_id`, whose last version is `current`.
    pub fn changed(&self, aggregate_id: &str, current: Option<u64>, change: &StreamChange) -> Result<Rules> {
        if aggregate_id.is_empty() || aggregate_id.len() > crate::record::NAME_BYTES_MAX {
            return Err(Error::InvalidInput(format!(
                "aggregate id must be 1 to {} bytes, got {}",
                crate::record::NAME_BYTES_MAX,
                aggregate_id.len()
            )));
        }
        let by_scavenge = matches!(change, StreamChange::Floor { .. } | StreamChange::ErasureDone);
        // A hard-deleted aggregate may still be erased (privacy law comes later).
        let erasing_deleted =
            matches!(change, StreamChange::Erase) && self.streams.get(aggregate_id).is_some_and(|s| !s.erased);
        if let Some(e) = self.refusal(aggregate_id).filter(|_| !by_scavenge && !erasing_deleted) {
            return Err(e);
        }
        let mut next = self.clone();
        let state = next.streams.entry(aggregate_id.into()).or_default();
        match change {
            StreamChange::SetMeta(meta) => {
                if meta.max_count == Some(0) {
                    return Err(Error::InvalidInput(format!(
                        "max_count 0 for aggregate {aggregate_id:?}: delete the aggregate instead"
                    )));
                }
                let deleted_cut = match state.deleted {
                    Some(DeleteMode::Soft) => state.meta.truncate_before,
                    _ => None,
                };
                state.meta = *meta;
                // A soft delete's cut stays: its events must not come back.
                if let Some(cut) = deleted_cut {
                    state.meta.truncate_before = Some(cut.max(meta.truncate_before.unwrap_or(0)));
                }
            }
            StreamChange::Delete(mode) => {
                let Some(current) = current else {
                    return Err(Error::UnknownAggregate { aggregate_id: aggregate_id.to_string() });
                };
                state.deleted = Some(*mode);
                let cut = current + 1;
                state.version_floor = Some(state.version_floor.unwrap_or(0).max(cut));
                state.meta.truncate_before = Some(state.meta.truncate_before.unwrap_or(0).max(cut));
            }
            StreamChange::ErasureDone => {
                next.streams.remove(aggregate_id);
                next.tombstones.insert(id_hash(aggregate_id));
                next.dynamic = next.streams.values().any(|s| s.meta.max_count.is_some() || s.meta.max_age.is_some());
                return Ok(next);
            }
            StreamChange::Floor { last_version } => {
                state.version_floor = Some(state.version_floor.unwrap_or(0).max(last_version + 1));
            }
            StreamChange::Erase => {
                state.erased = true;
                state.deleted = Some(DeleteMode::Hard);
                if let Some(current) = current {
                    state.meta.truncate_before = Some(state.meta.truncate_before.unwrap_or(0).max(current + 1));
                }
            }
        }
        if *state == StreamState::default() {
            next.streams.remove(aggregate_id);
        }
        next.dynamic = next.streams.values().any(|s| s.meta.max_count.is_some() || s.meta.max_age.is_some());
        Ok(next)
    }

    /// Encodes the `STREAMS` file.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + self.streams.len() * 48 + 4);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(self.streams.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.tombstones.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.log_start.to_le_bytes());
        let mut ids: Vec<(&str, &StreamState)> = self.iter().collect();
        ids.sort_by_key(|(id, _)| *id);
        for (id, s) in ids {
            out.push(id.len() as u8);
            out.extend_from_slice(id.as_bytes());
            out.push(s.flags());
            out.extend_from_slice(&s.meta.max_count.unwrap_or(0).to_le_bytes());
            let age = s.meta.max_age.map_or(0, |a| u64::try_from(a.as_nanos()).unwrap_or(u64::MAX));
            out.extend_from_slice(&age.to_le_bytes());
            out.extend_from_slice(&s.meta.truncate_before.unwrap_or(0).to_le_bytes());
            out.extend_from_slice(&s.version_floor.unwrap_or(0).to_le_bytes());
        }
        let mut tombs: Vec<&[u8; 16]> = self.tombstones.iter().collect();
        tombs.sort();
        for t in tombs {
            out.extend_from_slice(t);
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes a `STREAMS` file read from `path`.
    pub fn decode(path: &Path, bytes: &[u8]) -> Result<Rules> {
        let bad = |offset: usize, reason: &str| Error::corrupt(path, offset as u64, reason.to_string());
        if bytes.len() < HEADER_BYTES + 4 {
            return Err(bad(0, "stream metadata file shorter than its header"));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body) != le_u32(crc, 0).unwrap_or_default() {
            return Err(bad(body.len(), "stream metadata checksum mismatch"));
        }
        if body[..8] != MAGIC {
            return Err(bad(0, "bad stream metadata magic"));
        }
        let version = le_u32(body, 8).unwrap_or_default();
        if version != VERSION {
            return Err(Error::UnsupportedFormat { path: path.to_path_buf(), found: version, supported: VERSION });
        }
        let count = |at| le_u32(body, at).unwrap_or_default() as usize;
        let (entries, tombstones) = (count(12), count(16));
        let mut rules = Rules { log_start: le_u64(body, 20).unwrap_or_default(), ..Rules::default() };
        let mut at = HEADER_BYTES;
        for _ in 0..entries {
            let len = *body.get(at).ok_or_else(|| bad(at, "stream metadata ends inside an entry"))? as usize;
            let fixed_at = at + 1 + len;
            let Some(fixed) = body.get(fixed_at..fixed_at + ENTRY_FIXED_BYTES) else {
                return Err(bad(at, "stream metadata ends inside an entry"));
            };
            let id = std::str::from_utf8(&body[at + 1..fixed_at]).map_err(|_| bad(at, "aggregate id is not UTF-8"))?;
            if id.is_empty() {
                return Err(bad(at, "empty aggregate id"));
            }
            let flags = fixed[0];
            if flags & !FLAGS_KNOWN != 0 || flags & (FLAG_SOFT | FLAG_HARD) == FLAG_SOFT | FLAG_HARD {
                return Err(bad(fixed_at, "unknown or contradictory stream flags"));
            }
            let opt = |bit: u8, v: u64| (flags & bit != 0).then_some(v);
            let state = StreamState {
                meta: StreamMeta {
                    max_count: opt(FLAG_MAX_COUNT, le_u64(fixed, 1).unwrap_or_default()),
                    max_age: opt(FLAG_MAX_AGE, le_u64(fixed, 9).unwrap_or_default()).map(Duration::from_nanos),
                    truncate_before: opt(FLAG_TRUNCATE, le_u64(fixed, 17).unwrap_or_default()),
                },
                deleted: match (flags & FLAG_SOFT != 0, flags & FLAG_HARD != 0) {
                    (true, _) => Some(DeleteMode::Soft),
                    (_, true) => Some(DeleteMode::Hard),
                    _ => None,
                },
                erased: flags & FLAG_ERASED != 0,
                version_floor: opt(FLAG_FLOOR, le_u64(fixed, 25).unwrap_or_default()),
            };
            if rules.streams.insert(id.into(), state).is_some() {
                return Err(bad(at, "aggregate listed twice"));
            }
            at = fixed_at + ENTRY_FIXED_BYTES;
        }
        for _ in 0..tombstones {
            let t = body.get(at..at + 16).ok_or_else(|| bad(at, "stream metadata ends inside a tombstone"))?;
            let mut h = [0u8; 16];
            h.copy_from_slice(t);
            rules.tombstones.insert(h);
            at += 16;
        }
        if at != body.len() {
            return Err(bad(at, "bytes after the last stream metadata entry"));
        }
        rules.dynamic = rules.streams.values().any(|s| s.meta.max_count.is_some() || s.meta.max_age.is_some());
        Ok(rules)
    }

    /// Reads `dir/STREAMS`; no file means no rules.
    pub fn load(dir: &Path) -> Result<Rules> {
        let path = dir.join(STREAMS_NAME);
        match std::fs::read(&path) {
            Ok(bytes) => Rules::decode(&path, &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Rules::default()),
            Err(e) => Err(Error::io("read stream metadata", &path, e)),
        }
    }

    /// Writes `dir/STREAMS` crash-safely.
    pub fn store(&self, dir: &Path) -> Result<()> {
        crate::durable::write_file(dir, STREAMS_NAME, &[&self.encode()], "write stream metadata").map(|_| ())
    }
}

/// A stable 128-bit hash of an aggregate id (two FNV-1a passes with
/// different offset bases): what a tombstone keeps of an erased id. A
/// collision can only refuse an append with [`Error::AggregateDeleted`].
pub(crate) fn id_hash(aggregate_id: &str) -> [u8; 16] {
    let fnv =
        |basis: u64| aggregate_id.bytes().fold(basis, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&fnv(0xcbf2_9ce4_8422_2325).to_le_bytes());
    out[8..].copy_from_slice(&fnv(0x6c62_272e_07bb_0142).to_le_bytes());
    out
}

/// What one reader hides: the rules as they were when it was made, with
/// `max_count` turned into a version cut against the reader's view and
/// `max_age` into a timestamp cut against its clock.
#[derive(Debug, Clone)]
pub(crate) struct Visibility {
    rules: Arc<Rules>,
    /// First visible version of each aggregate with a `max_count` rule.
    count_cuts: HashMap<Box<str>, u64, foldhash::quality::RandomState>,
    /// The reader's clock, unix nanos.
    now: i64,
}

impl Visibility {
    /// The cut `rules` make for a reader that sees positions below `visible_end`.
    pub fn new(rules: Arc<Rules>, index: Option<&IndexState>, visible_end: u64) -> Visibility {
        let mut count_cuts = HashMap::default();
        if rules.dynamic {
            if let Some(index) = index {
                for (id, s) in rules.iter() {
                    if let (Some(max), Some(v)) = (s.meta.max_count, index.version_below(id, visible_end)) {
                        count_cuts.insert(id.into(), (v + 1).saturating_sub(max));
                    }
                }
            }
        }
        Visibility { rules, count_cuts, now: crate::event::now_nanos() }
    }

    /// Whether no rule hides anything (the read paths skip every check).
    pub fn is_empty(&self) -> bool {
        self.rules.streams.is_empty()
    }

    /// The first version of `aggregate_id` a reader sees (`u64::MAX`: none),
    /// before `max_age`, which [`Visibility::hides`] checks per event.
    pub fn first_version(&self, aggregate_id: &str) -> u64 {
        let Some(s) = self.rules.streams.get(aggregate_id) else { return 0 };
        let count_cut = self.count_cuts.get(aggregate_id).copied().unwrap_or(0);
        s.static_first_version().max(count_cut)
    }

    /// Whether the event (of `aggregate_id` at `version`, recorded at
    /// `recorded_at`) is hidden.
    #[inline]
    pub fn hides(&self, aggregate_id: &str, version: u64, recorded_at: i64) -> bool {
        let Some(s) = self.rules.streams.get(aggregate_id) else { return false };
        if version < s.static_first_version() {
            return true;
        }
        if let Some(age) = s.meta.max_age {
            let age = i64::try_from(age.as_nanos()).unwrap_or(i64::MAX);
            if recorded_at < self.now.saturating_sub(age) {
                return true;
            }
        }
        s.meta.max_count.is_some() && self.count_cuts.get(aggregate_id).is_some_and(|cut| version < *cut)
    }

    /// Whether the aggregate has a `max_age` rule (which hides event by event).
    pub fn ages(&self, aggregate_id: &str) -> bool {
        self.rules.streams.get(aggregate_id).is_some_and(|s| s.meta.max_age.is_some())
    }

    /// Whether a soft delete hides every event of the aggregate up to
    /// `version` (then its snapshots are not used).
    pub fn deleted_through(&self, aggregate_id: &str, version: u64) -> bool {
        self.rules.streams.get(aggregate_id).is_some_and(|s| {
            s.refuses_appends()
                || (s.deleted == Some(DeleteMode::Soft) && version < s.meta.truncate_before.unwrap_or(0))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Rules {
        let r = Rules::default();
        let r = r
            .changed(
                "a",
                Some(9),
                &StreamChange::SetMeta(StreamMeta {
                    max_count: Some(3),
                    max_age: Some(Duration::from_secs(5)),
                    truncate_before: Some(2),
                }),
            )
            .unwrap();
        let r = r.changed("b", Some(4), &StreamChange::Delete(DeleteMode::Soft)).unwrap();
        let r = r.changed("c", Some(0), &StreamChange::Delete(DeleteMode::Hard)).unwrap();
        r.changed("d", Some(1), &StreamChange::Erase).unwrap()
    }

    #[test]
    fn file_round_trips_and_every_damage_is_an_error() {
        let mut rules = sample();
        rules.tombstones.insert(id_hash("gone"));
        let bytes = rules.encode();
        let back = Rules::decode(Path::new("STREAMS"), &bytes).unwrap();
        assert_eq!(back.encode(), bytes);
        assert_eq!(back.get("b").unwrap().meta.truncate_before, Some(5));
        assert!(back.refusal("c").is_some() && back.refusal("d").is_some() && back.refusal("gone").is_some());
        assert!(back.refusal("b").is_none());
        for cut in 0..bytes.len() {
            assert!(Rules::decode(Path::new("STREAMS"), &bytes[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(Rules::decode(Path::new("STREAMS"), &b).is_err(), "flip of bit {i}");
        }
    }

    #[test]
    fn cuts_follow_the_rules() {
        let v = Visibility::new(Arc::new(sample()), None, 100);
        assert_eq!(v.first_version("a"), 2);
        assert!(v.hides("a", 1, v.now) && !v.hides("a", 2, v.now));
        assert!(v.hides("a", 5, v.now - 6_000_000_000), "older than max_age");
        assert_eq!(v.first_version("b"), 5);
        assert_eq!(v.first_version("c"), u64::MAX);
        assert_eq!(v.first_version("zzz"), 0);
        assert!(v.deleted_through("b", 4) && !v.deleted_through("b", 5));
        let r = sample();
        assert!(r.soft_deleted_empty("b", Some(4)) && !r.soft_deleted_empty("b", Some(5)));
        // A hard-deleted aggregate can still be erased; an erased one not again.
        let erased = r.changed("c", Some(0), &StreamChange::Erase).unwrap();
        assert!(erased.get("c").unwrap().erased);
        assert!(matches!(erased.changed("c", Some(0), &StreamChange::Erase), Err(Error::AggregateDeleted { .. })));
        assert!(matches!(
            r.changed("nope", None, &StreamChange::Delete(DeleteMode::Soft)),
            Err(Error::UnknownAggregate { .. })
        ));
        // A soft delete's cut survives a later metadata change.
        let r = r.changed("b", Some(4), &StreamChange::SetMeta(StreamMeta::default())).unwrap();
        assert_eq!(r.get("b").unwrap().meta.truncate_before, Some(5));
    }
}
