//! The snapshot file format: the 64-byte file header and the record frame
//! (encode, decode and verify, decompress with a declared and capped size).
//! Pure bytes: this module never opens a file, never takes a lock and never
//! decompresses more than a frame's declared size, itself capped by the
//! caller. Every offset is a named constant derived from the previous field.
//!
//! File header, 64 bytes:
//! ```text
//!  0  8 magic "FLOGSNAP"          8  4 format version (1)
//! 12  4 header size (64)         16  8 file number
//! 24  8 created at, unix nanos   32 28 reserved (0)
//! 60  4 CRC32 of bytes 0..60
//! ```
//!
//! Record frame, 8-byte aligned (offsets from the frame start; the body
//! starts at 32):
//! ```text
//!  0 4 magic "FLSN"        4 4 body length
//!  8 8 sequence number    16 8 reserved (0)
//! 24 4 crc32 of 0..24 ++ body                28 4 reserved (0)
//! 32 body: version u64, taken_at i64, schema_version u32,
//!          uncompressed length u32, codec u8 (0 raw, 1 zstd, 2 zstd with a
//!          trained dictionary), aggregate id length u8, reserved u16,
//!          payload length u32, dictionary id u32 (codec 2 only, else 0),
//!          reserved u32, aggregate id, payload, zero padding
//! ```

use super::dictionary::Dictionary;
use super::error::SnapshotFormatError;
use crate::le::{le_u32, le_u64, put_u32, put_u64};

/// Suffix of a snapshot file.
pub(crate) const SNAP_SUFFIX: &str = ".snap";

const FILE_MAGIC: [u8; 8] = *b"FLOGSNAP";
const FILE_VERSION: u32 = 1;
const FILE_MAGIC_AT: usize = 0;
const FILE_VERSION_AT: usize = FILE_MAGIC_AT + FILE_MAGIC.len();
const FILE_HEADER_SIZE_AT: usize = FILE_VERSION_AT + 4;
const FILE_NO_AT: usize = FILE_HEADER_SIZE_AT + 4;
const FILE_CREATED_AT: usize = FILE_NO_AT + 8;
const FILE_RESERVED_AT: usize = FILE_CREATED_AT + 8;
const FILE_RESERVED_BYTES: usize = 28;
const FILE_CRC_AT: usize = FILE_RESERVED_AT + FILE_RESERVED_BYTES;
/// Size of the snapshot file header; the first frame starts here.
pub(crate) const FILE_HEADER_BYTES: usize = FILE_CRC_AT + 4;

/// Frames start and end on multiples of this.
const FRAME_ALIGN: usize = 8;
const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"FLSN");
const FRAME_MAGIC_AT: usize = 0;
const BODY_LEN_AT: usize = FRAME_MAGIC_AT + 4;
const SEQ_AT: usize = BODY_LEN_AT + 4;
const HEADER_RESERVED_AT: usize = SEQ_AT + 8;
const FRAME_CRC_AT: usize = HEADER_RESERVED_AT + 8;
const HEADER_RESERVED2_AT: usize = FRAME_CRC_AT + 4;
const FRAME_HEADER_BYTES: usize = HEADER_RESERVED2_AT + 4;

// Body fields, as offsets from the start of the body.
const VERSION_AT: usize = 0;
const TAKEN_AT_AT: usize = VERSION_AT + 8;
const SCHEMA_AT: usize = TAKEN_AT_AT + 8;
const RAW_LEN_AT: usize = SCHEMA_AT + 4;
const CODEC_AT: usize = RAW_LEN_AT + 4;
const AGG_LEN_AT: usize = CODEC_AT + 1;
const BODY_RESERVED_AT: usize = AGG_LEN_AT + 1;
const PAYLOAD_LEN_AT: usize = BODY_RESERVED_AT + 2;
const DICT_ID_AT: usize = PAYLOAD_LEN_AT + 4;
const BODY_RESERVED2_AT: usize = DICT_ID_AT + 4;
const BODY_FIXED_BYTES: usize = BODY_RESERVED2_AT + 4;

const _: () = assert!(FILE_HEADER_BYTES == 64, "the snapshot file header is 64 bytes on disk");
const _: () = assert!(FILE_HEADER_BYTES.is_multiple_of(FRAME_ALIGN), "the first frame is aligned");
const _: () = assert!(FRAME_HEADER_BYTES == 32 && BODY_FIXED_BYTES == 40, "frame layout of format version 1");
const _: () = assert!(FRAME_HEADER_BYTES.is_multiple_of(FRAME_ALIGN) && BODY_FIXED_BYTES.is_multiple_of(8));
const _: () = assert!(SEQ_AT.is_multiple_of(8) && VERSION_AT.is_multiple_of(8) && TAKEN_AT_AT.is_multiple_of(8));

/// Codec of a payload stored as is (when compression does not shrink it).
pub(crate) const CODEC_RAW: u8 = 0;
/// Codec of a payload compressed with zstd.
pub(crate) const CODEC_ZSTD: u8 = 1;
/// Codec of a payload compressed with zstd and a trained dictionary.
pub(crate) const CODEC_DICTIONARY: u8 = 2;
/// Largest codec number.
const CODEC_MAX: u8 = CODEC_DICTIONARY;

/// The name of snapshot file `no`: 20 digits, so `ls` sorts in save order.
pub(crate) fn file_name(no: u64) -> String {
    format!("{no:020}{SNAP_SUFFIX}")
}

/// The number of a snapshot file name, if it is one.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    name.strip_suffix(SNAP_SUFFIX)?.parse().ok()
}

/// The header of a new snapshot file `no`.
pub(crate) fn file_header(no: u64) -> [u8; FILE_HEADER_BYTES] {
    let mut h = [0u8; FILE_HEADER_BYTES];
    h[FILE_MAGIC_AT..FILE_VERSION_AT].copy_from_slice(&FILE_MAGIC);
    put_u32(&mut h, FILE_VERSION_AT, FILE_VERSION);
    put_u32(&mut h, FILE_HEADER_SIZE_AT, FILE_HEADER_BYTES as u32);
    put_u64(&mut h, FILE_NO_AT, no);
    put_u64(&mut h, FILE_CREATED_AT, crate::event::now_nanos() as u64);
    let crc = crc32fast::hash(&h[..FILE_CRC_AT]);
    put_u32(&mut h, FILE_CRC_AT, crc);
    debug_assert_eq!(check_file_header(&h, no), Ok(()), "a new snapshot file header reads back");
    h
}

/// Checks the header at the start of `h` (at least [`FILE_HEADER_BYTES`]) of
/// the snapshot file numbered `no`.
pub(crate) fn check_file_header(h: &[u8], no: u64) -> Result<(), SnapshotFormatError> {
    let h = h.get(..FILE_HEADER_BYTES).ok_or(SnapshotFormatError::FileMagic)?;
    if h[FILE_MAGIC_AT..FILE_VERSION_AT] != FILE_MAGIC {
        return Err(SnapshotFormatError::FileMagic);
    }
    let found = le_u32(h, FILE_VERSION_AT).ok_or(SnapshotFormatError::FileMagic)?;
    if found != FILE_VERSION {
        return Err(SnapshotFormatError::FileVersion { found, supported: FILE_VERSION });
    }
    let crc_ok = le_u32(h, FILE_CRC_AT) == Some(crc32fast::hash(&h[..FILE_CRC_AT]));
    if !crc_ok || le_u64(h, FILE_NO_AT) != Some(no) {
        return Err(SnapshotFormatError::FileHeader);
    }
    Ok(())
}

/// A decoded, checksum-verified snapshot frame.
pub struct SnapFrame<'a> {
    /// Sequence number.
    pub seq: u64,
    /// Aggregate version.
    pub version: u64,
    /// Save time.
    pub taken_at: i64,
    /// Caller's schema version.
    pub schema_version: u32,
    /// Declared uncompressed length.
    pub raw_len: u32,
    /// 0 raw, 1 zstd, 2 zstd with dictionary `dict_id`.
    pub codec: u8,
    /// The dictionary of codec 2 (0 otherwise).
    pub dict_id: u32,
    /// Aggregate id.
    pub aggregate_id: &'a str,
    /// Stored payload.
    pub payload: &'a [u8],
    /// Frame length, padding included.
    pub frame_len: usize,
}

/// The fixed fields of a snapshot record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapMeta {
    /// Sequence number.
    pub seq: u64,
    /// Aggregate version.
    pub version: u64,
    /// Caller's schema version.
    pub schema_version: u32,
    /// Save time, unix nanos.
    pub taken_at: i64,
    /// Uncompressed length.
    pub raw_len: u32,
    /// 0 raw, 1 zstd, 2 zstd with dictionary `dict_id`.
    pub codec: u8,
    /// The dictionary of codec 2 (0 otherwise).
    pub dict_id: u32,
}

impl SnapFrame<'_> {
    /// The fixed fields, as they were given to [`encode_frame`].
    pub(crate) fn meta(&self) -> SnapMeta {
        let SnapFrame { seq, version, taken_at, schema_version, raw_len, codec, dict_id, .. } = *self;
        SnapMeta { seq, version, schema_version, taken_at, raw_len, codec, dict_id }
    }
}

/// Length of a frame with a body of `body_len` bytes, padding included.
fn frame_len(body_len: usize) -> usize {
    (FRAME_HEADER_BYTES + body_len).next_multiple_of(FRAME_ALIGN)
}

/// Encodes one snapshot frame. The aggregate id must be at most 255 bytes.
pub fn encode_frame(meta: SnapMeta, aggregate_id: &str, payload: &[u8]) -> Vec<u8> {
    let SnapMeta { seq, version, schema_version, taken_at, raw_len, codec, dict_id } = meta;
    let body_len = BODY_FIXED_BYTES + aggregate_id.len() + payload.len();
    debug_assert!(aggregate_id.len() <= usize::from(u8::MAX), "aggregate id of {} bytes", aggregate_id.len());
    debug_assert!(u32::try_from(body_len).is_ok(), "snapshot body of {body_len} bytes");
    let mut f = vec![0u8; frame_len(body_len)];
    put_u32(&mut f, FRAME_MAGIC_AT, FRAME_MAGIC);
    put_u32(&mut f, BODY_LEN_AT, body_len as u32);
    put_u64(&mut f, SEQ_AT, seq);
    let (header, rest) = f.split_at_mut(FRAME_HEADER_BYTES);
    let body = &mut rest[..body_len];
    put_u64(body, VERSION_AT, version);
    put_u64(body, TAKEN_AT_AT, taken_at as u64);
    put_u32(body, SCHEMA_AT, schema_version);
    put_u32(body, RAW_LEN_AT, raw_len);
    body[CODEC_AT] = codec;
    body[AGG_LEN_AT] = aggregate_id.len() as u8;
    put_u32(body, PAYLOAD_LEN_AT, payload.len() as u32);
    put_u32(body, DICT_ID_AT, dict_id);
    let (id_bytes, payload_bytes) = body[BODY_FIXED_BYTES..].split_at_mut(aggregate_id.len());
    id_bytes.copy_from_slice(aggregate_id.as_bytes());
    payload_bytes.copy_from_slice(payload);
    let crc = frame_crc(header, body);
    put_u32(&mut f, FRAME_CRC_AT, crc);
    f
}

/// The CRC32 a frame carries: header bytes before the CRC field, then the body.
fn frame_crc(header: &[u8], body: &[u8]) -> u32 {
    let mut c = crc32fast::Hasher::new();
    c.update(&header[..FRAME_CRC_AT]);
    c.update(body);
    c.finalize()
}

fn field32(b: &[u8], at: usize) -> Result<u32, SnapshotFormatError> {
    le_u32(b, at).ok_or(SnapshotFormatError::FrameTruncated)
}

fn field64(b: &[u8], at: usize) -> Result<u64, SnapshotFormatError> {
    le_u64(b, at).ok_or(SnapshotFormatError::FrameTruncated)
}

/// Decodes and verifies the frame at the start of `bytes`. `Ok(None)` for
/// zeros or an empty slice (clean end).
pub fn decode_frame(bytes: &[u8]) -> Result<Option<SnapFrame<'_>>, SnapshotFormatError> {
    if bytes.is_empty() || (bytes.len() < FRAME_HEADER_BYTES && bytes.iter().all(|b| *b == 0)) {
        return Ok(None);
    }
    let h = bytes.get(..FRAME_HEADER_BYTES).ok_or(SnapshotFormatError::FrameTruncated)?;
    if field32(h, FRAME_MAGIC_AT)? != FRAME_MAGIC {
        if h.iter().all(|b| *b == 0) {
            return Ok(None);
        }
        return Err(SnapshotFormatError::FrameMagic);
    }
    let body_len = field32(h, BODY_LEN_AT)? as usize;
    if body_len < BODY_FIXED_BYTES || field64(h, HEADER_RESERVED_AT)? != 0 || field32(h, HEADER_RESERVED2_AT)? != 0 {
        return Err(SnapshotFormatError::FrameHeader);
    }
    let frame_len = frame_len(body_len);
    let body = bytes.get(FRAME_HEADER_BYTES..frame_len).ok_or(SnapshotFormatError::FramePastEnd)?;
    let body = &body[..body_len];
    if frame_crc(h, body) != field32(h, FRAME_CRC_AT)? {
        return Err(SnapshotFormatError::FrameChecksum);
    }
    let frame = decode_body(body, field64(h, SEQ_AT)?, frame_len)?;
    debug_assert!(frame.frame_len <= bytes.len() && frame.frame_len.is_multiple_of(FRAME_ALIGN));
    debug_assert!(!frame.aggregate_id.is_empty() && frame.codec <= CODEC_MAX);
    Ok(Some(frame))
}

/// The fields of a checksum-verified body.
fn decode_body(body: &[u8], seq: u64, frame_len: usize) -> Result<SnapFrame<'_>, SnapshotFormatError> {
    let fixed: &[u8; BODY_FIXED_BYTES] =
        body.get(..BODY_FIXED_BYTES).and_then(|b| b.try_into().ok()).ok_or(SnapshotFormatError::FrameTruncated)?;
    if fixed[BODY_RESERVED_AT..PAYLOAD_LEN_AT].iter().chain(&fixed[BODY_RESERVED2_AT..]).any(|b| *b != 0) {
        return Err(SnapshotFormatError::FrameReserved);
    }
    let (codec, dict_id) = (fixed[CODEC_AT], field32(fixed, DICT_ID_AT)?);
    if codec > CODEC_MAX || (codec == CODEC_DICTIONARY) != (dict_id != 0) {
        return Err(SnapshotFormatError::FrameCodec { codec, dict_id });
    }
    let agg_len = usize::from(fixed[AGG_LEN_AT]);
    let payload_len = field32(fixed, PAYLOAD_LEN_AT)? as usize;
    if BODY_FIXED_BYTES + agg_len + payload_len != body.len() || agg_len == 0 {
        return Err(SnapshotFormatError::FrameLengths);
    }
    let (id, payload) = body[BODY_FIXED_BYTES..].split_at(agg_len);
    let aggregate_id = std::str::from_utf8(id).map_err(|_| SnapshotFormatError::AggregateIdUtf8)?;
    Ok(SnapFrame {
        seq,
        version: field64(fixed, VERSION_AT)?,
        taken_at: field64(fixed, TAKEN_AT_AT)? as i64,
        schema_version: field32(fixed, SCHEMA_AT)?,
        raw_len: field32(fixed, RAW_LEN_AT)?,
        codec,
        dict_id,
        aggregate_id,
        payload,
        frame_len,
    })
}

/// Decompresses a frame's payload, refusing anything over `max_bytes` or not
/// exactly its declared size (a decompression bomb or a lie is an error). A
/// frame compressed with a dictionary (codec 2) is an error here: the store
/// decompresses those with its dictionaries.
pub fn decompress(frame: &SnapFrame<'_>, max_bytes: u32) -> Result<Vec<u8>, SnapshotFormatError> {
    decompress_with(frame, max_bytes, None)
}

/// [`decompress`], with the dictionary a codec 2 frame names (if the store has it).
pub(crate) fn decompress_with(
    frame: &SnapFrame<'_>,
    max_bytes: u32,
    dict: Option<&Dictionary>,
) -> Result<Vec<u8>, SnapshotFormatError> {
    if frame.raw_len > max_bytes {
        return Err(SnapshotFormatError::OverLimit { declared: frame.raw_len, max: max_bytes });
    }
    let cap = frame.raw_len as usize;
    let data = match (frame.codec, dict) {
        (CODEC_RAW, _) => frame.payload.to_vec(),
        (CODEC_ZSTD, _) => {
            zstd::bulk::decompress(frame.payload, cap).map_err(|e| SnapshotFormatError::Zstd(e.to_string()))?
        }
        (_, Some(d)) => {
            d.decompress(frame.payload, cap).map_err(|e| SnapshotFormatError::ZstdDictionary(e.to_string()))?
        }
        (_, None) => return Err(SnapshotFormatError::MissingDictionary(frame.dict_id)),
    };
    if data.len() != cap {
        return Err(SnapshotFormatError::SizeMismatch { got: data.len() as u64, declared: frame.raw_len });
    }
    Ok(data)
}

/// Offset of the first valid frame after the start of `bytes` (in steps of
/// the frame alignment): evidence that a bad frame is not a torn tail.
pub(crate) fn valid_frame_after(bytes: &[u8]) -> Option<usize> {
    let magic = FRAME_MAGIC.to_le_bytes();
    (FRAME_ALIGN..bytes.len())
        .step_by(FRAME_ALIGN)
        .find(|&at| bytes[at..].starts_with(&magic) && matches!(decode_frame(&bytes[at..]), Ok(Some(_))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> SnapMeta {
        SnapMeta { seq: 7, version: 3, schema_version: 2, taken_at: -5, raw_len: 5, codec: 0, dict_id: 0 }
    }

    #[test]
    fn frame_round_trips_and_every_flip_or_cut_is_refused() {
        let f = encode_frame(meta(), "acct-1", b"hello");
        assert_eq!(f.len(), frame_len(BODY_FIXED_BYTES + 6 + 5));
        let d = decode_frame(&f).unwrap().unwrap();
        assert_eq!((d.meta(), d.aggregate_id, d.payload, d.frame_len), (meta(), "acct-1", &b"hello"[..], f.len()));
        assert_eq!(decompress(&d, 5).unwrap(), b"hello");
        assert_eq!(decompress(&d, 4).unwrap_err(), SnapshotFormatError::OverLimit { declared: 5, max: 4 });
        let body_end = FRAME_HEADER_BYTES + BODY_FIXED_BYTES + 11;
        for i in 0..body_end {
            let mut g = f.clone();
            g[i] ^= 0x04;
            assert!(decode_frame(&g).is_err(), "flip at {i} accepted");
        }
        for cut in 1..f.len() {
            assert!(!matches!(decode_frame(&f[..cut]), Ok(Some(_))), "cut at {cut} accepted");
        }
        assert!(matches!(decode_frame(&[0u8; 40]), Ok(None)));
    }

    #[test]
    fn file_header_round_trips_and_names_its_number() {
        let h = file_header(42);
        assert_eq!(check_file_header(&h, 42), Ok(()));
        assert_eq!(check_file_header(&h, 43), Err(SnapshotFormatError::FileHeader));
        assert_eq!(check_file_header(&h[..63], 42), Err(SnapshotFormatError::FileMagic));
        let mut v2 = h;
        put_u32(&mut v2, FILE_VERSION_AT, 2);
        assert_eq!(check_file_header(&v2, 42), Err(SnapshotFormatError::FileVersion { found: 2, supported: 1 }));
        assert_eq!(parse_file_name(&file_name(42)), Some(42));
    }
}
