//! Byte-level helpers the checks share: little-endian fields, the CRC32 that
//! frames and headers carry (to fix it up after a deliberate change), and
//! walking the frames of a segment or snapshot file. These functions read
//! and patch buffers only; they never open a store or touch a file.

use factlog::record::{self, FRAME_HEADER_BYTES};
use factlog::snapshot as snap;

/// Size of a segment file header; the first frame follows it.
pub(super) const SEG_HEADER: usize = 64;
/// Size of a snapshot file header; the first frame follows it.
pub(super) const SNAP_FILE_HEADER: usize = 64;
/// Size of a snapshot frame header; the body follows it.
pub(super) const SNAP_FRAME_HEADER: usize = 32;
/// Fixed part of a snapshot frame body, before the aggregate id.
pub(super) const SNAP_BODY_FIXED: usize = 40;

// Event frame header fields (frame format 2, `docs/FORMAT.md`).
/// The envelope checksum (of bytes 4..end of the envelope).
pub(super) const FRAME_CRC_AT: usize = 0;
/// The frame magic.
pub(super) const FRAME_MAGIC_AT: usize = 4;
/// The body length.
pub(super) const BODY_LEN_AT: usize = 8;
/// The payload length (the body's last bytes).
pub(super) const DATA_LEN_AT: usize = 12;
/// The payload checksum.
pub(super) const DATA_CRC_AT: usize = 16;
/// The batch length.
pub(super) const BATCH_LEN_AT: usize = 20;
/// The batch index.
pub(super) const BATCH_INDEX_AT: usize = 24;
/// The write slot.
pub(super) const WRITE_SLOT_AT: usize = 28;

/// CRC32 (IEEE) of the concatenation of `parts`, for fixing up checksums.
pub fn crc32(parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for part in parts {
        h.update(part);
    }
    h.finalize()
}

pub(super) fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(super) fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

pub(super) fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

pub(super) fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// The payload length an event frame at the start of `f` declares, cut to
/// fit a body of `body_len` bytes.
fn data_len_of(f: &[u8], body_len: usize) -> usize {
    (le32(f, DATA_LEN_AT) as usize).min(body_len)
}

/// The (envelope) checksum an event frame at the start of `f` must carry for
/// a body of `body_len` bytes: of header bytes 4..32 and the body without
/// its trailing payload, in one piece.
pub(super) fn record_crc(f: &[u8], body_len: usize) -> u32 {
    let envelope_end = FRAME_HEADER_BYTES + body_len - data_len_of(f, body_len);
    crc32(&[&f[FRAME_MAGIC_AT..envelope_end]])
}

/// The payload checksum an event frame at the start of `f` must carry: of
/// the body's last `data_len` bytes.
pub(super) fn payload_crc(f: &[u8], body_len: usize) -> u32 {
    let end = FRAME_HEADER_BYTES + body_len;
    crc32(&[&f[end - data_len_of(f, body_len)..end]])
}

/// Recomputes both checksums of the event frame at the start of `f` for the
/// body and payload lengths its header declares. Does nothing if header or
/// body do not fit in `f`.
pub(super) fn fix_record_crc(f: &mut [u8]) {
    if f.len() >= FRAME_HEADER_BYTES {
        let body_len = le32(f, BODY_LEN_AT) as usize;
        if FRAME_HEADER_BYTES + body_len <= f.len() {
            let data_crc = payload_crc(f, body_len);
            put32(f, DATA_CRC_AT, data_crc);
            let crc = record_crc(f, body_len);
            put32(f, FRAME_CRC_AT, crc);
        }
    }
}

/// Recomputes the checksum of the snapshot frame at the start of `f` (header
/// bytes 0..24, then the body) for the body length its header declares.
/// Does nothing if header or body do not fit in `f`.
pub(super) fn fix_snap_crc(f: &mut [u8]) {
    if f.len() >= SNAP_FRAME_HEADER {
        let end = SNAP_FRAME_HEADER + le32(f, 4) as usize;
        if end <= f.len() {
            let crc = crc32(&[&f[..24], &f[SNAP_FRAME_HEADER..end]]);
            put32(f, 24, crc);
        }
    }
}

/// Recomputes the checksum of a segment or snapshot file header (bytes
/// 0..60, stored at 60). Does nothing if `h` is shorter than a header.
pub(super) fn fix_header_crc(h: &mut [u8]) {
    if h.len() >= SEG_HEADER {
        let crc = crc32(&[&h[..60]]);
        put32(h, 60, crc);
    }
}

/// Whether `h` starts with a segment or snapshot file header whose checksum matches.
pub(super) fn header_crc_ok(h: &[u8]) -> bool {
    h.len() >= SEG_HEADER && crc32(&[&h[..60]]) == le32(h, 60)
}

/// A segment file header as the engine writes it.
pub(super) fn segment_header(first_position: u64, segment_bytes: u64) -> [u8; SEG_HEADER] {
    let mut h = [0u8; SEG_HEADER];
    h[0..8].copy_from_slice(b"FACTLOG\x1a");
    put32(&mut h, 8, factlog::FORMAT_VERSION);
    put32(&mut h, 12, SEG_HEADER as u32);
    put64(&mut h, 16, first_position);
    put64(&mut h, 24, segment_bytes);
    fix_header_crc(&mut h);
    h
}

/// The chain of frames of a segment file (of the current format), from its
/// header to the first place that is not a frame header: (offset, length,
/// position) each. Frame `k` of a chain has the segment's first position
/// plus `k` (what its checksummed body claims when it is sound).
pub(super) fn frames_of(bytes: &[u8]) -> Vec<(usize, usize, u64)> {
    let mut out = Vec::new();
    let mut off = SEG_HEADER;
    let first = if bytes.len() >= SEG_HEADER { le64(bytes, 16) } else { 0 };
    while off < bytes.len() {
        match record::parse_header(&bytes[off..], bytes.len(), record::FrameFormat::CURRENT) {
            Ok(h) => {
                out.push((off, h.frame_len(), first + out.len() as u64));
                off += h.frame_len();
            }
            Err(_) => break,
        }
    }
    out
}

/// Offsets of the frames of a snapshot file that decode, up to the first that does not.
pub(super) fn snap_frames_of(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut off = SNAP_FILE_HEADER;
    while let Some(Ok(Some(f))) = bytes.get(off..).map(snap::decode_frame) {
        out.push(off);
        off += f.frame_len;
    }
    out
}
