//! The checks behind factlog's fuzz targets, as plain functions of the
//! fuzzer's bytes. Each `pub fn TARGET(&[u8])` returns normally for every
//! input the engine handles correctly (including inputs it rejects with an
//! error) and panics only when an invariant is broken: a panic here is a
//! finding. The cargo-fuzz targets in `fuzz/fuzz_targets/` are one-line
//! wrappers around these functions, and `tests/tests/fuzz_corpus.rs` replays
//! the committed corpora through them under plain `cargo test`. The checks
//! never touch a store outside their own scratch directories.
//!
//! Targets, one module each:
//! * [`record_decode()`]: arbitrary bytes as one event frame (header parse,
//!   checksum, rkyv validation, re-encoding round trip), and, when the bytes
//!   validate, as the only frame of a store that is then opened and read.
//! * [`snapshot_decode()`]: arbitrary bytes as one snapshot frame.
//! * [`segment_open()`]: mutations of a copy of a real store (several sealed
//!   segments with checkpoints, an active segment, snapshot files; see
//!   [`base()`]), then open, read everything, append, reopen.
//! * [`ops()`]: a sequence of appends, reads, reopens, snapshots and simulated
//!   crashes, checked against an in-memory model.
//!
//! Shared pieces: `input` (the fuzzer's bytes as numbers), `layout` (byte
//! fields, checksums, frame walking), `scratch` (store options and scratch
//! directories), and `seed` (seed corpora and the built inputs of findings).
//!
//! Scratch stores live under `$FACTLOG_FUZZ_TMPDIR`, else `/dev/shm` when it
//! is writable (fsync is free there), else the system temp directory.

mod base;
mod input;
mod layout;
mod ops;
mod record_decode;
mod scratch;
mod seed;
mod segment_open;
mod snapshot_decode;

pub use base::{base, Base};
pub use input::Input;
pub use layout::crc32;
pub use ops::{op, ops};
pub use record_decode::{encode_body, fix_frame, record_decode, Body};
pub use scratch::{fuzz_options, scratch_dir, MAX_EVENT_BYTES, MAX_SNAPSHOT_BYTES, SEGMENT_BYTES};
pub use seed::{finding_f1_input, finding_f3_input, finding_f6_input, seed_corpus, zeroed_suffix_input};
pub use segment_open::{mutation, segment_open};
pub use snapshot_decode::{fix_snap_frame, snapshot_decode};

/// A fuzz target's check function.
pub type Check = fn(&[u8]);

/// The fuzz targets, by name, with their check functions.
pub const TARGETS: [(&str, Check); 4] = [
    ("record_decode", record_decode),
    ("snapshot_decode", snapshot_decode),
    ("segment_open", segment_open),
    ("ops", ops),
];
