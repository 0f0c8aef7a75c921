//! A durable consumer's dead-letter list, `consumers/<name>.parked`: an
//! append-only log of what happened to each parked event (parked, asked to
//! be replayed, replayed, discarded), folded into the list of events parked
//! now. Parking is a pointer: a record names the event's position, never a
//! copy of it, and the event stays in the log. It owns this byte layout; it
//! never runs handlers (module `runner`).
//!
//! Layout: an 8-byte header (magic `FLPK`, format version), then records:
//! `len: u32, crc32(body): u32, body`, where the body (little-endian) is
//! `kind: u8, position: u64, attempts: u32, at: i64, behind: u64
//! (u64::MAX: none), aggregate_len: u16, error_len: u32`, the aggregate id,
//! the error text. A record is appended and `fdatasync`ed before the
//! consumer's checkpoint may pass its position. A record torn by a crash can
//! only be the last one: the owner cuts it at open. A bad record followed by
//! more bytes is [`Error::Corrupt`] naming the file and offset.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::le::{le_u32, le_u64, put_u32, put_u64};

const MAGIC: &[u8; 4] = b"FLPK";
/// The dead-letter format this build writes and reads.
pub(crate) const PARKED_VERSION: u32 = 1;
const HEADER_BYTES: u64 = 8;
/// Bytes of a record body before the aggregate id and error text.
const BODY_FIXED: usize = 35;
const B_KIND: usize = 0;
const B_POSITION: usize = 1;
const B_ATTEMPTS: usize = 9;
const B_AT: usize = 13;
const B_BEHIND: usize = 21;
const B_AGG_LEN: usize = 29;
const B_ERR_LEN: usize = 31;
const _: () = assert!(B_ERR_LEN + 4 == BODY_FIXED);
/// The longest error text kept (longer texts are cut at a char boundary).
pub const PARKED_ERROR_BYTES_MAX: usize = 4096;

/// What a record says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Parked = 1,
    ReplayRequested = 2,
    Resolved = 3,
    Discarded = 4,
}

/// An event in a consumer's dead-letter list.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParkedEvent {
    /// Its global position: the event itself stays in the log.
    pub position: u64,
    /// Its aggregate.
    pub aggregate_id: String,
    /// How many times the handler was given it.
    pub attempts: u32,
    /// The handler's last error, as text.
    pub error: String,
    /// When it was (last) parked, unix nanoseconds.
    pub parked_at: i64,
    /// Set when it was parked without being handled because an earlier
    /// event of its aggregate (at this position) was parked.
    pub behind: Option<u64>,
    /// Whether a replay was asked for (`factlog parked … replay`): the
    /// consumer's runner hands it to its handler again before going on.
    pub replay_requested: bool,
}

/// A consumer's dead-letter list, open for its owner.
pub(crate) struct ParkedLog {
    file: File,
    path: PathBuf,
    end: u64,
    live: BTreeMap<u64, ParkedEvent>,
}

impl ParkedLog {
    /// Opens (creating if missing) the list at `path`; cuts a torn last record.
    pub(crate) fn open(path: &Path) -> Result<ParkedLog> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io("open dead-letter list", path, e))?;
        let bytes = std::fs::read(path).map_err(|e| Error::io("read dead-letter list", path, e))?;
        let mut log = ParkedLog { file, path: path.to_path_buf(), end: 0, live: BTreeMap::new() };
        if bytes.is_empty() {
            log.write_at(&header(), 0)?;
            log.sync()?;
            log.end = HEADER_BYTES;
            return Ok(log);
        }
        let (live, good_end) = fold(&bytes, path)?;
        if good_end < bytes.len() as u64 {
            // A record torn by a crash: it was never acknowledged.
            log.file.set_len(good_end).map_err(|e| Error::io("cut torn dead-letter record", path, e))?;
            log.sync()?;
        }
        log.live = live;
        log.end = good_end;
        Ok(log)
    }

    /// The events parked now, by position.
    pub(crate) fn live(&self) -> &BTreeMap<u64, ParkedEvent> {
        &self.live
    }

    /// Records durably that `event` is parked (again, with new attempts and error).
    pub(crate) fn park(&mut self, mut event: ParkedEvent) -> Result<()> {
        event.error = cut_text(&event.error);
        event.replay_requested = false;
        self.append(Kind::Parked, &event)?;
        self.live.insert(event.position, event);
        Ok(())
    }

    /// Records durably that a parked event should be handed to the handler again.
    pub(crate) fn request_replay(&mut self, position: u64) -> Result<()> {
        self.mark(position, Kind::ReplayRequested)?;
        if let Some(e) = self.live.get_mut(&position) {
            e.replay_requested = true;
        }
        Ok(())
    }

    /// Records durably that a parked event was handled on replay, or discarded.
    pub(crate) fn remove(&mut self, position: u64, discarded: bool) -> Result<()> {
        self.mark(position, if discarded { Kind::Discarded } else { Kind::Resolved })?;
        self.live.remove(&position);
        Ok(())
    }

    fn mark(&mut self, position: u64, kind: Kind) -> Result<()> {
        let event = self
            .live
            .get(&position)
            .cloned()
            .ok_or_else(|| Error::NotParked { consumer: consumer_of(&self.path), position })?;
        self.append(kind, &event)
    }

    fn append(&mut self, kind: Kind, e: &ParkedEvent) -> Result<()> {
        let record = encode(kind, e);
        self.write_at(&record, self.end)?;
        self.sync()?;
        self.end += record.len() as u64;
        Ok(())
    }

    fn write_at(&self, bytes: &[u8], at: u64) -> Result<()> {
        self.file.write_all_at(bytes, at).map_err(|e| Error::io("write dead-letter list", &self.path, e))
    }

    fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(|e| Error::io("fsync dead-letter list", &self.path, e))
    }
}

#[cfg(test)]
impl ParkedLog {
    /// Makes every later write fail (a read-only descriptor), as a full or
    /// failing disk would.
    pub(crate) fn break_writes(&mut self) {
        if let Ok(f) = File::open(&self.path) {
            self.file = f;
        }
    }
}

/// Creates an empty list `dir/name` crash-safely (it appears whole, with
/// its header, or not at all), unless it exists.
pub(crate) fn create(dir: &Path, name: &str) -> Result<()> {
    if dir.join(name).exists() {
        return Ok(());
    }
    crate::durable::write_file(dir, name, &[&header()], "create dead-letter list").map(|_| ())
}

fn header() -> [u8; HEADER_BYTES as usize] {
    let mut header = [0u8; HEADER_BYTES as usize];
    header[..4].copy_from_slice(MAGIC);
    put_u32(&mut header, 4, PARKED_VERSION);
    header
}

/// The events parked now in the list at `path` (none if it does not exist),
/// read without the consumer's lock: a torn last record is skipped, not cut.
pub(crate) fn read(path: &Path) -> Result<BTreeMap<u64, ParkedEvent>> {
    match std::fs::read(path) {
        Ok(bytes) if bytes.is_empty() => Ok(BTreeMap::new()),
        Ok(bytes) => fold(&bytes, path).map(|(live, _)| live),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(Error::io("read dead-letter list", path, e)),
    }
}

/// Rewrites the list at `path` without any record naming one of `ids`
/// (aggregates being erased), crash-safely (written aside, synced, renamed):
/// the caller holds the consumer's lock. Returns how many records went.
pub(crate) fn scrub(path: &Path, ids: &std::collections::HashSet<String>) -> Result<usize> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io("read dead-letter list", path, e)),
    };
    let (_, good_end) = fold(&bytes, path)?;
    let mut kept: Vec<&[u8]> = vec![&bytes[..HEADER_BYTES as usize]];
    let (mut at, mut dropped) = (HEADER_BYTES as usize, 0);
    while at < good_end as usize {
        let Ok((_, event, next)) = decode_at(&bytes, at) else { break };
        match ids.contains(&event.aggregate_id) {
            true => dropped += 1,
            false => kept.push(&bytes[at..next]),
        }
        at = next;
    }
    if dropped > 0 {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
            return Err(Error::InvalidInput(format!("dead-letter list path {}", path.display())));
        };
        crate::durable::write_file(dir, name, &kept, "scrub dead-letter list")?;
    }
    Ok(dropped)
}

/// The consumer name a dead-letter file belongs to, for error messages.
fn consumer_of(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Folds the records into the live list; returns it and the end of the last
/// good record (less than `bytes.len()` when the last record is torn).
fn fold(bytes: &[u8], path: &Path) -> Result<(BTreeMap<u64, ParkedEvent>, u64)> {
    if bytes.len() < HEADER_BYTES as usize || &bytes[..4] != MAGIC {
        return Err(Error::corrupt(path, 0, "not a dead-letter list (bad header)"));
    }
    let version = le_u32(bytes, 4).unwrap_or_default();
    if version != PARKED_VERSION {
        return Err(Error::UnsupportedFormat { path: path.to_path_buf(), found: version, supported: PARKED_VERSION });
    }
    let mut live = BTreeMap::new();
    let mut at = HEADER_BYTES as usize;
    while at < bytes.len() {
        let rest = bytes.get(at..).unwrap_or_default();
        if rest.iter().all(|b| *b == 0) {
            // The file grew but the record's bytes never reached the disk.
            return Ok((live, at as u64));
        }
        let (kind, event, next) = match decode_at(bytes, at) {
            Ok(r) => r,
            // Torn: a record of a possible length that runs past the end of
            // the file, or the last record failing its checksum.
            Err(Torn::Short(len)) if len <= RECORD_BODY_MAX => return Ok((live, at as u64)),
            Err(Torn::Bad(len)) if at + 8 + len >= bytes.len() => return Ok((live, at as u64)),
            Err(Torn::Short(len)) => {
                return Err(Error::corrupt(path, at as u64, format!("dead-letter record claims {len} bytes")))
            }
            Err(Torn::Bad(_)) => {
                return Err(Error::corrupt(path, at as u64, "dead-letter record fails its checksum before the end"))
            }
        };
        match kind {
            Kind::Parked => {
                live.insert(event.position, event);
            }
            Kind::ReplayRequested => {
                if let Some(e) = live.get_mut(&event.position) {
                    e.replay_requested = true;
                }
            }
            Kind::Resolved | Kind::Discarded => {
                live.remove(&event.position);
            }
        }
        at = next;
    }
    Ok((live, at as u64))
}

/// The longest record body this format can hold.
const RECORD_BODY_MAX: usize = BODY_FIXED + u16::MAX as usize + PARKED_ERROR_BYTES_MAX;

/// Why a record could not be read.
enum Torn {
    /// The file ends inside it; its declared body length (0: not even that).
    Short(usize),
    /// It fails its checksum or does not parse; its declared body length.
    Bad(usize),
}

fn decode_at(bytes: &[u8], at: usize) -> std::result::Result<(Kind, ParkedEvent, usize), Torn> {
    let len = le_u32(bytes, at).ok_or(Torn::Short(0))? as usize;
    let crc = le_u32(bytes, at + 4).ok_or(Torn::Short(len))?;
    let body = bytes.get(at + 8..(at + 8).checked_add(len).ok_or(Torn::Short(len))?).ok_or(Torn::Short(len))?;
    if crc32fast::hash(body) != crc {
        return Err(Torn::Bad(len));
    }
    let bad = || Torn::Bad(len);
    let kind = match body.get(B_KIND) {
        Some(1) => Kind::Parked,
        Some(2) => Kind::ReplayRequested,
        Some(3) => Kind::Resolved,
        Some(4) => Kind::Discarded,
        _ => return Err(bad()),
    };
    let agg_len = body.get(B_AGG_LEN..B_AGG_LEN + 2).map(|b| u16::from_le_bytes([b[0], b[1]])).ok_or_else(bad)?;
    let err_len = le_u32(body, B_ERR_LEN).ok_or_else(bad)? as usize;
    let agg = body.get(BODY_FIXED..BODY_FIXED + agg_len as usize).ok_or_else(bad)?;
    let err = body.get(BODY_FIXED + agg_len as usize..).filter(|e| e.len() == err_len).ok_or_else(bad)?;
    let behind = le_u64(body, B_BEHIND).ok_or_else(bad)?;
    let event = ParkedEvent {
        position: le_u64(body, B_POSITION).ok_or_else(bad)?,
        aggregate_id: String::from_utf8(agg.to_vec()).map_err(|_| bad())?,
        attempts: le_u32(body, B_ATTEMPTS).ok_or_else(bad)?,
        error: String::from_utf8_lossy(err).into_owned(),
        parked_at: le_u64(body, B_AT).ok_or_else(bad)? as i64,
        behind: (behind != u64::MAX).then_some(behind),
        replay_requested: false,
    };
    Ok((kind, event, at + 8 + len))
}

fn encode(kind: Kind, e: &ParkedEvent) -> Vec<u8> {
    let agg = e.aggregate_id.as_bytes();
    let err = e.error.as_bytes();
    let mut body = vec![0u8; BODY_FIXED];
    body[B_KIND] = kind as u8;
    put_u64(&mut body, B_POSITION, e.position);
    put_u32(&mut body, B_ATTEMPTS, e.attempts);
    put_u64(&mut body, B_AT, e.parked_at as u64);
    put_u64(&mut body, B_BEHIND, e.behind.unwrap_or(u64::MAX));
    body[B_AGG_LEN..B_AGG_LEN + 2].copy_from_slice(&(agg.len() as u16).to_le_bytes());
    put_u32(&mut body, B_ERR_LEN, err.len() as u32);
    body.extend_from_slice(agg);
    body.extend_from_slice(err);
    let mut record = vec![0u8; 8];
    put_u32(&mut record, 0, body.len() as u32);
    put_u32(&mut record, 4, crc32fast::hash(&body));
    record.extend_from_slice(&body);
    record
}

/// `text` cut to [`PARKED_ERROR_BYTES_MAX`] at a char boundary.
fn cut_text(text: &str) -> String {
    let mut end = text.len().min(PARKED_ERROR_BYTES_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(position: u64) -> ParkedEvent {
        ParkedEvent {
            position,
            aggregate_id: format!("agg-{position}"),
            attempts: 3,
            error: "boom".into(),
            parked_at: 7,
            behind: None,
            replay_requested: false,
        }
    }

    #[test]
    fn park_replay_request_resolve_and_discard_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.parked");
        let mut log = ParkedLog::open(&path).unwrap();
        for p in [3, 8, 11] {
            log.park(event(p)).unwrap();
        }
        log.request_replay(8).unwrap();
        log.remove(3, false).unwrap();
        log.remove(11, true).unwrap();
        assert!(matches!(log.remove(99, true), Err(Error::NotParked { position: 99, .. })));
        drop(log);
        let log = ParkedLog::open(&path).unwrap();
        let live: Vec<_> = log.live().values().cloned().collect();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].position, 8);
        assert!(live[0].replay_requested);
        assert_eq!(read(&path).unwrap(), *log.live());
    }

    #[test]
    fn every_truncation_keeps_a_prefix_of_the_records_and_the_owner_cuts_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.parked");
        let mut log = ParkedLog::open(&path).unwrap();
        let mut ends = vec![HEADER_BYTES];
        for p in 0..4 {
            log.park(event(p)).unwrap();
            ends.push(log.end);
        }
        drop(log);
        let full = std::fs::read(&path).unwrap();
        for cut in HEADER_BYTES as usize..=full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let whole = ends.iter().filter(|e| **e <= cut as u64).count() as u64 - 1;
            assert_eq!(read(&path).unwrap().len() as u64, whole, "cut at {cut}");
            let log = ParkedLog::open(&path).unwrap();
            assert_eq!(log.live().len() as u64, whole, "cut at {cut}");
            assert_eq!(std::fs::metadata(&path).unwrap().len(), ends[whole as usize]);
        }
    }

    #[test]
    fn a_bad_record_in_the_middle_is_corrupt_naming_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.parked");
        let mut log = ParkedLog::open(&path).unwrap();
        log.park(event(1)).unwrap();
        log.park(event(2)).unwrap();
        drop(log);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER_BYTES as usize + 12] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        match ParkedLog::open(&path) {
            Err(Error::Corrupt { path: p, offset, .. }) => assert_eq!((p, offset), (path.clone(), HEADER_BYTES)),
            other => panic!("{:?}", other.map(|_| ())),
        }
        std::fs::write(&path, b"FLPK\x09\0\0\0").unwrap();
        assert!(matches!(read(&path), Err(Error::UnsupportedFormat { found: 9, .. })));
        std::fs::write(&path, b"nonsense").unwrap();
        assert!(matches!(read(&path), Err(Error::Corrupt { offset: 0, .. })));
    }

    #[test]
    fn a_zero_filled_tail_is_torn_and_an_impossible_length_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.parked");
        let mut log = ParkedLog::open(&path).unwrap();
        log.park(event(1)).unwrap();
        let end = log.end;
        drop(log);
        // The size reached the disk, the bytes did not.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[0u8; 100]);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(ParkedLog::open(&path).unwrap().live().len(), 1);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), end, "the owner cut the zeros");
        // A length no record can have, then more bytes: corruption, not a torn tail to cut.
        let mut bytes = std::fs::read(&path).unwrap();
        let mut bad = vec![0u8; 8];
        put_u32(&mut bad, 0, u32::MAX);
        bytes.extend_from_slice(&bad);
        bytes.extend_from_slice(&[1u8; 40]);
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(ParkedLog::open(&path), Err(Error::Corrupt { offset, .. }) if offset == end));
    }

    #[test]
    fn long_error_texts_are_cut_at_a_char_boundary() {
        let text = "é".repeat(PARKED_ERROR_BYTES_MAX);
        let cut = cut_text(&text);
        assert!(cut.len() <= PARKED_ERROR_BYTES_MAX && text.starts_with(&cut));
    }
}
