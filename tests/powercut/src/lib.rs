//! A FUSE file system that behaves like a disk with a volatile write cache
//! losing power, for testing factlog's crash safety (issue 13).
//!
//! A SIGKILL never loses the page cache. This file system can: each file has
//! a durable image and the writes made since its last `fsync`/`fdatasync`;
//! directory entries become durable only when their directory is fsynced. A
//! power cut keeps the durable image and, by [`CutMode`], nothing, an ordered
//! prefix or a random subset of the unsynced writes, torn at 512-byte sector
//! boundaries ([`CutMode::Bytes`]: at any byte). Between a cut and
//! [`PowerCutMount::power_on`] every call fails with `EIO`. A cut can also be
//! armed to fire at the Nth mutating call.
//!
//! Control it from Rust ([`PowerCutMount::cut`], [`PowerCutMount::arm`],
//! [`PowerCutMount::power_on`]) or, from any process, by writing a command to
//! the hidden file `.powercut` at the root of the mount (see [`control`]).
//!
//! Modules, from the bottom: [`model`] (the disk: pure state, no I/O),
//! [`control`] (the control file's text), [`fs`] (FUSE requests to model
//! calls), [`mount`] (the mount's lifetime, skipping, timeouts), [`plan`]
//! (one cycle of a crash loop: a random cut or armed cut, the kill, power-on).
//!
//! Requires root and `/dev/fuse` (fuser mounts with `mount(2)` directly).

#![deny(missing_docs)]

pub mod control;
pub mod fs;
pub mod model;
pub mod mount;
pub mod plan;

pub use model::{CutMode, Stats, SECTOR_BYTES};
pub use mount::{mount_or_skip, within, MountError, PowerCutMount, TimedOut};
pub use plan::{Outcome, Plan};
