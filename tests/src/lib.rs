//! Shared helpers for factlog's black-box integration tests and fuzz
//! targets: deterministic event builders, store options, seeded randomness
//! ([`random`]), what the snapshot crash child and its checker agree on
//! ([`snapshot_crash`]), and the fuzz checks ([`fuzz_checks`]). It reaches
//! the engine only through its public API and the doc-hidden `record` and
//! `snapshot` modules, and never touches files outside the directories its
//! callers hand it and its own scratch directories.

use bytes::Bytes;
use factlog::{NewEvent, Options};

pub mod fuzz_checks;
pub mod random;

/// A deterministic 16-byte id from two numbers.
pub fn id(a: u64, b: u64) -> factlog::EventId {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&a.to_le_bytes());
    out[8..].copy_from_slice(&b.to_le_bytes());
    factlog::EventId(out)
}

/// An event whose every field is derived from `(stream, n)`.
pub fn event(stream: u64, n: u64) -> NewEvent {
    NewEvent {
        event_id: id(stream, n),
        event_type: format!("Thing{}Happened", n % 3),
        event_version: (n % 4) as u32 + 1,
        occurred_at: 1_700_000_000_000_000_000 + n as i64,
        causation_id: n.is_multiple_of(2).then(|| id(stream + 1000, n)),
        correlation_id: n.is_multiple_of(3).then(|| id(stream + 2000, n)),
        metadata: Bytes::from(format!("{{\"n\":{n}}}")),
        data: Bytes::from(format!("payload-{stream}-{n}-").repeat((n % 5 + 1) as usize)),
    }
}

/// Small segments so that tests roll often.
pub fn small_options() -> Options {
    Options::default().segment_bytes(64 * 1024).max_event_bytes(16 * 1024).prepare_next_segment(true)
}

/// What `snapshot_crash_child` and its checker agree on.
pub mod snapshot_crash {
    use factlog::Options;

    /// Aggregates the child cycles through.
    pub const AGGREGATES: u64 = 4;

    /// Tiny snapshot files (many rolls and compactions), one kept per aggregate.
    pub fn options() -> Options {
        super::small_options().snapshot_file_bytes(4096).snapshots_keep(1)
    }

    /// Every snapshot kept, so nothing is ever compacted: 16 KiB files that
    /// roll without a compaction after them (whose directory fsync would
    /// also make the new file's name durable).
    pub fn options_keeping_all() -> Options {
        super::small_options().snapshot_file_bytes(16 * 1024).snapshots_keep(1_000_000)
    }

    /// Name of aggregate `n`.
    pub fn aggregate(n: u64) -> String {
        format!("acct-{n}")
    }

    /// Event id of the event the child appends to `aggregate` at `version`:
    /// the name's CRC32, then the version (distinct for the child's aggregates).
    pub fn event_id(aggregate: &str, version: u64) -> [u8; 16] {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&crate::random::name_seed(aggregate).to_le_bytes());
        id[8..].copy_from_slice(&version.to_le_bytes());
        id
    }

    /// The state saved for `aggregate` at `version`: 700 incompressible bytes.
    pub fn state(aggregate: &str, version: u64) -> Vec<u8> {
        crate::random::noise(&[crate::random::name_seed(aggregate), version], 700)
    }
}

/// Every file under `dir`, recursively (for searching a store's bytes).
pub fn all_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(all_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The segment files of the store in `dir`, in log order.
pub fn segment_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

/// One damaged copy of a store, made by [`for_each_cut`].
pub struct Cut {
    /// The copy's directory (removed when the `Cut` is dropped).
    pub dir: tempfile::TempDir,
    /// The byte offset of the cut in the last segment.
    pub at: u64,
    /// Whether the file was truncated there (else zeroed from there to `end`).
    pub truncated: bool,
    /// Whether the cut changed no byte (it fell in zero padding).
    pub intact: bool,
}

/// For every byte `at` in `start..end` of the last segment of the (closed)
/// store in `pristine`, and for both ways a crash can leave it (the file
/// truncated at `at`, or zeros from `at` to `end`), hands `check` a copy of
/// the store cut there. Returns the number of cuts made.
pub fn for_each_cut(pristine: &std::path::Path, start: u64, end: u64, mut check: impl FnMut(Cut)) -> usize {
    let seg = segment_files(pristine).pop().expect("a segment");
    let pristine_bytes = std::fs::read(&seg).unwrap();
    let seg_name = seg.file_name().expect("a file name").to_owned();
    let mut cuts = 0;
    for at in start..end {
        for truncated in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            for e in std::fs::read_dir(pristine).unwrap() {
                let p = e.unwrap().path();
                if p.is_file() {
                    std::fs::copy(&p, dir.path().join(p.file_name().expect("a file name"))).unwrap();
                }
            }
            let path = dir.path().join(&seg_name);
            if truncated {
                std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(at).unwrap();
            } else {
                let mut bytes = std::fs::read(&path).unwrap();
                bytes[at as usize..end as usize].fill(0);
                std::fs::write(&path, &bytes).unwrap();
            }
            let intact = pristine_bytes[at as usize..end as usize].iter().all(|b| *b == 0);
            check(Cut { dir, at, truncated, intact });
            cuts += 1;
        }
    }
    cuts
}

/// What `lifecycle_crash_child` and its checker agree on.
pub mod lifecycle_crash {
    use bytes::Bytes;
    use factlog::{NewEvent, Options, Retention};

    /// Aggregates the child cycles through.
    pub const AGGREGATES: u64 = 6;

    /// Small segments (many rolls, rewrites and retention runs), retention at ten of them.
    pub fn options() -> Options {
        super::small_options().retention(Retention { max_bytes: Some(10 * 64 * 1024), ..Default::default() })
    }

    /// The name of aggregate `n`.
    pub fn aggregate(n: u64) -> String {
        format!("lc-{n}")
    }

    /// Event `i` of the batch with this serial: its id says both, its
    /// payload (about 1 KiB) repeats the id, so a torn or misplaced copy shows.
    pub fn event(serial: u64, i: u64) -> NewEvent {
        let id = super::id(serial, i);
        NewEvent {
            data: Bytes::from(format!("{serial:012}/{i}|").repeat(64)),
            ..NewEvent::new(id, "ThingHappened", Bytes::new())
        }
    }
}
