//! Segment files: naming, the 64-byte header, creation (zero-filled,
//! preallocated, crash-safe rename), and the read-side view of one segment
//! through its memory map. A segment never changes size once created, and
//! this module never writes into a segment's frame area (the writer does).
//!
//! Header layout (little-endian):
//! ```text
//! offset size field
//!      0    8 magic          b"FACTLOG\x1a"
//!      8    4 format_version FORMAT_VERSION (2) when written; 1 is read too
//!                            (it names the frame format, `record::FrameFormat`);
//!                            3 for a sparse segment (below)
//!     12    4 header_bytes   64
//!     16    8 first_position global position of the segment's first frame
//!     24    8 segment_bytes  file size
//!     32    8 created_at     unix nanos
//!     40    8 end_position   sparse segments: one past the last position it
//!                            covers (the next segment's first); else 0
//!     48   12 reserved       0
//!     60    4 crc32          of bytes 0..60
//! ```
//!
//! A recycled segment (format version 4) is a dense segment of format 2
//! frames made from a file that retention freed rather than from a
//! zero-filled one: after the log's end its bytes are what the file held
//! before, frames claiming positions below this segment's first position
//! (they can never validate here: each frame's position is inside its
//! checksum, and a frame must claim the position expected where it stands),
//! and fragments of them. Recovery knows this (module `recovery`): it zeroes
//! only what this segment's own life wrote after the cut, never the old bytes.
//!
//! A sparse segment (format version 3) is what the scavenge writes in place
//! of a sealed segment some of whose events were removed: format 2 frames,
//! one per surviving event, each a batch of its own, their positions
//! increasing but not dense, all in `first_position..end_position`. It is
//! sealed from birth (never appended to), and may be as small as 4 KiB.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use memmap2::Mmap;

use crate::error::{Error, Result};
use crate::event::{Envelope, EventRef};
use crate::fault::Faults;
use crate::le::{fixed_u32 as le_u32, fixed_u64 as le_u64};
use crate::record::{self, FrameError, FrameFormat, FrameHeader};

/// Segment magic number.
pub const SEGMENT_MAGIC: [u8; 8] = *b"FACTLOG\x1a";
/// The on-disk format version this build writes. It also reads segments of
/// format version 1 (see `record::FrameFormat`); a store's older segments
/// keep their format, and new segments get this one.
pub const FORMAT_VERSION: u32 = 2;
/// Bytes of the segment header; the first frame starts here.
pub const HEADER_BYTES: u64 = 64;
/// Global positions are below this (2^62). A segment header whose first
/// position is at or above it is corrupt, and an append that would reach it
/// is refused, so position arithmetic can never overflow.
pub const POSITION_LIMIT: u64 = 1 << 62;
/// Smallest accepted segment size.
pub const SEGMENT_BYTES_MIN: u64 = 64 * 1024;
/// Largest accepted segment size (frame offsets are stored as `u32`).
pub const SEGMENT_BYTES_MAX: u64 = 1 << 31;
/// File name suffix of segments.
pub const SEGMENT_SUFFIX: &str = ".seg";
/// Name of the zero-filled file prepared ahead of a roll.
pub const PREPARED_NAME: &str = "next-segment.prepared";

// Header field offsets, each derived from the one before (see the module doc).
const MAGIC_AT: usize = 0;
const VERSION_AT: usize = MAGIC_AT + 8;
const HEADER_BYTES_AT: usize = VERSION_AT + 4;
const FIRST_POSITION_AT: usize = HEADER_BYTES_AT + 4;
const SEGMENT_BYTES_AT: usize = FIRST_POSITION_AT + 8;
const CREATED_AT_AT: usize = SEGMENT_BYTES_AT + 8;
const END_POSITION_AT: usize = CREATED_AT_AT + 8;
const RESERVED_AT: usize = END_POSITION_AT + 8;
const RESERVED_BYTES: usize = 12;
/// The format version of sparse segments (format 2 frames, positions not dense).
pub const SPARSE_FORMAT_VERSION: u32 = 3;
/// Smallest sparse segment.
pub const SPARSE_SEGMENT_BYTES_MIN: u64 = 4096;
/// The format version of recycled segments (format 2 frames; after the
/// log's end, an older segment's bytes rather than zeros).
pub const RECYCLED_FORMAT_VERSION: u32 = 4;
/// Name of a segment file freed by retention, kept to become the next
/// segment instead of zero-filling a new file (segment recycling).
pub const RECYCLED_NAME: &str = "next-segment.recycled";
const CRC_AT: usize = RESERVED_AT + RESERVED_BYTES;

const _: () = assert!(CRC_AT + 4 == HEADER_BYTES as usize);
const _: () = assert!((HEADER_BYTES as usize).is_multiple_of(record::FRAME_ALIGN));
const _: () = assert!(SEGMENT_BYTES_MIN.is_multiple_of(4096) && SEGMENT_BYTES_MAX <= u32::MAX as u64 + 1);

/// File name of the segment starting at `first_position`: 20 digits, so `ls` sorts in log order.
pub fn file_name(first_position: u64) -> String {
    format!("{first_position:020}{SEGMENT_SUFFIX}")
}

/// Parses a segment file name back into its first position.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Global position of the first frame.
    pub first_position: u64,
    /// File size in bytes.
    pub segment_bytes: u64,
    /// Creation time, unix nanos.
    pub created_at: i64,
    /// The format of its frames (its format version).
    pub format: FrameFormat,
    /// A sparse segment's end position (exclusive); `None` for a dense one.
    pub sparse_end: Option<u64>,
    /// A recycled segment: bytes of an older segment may follow the log's end.
    pub recycled: bool,
}

impl SegmentHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; HEADER_BYTES as usize] {
        let mut h = [0u8; HEADER_BYTES as usize];
        h[MAGIC_AT..VERSION_AT].copy_from_slice(&SEGMENT_MAGIC);
        let version = match (self.sparse_end, self.recycled) {
            (Some(_), _) => SPARSE_FORMAT_VERSION,
            (None, true) => RECYCLED_FORMAT_VERSION,
            (None, false) => self.format.version(),
        };
        h[VERSION_AT..HEADER_BYTES_AT].copy_from_slice(&version.to_le_bytes());
        h[HEADER_BYTES_AT..FIRST_POSITION_AT].copy_from_slice(&(HEADER_BYTES as u32).to_le_bytes());
        h[FIRST_POSITION_AT..SEGMENT_BYTES_AT].copy_from_slice(&self.first_position.to_le_bytes());
        h[SEGMENT_BYTES_AT..CREATED_AT_AT].copy_from_slice(&self.segment_bytes.to_le_bytes());
        h[CREATED_AT_AT..END_POSITION_AT].copy_from_slice(&self.created_at.to_le_bytes());
        h[END_POSITION_AT..RESERVED_AT].copy_from_slice(&self.sparse_end.unwrap_or(0).to_le_bytes());
        let crc = crc32fast::hash(&h[..CRC_AT]);
        h[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Decodes and checks a header read from `path`.
    pub fn decode(path: &Path, bytes: &[u8]) -> Result<SegmentHeader> {
        let Some(h) = bytes.get(..HEADER_BYTES as usize).and_then(|h| <&[u8; HEADER_BYTES as usize]>::try_from(h).ok())
        else {
            return Err(Error::corrupt(path, 0, "file shorter than a segment header"));
        };
        if h[MAGIC_AT..VERSION_AT] != SEGMENT_MAGIC {
            return Err(Error::corrupt(path, 0, "bad segment magic (not a factlog segment)"));
        }
        let version = le_u32(h, VERSION_AT);
        let sparse = version == SPARSE_FORMAT_VERSION;
        let recycled = version == RECYCLED_FORMAT_VERSION;
        let format = if sparse || recycled { Some(FrameFormat::V2) } else { FrameFormat::from_version(version) };
        let Some(format) = format else {
            return Err(Error::UnsupportedFormat {
                path: path.to_path_buf(),
                found: version,
                supported: FORMAT_VERSION,
            });
        };
        if crc32fast::hash(&h[..CRC_AT]) != le_u32(h, CRC_AT) {
            return Err(Error::corrupt(path, 0, "segment header checksum mismatch"));
        }
        if u64::from(le_u32(h, HEADER_BYTES_AT)) != HEADER_BYTES {
            return Err(Error::corrupt(path, HEADER_BYTES_AT as u64, "unexpected header size"));
        }
        let (first_position, segment_bytes) = (le_u64(h, FIRST_POSITION_AT), le_u64(h, SEGMENT_BYTES_AT));
        if first_position >= POSITION_LIMIT {
            return Err(Error::corrupt(
                path,
                FIRST_POSITION_AT as u64,
                format!("first position {first_position} out of range"),
            ));
        }
        let min = if sparse { SPARSE_SEGMENT_BYTES_MIN } else { SEGMENT_BYTES_MIN };
        if !(min..=SEGMENT_BYTES_MAX).contains(&segment_bytes) || !segment_bytes.is_multiple_of(4096) {
            return Err(Error::corrupt(
                path,
                SEGMENT_BYTES_AT as u64,
                format!("segment size {segment_bytes} out of range"),
            ));
        }
        let sparse_end = match (sparse, le_u64(h, END_POSITION_AT)) {
            (false, 0) => None,
            (false, _) => return Err(Error::corrupt(path, END_POSITION_AT as u64, "end position in a dense segment")),
            // A sparse segment covers no more positions than a dense one of
            // the largest size could hold (a frame takes at least 48 bytes).
            (true, end)
                if end <= first_position || end > POSITION_LIMIT || end - first_position > SEGMENT_BYTES_MAX / 48 =>
            {
                return Err(Error::corrupt(
                    path,
                    END_POSITION_AT as u64,
                    format!("sparse end position {end} out of range"),
                ))
            }
            (true, end) => Some(end),
        };
        Ok(SegmentHeader {
            first_position,
            segment_bytes,
            created_at: le_u64(h, CREATED_AT_AT) as i64,
            format,
            sparse_end,
            recycled,
        })
    }
}

pub(crate) use crate::durable::sync_dir;

/// Creates `path` zero-filled to `len` bytes and syncs it (not its directory).
/// Zero-filling, rather than `fallocate`, makes later `fdatasync`s of the
/// region cheap (no unwritten-extent conversion). On error the file is removed.
pub fn create_zeroed(path: &Path, len: u64, faults: &Faults) -> Result<()> {
    faults.check_create(path)?;
    crate::durable::create_zeroed(path, len)
}

/// Frees the file of a segment retention removed (whose checkpoint is gone):
/// with `recycle`, renamed to [`RECYCLED_NAME`] to become a later segment
/// (unless one is waiting there already), else removed. Returns whether it
/// was kept. The caller syncs the directory.
pub fn free(dir: &Path, seg: &Segment, recycle: bool) -> Result<bool> {
    let pool = dir.join(RECYCLED_NAME);
    if recycle && seg.sparse_end.is_none() && !pool.exists() {
        std::fs::rename(&seg.path, &pool).map_err(|e| Error::io("keep segment for recycling", &seg.path, e))?;
        return Ok(true);
    }
    std::fs::remove_file(&seg.path).map_err(|e| Error::io("remove segment (retention)", &seg.path, e))?;
    Ok(false)
}

/// Whether `dir` holds a file of `segment_bytes` named `name` (a prepared
/// or recycled file ready to become the next segment).
pub fn ready(dir: &Path, name: &str, segment_bytes: u64) -> bool {
    std::fs::metadata(dir.join(name)).is_ok_and(|m| m.len() == segment_bytes)
}

/// Turns a file of the right size into the segment starting at
/// `first_position`: the zero-filled file prepared ahead, else a recycled
/// one (then the segment is format version 4, module doc), else a zero-filled
/// file created now. Writes the header, syncs, renames into place and syncs
/// the directory. A crash at any step leaves either no new segment or a
/// complete, empty one (and the recycled or prepared file it would have been).
pub fn install(dir: &Path, first_position: u64, segment_bytes: u64, faults: &Faults) -> Result<PathBuf> {
    // A recycled file first: a prepared one may wait for a roll that finds none.
    let recycled = ready(dir, RECYCLED_NAME, segment_bytes);
    let prepared = dir.join(if recycled { RECYCLED_NAME } else { PREPARED_NAME });
    if !recycled && !ready(dir, PREPARED_NAME, segment_bytes) {
        create_zeroed(&prepared, segment_bytes, faults)?;
    }
    let header = SegmentHeader {
        first_position,
        segment_bytes,
        created_at: crate::event::now_nanos(),
        format: FrameFormat::CURRENT,
        sparse_end: None,
        recycled,
    };
    let f =
        OpenOptions::new().write(true).open(&prepared).map_err(|e| Error::io("open prepared segment", &prepared, e))?;
    f.write_all_at(&header.encode(), 0).map_err(|e| Error::io("write segment header", &prepared, e))?;
    f.sync_data().map_err(|e| Error::io("fsync segment header", &prepared, e))?;
    let path = dir.join(file_name(first_position));
    // IMPORTANT: rename only after the header is durable, then fsync the directory.
    std::fs::rename(&prepared, &path).map_err(|e| Error::io("rename segment into place", &path, e))?;
    sync_dir(dir)?;
    Ok(path)
}

/// Outcome of a once-per-process validation: `Err((offset, reason))`.
type LazyCheck = std::result::Result<(), (u64, String)>;

/// What a sealed segment loaded from an index file is checked against on
/// first read.
#[derive(Clone)]
pub struct LazyExpect {
    /// One past the position of the segment's last frame.
    pub end: u64,
    /// Computes the [`IndexDigest`] of the index file's (position, offset,
    /// aggregate, version) entries (on first read, not at open). The walk of
    /// the frame chain must produce the same digest, so the index can only
    /// ever point at frames that were validated.
    pub digest: Arc<dyn Fn() -> u64 + Send + Sync>,
}

impl std::fmt::Debug for LazyExpect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyExpect").field("end", &self.end).finish()
    }
}

/// A digest of a segment's index entries, in any order: the wrapping sum of
/// each entry's hash under a random per-process key (SipHash), so a crafted
/// index file cannot be aimed at a collision.
pub struct IndexDigest(u64, &'static std::collections::hash_map::RandomState);

impl IndexDigest {
    /// An empty digest under this process's key.
    pub fn new() -> IndexDigest {
        static KEY: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
        IndexDigest(0, KEY.get_or_init(std::collections::hash_map::RandomState::new))
    }

    /// Adds one event's entry.
    pub fn add(&mut self, position: u64, offset: u32, aggregate_id: &str, version: u64) {
        use std::hash::BuildHasher;
        self.0 = self.0.wrapping_add(self.1.hash_one((position, offset, version, aggregate_id)));
    }

    /// The digest.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for IndexDigest {
    fn default() -> Self {
        IndexDigest::new()
    }
}

/// The read side of one segment: its header facts and a read-only map of the
/// whole file.
pub struct Segment {
    /// Path of the file.
    pub path: PathBuf,
    /// Global position of its first frame.
    pub first_position: u64,
    /// The format of its frames.
    pub format: FrameFormat,
    /// A sparse segment's end position (exclusive; module doc); `None`: dense.
    pub sparse_end: Option<u64>,
    /// A recycled segment (format version 4, module doc): an older
    /// segment's bytes, not zeros, may follow the log's end.
    pub recycled: bool,
    /// This process's unique number for this map: a rewritten segment has
    /// the same first position but another id.
    pub id: u64,
    map: Mmap,
    /// For a sealed segment loaded from an index checkpoint (never scanned in
    /// this process): what the checkpoint says, and the once-only validation result.
    lazy_check: Option<(LazyExpect, OnceLock<LazyCheck>)>,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment").field("path", &self.path).field("first_position", &self.first_position).finish()
    }
}

impl Segment {
    /// Opens and maps a segment, checking its header. `lazy`: for a sealed
    /// segment not scanned during recovery, what its checkpoint says; its
    /// frames are validated (checksum + structure + agreement with the
    /// checkpoint) on first read.
    pub fn open(path: PathBuf, lazy: Option<LazyExpect>) -> Result<Segment> {
        Segment::open_with(path, lazy, false)
    }

    /// [`Segment::open`]; with `allow_short`, a file cut shorter than its
    /// header says is read into memory and padded with zeros (read-only
    /// inspection, where recovery may not pad the file back).
    pub fn open_with(path: PathBuf, lazy: Option<LazyExpect>, allow_short: bool) -> Result<Segment> {
        let file = File::open(&path).map_err(|e| Error::io("open segment", &path, e))?;
        let mut head = [0u8; HEADER_BYTES as usize];
        file.read_exact_at(&mut head, 0).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::corrupt(&path, 0, "file shorter than a segment header")
            } else {
                Error::io("read segment header", &path, e)
            }
        })?;
        let header = SegmentHeader::decode(&path, &head)?;
        let file_len = file.metadata().map_err(|e| Error::io("stat segment", &path, e))?.len();
        let map = if allow_short && file_len < header.segment_bytes {
            // Read-only inspection of an active segment cut short: read it into
            // zeroed memory of the full size, so it reads exactly as the
            // zero-padded file a read-write open would recover.
            let mut buf = memmap2::MmapMut::map_anon(header.segment_bytes as usize)
                .map_err(|e| Error::io("map memory for a short segment", &path, e))?;
            file.read_exact_at(&mut buf[..file_len as usize], 0)
                .map_err(|e| Error::io("read short segment", &path, e))?;
            buf.make_read_only().map_err(|e| Error::io("protect short segment copy", &path, e))?
        } else {
            crate::mmap::map_readonly(&file, header.segment_bytes, &path)?
        };
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Ok(Segment {
            path,
            first_position: header.first_position,
            format: header.format,
            sparse_end: header.sparse_end,
            recycled: header.recycled,
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            map,
            lazy_check: lazy.map(|expect| (expect, OnceLock::new())),
        })
    }

    /// The segment's bytes (the whole file).
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// Size of the file.
    pub fn len(&self) -> u64 {
        self.map.len() as u64
    }

    /// Largest body a frame in this segment can have.
    pub fn max_body(&self) -> usize {
        self.map.len()
    }

    /// Whether this segment's frames are still to be validated in this
    /// process (a sealed segment loaded from its checkpoint and not read
    /// since): a walk that checks every frame fully itself can skip
    /// [`Check::Trusted`]'s validation pass.
    pub(crate) fn unvalidated(&self) -> bool {
        self.lazy_check.as_ref().is_some_and(|(_, once)| once.get().is_none())
    }

    /// Validates a sealed segment loaded from a checkpoint, once per process:
    /// every frame fully, and their (offset, aggregate, version) against the
    /// checkpoint's digest.
    fn ensure_checked(&self) -> Result<()> {
        let Some((expect, once)) = &self.lazy_check else { return Ok(()) };
        let r = once.get_or_init(|| {
            let mut digest = IndexDigest::new();
            let mut frames = FrameCursor::new(self, HEADER_BYTES, self.first_position, Check::Full);
            while frames.position() < expect.end {
                match frames.next_frame() {
                    Ok(Some(f)) => {
                        digest.add(f.event.position(), f.offset as u32, f.event.aggregate_id(), f.event.version())
                    }
                    Ok(None) if frames.position() >= expect.end => break,
                    Ok(None) => return Err((frames.offset(), "sealed segment ends early".to_string())),
                    Err(e) => return Err((frames.offset(), e.to_string())),
                }
            }
            if digest.finish() != (expect.digest)() {
                return Err((
                    HEADER_BYTES,
                    "frames disagree with the index checkpoint (offset, aggregate or version)".to_string(),
                ));
            }
            Ok(())
        });
        r.clone().map_err(|(offset, reason)| Error::corrupt(&self.path, offset, reason))
    }

    /// The frame at `offset`, which must claim `position`, checked as `check`
    /// says, with its header. `Ok(None)`: zeroed space, the end of the written log.
    fn frame_at(
        &self,
        offset: u64,
        position: u64,
        check: Check,
    ) -> std::result::Result<Option<(FrameHeader, EventRef<'_>)>, FrameError> {
        let bytes = usize::try_from(offset)
            .ok()
            .and_then(|o| self.map.get(o..))
            .ok_or_else(|| FrameError::Invalid("offset past end of segment".into()))?;
        let header = match record::parse_header(bytes, self.max_body(), self.format) {
            Ok(h) => h,
            Err(FrameError::Empty) => return Ok(None),
            Err(e) => return Err(e),
        };
        if let Some(claimed) = header.claimed_position.filter(|c| *c != position) {
            return Err(FrameError::Invalid(format!("frame claims position {claimed}, expected {position}")));
        }
        let body = record::checked_envelope(bytes, &header)?;
        let payload = record::checked_payload(bytes, &header)?;
        let archived = match check {
            Check::Full => record::validate_body(body, &header)?,
            // SAFETY: `Check::Trusted` is only used after `ensure_checked` (sealed
            // segments loaded from a checkpoint) or on segments whose frames up to
            // the published watermark were validated by the recovery scan, by
            // a read-only store's follower (module `follow`, full checks) or
            // written by this process's writer; `checked_body` verified the
            // checksums just now, so these are the validated bytes
            // (`view::trusted_body`'s contract).
            #[allow(unsafe_code)]
            Check::Trusted => unsafe { crate::view::trusted_body(body)? },
        };
        if !self.claim_fits(archived.position.to_native(), position) {
            return Err(FrameError::Invalid(format!(
                "frame claims position {}, expected {}{position}",
                archived.position.to_native(),
                if self.sparse_end.is_some() { "at least " } else { "" }
            )));
        }
        Ok(Some((header, Envelope::new(archived).payload_checked(payload))))
    }

    /// The hot path of a trusted read: the event at `offset` claiming
    /// `position` and its frame length, or `None` if anything is wrong (the
    /// caller then asks [`Segment::frame_at`] what).
    #[inline(always)]
    fn trusted_frame(&self, offset: u64, position: u64) -> Option<(EventRef<'_>, usize)> {
        let frame = self.trusted_envelope(offset, position)?;
        let len = frame.header.frame_len();
        Some((frame.payload_checked()?, len))
    }

    /// [`Segment::trusted_frame`] without the payload's checksum (format 2):
    /// the frame at `offset` claiming `position`, whose envelope checksum
    /// holds. Its payload is handed out only by
    /// [`TrustedFrame::payload_checked`]: until then only its envelope may be
    /// looked at.
    #[inline(always)]
    fn trusted_envelope(&self, offset: u64, position: u64) -> Option<TrustedFrame<'_>> {
        let bytes = self.map.get(usize::try_from(offset).ok()?..)?;
        let header = record::parse_header(bytes, self.max_body(), self.format).ok()?;
        if header.claimed_position.is_some_and(|c| c != position) {
            return None;
        }
        let body = record::checked_envelope(bytes, &header).ok()?;
        // SAFETY: `trusted_envelope` is only reached through `Check::Trusted`,
        // which is used after `ensure_checked` (sealed segments loaded from a
        // checkpoint) or on segments whose frames up to the published
        // watermark were validated by the recovery scan, by a read-only
        // store's follower (full checks), or written by this process's
        // writer; the envelope checksum was verified again just now
        // (`checked_envelope`), and it covers all of the archive's bytes
        // (format 1: the whole body; format 2: the envelope, which is the
        // whole archive; its payload lies outside it, checked separately
        // before it is handed out). See `view::trusted_body`'s contract.
        #[allow(unsafe_code)]
        let archived = unsafe { crate::view::trusted_body(body) }.ok()?;
        if !self.claim_fits(archived.position.to_native(), position) {
            return None;
        }
        Some(TrustedFrame { envelope: Envelope::new(archived), header, bytes })
    }

    /// Whether a frame claiming `claimed` may stand where the frame of
    /// `position` is expected: the same position, or in a sparse segment a
    /// later one it still covers (the positions between were removed).
    #[inline(always)]
    fn claim_fits(&self, claimed: u64, position: u64) -> bool {
        claimed == position || self.sparse_end.is_some_and(|end| claimed > position && claimed < end)
    }

    /// Where the frame at `offset` ends (`offset` itself if no frame header
    /// parses there): what stats and a consumer's lag count as log bytes.
    pub fn frame_end(&self, offset: u64) -> u64 {
        let at = self.bytes().get(usize::try_from(offset).unwrap_or(usize::MAX)..).unwrap_or_default();
        offset + record::parse_header(at, at.len(), self.format).map_or(0, |h| h.frame_len() as u64)
    }

    /// The event at `offset`, which must claim `position`. Verifies the checksum
    /// on every call; validates structure once per process.
    #[inline]
    pub fn event_at(&self, offset: u64, position: u64) -> Result<(EventRef<'_>, usize)> {
        self.ensure_checked()?;
        match self.trusted_frame(offset, position) {
            Some(found) if found.0.position() == position => Ok(found),
            Some(_) => Err(Error::EventRemoved { position }),
            None => self.explain(offset, position),
        }
    }

    /// Why there is no trusted frame at `offset`: the slow path of
    /// [`Segment::event_at`], off the hot path.
    #[cold]
    #[inline(never)]
    fn explain(&self, offset: u64, position: u64) -> Result<(EventRef<'_>, usize)> {
        match self.frame_at(offset, position, Check::Trusted) {
            Ok(Some((_, event))) if event.position() != position => Err(Error::EventRemoved { position }),
            Ok(Some((h, event))) => Ok((event, h.frame_len())),
            // After a sparse segment's last frame: the positions there were removed.
            Ok(None) if self.sparse_end.is_some() => Err(Error::EventRemoved { position }),
            Ok(None) => Err(Error::corrupt(&self.path, offset, FrameError::Empty.to_string())),
            Err(e) => Err(Error::corrupt(&self.path, offset, e.to_string())),
        }
    }

    /// The offset of the first frame whose position is at least `position`
    /// (where a walk from `position` starts), by walking the frames: for a
    /// reader holding a segment the index no longer describes.
    pub(crate) fn offset_of(&self, position: u64) -> Option<u64> {
        let mut frames = self.frames(HEADER_BYTES, self.first_position, Check::Trusted).ok()?;
        loop {
            let at = frames.offset();
            match frames.next_frame() {
                Ok(Some(f)) if f.event.position() >= position => return Some(at),
                Ok(Some(_)) => continue,
                // The end of the frames: a walk from here moves on.
                Ok(None) => return Some(at),
                Err(_) => return None,
            }
        }
    }

    /// A cursor over this segment's frame chain from `offset` (which must be
    /// where the frame of `position` starts). With [`Check::Trusted`] the
    /// segment's lazy validation runs first.
    pub(crate) fn frames(&self, offset: u64, position: u64, check: Check) -> Result<FrameCursor<'_>> {
        if check == Check::Trusted {
            self.ensure_checked()?;
        }
        Ok(FrameCursor::new(self, offset, position, check))
    }
}

/// A frame whose envelope checksum held ([`Segment::trusted_envelope`]):
/// its envelope, its header and its bytes (from its start to the segment's end).
struct TrustedFrame<'s> {
    envelope: Envelope<'s>,
    header: FrameHeader,
    bytes: &'s [u8],
}

impl<'s> TrustedFrame<'s> {
    /// The event, once its payload's checksum holds.
    #[inline(always)]
    fn payload_checked(&self) -> Option<EventRef<'s>> {
        let payload = record::checked_payload(self.bytes, &self.header).ok()?;
        Some(self.envelope.payload_checked(payload))
    }
}

/// How much of each frame a [`FrameCursor`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Checksum, rkyv structure and names: for bytes not yet validated in this
    /// process (recovery, lazy validation, `verify`).
    Full,
    /// Checksum only: for frames this process validated earlier or wrote.
    Trusted,
}

/// One frame found by a [`FrameCursor`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frame<'s> {
    /// Byte offset of the frame in its segment.
    pub offset: u64,
    /// Its event, zero-copy.
    pub event: EventRef<'s>,
}

/// Walks a segment's frame chain: each frame must claim the next position
/// and the next slot of its batch. The one walker of the frame chain
/// (recovery, lazy validation, checkpoints, `verify` and `read_all` use it).
pub(crate) struct FrameCursor<'s> {
    seg: &'s Segment,
    offset: u64,
    position: u64,
    check: Check,
    /// The (batch length, next index) expected, `None` at a batch boundary
    /// or, when the cursor starts mid-segment, before the first frame.
    batch: Option<(u32, u32)>,
    /// Whether batch slots can be checked from the first frame (the cursor
    /// starts where a batch starts: the segment's first frame).
    at_boundary: bool,
}

impl<'s> FrameCursor<'s> {
    fn new(seg: &'s Segment, offset: u64, position: u64, check: Check) -> FrameCursor<'s> {
        FrameCursor { seg, offset, position, check, batch: None, at_boundary: offset == HEADER_BYTES }
    }

    /// A fully checking cursor from the segment's first frame (recovery,
    /// `verify`): nothing of the segment is trusted yet.
    pub fn for_scan(seg: &'s Segment) -> FrameCursor<'s> {
        FrameCursor::new(seg, HEADER_BYTES, seg.first_position, Check::Full)
    }

    /// A fully checking cursor from `offset`, where the frame of `position`
    /// and a batch start (the end of complete batches an earlier scan found).
    pub fn for_scan_from(seg: &'s Segment, offset: u64, position: u64) -> FrameCursor<'s> {
        FrameCursor { at_boundary: true, ..FrameCursor::new(seg, offset, position, Check::Full) }
    }

    /// Offset of the next frame (after an error: of the bad frame).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Position the next frame must claim.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Whether the last frame returned was not the last of its batch
    /// (tracked in [`Check::Full`] mode only).
    pub fn in_batch(&self) -> bool {
        self.batch.is_some()
    }

    /// The next event of a [`Check::Trusted`] walk, on its fast path: `None`
    /// when there is no valid frame here (then [`FrameCursor::next_frame`]
    /// says whether that is the end or what is wrong).
    #[inline]
    pub fn next_trusted(&mut self) -> Option<EventRef<'s>> {
        debug_assert_eq!(self.check, Check::Trusted, "the fast path is for trusted walks");
        let (event, len) = self.seg.trusted_frame(self.offset, self.position)?;
        self.offset += len as u64;
        self.position = event.position() + 1;
        Some(event)
    }

    /// The next event of a [`Check::Trusted`] walk that passes `keep`, on
    /// its fast path: `Some(None)` when `keep` refused the envelope (the
    /// frame's envelope checksum was verified, its payload never read),
    /// `None` when there is no valid frame here (then
    /// [`FrameCursor::next_frame`] says whether that is the end or what is wrong).
    #[inline]
    pub fn next_trusted_kept(&mut self, keep: impl Fn(&Envelope<'s>) -> bool) -> Option<Option<EventRef<'s>>> {
        debug_assert_eq!(self.check, Check::Trusted, "the fast path is for trusted walks");
        let frame = self.seg.trusted_envelope(self.offset, self.position)?;
        let event = match keep(&frame.envelope) {
            true => Some(frame.payload_checked()?),
            false => None,
        };
        self.offset += frame.header.frame_len() as u64;
        self.position = frame.envelope.position() + 1;
        Some(event)
    }

    /// The next frame; `Ok(None)` at zeroed space. After an error the cursor
    /// stays on the bad frame. Batch slots are checked in [`Check::Full`]
    /// mode; a trusted walk covers frames whose batches were checked already.
    #[inline]
    pub fn next_frame(&mut self) -> std::result::Result<Option<Frame<'s>>, FrameError> {
        let offset = self.offset;
        if self.check == Check::Trusted {
            if let Some((event, len)) = self.seg.trusted_frame(offset, self.position) {
                self.offset += len as u64;
                self.position = event.position() + 1;
                return Ok(Some(Frame { offset, event }));
            }
        }
        let Some((h, event)) = self.seg.frame_at(offset, self.position, self.check)? else {
            // A sparse segment's frames end before the positions it covers do:
            // the ones after its last frame were removed.
            if let Some(end) = self.seg.sparse_end {
                self.position = self.position.max(end);
            }
            return Ok(None);
        };
        if self.check == Check::Trusted {
            self.offset += h.frame_len() as u64;
            self.position = event.position() + 1;
            return Ok(Some(Frame { offset, event }));
        }
        let (len, index) = match self.batch {
            Some(expected) => expected,
            None if self.at_boundary => (h.batch_len, 0),
            None => (h.batch_len, h.batch_index),
        };
        if h.batch_index != index || h.batch_len != len {
            return Err(FrameError::Invalid(format!(
                "frame is slot {}/{} of a batch, expected slot {index}/{len}",
                h.batch_index, h.batch_len
            )));
        }
        self.at_boundary = h.batch_index + 1 == h.batch_len;
        self.batch = (!self.at_boundary).then_some((h.batch_len, h.batch_index + 1));
        self.offset += h.frame_len() as u64;
        self.position = event.position() + 1;
        Ok(Some(Frame { offset, event }))
    }
}
