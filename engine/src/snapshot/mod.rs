//! Snapshots: zstd-compressed aggregate states in their own append-only
//! files under `snapshots/`, never interleaved with events. This module only
//! names its parts and re-exports what the rest of the crate (and, doc-hidden,
//! the fuzz checks) use; it holds no code. It never touches event segments.
//!
//! Layers, each using only those above it in this list:
//! - `le`, `error`: little-endian field access and the format error enum;
//! - `dictionary`: the `.zdict` format and prepared zstd dictionaries;
//! - `frame`: the `.snap` file header and the record frame;
//! - `checkpoint`: the `.sidx` format of a sealed file's records;
//! - `file`: an open snapshot file and positional reads;
//! - `catalog`: the in-memory index (pure memory, no I/O);
//! - `compaction`, `recovery`: rewriting sealed files, opening the directory;
//! - `store`: [`Snapshots`](store::Snapshots), the internally synchronized store.
//!
//! The byte layouts and crash arguments are in `docs/FORMAT.md`.

mod catalog;
mod checkpoint;
mod compaction;
pub(crate) mod dictionary;
mod error;
mod file;
mod frame;
mod recovery;
mod store;

pub use error::SnapshotFormatError;
pub use frame::{decode_frame, decompress, encode_frame, SnapFrame, SnapMeta};
pub use recovery::{SnapshotRecovery, SNAPSHOT_DIR};
pub(crate) use store::{ForgetReport, SnapshotConfig, Snapshots};
pub use store::{Snapshot, SnapshotEntry, SnapshotInfo};
