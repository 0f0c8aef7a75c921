//! The reference store of the `segment_open` target: built once per
//! process in a scratch directory, then held in memory as its files plus
//! everything a check needs to know about them (events, batch boundaries,
//! interesting offsets). Its construction is deterministic: the committed
//! `segment_open` corpus addresses its files and frames by index, so a change
//! here means regenerating the seed inputs (fuzz/README.md).

use std::collections::HashMap;
use std::sync::OnceLock;

use bytes::Bytes;
use factlog::{ExpectedVersion, NewEvent, RecordedEvent, Snapshot, Store};
use rand::rngs::StdRng;
use rand::{Rng, RngCore};

use super::layout::{frames_of, le32, le64, snap_frames_of, SEG_HEADER};
use super::scratch::{fuzz_options, read_tree, scratch_dir};
use crate::random;

/// A reference store, built once per process, held in memory.
pub struct Base {
    /// Files by path relative to the store (`LOCK` excluded), sorted.
    pub files: Vec<(String, Vec<u8>)>,
    /// Every event, by position.
    pub events: Vec<RecordedEvent>,
    /// Aggregates, in order of first append.
    pub aggregates: Vec<String>,
    /// One past the last position of each batch.
    pub batch_ends: Vec<u64>,
    /// Per file: interesting offsets (frame starts, checkpoint entries).
    pub points: Vec<Vec<usize>>,
    /// Per file: where its records end (segments, snapshot files), else its length.
    pub log_end: Vec<usize>,
    /// Index of the active (last) segment in `files`.
    pub active: usize,
    /// Frames of the active segment: (offset, length, position).
    pub active_frames: Vec<(usize, usize, u64)>,
    /// Every snapshot saved: aggregate → (version, schema version, data).
    pub snapshots_saved: HashMap<String, Vec<(u64, u32, Vec<u8>)>>,
    /// What `latest_snapshot` returned for each aggregate once all were saved.
    pub snapshots_latest: HashMap<String, Snapshot>,
}

/// The reference store of [`segment_open`](super::segment_open()): four
/// segments (three sealed with checkpoints), batches of 1–5 events of
/// 0–6000 bytes over seven aggregates (one with a 255-byte id), and
/// snapshots in sealed and active snapshot files.
pub fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(build_base)
}

impl Base {
    /// The offset that anchor byte `a` names in file `file`: 0 is the start,
    /// 255 the end, 254 where its records end, anything else one of its
    /// interesting points.
    pub(super) fn anchor(&self, file: usize, a: u8) -> usize {
        match a {
            0 => 0,
            255 => self.files[file].1.len(),
            254 => self.log_end[file],
            _ => {
                let p = &self.points[file];
                if p.is_empty() {
                    0
                } else {
                    p[(a as usize - 1) % p.len()]
                }
            }
        }
    }

    /// Index of the file named `name`.
    pub fn file_index(&self, name: &str) -> Option<usize> {
        self.files.iter().position(|f| f.0 == name)
    }
}

/// What filling the reference store recorded, besides its files.
struct Filled {
    aggregates: Vec<String>,
    batch_ends: Vec<u64>,
    snapshots_saved: HashMap<String, Vec<(u64, u32, Vec<u8>)>>,
}

fn build_base() -> Base {
    let dir = scratch_dir();
    let store = Store::open(dir.path(), fuzz_options()).expect("open base store");
    let filled = fill(&store);
    let events = store.read_all_owned(0, usize::MAX).expect("read base store");
    let mut snapshots_latest = HashMap::new();
    for agg in filled.snapshots_saved.keys() {
        let s = store.latest_snapshot(agg).expect("read snapshot").expect("snapshot saved");
        snapshots_latest.insert(agg.clone(), s);
    }
    store.close().expect("close base store");
    let files = read_tree(dir.path());
    let active = check_files(&files);
    let (points, log_end) = files.iter().map(|(name, bytes)| points_of(name, bytes)).unzip();
    let active_frames = frames_of(&files[active].1);
    let first_active = active_frames.first().map_or(events.len() as u64, |f| f.2);
    assert!(
        filled.batch_ends.contains(&first_active) || first_active == 0,
        "active segment does not start at a batch boundary"
    );
    assert_eq!(events.len() as u64, *filled.batch_ends.last().unwrap());
    Base {
        files,
        events,
        aggregates: filled.aggregates,
        batch_ends: filled.batch_ends,
        points,
        log_end,
        active,
        active_frames,
        snapshots_saved: filled.snapshots_saved,
        snapshots_latest,
    }
}

/// Appends batches round-robin over the aggregates, with a snapshot after
/// every third, until there are four segments and the active one holds at
/// least 50,000 bytes.
fn fill(store: &Store) -> Filled {
    let mut aggregates: Vec<String> =
        ["acct-0", "acct-1", "acct-2", "acct-3", "acct-4", "ünïcödé-agg"].iter().map(|s| s.to_string()).collect();
    aggregates.push("L".repeat(255));
    let mut rng = random::rng(&[0x5eed]);
    let mut serial = 0u64;
    let mut batch_ends = Vec::new();
    let mut sealed_bytes = 0u64;
    let mut snapshots_saved: HashMap<String, Vec<(u64, u32, Vec<u8>)>> = HashMap::new();
    for i in 0.. {
        let st = store.stats();
        if st.segments >= 4 && st.log_bytes - sealed_bytes >= 50_000 {
            break;
        }
        assert!(i < 10_000, "base store never filled");
        let agg = &aggregates[i % aggregates.len()];
        let n = rng.gen_range(1..=5);
        let evs: Vec<NewEvent> = (0..n)
            .map(|_| {
                serial += 1;
                base_event(serial, &mut rng)
            })
            .collect();
        let r = store.append(agg, ExpectedVersion::Any, evs).expect("append to base store");
        if store.stats().segments > st.segments {
            sealed_bytes = st.log_bytes;
        }
        batch_ends.push(r.last_position + 1);
        if i % 3 == 1 {
            // Snapshots: compressible and incompressible states.
            let data: Vec<u8> = if i % 2 == 0 {
                format!("{{\"balance\":{i},\"owner\":\"{agg}\"}}").repeat(1 + i % 40).into_bytes()
            } else {
                let mut state = vec![0u8; rng.gen_range(200..1700)];
                rng.fill_bytes(&mut state);
                state
            };
            store
                .save_snapshot(agg, r.last_version, factlog::SchemaVersion((i % 3) as u32), &data)
                .expect("save snapshot");
            snapshots_saved.entry(agg.clone()).or_default().push((r.last_version, (i % 3) as u32, data));
        }
    }
    Filled { aggregates, batch_ends, snapshots_saved }
}

fn base_event(serial: u64, rng: &mut StdRng) -> NewEvent {
    let size = if rng.gen_ratio(1, 8) { rng.gen_range(3000..6000) } else { rng.gen_range(0..1200) };
    let fill = (serial % 251) as u8;
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&serial.to_le_bytes());
    id[8..].copy_from_slice(b"fuzzbase");
    NewEvent {
        event_id: factlog::EventId(id),
        event_type: ["Opened", "Deposited", "Withdrawn", "ClosedWithAVeryLongTypeNameForTesting"][serial as usize % 4]
            .to_string(),
        event_version: (serial % 3) as u32 + 1,
        occurred_at: if serial.is_multiple_of(7) {
            -(serial as i64)
        } else {
            1_700_000_000_000_000_000 + serial as i64
        },
        causation_id: (serial.is_multiple_of(2)).then_some(factlog::EventId([fill; 16])),
        correlation_id: (serial.is_multiple_of(3)).then_some(factlog::EventId([fill ^ 0x55; 16])),
        metadata: if serial.is_multiple_of(5) { Bytes::new() } else { Bytes::from(format!("{{\"serial\":{serial}}}")) },
        data: Bytes::from((0..size).map(|i| fill.wrapping_add(i as u8)).collect::<Vec<u8>>()),
    }
}

/// Checks that the store has what the target needs (four segments,
/// checkpoints, snapshot files); returns the index of the active segment.
fn check_files(files: &[(String, Vec<u8>)]) -> usize {
    let segs: Vec<usize> = (0..files.len()).filter(|i| files[*i].0.ends_with(".seg")).collect();
    assert!(segs.len() >= 4, "base store has {} segments", segs.len());
    assert!(files.iter().filter(|f| f.0.ends_with(".idx")).count() >= 3, "base store lacks checkpoints");
    assert!(
        files.iter().filter(|f| f.0.ends_with(".snap")).count() >= 2,
        "base store lacks snapshot files: {:?}",
        files.iter().map(|f| (&f.0, f.1.len())).collect::<Vec<_>>()
    );
    *segs.last().unwrap()
}

/// A file's interesting offsets (frame starts, checkpoint header fields and
/// entries, else every 8th byte) and where its records end.
fn points_of(name: &str, bytes: &[u8]) -> (Vec<usize>, usize) {
    if name.ends_with(".seg") {
        let fr = frames_of(bytes);
        let end = fr.last().map_or(SEG_HEADER, |f| f.0 + f.1);
        (fr.iter().map(|f| f.0).collect(), end)
    } else if name.ends_with(".snap") {
        (snap_frames_of(bytes), bytes.len())
    } else if name.ends_with(".idx") && bytes.len() >= 64 {
        // Index file format 3: header fields, the offsets (4 bytes each),
        // then the aggregate table's rows (32 bytes each).
        let covered = (le64(bytes, 24) as usize).min(bytes.len() / 4);
        let aggregates = (le32(bytes, 40) as usize).min(bytes.len() / 32);
        let table = 64 + 4 * covered;
        let mut p = vec![8, 12, 16, 24, 32, 40, 44, 48, 56, 60];
        p.extend((0..covered).map(|i| 64 + 4 * i));
        p.extend((0..aggregates).map(|i| table + 32 * i).filter(|at| *at < bytes.len()));
        (p, bytes.len())
    } else {
        ((0..bytes.len()).step_by(8).collect(), bytes.len())
    }
}
