//! Record frames: the byte layout of one event in a segment, its encoding and
//! its checked decoding. A frame is a 32-byte header followed by the rkyv
//! archive of [`RecordBody`], zero-padded to [`FRAME_ALIGN`] bytes. Two frame
//! formats exist, named by the segment header's format version; this build
//! writes format 2 and reads both.
//!
//! Format 2 (segments of format version 2):
//! ```text
//! offset  size  field
//!      0     4  crc32        the envelope checksum: crc32 of bytes 4..32+e (the
//!                            rest of the header and the envelope, contiguous,
//!                            so one pass of the fast CRC covers them)
//!      4     4  magic        FRAME_MAGIC (never 0, so zeroed space is not a frame)
//!      8     4  body_len     bytes of body that follow the header
//!     12     4  data_len     bytes of payload at the end of the body
//!     16     4  data_crc     crc32 of the payload
//!     20     4  batch_len    events in the append this frame belongs to
//!     24     4  batch_index  index of this frame inside that append
//!     28     4  write_slot   bit 31: written by a `Sync`-mode writer; bits 0..31:
//!                            this frame's offset from the start of the `pwrite`
//!                            that wrote it, in units of 16 bytes
//!     32     e  envelope     rkyv archive of `RecordBody` with an empty `data`
//!                            (e = body_len - data_len; its root struct ends it)
//!   32+e     d  payload      the event's data, d = data_len bytes
//!              padding      zeros to a multiple of 16
//! ```
//! The envelope checksum covers everything but the payload, so a filtered
//! read checks an event's envelope without reading its payload; the payload's
//! own checksum is verified before an event is handed out. The envelope's
//! position is the frame's claim (covered by the envelope checksum).
//!
//! Format 1 (segments of format version 1, read only): magic (0), body_len
//! (4), the claimed position (8, 8 bytes), batch_len (16), batch_index (20),
//! the one crc32 (24: of bytes 0..24 ++ 28..32 ++ the body) and write_slot
//! (28); the body is the archive alone, with the payload inside it as its
//! `data`.
//!
//! Both checksums cover what the frame claims to be (its position and batch
//! slot), so a stale or misplaced frame fails. This module never hands out
//! bytes that have not passed their checksum.

use rkyv::with::InlineAsBox;

use crate::le::{fixed_u32 as le_u32, fixed_u64 as le_u64};
use rkyv::{Archive, Serialize};

/// The frame magic, little-endian "FLRC".
pub const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"FLRC");
/// Bytes of a frame header.
pub const FRAME_HEADER_BYTES: usize = 32;
/// Frames start, and bodies are padded to, multiples of this.
pub const FRAME_ALIGN: usize = 16;
/// Longest aggregate id or event type name, in bytes.
pub const NAME_BYTES_MAX: usize = 255;

// Format 2's header field offsets, each derived from the one before (module doc).
const CRC_AT: usize = 0;
const MAGIC_AT: usize = CRC_AT + 4;
const BODY_LEN_AT: usize = MAGIC_AT + 4;
const DATA_LEN_AT: usize = BODY_LEN_AT + 4;
const DATA_CRC_AT: usize = DATA_LEN_AT + 4;
const BATCH_LEN_AT: usize = DATA_CRC_AT + 4;
const BATCH_INDEX_AT: usize = BATCH_LEN_AT + 4;
const WRITE_SLOT_AT: usize = BATCH_INDEX_AT + 4;
const _: () = assert!(WRITE_SLOT_AT + 4 == FRAME_HEADER_BYTES);

// Format 1's header field offsets (module doc).
const V1_MAGIC_AT: usize = 0;
const V1_BODY_LEN_AT: usize = V1_MAGIC_AT + 4;
const V1_POSITION_AT: usize = V1_BODY_LEN_AT + 4;
const V1_BATCH_LEN_AT: usize = V1_POSITION_AT + 8;
const V1_BATCH_INDEX_AT: usize = V1_BATCH_LEN_AT + 4;
const V1_CRC_AT: usize = V1_BATCH_INDEX_AT + 4;
const V1_WRITE_SLOT_AT: usize = V1_CRC_AT + 4;
const _: () = assert!(V1_WRITE_SLOT_AT + 4 == FRAME_HEADER_BYTES);

const _: () = assert!(FRAME_HEADER_BYTES.is_multiple_of(FRAME_ALIGN));

/// The layout of the frames in a segment, named by its header's format version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameFormat {
    /// Format version 1: one checksum over header and body (read only).
    V1,
    /// Format version 2: an envelope checksum and a payload checksum.
    V2,
}

impl FrameFormat {
    /// The format this build writes.
    pub const CURRENT: FrameFormat = FrameFormat::V2;

    /// The format of segments whose header says `version`, if this build reads it.
    pub fn from_version(version: u32) -> Option<FrameFormat> {
        match version {
            1 => Some(FrameFormat::V1),
            2 => Some(FrameFormat::V2),
            _ => None,
        }
    }

    /// Offset of the frame magic in a header of this format.
    pub fn magic_at(self) -> usize {
        match self {
            FrameFormat::V1 => V1_MAGIC_AT,
            FrameFormat::V2 => MAGIC_AT,
        }
    }

    /// The segment header's format version for this format.
    pub fn version(self) -> u32 {
        match self {
            FrameFormat::V1 => 1,
            FrameFormat::V2 => 2,
        }
    }
}

/// The archived envelope (and, in format 1, the payload). Field order is
/// part of the on-disk format (`docs/FORMAT.md`); changing it requires a new
/// format version.
#[derive(Archive, Serialize)]
#[rkyv(bytecheck())]
pub struct RecordBody<'a> {
    /// Global position (format 1 repeats it in the header).
    pub position: u64,
    /// Version within the aggregate.
    pub version: u64,
    /// Event id.
    pub event_id: [u8; 16],
    /// Caller's timestamp.
    pub occurred_at: i64,
    /// Engine's timestamp.
    pub recorded_at: i64,
    /// Schema version of data.
    pub event_version: u32,
    /// Causation id.
    pub causation_id: Option<[u8; 16]>,
    /// Correlation id.
    pub correlation_id: Option<[u8; 16]>,
    /// Aggregate id.
    #[rkyv(with = InlineAsBox)]
    pub aggregate_id: &'a str,
    /// Type name.
    #[rkyv(with = InlineAsBox)]
    pub event_type: &'a str,
    /// Metadata.
    #[rkyv(with = InlineAsBox)]
    pub metadata: &'a [u8],
    /// Payload. Format 1 archives it here; format 2 archives it empty and
    /// stores the payload after the archive (the encoder takes it from here).
    #[rkyv(with = InlineAsBox)]
    pub data: &'a [u8],
}

/// The decoded header of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The frame format it was parsed as.
    pub format: FrameFormat,
    /// Body length in bytes.
    pub body_len: u32,
    /// Format 1: the position the header claims. Format 2 claims it in the
    /// body only (`None`).
    pub claimed_position: Option<u64>,
    /// Format 2: payload bytes at the end of the body (format 1: 0, the
    /// payload is inside the archive).
    pub data_len: u32,
    /// Format 2: checksum of the payload.
    pub data_crc: u32,
    /// Events in the frame's batch.
    pub batch_len: u32,
    /// This frame's index in its batch.
    pub batch_index: u32,
    /// Stored checksum (format 2: of the envelope).
    pub crc: u32,
    /// Raw write-slot word (see the module doc).
    pub write_slot: u32,
}

/// Bit of `write_slot` set by a `Sync`-mode writer.
pub const SLOT_SYNC_BIT: u32 = 1 << 31;

impl FrameHeader {
    /// Offset in bytes from the start of the `pwrite` that wrote this frame.
    pub fn offset_in_write(&self) -> u64 {
        u64::from(self.write_slot & !SLOT_SYNC_BIT) * FRAME_ALIGN as u64
    }
    /// Whether the writer synced each write before starting the next (`Sync` mode).
    pub fn written_synced(&self) -> bool {
        self.write_slot & SLOT_SYNC_BIT != 0
    }
    /// Total bytes the frame occupies, padding included.
    pub fn frame_len(&self) -> usize {
        FRAME_HEADER_BYTES + pad_len(self.body_len as usize)
    }
}

/// `n` rounded up to [`FRAME_ALIGN`].
pub fn pad_len(n: usize) -> usize {
    n.div_ceil(FRAME_ALIGN) * FRAME_ALIGN
}

/// Why bytes at an offset are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// All-zero header: the unwritten end of a segment.
    #[error("no frame here (zeroed space)")]
    Empty,
    /// Something that is not a complete, valid frame.
    #[error("{0}")]
    Invalid(String),
}

/// Whether `bytes` starts with what could be a frame header of `format`
/// (its magic in place): how a scan for frames past damage finds candidates.
pub fn has_magic(bytes: &[u8], format: FrameFormat) -> bool {
    let at = format.magic_at();
    bytes.get(at..at + 4).is_some_and(|m| m == FRAME_MAGIC.to_le_bytes())
}

/// Parses the frame header at the start of `bytes` (which extends at most to
/// the end of the segment) as `format`. Checks magic, lengths and that the
/// body fits; does not check the checksums.
#[inline(always)]
pub fn parse_header(bytes: &[u8], max_body: usize, format: FrameFormat) -> Result<FrameHeader, FrameError> {
    let Some(h) = bytes.get(..FRAME_HEADER_BYTES).and_then(|h| <&[u8; FRAME_HEADER_BYTES]>::try_from(h).ok()) else {
        if bytes.iter().all(|b| *b == 0) {
            return Err(FrameError::Empty);
        }
        return Err(FrameError::Invalid("truncated frame header".into()));
    };
    let magic = le_u32(h, format.magic_at());
    if magic != FRAME_MAGIC {
        if h.iter().all(|b| *b == 0) {
            return Err(FrameError::Empty);
        }
        return Err(FrameError::Invalid(format!("bad frame magic {magic:#010x}")));
    }
    let header = match format {
        FrameFormat::V1 => FrameHeader {
            format,
            body_len: le_u32(h, V1_BODY_LEN_AT),
            claimed_position: Some(le_u64(h, V1_POSITION_AT)),
            data_len: 0,
            data_crc: 0,
            batch_len: le_u32(h, V1_BATCH_LEN_AT),
            batch_index: le_u32(h, V1_BATCH_INDEX_AT),
            crc: le_u32(h, V1_CRC_AT),
            write_slot: le_u32(h, V1_WRITE_SLOT_AT),
        },
        FrameFormat::V2 => FrameHeader {
            format,
            body_len: le_u32(h, BODY_LEN_AT),
            claimed_position: None,
            data_len: le_u32(h, DATA_LEN_AT),
            data_crc: le_u32(h, DATA_CRC_AT),
            batch_len: le_u32(h, BATCH_LEN_AT),
            batch_index: le_u32(h, BATCH_INDEX_AT),
            crc: le_u32(h, CRC_AT),
            write_slot: le_u32(h, WRITE_SLOT_AT),
        },
    };
    if header.body_len == 0 || header.body_len as usize > max_body {
        return Err(FrameError::Invalid(format!("body length {} out of range", header.body_len)));
    }
    if header.data_len >= header.body_len {
        return Err(FrameError::Invalid(format!(
            "payload length {} leaves no envelope in a body of {}",
            header.data_len, header.body_len
        )));
    }
    if header.batch_len == 0 || header.batch_index >= header.batch_len {
        return Err(FrameError::Invalid(format!("batch slot {}/{} invalid", header.batch_index, header.batch_len)));
    }
    if bytes.len() < header.frame_len() {
        return Err(FrameError::Invalid("frame runs past the end of the segment".into()));
    }
    Ok(header)
}

/// The header's checksum of the frame at the start of `frame`, whose
/// envelope ends at `envelope_end` (from the frame's start): format 2, one
/// contiguous pass over bytes 4..envelope_end; format 1, header bytes 0..24
/// and 28..32, then the body.
#[inline(always)]
pub fn frame_crc(frame: &[u8], envelope_end: usize, format: FrameFormat) -> u32 {
    match format {
        FrameFormat::V2 => crc32fast::hash(&frame[MAGIC_AT..envelope_end]),
        FrameFormat::V1 => {
            let mut h = crc32fast::Hasher::new();
            h.update(&frame[..V1_CRC_AT]);
            h.update(&frame[V1_WRITE_SLOT_AT..envelope_end]);
            h.finalize()
        }
    }
}

/// Verifies the header's checksum of the frame whose header was parsed from
/// `bytes` and returns the envelope: the archive of [`RecordBody`], the whole
/// body for format 1 (whose checksum covers the payload too), the body
/// without its trailing payload for format 2 (see [`checked_payload`]).
#[inline(always)]
pub fn checked_envelope<'a>(bytes: &'a [u8], header: &FrameHeader) -> Result<&'a [u8], FrameError> {
    let end = FRAME_HEADER_BYTES + (header.body_len - header.data_len) as usize;
    let Some(envelope) = bytes.get(FRAME_HEADER_BYTES..end) else {
        return Err(FrameError::Invalid("frame shorter than its header says".into()));
    };
    let crc = frame_crc(bytes, end, header.format);
    if crc != header.crc {
        return Err(FrameError::Invalid(format!(
            "checksum mismatch (stored {:#010x}, computed {crc:#010x})",
            header.crc
        )));
    }
    Ok(envelope)
}

/// Verifies the payload checksum of a format 2 frame parsed from `bytes`
/// and returns the payload. `Ok(None)` for format 1, whose payload is inside
/// the envelope's archive and covered by its one checksum.
#[inline(always)]
pub fn checked_payload<'a>(bytes: &'a [u8], header: &FrameHeader) -> Result<Option<&'a [u8]>, FrameError> {
    if header.format == FrameFormat::V1 {
        return Ok(None);
    }
    let end = FRAME_HEADER_BYTES + header.body_len as usize;
    let Some(payload) = bytes.get(end - header.data_len as usize..end) else {
        return Err(FrameError::Invalid("frame shorter than its header says".into()));
    };
    let crc = crc32fast::hash(payload);
    if crc != header.data_crc {
        return Err(FrameError::Invalid(format!(
            "payload checksum mismatch (stored {:#010x}, computed {crc:#010x})",
            header.data_crc
        )));
    }
    Ok(Some(payload))
}

/// Verifies every checksum of the frame whose header was parsed from `bytes`
/// and returns its envelope (see [`checked_envelope`]).
#[inline]
pub fn checked_body<'a>(bytes: &'a [u8], header: &FrameHeader) -> Result<&'a [u8], FrameError> {
    let envelope = checked_envelope(bytes, header)?;
    checked_payload(bytes, header)?;
    Ok(envelope)
}

/// Validates an envelope (see [`checked_envelope`]) structurally (rkyv
/// bytecheck: every relative pointer inside the envelope, strings UTF-8) and
/// that it agrees with its header.
pub fn validate_body<'a>(
    envelope: &'a [u8],
    header: &FrameHeader,
) -> Result<&'a ArchivedRecordBody<'static>, FrameError> {
    let archived = rkyv::access::<ArchivedRecordBody<'static>, rkyv::rancor::Error>(envelope)
        .map_err(|e| FrameError::Invalid(format!("record body fails validation: {e}")))?;
    if let Some(claimed) = header.claimed_position {
        if archived.position.to_native() != claimed {
            return Err(FrameError::Invalid(format!(
                "body claims position {}, header {claimed}",
                archived.position.to_native(),
            )));
        }
    }
    if header.format == FrameFormat::V2 && !archived.data.is_empty() {
        return Err(FrameError::Invalid(format!(
            "a format 2 envelope archives {} payload bytes (its payload follows it)",
            archived.data.len()
        )));
    }
    check_names(&archived.aggregate_id, &archived.event_type).map_err(|e| FrameError::Invalid(e.to_string()))?;
    Ok(archived)
}

/// A name that breaks the length rule (1..=[`NAME_BYTES_MAX`] bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The aggregate id has this many bytes.
    #[error("aggregate id must be 1..={NAME_BYTES_MAX} bytes, got {0}")]
    AggregateId(usize),
    /// The event type has this many bytes.
    #[error("event type must be 1..={NAME_BYTES_MAX} bytes, got {0}")]
    EventType(usize),
}

/// Checks the length rules on aggregate ids and type names.
pub fn check_names(aggregate_id: &str, event_type: &str) -> Result<(), NameError> {
    if aggregate_id.is_empty() || aggregate_id.len() > NAME_BYTES_MAX {
        return Err(NameError::AggregateId(aggregate_id.len()));
    }
    if event_type.is_empty() || event_type.len() > NAME_BYTES_MAX {
        return Err(NameError::EventType(event_type.len()));
    }
    Ok(())
}

/// Why a frame could not be encoded. Nothing is appended to the buffer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The buffer's length is not a multiple of [`FRAME_ALIGN`].
    #[error("frame buffer not aligned")]
    Unaligned,
    /// The write would be larger than a write slot can describe, or the body over 4 GiB.
    #[error("write too large")]
    TooLarge,
    /// rkyv failed to serialize the body.
    #[error("encoding record failed: {0}")]
    Archive(String),
}

/// Appends one frame for `body` to `buf` in the current format (format 2),
/// whose length must be a multiple of
/// [`FRAME_ALIGN`] (and whose allocation is 16-aligned). Returns the frame
/// length. The frame's write slot says it sits `buf.len()` bytes into a write
/// made without the Sync-mode promise; the writer uses [`encode_frame_slot`].
pub fn encode_frame(
    buf: &mut rkyv::util::AlignedVec,
    body: &RecordBody<'_>,
    batch_len: u32,
    batch_index: u32,
) -> Result<usize, EncodeError> {
    encode_frame_slot(buf, body, batch_len, batch_index, false)
}

/// [`encode_frame`], saying whether `buf` will be written as one `pwrite` that
/// is synced before any later write (`synced`).
pub fn encode_frame_slot(
    buf: &mut rkyv::util::AlignedVec,
    body: &RecordBody<'_>,
    batch_len: u32,
    batch_index: u32,
    synced: bool,
) -> Result<usize, EncodeError> {
    encode_frame_as(buf, body, batch_len, batch_index, synced, FrameFormat::CURRENT)
}

/// [`encode_frame_slot`] in `format`: the writer appends to a segment in the
/// segment's own format (a store's older segments keep theirs).
pub fn encode_frame_as(
    buf: &mut rkyv::util::AlignedVec,
    body: &RecordBody<'_>,
    batch_len: u32,
    batch_index: u32,
    synced: bool,
    format: FrameFormat,
) -> Result<usize, EncodeError> {
    if !buf.len().is_multiple_of(FRAME_ALIGN) {
        return Err(EncodeError::Unaligned);
    }
    let start = buf.len();
    let units = u32::try_from(start / FRAME_ALIGN).ok().filter(|u| *u < SLOT_SYNC_BIT).ok_or(EncodeError::TooLarge)?;
    let slot = units | if synced { SLOT_SYNC_BIT } else { 0 };
    buf.extend_from_slice(&[0u8; FRAME_HEADER_BYTES]);
    let body_start = buf.len();
    let taken = std::mem::take(buf);
    // Format 2 archives the envelope alone and puts the payload after it;
    // format 1 archives the payload inside.
    let (archived, payload) = match format {
        FrameFormat::V2 => (RecordBody { data: &[], ..*body }, body.data),
        FrameFormat::V1 => (RecordBody { ..*body }, &[][..]),
    };
    let mut out = rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(&archived, taken)
        .map_err(|e| EncodeError::Archive(e.to_string()))?;
    let envelope_end = out.len();
    out.extend_from_slice(payload);
    let body_len = out.len() - body_start;
    let padded = pad_len(body_len);
    out.resize(body_start + padded, 0);
    let (Ok(body_len32), Ok(data_len32)) = (u32::try_from(body_len), u32::try_from(payload.len())) else {
        out.resize(start, 0);
        *buf = out;
        return Err(EncodeError::TooLarge);
    };
    let crc_at = {
        let h = &mut out[start..body_start];
        let mut put = |at: usize, bytes: &[u8]| h[at..at + bytes.len()].copy_from_slice(bytes);
        match format {
            FrameFormat::V2 => {
                put(MAGIC_AT, &FRAME_MAGIC.to_le_bytes());
                put(BODY_LEN_AT, &body_len32.to_le_bytes());
                put(DATA_LEN_AT, &data_len32.to_le_bytes());
                put(DATA_CRC_AT, &crc32fast::hash(payload).to_le_bytes());
                put(BATCH_LEN_AT, &batch_len.to_le_bytes());
                put(BATCH_INDEX_AT, &batch_index.to_le_bytes());
                put(WRITE_SLOT_AT, &slot.to_le_bytes());
                CRC_AT
            }
            FrameFormat::V1 => {
                put(V1_MAGIC_AT, &FRAME_MAGIC.to_le_bytes());
                put(V1_BODY_LEN_AT, &body_len32.to_le_bytes());
                put(V1_POSITION_AT, &body.position.to_le_bytes());
                put(V1_BATCH_LEN_AT, &batch_len.to_le_bytes());
                put(V1_BATCH_INDEX_AT, &batch_index.to_le_bytes());
                put(V1_WRITE_SLOT_AT, &slot.to_le_bytes());
                V1_CRC_AT
            }
        }
    };
    let crc = frame_crc(&out[start..], envelope_end - start, format);
    out[start + crc_at..start + crc_at + 4].copy_from_slice(&crc.to_le_bytes());
    *buf = out;
    // Assert on the writing side of the disk: what was encoded parses back as itself.
    debug_assert!(parse_header(&buf[start..], usize::MAX, format).is_ok_and(|h| h.data_len == data_len32
        && h.batch_len == batch_len
        && h.batch_index == batch_index
        && h.body_len == body_len32
        && checked_body(&buf[start..], &h).and_then(|b| validate_body(b, &h)).is_ok()));
    Ok(FRAME_HEADER_BYTES + padded)
}

/// Appends a copy of `frame`, one whole format 2 frame whose checksums hold
/// (header, envelope, payload and padding, as in a segment), to `buf` as slot
/// `batch_index` of a batch of `batch_len`, at the write slot `buf.len()`
/// gives it (as [`encode_frame_as`] does). Only the batch fields, the write
/// slot and the envelope checksum change: the envelope and the payload, and
/// the payload's checksum, are copied byte for byte, so nothing is
/// re-encoded (the scavenge's copy). Returns the frame length.
pub fn copy_frame(
    buf: &mut rkyv::util::AlignedVec,
    frame: &[u8],
    batch_len: u32,
    batch_index: u32,
    synced: bool,
) -> Result<usize, CopyError> {
    if !buf.len().is_multiple_of(FRAME_ALIGN) {
        return Err(CopyError::Encode(EncodeError::Unaligned));
    }
    let header = parse_header(frame, frame.len(), FrameFormat::V2).map_err(CopyError::Frame)?;
    if header.frame_len() != frame.len() {
        return Err(CopyError::Frame(FrameError::Invalid(format!(
            "frame of {} bytes handed over as {}",
            header.frame_len(),
            frame.len()
        ))));
    }
    let envelope_end = FRAME_HEADER_BYTES + (header.body_len - header.data_len) as usize;
    if frame_crc(frame, envelope_end, FrameFormat::V2) != header.crc {
        return Err(CopyError::Frame(FrameError::Invalid("envelope checksum mismatch in the frame to copy".into())));
    }
    let start = buf.len();
    let units = u32::try_from(start / FRAME_ALIGN)
        .ok()
        .filter(|u| *u < SLOT_SYNC_BIT)
        .ok_or(CopyError::Encode(EncodeError::TooLarge))?;
    let slot = units | if synced { SLOT_SYNC_BIT } else { 0 };
    buf.extend_from_slice(frame);
    let out = &mut buf[start..];
    out[BATCH_LEN_AT..BATCH_LEN_AT + 4].copy_from_slice(&batch_len.to_le_bytes());
    out[BATCH_INDEX_AT..BATCH_INDEX_AT + 4].copy_from_slice(&batch_index.to_le_bytes());
    out[WRITE_SLOT_AT..WRITE_SLOT_AT + 4].copy_from_slice(&slot.to_le_bytes());
    let crc = frame_crc(out, envelope_end, FrameFormat::V2);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    Ok(frame.len())
}

/// Why [`copy_frame`] refused a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyError {
    /// The bytes handed over are not one whole, intact format 2 frame.
    #[error("{0}")]
    Frame(FrameError),
    /// The copy cannot be placed in the buffer.
    #[error("{0}")]
    Encode(EncodeError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body<'a>(pos: u64, data: &'a [u8]) -> RecordBody<'a> {
        RecordBody {
            position: pos,
            version: 3,
            event_id: [7; 16],
            occurred_at: -5,
            recorded_at: 99,
            event_version: 2,
            causation_id: None,
            correlation_id: Some([9; 16]),
            aggregate_id: "acct-1",
            event_type: "FundsDeposited",
            metadata: b"{}",
            data,
        }
    }

    const V2: FrameFormat = FrameFormat::V2;

    #[test]
    fn frames_round_trip_after_other_frames() {
        let mut buf = rkyv::util::AlignedVec::<16>::new();
        let n1 = encode_frame(&mut buf, &body(10, b"first"), 2, 0).unwrap();
        let n2 = encode_frame(&mut buf, &body(11, b"second payload"), 2, 1).unwrap();
        assert_eq!(buf.len(), n1 + n2);
        let h = parse_header(&buf[n1..], 1 << 20, V2).unwrap();
        assert_eq!((h.data_len, h.batch_len, h.batch_index), (14, 2, 1));
        let envelope = checked_body(&buf[n1..], &h).unwrap();
        let a = validate_body(envelope, &h).unwrap();
        assert_eq!(a.position.to_native(), 11);
        assert_eq!(checked_payload(&buf[n1..], &h).unwrap(), Some(&b"second payload"[..]));
        assert!(a.data.is_empty(), "format 2 keeps the payload out of the archive");
        assert_eq!(&*a.aggregate_id, "acct-1");
        assert_eq!(a.correlation_id.as_ref().copied(), Some([9; 16]));
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let mut buf = rkyv::util::AlignedVec::<16>::new();
        let n = encode_frame(&mut buf, &body(1, b"payload"), 1, 0).unwrap();
        let clean = buf[..n].to_vec();
        let h0 = parse_header(&clean, 1 << 20, V2).unwrap();
        let body_end = FRAME_HEADER_BYTES + h0.body_len as usize;
        let payload = body_end - h0.data_len as usize..body_end;
        for bit in 0..n * 8 {
            let mut b = clean.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            let whole = parse_header(&b, 1 << 20, V2)
                .and_then(|h| checked_body(&b, &h).map(|body| (h, body)))
                .and_then(|(h, body)| validate_body(body, &h).map(|_| ()));
            let envelope = parse_header(&b, 1 << 20, V2).and_then(|h| checked_envelope(&b, &h).map(|_| ()));
            // Flips in the zero padding after the body are harmless and not covered.
            if bit / 8 >= body_end {
                continue;
            }
            assert!(whole.is_err(), "flip of bit {bit} went unnoticed");
            // The envelope check alone misses exactly the payload's flips.
            assert_eq!(envelope.is_ok(), payload.contains(&(bit / 8)), "envelope check and flip of bit {bit}");
        }
    }

    #[test]
    fn a_copied_frame_is_a_new_batch_slot_with_the_same_envelope_and_payload() {
        let mut src = rkyv::util::AlignedVec::<16>::new();
        let n1 = encode_frame(&mut src, &body(10, b"first"), 3, 0).unwrap();
        let n2 = encode_frame(&mut src, &body(11, b"second payload"), 3, 1).unwrap();
        let frame = &src[n1..n1 + n2];
        let mut out = rkyv::util::AlignedVec::<16>::new();
        out.extend_from_slice(&[0u8; 48]);
        assert_eq!(copy_frame(&mut out, frame, 1, 0, true).unwrap(), n2);
        let copy = &out[48..];
        let h = parse_header(copy, 1 << 20, V2).unwrap();
        assert_eq!((h.batch_len, h.batch_index, h.written_synced(), h.offset_in_write()), (1, 0, true, 48));
        let a = validate_body(checked_body(copy, &h).unwrap(), &h).unwrap();
        assert_eq!((a.position.to_native(), &*a.aggregate_id), (11, "acct-1"));
        assert_eq!(checked_payload(copy, &h).unwrap(), Some(&b"second payload"[..]));
        assert_eq!(copy[FRAME_HEADER_BYTES..], frame[FRAME_HEADER_BYTES..], "envelope and payload unchanged");
        // A damaged envelope, a cut frame, a format 1 frame or an unaligned buffer is refused.
        let mut bad = frame.to_vec();
        bad[FRAME_HEADER_BYTES + 3] ^= 1;
        assert!(matches!(copy_frame(&mut out, &bad, 1, 0, true), Err(CopyError::Frame(_))));
        assert!(matches!(copy_frame(&mut out, &frame[..n2 - 16], 1, 0, true), Err(CopyError::Frame(_))));
        let mut v1 = rkyv::util::AlignedVec::<16>::new();
        encode_frame_as(&mut v1, &body(5, b"old"), 1, 0, true, FrameFormat::V1).unwrap();
        assert!(matches!(copy_frame(&mut out, &v1, 1, 0, true), Err(CopyError::Frame(_))));
        out.push(0);
        assert_eq!(copy_frame(&mut out, frame, 1, 0, true), Err(CopyError::Encode(EncodeError::Unaligned)));
    }

    #[test]
    fn format_1_frames_still_encode_and_decode() {
        let mut buf = rkyv::util::AlignedVec::<16>::new();
        let n = encode_frame_as(&mut buf, &body(5, b"old payload"), 1, 0, true, FrameFormat::V1).unwrap();
        let h = parse_header(&buf[..n], 1 << 20, FrameFormat::V1).unwrap();
        assert_eq!((h.claimed_position, h.data_len, h.written_synced()), (Some(5), 0, true));
        let envelope = checked_body(&buf, &h).unwrap();
        assert_eq!(checked_payload(&buf, &h).unwrap(), None, "format 1 keeps the payload in the archive");
        assert_eq!(&validate_body(envelope, &h).unwrap().data[..], b"old payload");
        // Read as format 2 it is no frame.
        assert!(parse_header(&buf[..n], 1 << 20, V2).is_err());
    }

    #[test]
    fn a_payload_length_that_moves_the_envelope_is_refused() {
        let mut buf = rkyv::util::AlignedVec::<16>::new();
        let n = encode_frame(&mut buf, &body(1, b"payload"), 1, 0).unwrap();
        for data_len in [0u32, 3, 8, 15] {
            let mut b = buf[..n].to_vec();
            // Another payload length with both checksums fixed: the checksums
            // pass, the envelope's archive must not.
            b[DATA_LEN_AT..DATA_CRC_AT].copy_from_slice(&data_len.to_le_bytes());
            let h = parse_header(&b, 1 << 20, V2).unwrap();
            let end = FRAME_HEADER_BYTES + h.body_len as usize;
            let crc = crc32fast::hash(&b[end - data_len as usize..end]);
            b[DATA_CRC_AT..BATCH_LEN_AT].copy_from_slice(&crc.to_le_bytes());
            let crc = frame_crc(&b, end - data_len as usize, V2);
            b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
            let h = parse_header(&b, 1 << 20, V2).unwrap();
            let envelope = checked_body(&b, &h).unwrap();
            assert!(validate_body(envelope, &h).is_err(), "payload length {data_len} accepted");
        }
    }
}
