//! Store configuration: every limit the engine enforces has a named field and a
//! documented default here. This module only describes; it never touches files.

use crate::error::{Error, Result};
use crate::segment::{SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN};

/// When an append is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Acknowledge only after the batch is on disk (`fdatasync` of the segment).
    /// One fsync covers every append of a group commit. The default.
    Sync,
    /// Acknowledge once the batch is written to the OS page cache; the writer
    /// syncs at least every `flush_interval_ms`. A machine crash (not a process
    /// crash) may lose up to that much acknowledged data.
    Buffered {
        /// Upper bound between two background `fdatasync`s, in milliseconds.
        flush_interval_ms: u64,
    },
}

/// Options for [`crate::Store::open`]. Start from `Options::default()` and
/// change what you need with the setters, which are named after the fields:
/// `Options::default().segment_bytes(16 << 20).durability(Durability::Sync)`.
/// `#[non_exhaustive]`: new options can be added without breaking callers.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// Size of each segment file in bytes. Segments are preallocated (zero-filled)
    /// to this size. Default 64 MiB; minimum 64 KiB.
    pub segment_bytes: u64,
    /// Size of a new store's first segment. Each later segment doubles the
    /// size of the one before (and is at least large enough for the batch
    /// that opens it) up to `segment_bytes`, so a small store stays small on
    /// disk (a 3-event store is 1 MiB, not 64). Default 1 MiB, clamped to
    /// `segment_bytes`; set it to `segment_bytes` for equal segments.
    pub first_segment_bytes: u64,
    /// Largest encoded event accepted, in bytes. Default 4 MiB. Must leave room
    /// for the event in one segment.
    pub max_event_bytes: u32,
    /// Largest number of events in one append. Default 10,000.
    pub max_batch_events: usize,
    /// Acknowledgement policy. Default [`Durability::Sync`].
    pub durability: Durability,
    /// How many of the most recent events are remembered for idempotent
    /// re-appends (event-id dedupe). The window is rebuilt from the log on open,
    /// so it survives restarts. Default 100,000 (about 6 MB of memory).
    pub dedupe_window_events: u64,
    /// On open, scan every segment (ignoring index checkpoints) and truncate
    /// the log at the first corrupt record instead of failing; the
    /// [`crate::RecoveryReport`] says what was lost. With
    /// [`crate::Store::open_read_only`], a dry run that changes nothing.
    /// Default `false`.
    pub repair: bool,
    /// Bound on appends queued for the writer thread. Further appenders block.
    /// Default 4,096.
    pub max_pending_appends: usize,
    /// Largest number of appends the writer folds into one group commit. Default 1,024.
    pub max_group_appends: usize,
    /// Create and zero-fill the next segment in the background, ahead of the roll.
    /// Default `true`.
    pub prepare_next_segment: bool,
    /// Reuse a segment file that retention removes as the next segment
    /// instead of zero-filling a new one (segment recycling: README,
    /// "Lifecycle"). Only when nothing may still read the old file (made in
    /// this session, no reader of this store holds its map, no read-only
    /// handle is open in any process). Default `false`: the old file's bytes
    /// after the log's end include old events' payloads, and a payload
    /// crafted to hold a frame of a future position could be taken for an
    /// event by recovery after a crash, so turn it on only when payloads are
    /// trusted (README, "Segment recycling"). [`crate::Store::erase`] is
    /// refused while it is on.
    pub recycle_segments: bool,
    /// Snapshot policy: when set to `N`, [`crate::AppendResult::snapshot_due`] is
    /// `true` once an aggregate has gone `N` or more events past its newest
    /// snapshot (or has `N` events and none). Default `None`.
    pub snapshot_every: Option<u64>,
    /// Snapshots kept per aggregate (older ones are dropped by compaction), at
    /// least 1. Keeping more lets as-of loads start from a snapshot further
    /// back. Default 1.
    pub snapshots_keep: usize,
    /// zstd level for snapshot payloads. Default 1 (fast).
    pub snapshot_zstd_level: i32,
    /// Size at which a snapshot file is sealed and a new one started. Default 16 MiB.
    pub snapshot_file_bytes: u64,
    /// Largest snapshot state accepted (and decompressed), in bytes. Default 64 MiB.
    pub max_snapshot_bytes: u32,
    /// How long `open` waits for the store's lock when another opener holds
    /// it, retrying every few milliseconds, before failing with
    /// [`crate::Error::Locked`]. Default zero: fail at once.
    pub lock_wait: std::time::Duration,
    /// Upcasters for the reads that ask for upcast events
    /// ([`crate::Store::read_all_upcast`], [`crate::Store::upcasters`]).
    /// Plain reads never upcast. Default: none.
    pub upcasters: crate::upcast::Upcasters,
    /// Global retention, Kafka style: whole sealed segments are removed from
    /// the head of the log once the log is over a size or its events over an
    /// age. Checked whenever a segment is sealed, and by
    /// [`crate::Store::apply_retention`]. Default `None`: the log only grows.
    pub retention: Option<Retention>,
    /// Test hook: failures to inject into segment creation, writes and syncs.
    /// `None` (the default) in normal use; not part of the supported API.
    #[doc(hidden)]
    pub faults: Option<std::sync::Arc<crate::fault::Faults>>,
}

/// Global retention (see [`Options::retention`]). The active segment is
/// never removed, so the log keeps at least its newest events. Positions
/// never change: the log simply starts later.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Remove the oldest sealed segments while the segment files together
    /// take more than this many bytes.
    pub max_bytes: Option<u64>,
    /// Remove sealed segments whose newest event was recorded longer ago than this.
    pub max_age: Option<std::time::Duration>,
    /// A read or subscription from below the first retained position starts
    /// there instead of failing with [`crate::Error::BelowRetainedStart`].
    /// Default `false`: a reader that missed events is told. Durable
    /// consumers are always told.
    pub clamp_reads_below_start: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_bytes: 64 * 1024 * 1024,
            first_segment_bytes: 1024 * 1024,
            max_event_bytes: 4 * 1024 * 1024,
            max_batch_events: 10_000,
            durability: Durability::Sync,
            dedupe_window_events: 100_000,
            repair: false,
            max_pending_appends: 4096,
            max_group_appends: 1024,
            prepare_next_segment: true,
            recycle_segments: false,
            snapshot_every: None,
            snapshots_keep: 1,
            snapshot_zstd_level: 1,
            snapshot_file_bytes: 16 * 1024 * 1024,
            max_snapshot_bytes: 64 * 1024 * 1024,
            lock_wait: std::time::Duration::ZERO,
            upcasters: crate::upcast::Upcasters::default(),
            retention: None,
            faults: None,
        }
    }
}

impl Options {
    /// Sets [`Options::segment_bytes`].
    pub fn segment_bytes(mut self, segment_bytes: u64) -> Options {
        self.segment_bytes = segment_bytes;
        self
    }

    /// Sets [`Options::first_segment_bytes`].
    pub fn first_segment_bytes(mut self, first_segment_bytes: u64) -> Options {
        self.first_segment_bytes = first_segment_bytes;
        self
    }

    /// Sets [`Options::max_event_bytes`].
    pub fn max_event_bytes(mut self, max_event_bytes: u32) -> Options {
        self.max_event_bytes = max_event_bytes;
        self
    }

    /// Sets [`Options::max_batch_events`].
    pub fn max_batch_events(mut self, max_batch_events: usize) -> Options {
        self.max_batch_events = max_batch_events;
        self
    }

    /// Sets [`Options::durability`].
    pub fn durability(mut self, durability: Durability) -> Options {
        self.durability = durability;
        self
    }

    /// Sets [`Options::dedupe_window_events`].
    pub fn dedupe_window_events(mut self, dedupe_window_events: u64) -> Options {
        self.dedupe_window_events = dedupe_window_events;
        self
    }

    /// Sets [`Options::repair`].
    pub fn repair(mut self, repair: bool) -> Options {
        self.repair = repair;
        self
    }

    /// Sets [`Options::max_pending_appends`].
    pub fn max_pending_appends(mut self, max_pending_appends: usize) -> Options {
        self.max_pending_appends = max_pending_appends;
        self
    }

    /// Sets [`Options::max_group_appends`].
    pub fn max_group_appends(mut self, max_group_appends: usize) -> Options {
        self.max_group_appends = max_group_appends;
        self
    }

    /// Sets [`Options::recycle_segments`].
    pub fn recycle_segments(mut self, recycle_segments: bool) -> Options {
        self.recycle_segments = recycle_segments;
        self
    }

    /// Sets [`Options::prepare_next_segment`].
    pub fn prepare_next_segment(mut self, prepare_next_segment: bool) -> Options {
        self.prepare_next_segment = prepare_next_segment;
        self
    }

    /// Sets [`Options::snapshot_every`] to `Some(every)`.
    pub fn snapshot_every(mut self, every: u64) -> Options {
        self.snapshot_every = Some(every);
        self
    }

    /// Sets [`Options::snapshots_keep`].
    pub fn snapshots_keep(mut self, snapshots_keep: usize) -> Options {
        self.snapshots_keep = snapshots_keep;
        self
    }

    /// Sets [`Options::snapshot_zstd_level`].
    pub fn snapshot_zstd_level(mut self, snapshot_zstd_level: i32) -> Options {
        self.snapshot_zstd_level = snapshot_zstd_level;
        self
    }

    /// Sets [`Options::snapshot_file_bytes`].
    pub fn snapshot_file_bytes(mut self, snapshot_file_bytes: u64) -> Options {
        self.snapshot_file_bytes = snapshot_file_bytes;
        self
    }

    /// Sets [`Options::max_snapshot_bytes`].
    pub fn max_snapshot_bytes(mut self, max_snapshot_bytes: u32) -> Options {
        self.max_snapshot_bytes = max_snapshot_bytes;
        self
    }

    /// Sets [`Options::lock_wait`].
    pub fn lock_wait(mut self, lock_wait: std::time::Duration) -> Options {
        self.lock_wait = lock_wait;
        self
    }

    /// Sets [`Options::upcasters`].
    pub fn upcasters(mut self, upcasters: crate::upcast::Upcasters) -> Options {
        self.upcasters = upcasters;
        self
    }

    /// Sets [`Options::retention`].
    pub fn retention(mut self, retention: Retention) -> Options {
        self.retention = Some(retention);
        self
    }

    /// Sets the test hook [`Options::faults`].
    #[doc(hidden)]
    pub fn faults(mut self, faults: std::sync::Arc<crate::fault::Faults>) -> Options {
        self.faults = Some(faults);
        self
    }
}

impl Options {
    /// Size of the segment that follows one of `previous` bytes, for a
    /// first batch of `needed` encoded bytes (`None` for a new store's first
    /// segment): double, at least enough for the batch, at most `segment_bytes`.
    pub(crate) fn next_segment_bytes(&self, previous: Option<u64>, needed: u64) -> u64 {
        let grown = match previous {
            None => self.first_segment_bytes.max(SEGMENT_BYTES_MIN),
            Some(p) => p.saturating_mul(2),
        };
        let fits = (crate::segment::HEADER_BYTES + needed).next_multiple_of(4096);
        grown.max(fits).min(self.segment_bytes)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes) {
            return Err(Error::InvalidOptions(format!(
                "segment_bytes {} outside {SEGMENT_BYTES_MIN}..={SEGMENT_BYTES_MAX}",
                self.segment_bytes
            )));
        }
        if !self.first_segment_bytes.is_multiple_of(4096) || self.first_segment_bytes < SEGMENT_BYTES_MIN {
            return Err(Error::InvalidOptions(format!(
                "first_segment_bytes {} must be a multiple of 4096 and at least {SEGMENT_BYTES_MIN}",
                self.first_segment_bytes
            )));
        }
        if !self.segment_bytes.is_multiple_of(4096) {
            return Err(Error::InvalidOptions(format!(
                "segment_bytes {} is not a multiple of 4096",
                self.segment_bytes
            )));
        }
        let room = self.segment_bytes - crate::segment::HEADER_BYTES - crate::record::FRAME_HEADER_BYTES as u64;
        if self.max_event_bytes < 1024 || u64::from(self.max_event_bytes) > room {
            return Err(Error::InvalidOptions(format!(
                "max_event_bytes {} must be at least 1024 and fit in one segment ({room} bytes)",
                self.max_event_bytes
            )));
        }
        if self.max_batch_events == 0 || self.max_pending_appends == 0 || self.max_group_appends == 0 {
            return Err(Error::InvalidOptions(
                "max_batch_events, max_pending_appends and max_group_appends must be positive".into(),
            ));
        }
        if self.snapshots_keep == 0 || self.snapshot_every == Some(0) || self.snapshot_file_bytes < 4096 {
            return Err(Error::InvalidOptions(
                "snapshots_keep and snapshot_every must be positive, snapshot_file_bytes at least 4096".into(),
            ));
        }
        if !(-7..=22).contains(&self.snapshot_zstd_level) {
            return Err(Error::InvalidOptions(format!(
                "snapshot_zstd_level {} outside -7..=22",
                self.snapshot_zstd_level
            )));
        }
        if let Some(r) = self.retention {
            if r.max_bytes == Some(0) || r.max_age == Some(std::time::Duration::ZERO) {
                return Err(Error::InvalidOptions("retention max_bytes and max_age must be positive".into()));
            }
        }
        if let Durability::Buffered { flush_interval_ms } = self.durability {
            if flush_interval_ms == 0 {
                return Err(Error::InvalidOptions("flush_interval_ms must be positive".into()));
            }
        }
        Ok(())
    }
}
