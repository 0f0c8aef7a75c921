//! The checks behind factlog's fuzz targets, as plain functions of the
//! fuzzer's bytes. Each `pub fn TARGET(&[u8])` returns normally for every
//! input the engine handles correctly (including inputs it rejects with an
//! error) and panics only when an invariant is broken: a panic here is a
//! finding. The cargo-fuzz targets in `fuzz/fuzz_targets/` are one-line
//! wrappers around these functions, and `tests/tests/fuzz_corpus.rs` replays
//! the committed corpora through them under plain `cargo test`.
//!
//! Targets:
//! * [`record_decode`]: arbitrary bytes as one event frame (header parse,
//!   checksum, rkyv validation, re-encoding round trip), and, when the bytes
//!   validate, as the only frame of a store that is then opened and read.
//! * [`snapshot_decode`]: arbitrary bytes as one snapshot frame.
//! * [`segment_open`]: mutations of a copy of a real store (several sealed
//!   segments with checkpoints, an active segment, snapshot files), then open,
//!   read everything, append, reopen.
//! * [`ops`]: a sequence of appends, reads, reopens, snapshots and simulated
//!   crashes, checked against an in-memory model.
//!
//! Scratch stores live under `$FACTLOG_FUZZ_TMPDIR`, else `/dev/shm` when it
//! is writable (fsync is free there), else the system temp directory.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bytes::Bytes;
use factlog::record::{self, ArchivedRecordBody, FrameError, RecordBody, FRAME_HEADER_BYTES, FRAME_MAGIC};
use factlog::snapshot::{self as snap, SnapMeta};
use factlog::{Direction, Error, ExpectedVersion, NewEvent, Options, RecordedEvent, Snapshot, Store};
use rkyv::util::AlignedVec;

/// Segment size of every store the fuzz checks build.
pub const SEGMENT_BYTES: u64 = 64 * 1024;
/// `max_event_bytes` of every store the fuzz checks build.
pub const MAX_EVENT_BYTES: u32 = 16 * 1024;
/// `max_snapshot_bytes`, and the cap used when decompressing fuzzed snapshot frames.
pub const MAX_SNAPSHOT_BYTES: u32 = 1 << 20;
const SEG_HEADER: usize = 64;
const MARKER_TEXT: &str = "factlog store\nformat 1\n";
/// A crafted segment header may declare any size up to `SEGMENT_BYTES_MAX`;
/// recovery pads a short active segment up to it. Inputs declaring more than
/// this (and no more than the maximum) are not opened, to keep runs fast.
const HUGE_SEGMENT: u64 = 4 << 20;

/// Options of every store the fuzz checks open: small segments (so stores
/// roll), small snapshot files (so they seal and get checkpoints).
pub fn fuzz_options() -> Options {
    Options {
        segment_bytes: SEGMENT_BYTES,
        max_event_bytes: MAX_EVENT_BYTES,
        snapshot_file_bytes: 4096,
        snapshots_keep: 2,
        max_snapshot_bytes: MAX_SNAPSHOT_BYTES,
        ..Options::default()
    }
}

/// A fresh scratch directory (removed on drop).
pub fn scratch_dir() -> tempfile::TempDir {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    let base = BASE.get_or_init(|| {
        if let Some(p) = std::env::var_os("FACTLOG_FUZZ_TMPDIR") {
            return PathBuf::from(p);
        }
        let shm = Path::new("/dev/shm");
        if shm.is_dir() && tempfile::tempdir_in(shm).is_ok() {
            return shm.to_path_buf();
        }
        std::env::temp_dir()
    });
    tempfile::Builder::new().prefix("factlog-fuzz-").tempdir_in(base).expect("create scratch directory")
}

/// CRC32 (IEEE, as crc32fast computes it), for fixing up checksums.
pub fn crc32(parts: &[&[u8]]) -> u32 {
    static TABLE: OnceLock<[u32; 256]> = OnceLock::new();
    let t = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
            *slot = c;
        }
        t
    });
    let mut c = !0u32;
    for part in parts {
        for &b in *part {
            c = t[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
        }
    }
    !c
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Reads the fuzzer's bytes as numbers; reads past the end give zeros.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// Wraps `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }
    /// Whether every byte was consumed.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    /// One byte.
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }
    /// Little-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    /// Little-endian i16.
    pub fn i16(&mut self) -> i16 {
        self.u16() as i16
    }
    /// Little-endian u32.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    /// Up to `n` bytes.
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.data.split_at(n.min(self.data.len()));
        self.data = b;
        a
    }
}

// ---------------------------------------------------------------------------
// record_decode
// ---------------------------------------------------------------------------

/// The decoded contents of a record body, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    /// Global position.
    pub position: u64,
    /// Aggregate version.
    pub version: u64,
    /// Event id.
    pub event_id: [u8; 16],
    /// Caller's timestamp.
    pub occurred_at: i64,
    /// Engine's timestamp.
    pub recorded_at: i64,
    /// Schema version.
    pub event_version: u32,
    /// Causation id.
    pub causation_id: Option<[u8; 16]>,
    /// Correlation id.
    pub correlation_id: Option<[u8; 16]>,
    /// Aggregate id.
    pub aggregate_id: String,
    /// Type name.
    pub event_type: String,
    /// Metadata.
    pub metadata: Vec<u8>,
    /// Payload.
    pub data: Vec<u8>,
}

fn str_of(s: &str) -> &str {
    s
}

fn bytes_of(b: &[u8]) -> &[u8] {
    b
}

impl Body {
    fn from_archived(a: &ArchivedRecordBody<'_>) -> Body {
        Body {
            position: a.position.to_native(),
            version: a.version.to_native(),
            event_id: a.event_id,
            occurred_at: a.occurred_at.to_native(),
            recorded_at: a.recorded_at.to_native(),
            event_version: a.event_version.to_native(),
            causation_id: a.causation_id.as_ref().copied(),
            correlation_id: a.correlation_id.as_ref().copied(),
            aggregate_id: str_of(&a.aggregate_id).to_string(),
            event_type: str_of(&a.event_type).to_string(),
            metadata: bytes_of(&a.metadata).to_vec(),
            data: bytes_of(&a.data).to_vec(),
        }
    }

    /// The body as the engine encodes it.
    pub fn as_record(&self) -> RecordBody<'_> {
        RecordBody {
            position: self.position,
            version: self.version,
            event_id: self.event_id,
            occurred_at: self.occurred_at,
            recorded_at: self.recorded_at,
            event_version: self.event_version,
            causation_id: self.causation_id,
            correlation_id: self.correlation_id,
            aggregate_id: &self.aggregate_id,
            event_type: &self.event_type,
            metadata: &self.metadata,
            data: &self.data,
        }
    }

    fn matches(&self, e: &RecordedEvent) -> bool {
        e.position == self.position
            && e.version == self.version
            && e.event_id == self.event_id
            && e.occurred_at == self.occurred_at
            && e.recorded_at == self.recorded_at
            && e.event_version == self.event_version
            && e.causation_id == self.causation_id
            && e.correlation_id == self.correlation_id
            && e.aggregate_id == self.aggregate_id
            && e.event_type == self.event_type
            && e.metadata[..] == self.metadata[..]
            && e.data[..] == self.data[..]
    }
}

/// Encodes one frame (`batch_len`, `batch_index`, written by a non-Sync writer at offset 0).
pub fn encode_body(body: &Body, batch_len: u32, batch_index: u32) -> Vec<u8> {
    let mut buf = AlignedVec::<16>::new();
    record::encode_frame(&mut buf, &body.as_record(), batch_len, batch_index).expect("encode frame");
    buf.to_vec()
}

/// Arbitrary bytes as one event frame: `parse_header`, `checked_body` and
/// `validate_body` must agree with the byte layout, and a validated body
/// must re-encode to a frame that decodes to the same values. Then the same
/// bytes with magic, lengths, batch slot and checksum fixed up (so that the
/// rkyv validation is reached), and, if they validate, as the only event of
/// a store that is opened, read, appended to and reopened.
pub fn record_decode(data: &[u8]) {
    check_frame_bytes(data, false);
    if let Some(fixed) = fix_frame(data) {
        if let Some(body) = check_frame_bytes(&fixed, true) {
            store_with_frame(&fixed, &body);
        }
    }
}

/// Rewrites `data` into a frame that passes `parse_header` and `checked_body`.
pub fn fix_frame(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() <= FRAME_HEADER_BYTES {
        return None;
    }
    let mut f = data.to_vec();
    put32(&mut f, 0, FRAME_MAGIC);
    let avail = (f.len() - FRAME_HEADER_BYTES) as u32;
    let mut body_len = le32(&f, 4);
    if body_len == 0 || body_len > avail {
        body_len = avail;
    }
    put32(&mut f, 4, body_len);
    f.resize(FRAME_HEADER_BYTES + record::pad_len(body_len as usize), 0);
    let mut batch_len = le32(&f, 16);
    if batch_len == 0 {
        batch_len = 1;
    }
    let batch_index = le32(&f, 20) % batch_len;
    put32(&mut f, 16, batch_len);
    put32(&mut f, 20, batch_index);
    let crc = crc32(&[&f[..24], &f[28..32], &f[32..32 + body_len as usize]]);
    put32(&mut f, 24, crc);
    Some(f)
}

/// Runs the frame decoders over `raw` (copied to a 16-aligned buffer, as
/// frames are in a segment map). Returns the body if it validates with the
/// whole input as the segment. `must_pass_crc`: the bytes come from
/// [`fix_frame`], so the header and checksum must be accepted.
fn check_frame_bytes(raw: &[u8], must_pass_crc: bool) -> Option<Body> {
    let mut buf = AlignedVec::<16>::new();
    buf.extend_from_slice(raw);
    let buf = &buf[..];
    let prefix_zero = buf[..buf.len().min(FRAME_HEADER_BYTES)].iter().all(|b| *b == 0);
    let mut result = None;
    for max_body in [buf.len(), MAX_EVENT_BYTES as usize] {
        let h = match record::parse_header(buf, max_body) {
            Err(FrameError::Empty) => {
                assert!(prefix_zero, "parse_header said Empty for a non-zero header");
                continue;
            }
            Err(FrameError::Invalid(reason)) => {
                assert!(!prefix_zero, "parse_header said Invalid ({reason}) for zeroed space");
                assert!(!must_pass_crc || max_body != buf.len(), "fixed-up frame refused: {reason}");
                continue;
            }
            Ok(h) => h,
        };
        assert!(buf.len() >= FRAME_HEADER_BYTES && le32(buf, 0) == FRAME_MAGIC, "header accepted without magic");
        assert_eq!(
            (h.body_len, h.position, h.batch_len, h.batch_index, h.crc, h.write_slot),
            (le32(buf, 4), le64(buf, 8), le32(buf, 16), le32(buf, 20), le32(buf, 24), le32(buf, 28)),
            "parsed header differs from its bytes"
        );
        assert!(h.body_len > 0 && h.body_len as usize <= max_body, "body length {} accepted", h.body_len);
        assert!(h.batch_index < h.batch_len, "batch slot {}/{} accepted", h.batch_index, h.batch_len);
        assert_eq!(h.frame_len(), FRAME_HEADER_BYTES + (h.body_len as usize).div_ceil(16) * 16);
        assert!(h.frame_len() <= buf.len(), "frame of {} bytes accepted in {} bytes", h.frame_len(), buf.len());
        assert_eq!(h.offset_in_write(), u64::from(h.write_slot & !record::SLOT_SYNC_BIT) * 16);
        assert_eq!(h.written_synced(), h.write_slot & record::SLOT_SYNC_BIT != 0);
        let end = FRAME_HEADER_BYTES + h.body_len as usize;
        let computed = crc32(&[&buf[..24], &buf[28..32], &buf[32..end]]);
        assert_eq!(record::frame_crc(&buf[..32], &buf[32..end]), computed, "frame_crc is not crc32 of its fields");
        let body = match record::checked_body(buf, &h) {
            Ok(body) => body,
            Err(e) => {
                assert_ne!(computed, h.crc, "checked_body refused a matching checksum: {e:?}");
                assert!(!must_pass_crc, "fixed-up checksum refused");
                continue;
            }
        };
        assert_eq!(computed, h.crc, "checked_body accepted a wrong checksum");
        assert!(std::ptr::eq(body, &buf[32..end]), "checked_body returned other bytes than the body");
        let Ok(archived) = record::validate_body(body, &h) else { continue };
        let decoded = Body::from_archived(archived);
        assert_eq!(decoded.position, h.position, "validated body claims another position than its header");
        assert!(
            (1..=factlog::NAME_BYTES_MAX).contains(&decoded.aggregate_id.len())
                && (1..=factlog::NAME_BYTES_MAX).contains(&decoded.event_type.len()),
            "validated body has out-of-range names ({} / {} bytes)",
            decoded.aggregate_id.len(),
            decoded.event_type.len()
        );
        round_trip(&decoded, h.batch_len, h.batch_index);
        if max_body == buf.len() {
            result = Some(decoded);
        }
    }
    result
}

fn round_trip(body: &Body, batch_len: u32, batch_index: u32) {
    for synced in [false, true] {
        // Two frames in one buffer: the second one's write slot is the first one's length.
        let mut out = AlignedVec::<16>::new();
        let n1 = record::encode_frame_slot(&mut out, &body.as_record(), batch_len, batch_index, synced)
            .expect("re-encoding a validated body failed");
        let n2 = record::encode_frame_slot(&mut out, &body.as_record(), batch_len, batch_index, synced)
            .expect("re-encoding a validated body failed");
        assert_eq!((n1, n1 + n2, n1 % 16), (n2, out.len(), 0), "frame lengths");
        assert_eq!(out[..24], out[n1..n1 + 24], "encoding is not deterministic");
        assert_eq!(out[32..n1], out[n1 + 32..], "encoding is not deterministic");
        for (at, slot) in [(0usize, 0u64), (n1, n1 as u64)] {
            let frame = &out[at..];
            let h = record::parse_header(frame, frame.len()).expect("re-encoded header refused");
            assert_eq!((h.position, h.batch_len, h.batch_index), (body.position, batch_len, batch_index));
            assert_eq!((h.offset_in_write(), h.written_synced()), (slot, synced), "write slot");
            let b = record::checked_body(frame, &h).expect("re-encoded checksum refused");
            let a = record::validate_body(b, &h).expect("re-encoded body refused");
            assert_eq!(&Body::from_archived(a), body, "re-encoded frame decodes to other values");
        }
    }
}

fn segment_header(first_position: u64, segment_bytes: u64) -> [u8; SEG_HEADER] {
    let mut h = [0u8; SEG_HEADER];
    h[0..8].copy_from_slice(b"FACTLOG\x1a");
    put32(&mut h, 8, factlog::FORMAT_VERSION);
    put32(&mut h, 12, SEG_HEADER as u32);
    put64(&mut h, 16, first_position);
    put64(&mut h, 24, segment_bytes);
    let crc = crc32(&[&h[..60]]);
    put32(&mut h, 60, crc);
    h
}

/// The validated frame (batch slot forced to 1/0, checksum fixed) as the only
/// event of a segment whose first position is the frame's: opening must
/// accept it exactly when the index can take it (version 0), and then serve
/// it, take an append after it, and keep both across a reopen.
fn store_with_frame(frame: &[u8], body: &Body) {
    let frame_len = record::parse_header(frame, frame.len()).expect("validated").frame_len();
    if (SEG_HEADER + frame_len) as u64 > SEGMENT_BYTES {
        return;
    }
    let mut seg = vec![0u8; SEGMENT_BYTES as usize];
    seg[..SEG_HEADER].copy_from_slice(&segment_header(body.position, SEGMENT_BYTES));
    let f = &mut seg[SEG_HEADER..SEG_HEADER + frame_len];
    f.copy_from_slice(&frame[..frame_len]);
    put32(f, 16, 1);
    put32(f, 20, 0);
    let body_len = le32(f, 4) as usize;
    let crc = crc32(&[&f[..24], &f[28..32], &f[32..32 + body_len]]);
    put32(f, 24, crc);
    let dir = scratch_dir();
    std::fs::write(dir.path().join("FACTLOG"), MARKER_TEXT).unwrap();
    std::fs::write(dir.path().join(format!("{:020}.seg", body.position)), &seg).unwrap();
    let opened = Store::open(dir.path(), fuzz_options());
    if std::env::var_os("FACTLOG_FUZZ_VERBOSE").is_some() {
        eprintln!(
            "record_decode: store with position {} version {}: {:?}",
            body.position,
            body.version,
            opened.as_ref().map(|s| s.recovery_report().events)
        );
    }
    if body.position >= factlog::POSITION_LIMIT {
        // Fixed finding F1: positions this high are refused, not wrapped.
        assert!(
            matches!(opened, Err(Error::Corrupt { .. })),
            "segment at position {} opened: {:?}",
            body.position,
            opened.map(|s| s.last_position())
        );
        return;
    }
    let store = match opened {
        Ok(s) => s,
        Err(e) => {
            assert!(body.version != 0, "a store whose only frame is valid (version 0) failed to open: {e}");
            return;
        }
    };
    assert_eq!(body.version, 0, "opened a store whose only event has version {}", body.version);
    let got = store.read_all(0, usize::MAX).expect("read_all of a one-event store");
    assert!(got.len() == 1 && body.matches(&got[0]), "one-event store reads back {got:?}, not {body:?}");
    let agg = store.read_aggregate(&body.aggregate_id, 0, Direction::Forward, usize::MAX).expect("read_aggregate");
    assert_eq!(agg, got, "read_aggregate differs from read_all");
    assert_eq!(store.last_position(), Some(body.position));
    assert_eq!(store.aggregate_version(&body.aggregate_id), Some(0));
    if body.position >= factlog::POSITION_LIMIT - 2 {
        return;
    }
    let mut id = body.event_id;
    id[0] ^= 0xff;
    let ev = NewEvent::new(id, body.event_type.clone(), &b"after"[..]);
    let r = store.append(&body.aggregate_id, ExpectedVersion::Exact(0), vec![ev]).expect("append after a valid frame");
    assert_eq!((r.first_position, r.first_version), (body.position + 1, 1));
    store.close().expect("close");
    let store = Store::open(dir.path(), fuzz_options()).expect("reopen after append");
    let got = store.read_all(0, usize::MAX).expect("read_all after reopen");
    assert!(got.len() == 2 && body.matches(&got[0]) && got[1].event_id == id, "after reopen: {got:?}");
    store.close().expect("close");
}

// ---------------------------------------------------------------------------
// snapshot_decode
// ---------------------------------------------------------------------------

const SNAP_FRAME_HEADER: usize = 32;
const SNAP_BODY_FIXED: usize = 40;

/// Arbitrary bytes as one snapshot frame: `decode_frame` must agree with the
/// byte layout and re-encode byte for byte; `decompress` must produce exactly
/// the declared size or fail. Then the same bytes with magic, lengths and
/// checksum fixed up, which must decode.
pub fn snapshot_decode(data: &[u8]) {
    check_snap_frame(data, false);
    if let Some(fixed) = fix_snap_frame(data) {
        check_snap_frame(&fixed, true);
    }
}

/// Rewrites `data` into a snapshot frame that passes `decode_frame`.
pub fn fix_snap_frame(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < SNAP_FRAME_HEADER + SNAP_BODY_FIXED + 1 {
        return None;
    }
    let mut f = data.to_vec();
    f[0..4].copy_from_slice(b"FLSN");
    f[16..24].fill(0);
    f[28..32].fill(0);
    let avail = f.len() - SNAP_FRAME_HEADER;
    let mut body_len = le32(&f, 4) as usize;
    if body_len < SNAP_BODY_FIXED + 1 || body_len > avail {
        body_len = avail;
    }
    put32(&mut f, 4, body_len as u32);
    f.resize((SNAP_FRAME_HEADER + body_len).div_ceil(8) * 8, 0);
    let b = SNAP_FRAME_HEADER;
    f[b + 24] %= 3;
    let agg_len = usize::from(f[b + 25]).clamp(1, (body_len - SNAP_BODY_FIXED).min(255));
    f[b + 25] = agg_len as u8;
    f[b + 26..b + 28].fill(0);
    // Codec 2 (zstd with a dictionary) needs a dictionary id, the others none.
    if f[b + 24] == 2 {
        f[b + 32] |= 1;
    } else {
        f[b + 32..b + 36].fill(0);
    }
    f[b + 36..b + SNAP_BODY_FIXED].fill(0);
    put32(&mut f, b + 28, (body_len - SNAP_BODY_FIXED - agg_len) as u32);
    for c in &mut f[b + SNAP_BODY_FIXED..b + SNAP_BODY_FIXED + agg_len] {
        *c = b'a' + *c % 26;
    }
    let crc = crc32(&[&f[..24], &f[b..b + body_len]]);
    put32(&mut f, 24, crc);
    Some(f)
}

fn check_snap_frame(bytes: &[u8], must_decode: bool) {
    let prefix_zero = bytes[..bytes.len().min(SNAP_FRAME_HEADER)].iter().all(|b| *b == 0);
    let frame = match snap::decode_frame(bytes) {
        Ok(None) => {
            assert!(prefix_zero, "snapshot decode_frame said 'clean end' for non-zero bytes");
            assert!(!must_decode, "fixed-up snapshot frame read as clean end");
            return;
        }
        Err(reason) => {
            assert!(!must_decode, "fixed-up snapshot frame refused: {reason}");
            assert!(!prefix_zero, "zeros refused: {reason}");
            return;
        }
        Ok(Some(f)) => f,
    };
    let body_len = le32(bytes, 4) as usize;
    assert!(body_len > SNAP_BODY_FIXED, "snapshot body of {body_len} bytes accepted");
    assert_eq!(frame.frame_len, (SNAP_FRAME_HEADER + body_len).div_ceil(8) * 8);
    assert!(frame.frame_len <= bytes.len(), "snapshot frame runs past its bytes");
    assert!(!frame.aggregate_id.is_empty() && frame.codec <= 2);
    assert_eq!(frame.codec == 2, frame.dict_id != 0, "dictionary id {} with codec {}", frame.dict_id, frame.codec);
    let meta = SnapMeta {
        seq: frame.seq,
        version: frame.version,
        schema_version: frame.schema_version,
        taken_at: frame.taken_at,
        raw_len: frame.raw_len,
        codec: frame.codec,
        dict_id: frame.dict_id,
    };
    let again = snap::encode_frame(meta, frame.aggregate_id, frame.payload);
    assert_eq!(again.len(), frame.frame_len, "re-encoded snapshot frame has another length");
    // Reserved bytes must be zero, so re-encoding gives the same bytes up to
    // the padding (not checksummed).
    let end = SNAP_FRAME_HEADER + body_len;
    let masked = |f: &[u8]| f[..end].to_vec();
    assert_eq!(masked(&again), masked(bytes), "re-encoded snapshot frame differs");
    match snap::decompress(&frame, MAX_SNAPSHOT_BYTES) {
        Ok(d) => {
            assert!(frame.raw_len <= MAX_SNAPSHOT_BYTES && d.len() == frame.raw_len as usize, "decompressed size");
            assert!(frame.codec != 2, "a dictionary-compressed snapshot decompressed without its dictionary");
            if frame.codec == 0 {
                assert_eq!(d, frame.payload, "raw snapshot payload changed");
            }
        }
        // Codec 2 needs the store's dictionary, which a lone frame does not have.
        Err(_) => assert!(frame.codec >= 1 || frame.raw_len as usize != frame.payload.len()),
    }
}

// ---------------------------------------------------------------------------
// segment_open
// ---------------------------------------------------------------------------

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

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn base_event(serial: u64, rng: &mut Lcg) -> NewEvent {
    let size = if rng.next().is_multiple_of(8) { 3000 + rng.next() % 3000 } else { rng.next() % 1200 } as usize;
    let fill = (serial % 251) as u8;
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&serial.to_le_bytes());
    id[8..].copy_from_slice(b"fuzzbase");
    NewEvent {
        event_id: id,
        event_type: ["Opened", "Deposited", "Withdrawn", "ClosedWithAVeryLongTypeNameForTesting"][serial as usize % 4]
            .to_string(),
        event_version: (serial % 3) as u32 + 1,
        occurred_at: if serial.is_multiple_of(7) {
            -(serial as i64)
        } else {
            1_700_000_000_000_000_000 + serial as i64
        },
        causation_id: (serial.is_multiple_of(2)).then_some([fill; 16]),
        correlation_id: (serial.is_multiple_of(3)).then_some([fill ^ 0x55; 16]),
        metadata: if serial.is_multiple_of(5) { Bytes::new() } else { Bytes::from(format!("{{\"serial\":{serial}}}")) },
        data: Bytes::from((0..size).map(|i| fill.wrapping_add(i as u8)).collect::<Vec<u8>>()),
    }
}

fn frames_of(bytes: &[u8]) -> Vec<(usize, usize, u64)> {
    let mut out = Vec::new();
    let mut off = SEG_HEADER;
    while off < bytes.len() {
        match record::parse_header(&bytes[off..], bytes.len()) {
            Ok(h) => {
                out.push((off, h.frame_len(), h.position));
                off += h.frame_len();
            }
            Err(_) => break,
        }
    }
    out
}

fn snap_frames_of(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut off = 64;
    while let Some(Ok(Some(f))) = bytes.get(off..).map(snap::decode_frame) {
        out.push(off);
        off += f.frame_len;
    }
    out
}

fn read_tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for sub in ["", "snapshots"] {
        let Ok(rd) = std::fs::read_dir(dir.join(sub)) else { continue };
        for e in rd {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "LOCK" || e.path().is_dir() {
                continue;
            }
            let rel = if sub.is_empty() { name } else { format!("{sub}/{name}") };
            files.push((rel, std::fs::read(e.path()).unwrap()));
        }
    }
    files.sort();
    files
}

/// The reference store of [`segment_open`]: four segments (three sealed with
/// checkpoints), batches of 1–5 events of 0–6000 bytes over seven
/// aggregates (one with a 255-byte id), and snapshots in sealed and active
/// snapshot files.
pub fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(build_base)
}

fn build_base() -> Base {
    let dir = scratch_dir();
    let store = Store::open(dir.path(), fuzz_options()).expect("open base store");
    let aggregates: Vec<String> =
        ["acct-0", "acct-1", "acct-2", "acct-3", "acct-4", "ünïcödé-agg"].iter().map(|s| s.to_string()).collect();
    let mut aggregates = aggregates;
    aggregates.push("L".repeat(255));
    let mut rng = Lcg(0x5eed);
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
        let n = 1 + rng.next() % 5;
        let evs: Vec<NewEvent> = (0..n)
            .map(|_| {
                serial += 1;
                base_event(serial, &mut rng)
            })
            .collect();
        let r = store.append(agg, ExpectedVersion::Any, evs).expect("append to base store");
        let after = store.stats();
        if after.segments > st.segments {
            sealed_bytes = st.log_bytes;
        }
        batch_ends.push(r.last_position + 1);
        if i % 3 == 1 {
            // Snapshots: compressible and incompressible states.
            let data: Vec<u8> = if i % 2 == 0 {
                format!("{{\"balance\":{i},\"owner\":\"{agg}\"}}").repeat(1 + i % 40).into_bytes()
            } else {
                (0..(200 + rng.next() % 1500)).map(|_| rng.next() as u8).collect()
            };
            store.save_snapshot(agg, r.last_version, (i % 3) as u32, &data).expect("save snapshot");
            snapshots_saved.entry(agg.clone()).or_default().push((r.last_version, (i % 3) as u32, data));
        }
    }
    let events = store.read_all(0, usize::MAX).expect("read base store");
    let mut snapshots_latest = HashMap::new();
    for agg in snapshots_saved.keys() {
        let s = store.latest_snapshot(agg).expect("read snapshot").expect("snapshot saved");
        snapshots_latest.insert(agg.clone(), s);
    }
    store.close().expect("close base store");
    let files = read_tree(dir.path());
    let segs: Vec<usize> = (0..files.len()).filter(|i| files[*i].0.ends_with(".seg")).collect();
    assert!(segs.len() >= 4, "base store has {} segments", segs.len());
    assert!(files.iter().filter(|f| f.0.ends_with(".idx")).count() >= 3, "base store lacks checkpoints");
    assert!(
        files.iter().filter(|f| f.0.ends_with(".snap")).count() >= 2,
        "base store lacks snapshot files: {:?}",
        files.iter().map(|f| (&f.0, f.1.len())).collect::<Vec<_>>()
    );
    let active = *segs.last().unwrap();
    let mut points = Vec::new();
    let mut log_end = Vec::new();
    for (name, bytes) in &files {
        let (p, end) = if name.ends_with(".seg") {
            let fr = frames_of(bytes);
            let end = fr.last().map_or(SEG_HEADER, |f| f.0 + f.1);
            (fr.iter().map(|f| f.0).collect(), end)
        } else if name.ends_with(".snap") {
            let fr = snap_frames_of(bytes);
            (fr, bytes.len())
        } else if name.ends_with(".idx") && bytes.len() >= 40 {
            // Header fields, then the entries (16 bytes each, at the end).
            let count = le64(bytes, 24) as usize;
            let start = bytes.len() - 16 * count;
            let mut p = vec![8, 16, 24, 32, 36, 40];
            p.extend((0..count).map(|i| start + 16 * i));
            (p, start)
        } else {
            ((0..bytes.len()).step_by(8).collect(), bytes.len())
        };
        points.push(p);
        log_end.push(end);
    }
    let active_frames = frames_of(&files[active].1);
    let first_active = active_frames.first().map_or(events.len() as u64, |f| f.2);
    assert!(
        batch_ends.contains(&first_active) || first_active == 0,
        "active segment does not start at a batch boundary"
    );
    assert_eq!(events.len() as u64, *batch_ends.last().unwrap());
    Base {
        files,
        events,
        aggregates,
        batch_ends,
        points,
        log_end,
        active,
        active_frames,
        snapshots_saved,
        snapshots_latest,
    }
}

impl Base {
    fn anchor(&self, file: usize, a: u8) -> usize {
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

/// Mutation kinds of [`segment_open`] (the first byte of each mutation, modulo 10).
pub mod mutation {
    /// Flip one bit: file, anchor, delta i16, bit.
    pub const FLIP_BIT: u8 = 0;
    /// Overwrite: file, anchor, delta i16, n (1 + n % 32), n bytes.
    pub const OVERWRITE: u8 = 1;
    /// Zero a range: file, anchor, delta i16, length u16.
    pub const ZERO: u8 = 2;
    /// Truncate: file, anchor, delta i16.
    pub const TRUNCATE: u8 = 3;
    /// Append garbage: file, n (1 + n), n bytes.
    pub const APPEND: u8 = 4;
    /// Delete the file: file.
    pub const DELETE: u8 = 5;
    /// Copy a range inside a file: file, dst anchor, dst delta, src anchor, src delta, length u16 (% 8192).
    pub const COPY: u8 = 6;
    /// Recompute the frame checksum at a place (crafted input): file, anchor, delta.
    pub const FIX_FRAME_CRC: u8 = 7;
    /// Recompute a segment or snapshot file header checksum (crafted input): file.
    pub const FIX_HEADER_CRC: u8 = 8;
    /// Recompute an index checkpoint checksum (crafted input): file.
    pub const FIX_IDX_CRC: u8 = 9;
}

struct Mutated {
    files: Vec<Option<Vec<u8>>>,
    crafted: bool,
    copied: bool,
}

fn at(base: &Base, file: usize, anchor: u8, delta: i16, len: usize) -> usize {
    (base.anchor(file, anchor) as i64 + i64::from(delta)).clamp(0, len as i64) as usize
}

fn mutate(base: &Base, inp: &mut Input<'_>) -> Mutated {
    let mut m =
        Mutated { files: base.files.iter().map(|f| Some(f.1.clone())).collect(), crafted: false, copied: false };
    let nfiles = base.files.len();
    let mut count = 0;
    while !inp.is_empty() && count < 16 {
        count += 1;
        let tag = inp.u8() % 10;
        let fi = inp.u8() as usize % nfiles;
        let name = base.files[fi].0.as_str();
        if tag == mutation::DELETE {
            m.files[fi] = None;
            continue;
        }
        let mut scratch = Vec::new();
        let b = match m.files[fi].as_mut() {
            Some(b) => b,
            None => &mut scratch,
        };
        let len = b.len();
        match tag {
            mutation::FLIP_BIT => {
                let p = at(base, fi, inp.u8(), inp.i16(), len);
                let bit = inp.u8() % 8;
                if let Some(x) = b.get_mut(p) {
                    *x ^= 1 << bit;
                }
            }
            mutation::OVERWRITE => {
                let p = at(base, fi, inp.u8(), inp.i16(), len);
                let n = 1 + inp.u8() as usize % 32;
                for (i, x) in inp.bytes(n).iter().enumerate() {
                    if let Some(y) = b.get_mut(p + i) {
                        *y = *x;
                    }
                }
            }
            mutation::ZERO => {
                let p = at(base, fi, inp.u8(), inp.i16(), len);
                let n = inp.u16() as usize;
                b[p..(p + n).min(len)].fill(0);
            }
            mutation::TRUNCATE => {
                let p = at(base, fi, inp.u8(), inp.i16(), len);
                b.truncate(p);
            }
            mutation::APPEND => {
                let n = 1 + inp.u8() as usize;
                b.extend_from_slice(inp.bytes(n));
            }
            mutation::COPY => {
                let dst = at(base, fi, inp.u8(), inp.i16(), len);
                let src = at(base, fi, inp.u8(), inp.i16(), len);
                let n = (inp.u16() as usize % 8192).min(len - src).min(len - dst);
                b.copy_within(src..src + n, dst);
                m.copied = true;
            }
            mutation::FIX_FRAME_CRC => {
                m.crafted = true;
                let p = at(base, fi, inp.u8(), inp.i16(), len);
                if name.ends_with(".snap") {
                    if p + SNAP_FRAME_HEADER <= len {
                        let end = p + SNAP_FRAME_HEADER + le32(b, p + 4) as usize;
                        if end <= len {
                            let crc = crc32(&[&b[p..p + 24], &b[p + SNAP_FRAME_HEADER..end]]);
                            put32(b, p + 24, crc);
                        }
                    }
                } else if p + FRAME_HEADER_BYTES <= len {
                    let end = p + FRAME_HEADER_BYTES + le32(b, p + 4) as usize;
                    if end <= len {
                        let crc = crc32(&[&b[p..p + 24], &b[p + 28..p + 32], &b[p + 32..end]]);
                        put32(b, p + 24, crc);
                    }
                }
            }
            mutation::FIX_HEADER_CRC => {
                m.crafted = true;
                if len >= 64 {
                    let crc = crc32(&[&b[..60]]);
                    put32(b, 60, crc);
                }
            }
            _ => {
                m.crafted = true;
                if name.ends_with(".idx") && len >= 40 {
                    let crc = crc32(&[&b[40..]]);
                    put32(b, 36, crc);
                } else if name.ends_with(".sidx") && len >= 24 {
                    let crc = crc32(&[&b[24..]]);
                    put32(b, 16, crc);
                }
            }
        }
    }
    m
}

/// Opens the mutated copy read-only, reads it and runs `verify`: no file may
/// change, every event read must be the reference's, and `verify` must report
/// problems exactly when a read fails. Returns the end position and first
/// position read, if the open succeeded.
fn read_only_pass(base: &Base, m: &Mutated, dir: &Path, crafted: bool, verbose: bool) -> Option<(u64, Option<u64>)> {
    let result = match Store::open_read_only(dir, fuzz_options()) {
        Ok(store) => {
            let reader = store.reader();
            let end = reader.end_position();
            let mut first = None;
            let mut read_err = None;
            for r in reader.read_all(0) {
                match r {
                    Ok(ev) => {
                        first.get_or_insert(ev.position());
                        if !crafted {
                            assert_eq!(&ev.to_owned(), &base.events[ev.position() as usize], "read-only read differs");
                        }
                    }
                    Err(e) => {
                        assert!(ok_error(&e), "read-only read_all: unexpected error {e}");
                        read_err = Some(e);
                        break;
                    }
                }
            }
            drop(reader);
            match store.verify(&mut |_, _| {}) {
                Ok(report) => {
                    if verbose {
                        eprintln!("  read-only: end={end} read_err={read_err:?} verify problems={:?}", report.problems);
                    }
                    if !crafted {
                        assert!(
                            read_err.is_none() || !report.problems.is_empty(),
                            "verify found nothing although read_all fails: {read_err:?}"
                        );
                    }
                }
                Err(e) => assert!(ok_error(&e), "verify: unexpected error {e}"),
            }
            drop(store);
            Some((end, first))
        }
        Err(e) => {
            assert!(ok_error(&e), "read-only open failed with an unexpected error: {e}");
            if verbose {
                eprintln!("  read-only open failed: {e}");
            }
            None
        }
    };
    let now = read_tree(dir);
    let written: Vec<(String, Vec<u8>)> = base
        .files
        .iter()
        .zip(&m.files)
        .filter_map(|((name, _), b)| b.as_ref().map(|b| (name.clone(), b.clone())))
        .collect();
    let changed: Vec<&str> = written
        .iter()
        .filter(|(n, b)| now.iter().find(|f| f.0 == *n).is_none_or(|f| f.1 != *b))
        .map(|f| f.0.as_str())
        .chain(now.iter().filter(|f| !written.iter().any(|w| w.0 == f.0)).map(|f| f.0.as_str()))
        .collect();
    assert!(changed.is_empty(), "a read-only open changed, created or removed files: {changed:?}");
    result
}

/// First byte where `new` differs from `orig`, bytes missing from `new`
/// counting as zeros (recovery pads a short active segment with zeros); a
/// file cut inside its header differs there.
fn first_diff(orig: &[u8], new: &[u8]) -> usize {
    let mut d = (0..orig.len()).find(|i| new.get(*i).copied().unwrap_or(0) != orig[*i]).unwrap_or(usize::MAX);
    if new.len() < SEG_HEADER {
        d = d.min(new.len());
    }
    d
}

fn ok_error(e: &Error) -> bool {
    !matches!(e, Error::Locked { .. } | Error::InvalidOptions(_) | Error::Closed)
}

/// Mutates a copy of the [`base`] store as the input says (first byte: size
/// of the event appended at the end; then up to 16 mutations, see
/// [`mutation`]), opens it, reads everything, appends one event, reopens.
///
/// Invariants: open and every read either succeed or return an error; every
/// event read is byte-identical to the base store's event at its position,
/// and one read by aggregate belongs to that aggregate with dense versions;
/// an open that lost events of an intact set of segment files says so
/// (`torn_tail`); when only the tail of the active segment changed, every
/// batch that ends before the first changed byte survives (the open may
/// instead fail as corrupt when a later synced write follows the damage, and
/// must succeed when the damage is confined to the last batch or what
/// follows it); a successful append is readable, also after reopening.
/// Inputs that recompute a checksum (crafted files) are only checked for
/// errors-not-panics and self-consistency.
pub fn segment_open(data: &[u8]) {
    let base = base();
    let mut inp = Input::new(data);
    let append_sel = inp.u8();
    let m = mutate(base, &mut inp);
    let crafted = m.crafted;

    // Classify what changed.
    let mut segs_intact = true;
    let mut only_active_tail = true;
    let mut snaps_unchanged = true;
    let mut active_diff = usize::MAX;
    for (i, (name, orig)) in base.files.iter().enumerate() {
        let new = &m.files[i];
        let changed = new.as_deref() != Some(&orig[..]);
        if name.ends_with(".seg") && new.is_none() {
            segs_intact = false;
        }
        if i == base.active {
            match new {
                Some(b) => active_diff = first_diff(orig, b),
                None => only_active_tail = false,
            }
        } else if changed && !(name.ends_with(".idx") || name.ends_with(".sidx") || name.contains("prepared")) {
            only_active_tail = false;
        }
        if changed && name.ends_with(".snap") {
            snaps_unchanged = false;
        }
    }
    let strong = !crafted && only_active_tail && active_diff >= SEG_HEADER && snaps_unchanged;
    let last_batch_start = {
        let last_first = base.batch_ends.iter().rev().nth(1).copied().unwrap_or(0);
        base.active_frames.iter().find(|f| f.2 == last_first).map_or(SEG_HEADER, |f| f.0)
    };
    let must_open = strong && !m.copied && active_diff >= last_batch_start;
    // Batches that end before the first changed byte of the active segment.
    let must_keep = if strong {
        let mut keep = base.active_frames.first().map_or(base.events.len() as u64, |f| f.2);
        for &(off, len, pos) in &base.active_frames {
            if off + len <= active_diff && base.batch_ends.contains(&(pos + 1)) {
                keep = pos + 1;
            }
        }
        keep
    } else {
        0
    };

    // Crafted headers may declare any size up to SEGMENT_BYTES_MAX (larger
    // ones are refused at open since F2 was fixed), and recovery pads a short
    // active segment up to it: don't spend seconds writing zeros.
    for (i, (name, _)) in base.files.iter().enumerate() {
        if let Some(b) = &m.files[i] {
            if name.ends_with(".seg")
                && b.len() >= SEG_HEADER
                && crc32(&[&b[..60]]) == le32(b, 60)
                && (HUGE_SEGMENT + 1..=factlog::SEGMENT_BYTES_MAX).contains(&le64(b, 24))
            {
                return;
            }
        }
    }

    let verbose = std::env::var_os("FACTLOG_FUZZ_VERBOSE").is_some();
    if verbose {
        eprintln!(
            "segment_open: crafted={crafted} copied={} strong={strong} must_open={must_open} \
             active_diff={active_diff} must_keep={must_keep}/{}",
            m.copied,
            base.events.len()
        );
    }
    let dir = scratch_dir();
    std::fs::create_dir(dir.path().join("snapshots")).unwrap();
    for (i, (name, _)) in base.files.iter().enumerate() {
        if let Some(b) = &m.files[i] {
            std::fs::write(dir.path().join(name), b).unwrap();
        }
    }

    let ro_end = read_only_pass(base, &m, dir.path(), crafted, verbose);

    let store = match Store::open(dir.path(), fuzz_options()) {
        Ok(s) => s,
        Err(e) => {
            if verbose {
                eprintln!("  open failed: {e}");
            }
            assert!(ok_error(&e), "open failed with an unexpected error: {e}");
            assert!(!must_open, "open failed although only the last batch or what follows was damaged: {e}");
            assert!(
                !strong || matches!(e, Error::Corrupt { .. }),
                "tail damage of the active segment failed the open with a non-corruption error: {e}"
            );
            return;
        }
    };
    let report = store.recovery_report().clone();
    let reader = store.reader();
    let end = reader.end_position();
    let mut read: Vec<RecordedEvent> = Vec::new();
    let mut read_err = None;
    for r in reader.read_all(0) {
        match r {
            Ok(ev) => read.push(ev.to_owned()),
            Err(e) => {
                assert!(ok_error(&e), "read_all: unexpected error {e}");
                read_err = Some(e);
                break;
            }
        }
    }
    if verbose {
        eprintln!("  opened: end={end} read={} read_err={read_err:?} torn_tail={:?}", read.len(), report.torn_tail);
    }
    if let (Some((ro_end, ro_first)), false) = (ro_end, crafted) {
        // The read-only open sees the log the read-write open recovers.
        assert_eq!(ro_end, end, "read-only open sees {ro_end} events, read-write open {end}");
        assert_eq!(ro_first, read.first().map(|e| e.position), "first position differs between open modes");
    }
    if let Some(first) = read.first() {
        for (i, ev) in read.iter().enumerate() {
            assert_eq!(ev.position, first.position + i as u64, "read_all skipped or repeated a position");
        }
        assert!(read.last().unwrap().position < end, "read_all returned an event past the end");
    }
    if read_err.is_none() && segs_intact && !crafted {
        assert_eq!(read.len() as u64, end, "read_all stopped early without an error");
    }
    if !crafted {
        assert!(end <= base.events.len() as u64, "store has {end} events, the original {}", base.events.len());
        for ev in &read {
            assert_eq!(ev, &base.events[ev.position as usize], "event at position {} differs", ev.position);
        }
        if segs_intact && end < base.events.len() as u64 && report.torn_tail.is_none() && report.repaired.is_none() {
            // Dropping without a report is right only when the dropped frames are
            // zeroed space now (a lost write looks exactly like that).
            let from = base.active_frames.iter().find(|f| f.2 == end).map_or(SEG_HEADER, |f| f.0);
            let active = m.files[base.active].as_deref().unwrap_or(&[]);
            let left = (from..base.log_end[base.active]).find(|i| active.get(*i).is_some_and(|b| *b != 0));
            assert!(
                left.is_none(),
                "{} events silently dropped although the active segment still holds non-zero bytes at {left:?}: {report:?}",
                base.events.len() as u64 - end
            );
        }
    }
    if strong {
        assert!(read_err.is_none(), "tail damage made read_all fail: {read_err:?}");
        assert!(
            end >= must_keep,
            "recovery dropped events before the first damaged byte (offset {active_diff}): kept {end}, must keep {must_keep}; {report:?}"
        );
    }

    // By aggregate.
    for agg in &base.aggregates {
        let mut n = 0u64;
        for r in reader.read_aggregate(agg, 0, Direction::Forward) {
            match r {
                Ok(ev) => {
                    if !crafted {
                        assert_eq!(ev.aggregate_id(), agg, "read_aggregate returned another aggregate's event");
                        assert_eq!(ev.version(), n, "read_aggregate versions not dense");
                        assert_eq!(&ev.to_owned(), &base.events[ev.position() as usize]);
                    }
                }
                Err(e) => {
                    assert!(ok_error(&e), "read_aggregate: unexpected error {e}");
                    assert!(!strong, "tail damage made read_aggregate fail: {e}");
                }
            }
            n += 1;
        }
        if !crafted {
            assert_eq!(store.aggregate_version(agg), n.checked_sub(1), "aggregate_version vs read_aggregate");
        }
        let back = reader.read_aggregate(agg, u64::MAX, Direction::Backward).count() as u64;
        assert!(crafted || back == n, "backward read of {agg:?} has {back} events, forward {n}");
        match store.latest_snapshot(agg) {
            Ok(Some(s)) if !crafted => {
                let saved = base.snapshots_saved.get(agg).map(|v| &v[..]).unwrap_or(&[]);
                assert!(
                    s.aggregate_id == *agg
                        && saved.iter().any(|(v, sv, d)| *v == s.version && *sv == s.schema_version && *d == s.data),
                    "snapshot of {agg:?} at version {} was never saved",
                    s.version
                );
                if snaps_unchanged {
                    assert_eq!(Some(&s), base.snapshots_latest.get(agg), "latest snapshot changed");
                }
            }
            Ok(None) if !crafted && snaps_unchanged => {
                assert!(!base.snapshots_latest.contains_key(agg), "snapshot of {agg:?} lost");
            }
            Ok(_) => {}
            Err(e) => {
                assert!(ok_error(&e), "latest_snapshot: unexpected error {e}");
                assert!(crafted || !snaps_unchanged, "intact snapshot files failed a read: {e}");
            }
        }
    }
    drop(reader);

    // One append.
    let size = append_sel as usize * 60;
    let ev = NewEvent {
        event_id: *b"fuzz-append-0001",
        event_type: "Appended".into(),
        event_version: 1,
        occurred_at: 42,
        causation_id: None,
        correlation_id: Some([7; 16]),
        metadata: Bytes::from_static(b"{}"),
        data: Bytes::from(vec![append_sel; size]),
    };
    let appended = match store.append("fuzz-new", ExpectedVersion::NoStream, vec![ev.clone()]) {
        Ok(r) => {
            assert_eq!((r.first_position, r.first_version, r.deduplicated), (end, 0, false), "append result");
            let got = store.read_all(end, 1).expect("read the appended event");
            assert!(got.len() == 1 && got[0].event_id == ev.event_id && got[0].data == ev.data, "appended event");
            Some(end)
        }
        Err(e) => {
            assert!(ok_error(&e), "append: unexpected error {e}");
            assert!(
                crafted || !matches!(e, Error::WrongExpectedVersion { .. } | Error::DuplicateEventId { .. }),
                "append of a new aggregate refused: {e}"
            );
            assert!(!strong, "append after tail damage failed: {e}");
            None
        }
    };
    let closed = store.close();
    let Some(pos) = appended else { return };
    if closed.is_err() && crafted {
        return;
    }
    closed.expect("close after append");
    match Store::open(dir.path(), fuzz_options()) {
        Ok(store) => {
            let got = store.read_all(pos, 1);
            if !crafted {
                let got = got.expect("read the appended event after reopening");
                assert!(got.len() == 1 && got[0].event_id == ev.event_id, "appended event lost on reopen");
                if strong {
                    let all = store.read_all(0, usize::MAX).expect("read_all after reopen");
                    assert_eq!(all[..read.len()], read[..], "reopen changed the events");
                }
            }
            let _ = store.close();
        }
        Err(e) => {
            assert!(ok_error(&e), "reopen: unexpected error {e}");
            assert!(crafted, "a store that opened and took an append fails to reopen: {e}");
        }
    }
}

// ---------------------------------------------------------------------------
// ops
// ---------------------------------------------------------------------------

/// Operation kinds of [`ops`] (first byte of each operation, modulo 9).
pub mod op {
    /// Append: aggregate, expectation, events (1 + n % 5), size.
    pub const APPEND: u8 = 0;
    /// Append (a second tag so appends are frequent).
    pub const APPEND2: u8 = 1;
    /// Re-append an earlier batch (idempotent retry): how far back.
    pub const RETRY: u8 = 2;
    /// Append an existing event id: position u16, aggregate, whether a new event comes first.
    pub const DUP_ID: u8 = 3;
    /// Read an aggregate: aggregate, from, flags (bit 0 backward), limit.
    pub const READ_AGG: u8 = 4;
    /// Read the log: from u16, limit.
    pub const READ_ALL: u8 = 5;
    /// Close and reopen cleanly.
    pub const REOPEN: u8 = 6;
    /// Crash: in-flight events (n % 6), aggregate, size, mode, cut u32, mask u32.
    /// Mode: bits 0-1 truncate / zero a suffix / zero some blocks / garbage;
    /// bit 2 4 KiB blocks (else 512 B); bit 3 undo a roll; bit 4 drop the
    /// sealed segment's checkpoint; bit 5 also tear an in-flight snapshot save.
    pub const CRASH: u8 = 7;
    /// Save a snapshot: aggregate, version selector, size, then read it back.
    pub const SNAPSHOT: u8 = 8;
}

const AGGS: [&str; 4] = ["acct-a", "acct-b", "cart-42", "ünï-💥"];

/// A snapshot's schema version and state bytes.
type SnapState = (u32, Vec<u8>);

#[derive(Default)]
struct Model {
    /// Aggregate and event, by position.
    events: Vec<(usize, NewEvent)>,
    /// Positions by aggregate.
    by_agg: [Vec<u64>; 4],
    /// Batches stored: aggregate, events, first position, first version.
    batches: Vec<(usize, Vec<NewEvent>, u64, u64)>,
    /// Snapshots: aggregate → version → (schema, data); the highest `keep` are kept.
    snapshots: [BTreeMap<u64, SnapState>; 4],
    /// Every save ever acknowledged: aggregate → version → (schema, data) (for finding F4).
    saved: [BTreeMap<u64, Vec<SnapState>>; 4],
}

impl Model {
    fn current(&self, agg: usize) -> Option<u64> {
        (self.by_agg[agg].len() as u64).checked_sub(1)
    }

    fn push_batch(&mut self, agg: usize, evs: &[NewEvent]) {
        let first_position = self.events.len() as u64;
        let first_version = self.by_agg[agg].len() as u64;
        for e in evs {
            self.by_agg[agg].push(self.events.len() as u64);
            self.events.push((agg, e.clone()));
        }
        self.batches.push((agg, evs.to_vec(), first_position, first_version));
    }

    fn check_event(&self, e: &RecordedEvent, what: &str) {
        let (agg, ne) = self.events.get(e.position as usize).unwrap_or_else(|| panic!("{what}: event {e:?} unknown"));
        let version = self.by_agg[*agg].iter().position(|p| *p == e.position).unwrap() as u64;
        assert!(
            e.aggregate_id == AGGS[*agg]
                && e.version == version
                && e.event_id == ne.event_id
                && e.event_type == ne.event_type
                && e.event_version == ne.event_version
                && e.occurred_at == ne.occurred_at
                && e.causation_id == ne.causation_id
                && e.correlation_id == ne.correlation_id
                && e.metadata == ne.metadata
                && e.data == ne.data,
            "{what}: event at position {} differs from the model",
            e.position
        );
    }
}

fn op_event(serial: u64, size: u8) -> NewEvent {
    let k = (size >> 2) as usize;
    let len = match size % 4 {
        0 => k % 64,
        1 => k * 8,
        2 => k * 32,
        _ => 6000 + k * 100,
    };
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&serial.to_le_bytes());
    id[8..].copy_from_slice(b"fuzz-ops");
    NewEvent {
        event_id: id,
        event_type: format!("Happened{}", serial % 5),
        event_version: (serial % 4) as u32,
        occurred_at: serial as i64 * 1000,
        causation_id: (serial % 2 == 1).then_some([serial as u8; 16]),
        correlation_id: None,
        metadata: Bytes::from(format!("m{serial}")),
        data: Bytes::from(vec![serial as u8; len]),
    }
}

fn open_ops(dir: &Path) -> Store {
    Store::open(dir, fuzz_options()).expect("open the ops store")
}

fn verify_all(store: &Store, m: &Model, what: &str) {
    let all = store.read_all(0, usize::MAX).unwrap_or_else(|e| panic!("{what}: read_all failed: {e}"));
    assert_eq!(all.len(), m.events.len(), "{what}: store has {} events, model {}", all.len(), m.events.len());
    for e in &all {
        m.check_event(e, what);
    }
    for (i, name) in AGGS.iter().enumerate() {
        assert_eq!(store.aggregate_version(name), m.current(i), "{what}: version of {name}");
    }
}

fn list_segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

/// Decodes up to 48 operations (see [`op`]) and runs them against a fresh
/// store (64 KiB segments, Sync mode) and an in-memory model: append results
/// (positions, versions, conflicts, retries, duplicate ids), reads, the last
/// position, snapshots, and the whole log after every reopen and crash.
///
/// A crash appends an in-flight batch (maybe none), closes the store, then
/// damages only bytes written after the last clean point: it truncates the
/// active segment, zeroes a suffix or a random subset of 512 B / 4 KiB blocks
/// of the in-flight write, or writes garbage after it, and may undo a segment
/// roll or drop the new checkpoint. The reopened store must hold every
/// earlier event, and the in-flight batch entirely (always, if its bytes are
/// intact) or not at all.
pub fn ops(data: &[u8]) {
    let dir = scratch_dir();
    let mut store = open_ops(dir.path());
    let mut m = Model::default();
    let mut serial = 0u64;
    let mut inp = Input::new(data);
    let mut n_ops = 0;
    let verbose = std::env::var_os("FACTLOG_FUZZ_VERBOSE").is_some();
    while !inp.is_empty() && n_ops < 48 {
        n_ops += 1;
        let tag = inp.u8() % 9;
        if verbose {
            eprintln!("ops: op {tag}, {} events", m.events.len());
        }
        match tag {
            op::APPEND | op::APPEND2 => {
                let agg = inp.u8() as usize % 4;
                let expect = inp.u8();
                let n = 1 + inp.u8() as u64 % 5;
                let size = inp.u8();
                let current = m.current(agg);
                let expected = match expect % 5 {
                    0 => ExpectedVersion::Any,
                    1 => ExpectedVersion::NoStream,
                    2 => ExpectedVersion::StreamExists,
                    3 => ExpectedVersion::Exact(current.unwrap_or(0)),
                    _ => ExpectedVersion::Exact(current.map_or(1, |v| v + 1)),
                };
                let evs: Vec<NewEvent> = (0..n)
                    .map(|i| {
                        serial += 1;
                        op_event(serial, size.wrapping_add(i as u8 * 4))
                    })
                    .collect();
                let r = store.append(AGGS[agg], expected, evs.clone());
                if expected.matches(current) {
                    let r = r.unwrap_or_else(|e| panic!("append {expected:?} to {} at {current:?}: {e}", AGGS[agg]));
                    assert_eq!(
                        (r.first_position, r.first_version, r.last_position, r.deduplicated),
                        (m.events.len() as u64, current.map_or(0, |v| v + 1), m.events.len() as u64 + n - 1, false),
                        "append result"
                    );
                    m.push_batch(agg, &evs);
                } else {
                    match r {
                        Err(Error::WrongExpectedVersion { actual, .. }) => assert_eq!(actual, current),
                        other => panic!("append {expected:?} at {current:?} should conflict: {other:?}"),
                    }
                }
            }
            op::RETRY => {
                let back = inp.u8() as usize;
                if m.batches.is_empty() {
                    continue;
                }
                let (agg, evs, pos, ver) = m.batches[m.batches.len() - 1 - back % m.batches.len()].clone();
                let r = store.append(AGGS[agg], ExpectedVersion::Any, evs).expect("retry of a stored batch");
                assert!(r.deduplicated, "retry not deduplicated: {r:?}");
                assert_eq!((r.first_position, r.first_version), (pos, ver), "retry result");
            }
            op::DUP_ID => {
                let k = inp.u16() as usize;
                let agg = inp.u8() as usize % 4;
                let new_first = inp.u8() % 2 == 1;
                if m.events.is_empty() {
                    continue;
                }
                let k = k % m.events.len();
                let (owner, old) = m.events[k].clone();
                let mut batch = Vec::new();
                if new_first {
                    serial += 1;
                    batch.push(op_event(serial, 0));
                }
                batch.push(old.clone());
                let r = store.append(AGGS[agg], ExpectedVersion::Any, batch);
                if !new_first && agg == owner {
                    let r = r.expect("re-append of one stored event");
                    let version = m.by_agg[owner].iter().position(|p| *p == k as u64).unwrap() as u64;
                    assert!(r.deduplicated && r.first_position == k as u64 && r.first_version == version, "{r:?}");
                } else {
                    match r {
                        Err(Error::DuplicateEventId { event_id, existing_position, existing_aggregate, .. }) => {
                            assert_eq!((event_id, existing_position), (old.event_id, k as u64));
                            assert_eq!(existing_aggregate, AGGS[owner]);
                        }
                        other => panic!("duplicate id of position {k} accepted: {other:?}"),
                    }
                }
            }
            op::READ_AGG => {
                let agg = inp.u8() as usize % 4;
                let from = u64::from(inp.u8());
                let backward = inp.u8() % 2 == 1;
                let limit = 1 + inp.u8() as usize;
                let dir = if backward { Direction::Backward } else { Direction::Forward };
                let got = store.read_aggregate(AGGS[agg], from, dir, limit).expect("read_aggregate");
                let ps = &m.by_agg[agg];
                let want: Vec<u64> = if backward {
                    ps.iter().take(from as usize + 1).rev().take(limit).copied().collect()
                } else {
                    ps.iter().skip(from as usize).take(limit).copied().collect()
                };
                assert_eq!(got.iter().map(|e| e.position).collect::<Vec<_>>(), want, "read_aggregate positions");
                for e in &got {
                    m.check_event(e, "read_aggregate");
                }
            }
            op::READ_ALL => {
                let from = u64::from(inp.u16()) % (m.events.len() as u64 + 3);
                let limit = 1 + inp.u8() as usize;
                let got = store.read_all(from, limit).expect("read_all");
                let want = (m.events.len() as u64).saturating_sub(from).min(limit as u64);
                assert_eq!(got.len() as u64, want, "read_all({from}, {limit}) length");
                for (i, e) in got.iter().enumerate() {
                    assert_eq!(e.position, from + i as u64);
                    m.check_event(e, "read_all");
                }
            }
            op::REOPEN => {
                store.close().expect("close");
                store = open_ops(dir.path());
                let rep = store.recovery_report();
                assert!(rep.torn_tail.is_none() && rep.repaired.is_none(), "clean reopen found damage: {rep:?}");
                assert_eq!(rep.events, m.events.len() as u64);
                verify_all(&store, &m, "after reopen");
            }
            op::CRASH => {
                let n = inp.u8() as u64 % 6;
                let agg = inp.u8() as usize % 4;
                let size = inp.u8();
                let mode = inp.u8();
                let cut = inp.u32();
                let mask = inp.u32();
                store = crash(dir.path(), store, &mut m, &mut serial, (n, agg, size, mode, cut, mask));
            }
            _ => {
                let agg = inp.u8() as usize % 4;
                let vsel = u64::from(inp.u8());
                let size = inp.u8();
                let version = vsel % (m.by_agg[agg].len() as u64 + 2);
                let (schema, state) = snapshot_state(version, agg, size);
                let r = store.save_snapshot(AGGS[agg], version, schema, &state);
                if verbose {
                    eprintln!("  snapshot {} v{version} schema {schema} {} bytes: {r:?}", AGGS[agg], state.len());
                }
                match m.current(agg) {
                    Some(c) if version <= c => {
                        r.expect("save snapshot");
                        keep_snapshot(&mut m, agg, version, schema, state);
                    }
                    _ => assert!(matches!(r, Err(Error::SnapshotAhead { .. })), "snapshot ahead accepted: {r:?}"),
                }
                check_snapshots(&store, &m, agg, vsel);
            }
        }
        assert_eq!(store.last_position(), (m.events.len() as u64).checked_sub(1), "last_position");
    }
    verify_all(&store, &m, "at the end");
    for agg in 0..4 {
        check_snapshots(&store, &m, agg, u64::MAX);
    }
    store.close().expect("close");
}

/// Schema version and state bytes of a snapshot: compressible for even
/// `size`, incompressible for odd.
fn snapshot_state(version: u64, agg: usize, size: u8) -> (u32, Vec<u8>) {
    let state: Vec<u8> = if size.is_multiple_of(2) {
        format!("state {version} of {agg};").repeat(size as usize / 2).into_bytes()
    } else {
        (0..size as u32 * 8).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect()
    };
    (u32::from(size % 3), state)
}

fn keep_snapshot(m: &mut Model, agg: usize, version: u64, schema: u32, state: Vec<u8>) {
    m.saved[agg].entry(version).or_default().push((schema, state.clone()));
    let snaps = &mut m.snapshots[agg];
    snaps.insert(version, (schema, state));
    while snaps.len() > 2 {
        snaps.pop_first();
    }
}

/// The snapshot frame with the highest sequence number: (file, offset, length).
fn last_snapshot_frame(dir: &Path) -> Option<(PathBuf, usize, usize)> {
    let mut best: Option<(u64, PathBuf, usize, usize)> = None;
    for e in std::fs::read_dir(dir.join("snapshots")).ok()? {
        let path = e.ok()?.path();
        if path.extension().is_none_or(|x| x != "snap") {
            continue;
        }
        let bytes = std::fs::read(&path).ok()?;
        for off in snap_frames_of(&bytes) {
            let f = snap::decode_frame(&bytes[off..]).ok()??;
            if best.as_ref().is_none_or(|b| f.seq > b.0) {
                best = Some((f.seq, path.clone(), off, f.frame_len));
            }
        }
    }
    best.map(|(_, p, o, l)| (p, o, l))
}

fn check_snapshots(store: &Store, m: &Model, agg: usize, at_or_before: u64) {
    let want = |v: u64| m.snapshots[agg].range(..=v).next_back();
    for v in [u64::MAX, at_or_before] {
        let got = store.snapshot_at_or_before(AGGS[agg], v).expect("read snapshot");
        match (got, want(v)) {
            (None, None) => {}
            (Some(s), Some((wv, (schema, data)))) => {
                if std::env::var_os("FACTLOG_FUZZ_VERBOSE").is_some() {
                    eprintln!(
                        "  check {} <= {v}: store v{} schema {} {} bytes; model v{wv} schema {schema} {} bytes",
                        AGGS[agg],
                        s.version,
                        s.schema_version,
                        s.data.len(),
                        data.len()
                    );
                }
                assert!(
                    s.aggregate_id == AGGS[agg] && s.version == *wv && s.schema_version == *schema && s.data == *data,
                    "snapshot of {} at or before {v} differs from the model",
                    AGGS[agg]
                );
            }
            (got, want) => panic!(
                "snapshot of {} at or before {v}: store has {:?}, model {:?}",
                AGGS[agg],
                got.map(|s| s.version),
                want.map(|w| w.0)
            ),
        }
    }
}

fn crash(
    dir: &Path,
    store: Store,
    m: &mut Model,
    serial: &mut u64,
    (n, agg, size, mode, cut, mask): (u64, usize, u8, u8, u32, u32),
) -> Store {
    let inflight_first = m.events.len() as u64;
    let mut inflight = Vec::new();
    for i in 0..n {
        *serial += 1;
        inflight.push(op_event(*serial, size.wrapping_add(i as u8 * 4)));
    }
    if n > 0 {
        let r = store.append(AGGS[agg], ExpectedVersion::Any, inflight.clone()).expect("in-flight append");
        assert_eq!(r.first_position, inflight_first);
    }
    // Mode bit 32: a snapshot save of the aggregate's current version is in
    // flight too, and is torn (or, cut at its very end, complete).
    let torn_save = match m.current(agg) {
        Some(version) if mode & 32 != 0 => {
            let (schema, state) = snapshot_state(version, agg, size);
            store.save_snapshot(AGGS[agg], version, schema, &state).expect("in-flight snapshot save");
            Some((version, schema, state))
        }
        _ => None,
    };
    store.close().expect("close before crash");
    if let Some((version, schema, state)) = torn_save {
        let (path, off, len) = last_snapshot_frame(dir).expect("the in-flight snapshot frame");
        let c = off + mask as usize % (len + 1);
        let highest = std::fs::read_dir(dir.join("snapshots"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "snap"))
            .max();
        // Fixed finding F5: saves go to the highest-numbered file, always.
        assert_eq!(highest.as_ref(), Some(&path), "the in-flight snapshot save is not in the newest file");
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(c as u64).unwrap();
        if c == off + len {
            keep_snapshot(m, agg, version, schema, state);
        }
    }

    let segs = list_segments(dir);
    let active = segs.last().expect("a segment").clone();
    let mut bytes = std::fs::read(&active).unwrap();
    let orig = bytes.clone();
    let frames = frames_of(&bytes);
    let clean_end =
        frames.iter().filter(|f| f.2 < inflight_first).map(|f| f.0 + f.1).max().unwrap_or(SEG_HEADER).max(SEG_HEADER);
    let log_end = frames.last().map_or(SEG_HEADER, |f| f.0 + f.1).max(clean_end);
    let rolled = n > 0 && frames.first().is_some_and(|f| f.2 == inflight_first);
    let len = bytes.len();
    let mut deleted = false;
    if rolled && mode & 8 != 0 {
        // Crash between sealing the old segment and installing the new one.
        std::fs::remove_file(&active).unwrap();
        deleted = true;
    }
    if rolled && mode & 16 != 0 && segs.len() >= 2 {
        // Crash before the sealed segment's checkpoint was renamed into place.
        let _ = std::fs::remove_file(segs[segs.len() - 2].with_extension("idx"));
    }
    if !deleted {
        match mode % 4 {
            0 => {
                let c = clean_end + cut as usize % (len - clean_end + 1);
                bytes.truncate(c);
            }
            1 => {
                let c = clean_end + cut as usize % (log_end - clean_end + 1);
                bytes[c..log_end].fill(0);
            }
            2 => {
                // Any subset of the in-flight write's blocks reached the disk.
                let block = if mode & 4 != 0 { 4096 } else { 512 };
                let mut b = clean_end / block * block;
                let mut bit = 0;
                while b < log_end {
                    if (mask >> (bit % 32)) & 1 == 0 {
                        bytes[b.max(clean_end)..(b + block).min(log_end)].fill(0);
                    }
                    b += block;
                    bit += 1;
                }
            }
            _ if clean_end < len => {
                let c = clean_end + cut as usize % (len - clean_end);
                let k = (1 + (cut >> 16) as usize % 256).min(len - c);
                for (i, x) in bytes[c..c + k].iter_mut().enumerate() {
                    *x = (mask.rotate_left(i as u32 * 8) as u8) | 1;
                }
            }
            _ => {}
        }
        std::fs::write(&active, &bytes).unwrap();
    }
    let intact = !deleted && (clean_end..log_end).all(|i| bytes.get(i).copied().unwrap_or(0) == orig[i]);

    let store = Store::open(dir, fuzz_options()).unwrap_or_else(|e| panic!("reopen after a crash failed: {e}"));
    let rep = store.recovery_report().clone();
    assert!(rep.repaired.is_none(), "crash recovery repaired: {rep:?}");
    let end = store.reader().end_position();
    if n > 0 && end == inflight_first + n {
        m.push_batch(agg, &inflight);
    } else {
        assert_eq!(
            end,
            inflight_first,
            "after a crash with {n} events in flight the store ends at {end}, expected {inflight_first} or {}",
            inflight_first + n
        );
        assert!(!intact || n == 0, "in-flight batch with intact bytes lost in recovery: {rep:?}");
    }
    verify_all(&store, m, "after crash");
    for agg in 0..4 {
        check_snapshots(&store, m, agg, u64::MAX);
    }
    store
}

// ---------------------------------------------------------------------------
// Seed corpora
// ---------------------------------------------------------------------------

fn sample_body(position: u64, version: u64, agg: &str, ty: &str, data: &[u8]) -> Body {
    Body {
        position,
        version,
        event_id: [position as u8 ^ 0x5a; 16],
        occurred_at: -7,
        recorded_at: 1_700_000_000_000_000_000,
        event_version: 2,
        causation_id: (position.is_multiple_of(2)).then_some([1; 16]),
        correlation_id: (version.is_multiple_of(2)).then_some([2; 16]),
        aggregate_id: agg.to_string(),
        event_type: ty.to_string(),
        metadata: if data.is_empty() { Vec::new() } else { b"{\"k\":1}".to_vec() },
        data: data.to_vec(),
    }
}

/// A few dozen small seed inputs for `target`, named `seed-NN-what`.
pub fn seed_corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(&str, Vec<u8>)> = Vec::new();
    match target {
        "record_decode" => {
            let long = "L".repeat(255);
            let bodies = [
                sample_body(0, 0, "a", "T", b""),
                sample_body(0, 0, "acct-1", "FundsDeposited", b"{\"amount\":100}"),
                sample_body(5, 3, "acct-1", "FundsWithdrawn", &[0xff; 300]),
                sample_body(1 << 40, 0, &long, &long, b"x"),
                sample_body(7, 0, "ünïcödé", "Ünïcödé", "€".repeat(50).as_bytes()),
                sample_body(u64::MAX - 5, 0, "edge", "Edge", b"near the end of positions"),
            ];
            let names = ["minimal", "small", "versioned", "long-names", "unicode", "high-position"];
            for (b, name) in bodies.iter().zip(names) {
                out.push((name, encode_body(b, 1, 0)));
            }
            let b = &bodies[1];
            out.push(("batch-3-of-4", encode_body(b, 4, 3)));
            let mut two = AlignedVec::<16>::new();
            record::encode_frame_slot(&mut two, &b.as_record(), 2, 0, true).unwrap();
            let n = two.len();
            record::encode_frame_slot(&mut two, &bodies[2].as_record(), 2, 1, true).unwrap();
            out.push(("two-frames-synced", two.to_vec()));
            out.push(("second-frame-synced", two[n..].to_vec()));
            let frame = encode_body(b, 1, 0);
            let mut flipped = frame.clone();
            flipped[40] ^= 0x10;
            out.push(("body-bit-flip", flipped));
            let mut flipped = frame.clone();
            flipped[9] ^= 1;
            out.push(("position-bit-flip", flipped));
            out.push(("truncated", frame[..frame.len() - 20].to_vec()));
            out.push(("header-only", frame[..32].to_vec()));
            let mut garbage = frame.clone();
            garbage.extend_from_slice(b"trailing garbage after the frame");
            out.push(("trailing-garbage", garbage));
            // Body claiming another position than its header (checksum fixed).
            let mut other = frame.clone();
            put64(&mut other, 8, 99);
            let bl = le32(&other, 4) as usize;
            let crc = crc32(&[&other[..24], &other[28..32], &other[32..32 + bl]]);
            put32(&mut other, 24, crc);
            out.push(("position-mismatch", other));
            let mut bad_len = frame.clone();
            put32(&mut bad_len, 4, 0xffff_fff0);
            out.push(("huge-body-length", bad_len));
            out.push(("zeros-32", vec![0; 32]));
            out.push(("zeros-7", vec![0; 7]));
            out.push(("empty", Vec::new()));
            out.push(("magic-only", b"FLRC".to_vec()));
            let mut rk = frame.clone();
            let l = rk.len();
            rk[l - 20..].fill(0xee);
            out.push(("body-tail-garbage", rk));
        }
        "snapshot_decode" => {
            // Real frames as a store writes them (zstd and raw), plus hand-made ones.
            let dir = scratch_dir();
            let store = Store::open(dir.path(), fuzz_options()).unwrap();
            store.append("acct-1", ExpectedVersion::Any, vec![NewEvent::new([1; 16], "T", &b"x"[..])]).unwrap();
            store.save_snapshot("acct-1", 0, 1, "compress me ".repeat(40).as_bytes()).unwrap();
            let noise: Vec<u8> = (0..300u32).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8).collect();
            store.save_snapshot("acct-1", 0, 2, &noise).unwrap();
            store.save_snapshot("acct-1", 0, 3, b"").unwrap();
            store.close().unwrap();
            let files = read_tree(dir.path());
            let names = ["zstd", "raw", "empty-state"];
            let mut k = 0;
            for (name, bytes) in files.iter().filter(|f| f.0.ends_with(".snap")) {
                let _ = name;
                for off in snap_frames_of(bytes) {
                    let f = snap::decode_frame(&bytes[off..]).unwrap().unwrap();
                    if k < names.len() {
                        out.push((names[k], bytes[off..off + f.frame_len].to_vec()));
                        k += 1;
                    }
                }
            }
            let meta =
                SnapMeta { seq: 9, version: 3, schema_version: 1, taken_at: -1, raw_len: 5, codec: 0, dict_id: 0 };
            let f = snap::encode_frame(meta, "agg", b"hello");
            out.push(("handmade-raw", f.clone()));
            let lie = snap::encode_frame(SnapMeta { raw_len: 1 << 30, codec: 1, ..meta }, "agg", b"not zstd");
            out.push(("declared-size-lie", lie));
            let mut flipped = f.clone();
            flipped[50] ^= 4;
            out.push(("bit-flip", flipped));
            out.push(("truncated", f[..f.len() - 3].to_vec()));
            out.push(("zeros", vec![0; 40]));
            out.push(("empty", Vec::new()));
            let long = "L".repeat(255);
            out.push(("long-aggregate", snap::encode_frame(meta, &long, b"state")));
            out.push(("empty-payload", snap::encode_frame(SnapMeta { raw_len: 0, ..meta }, "a", b"")));
            let mut bad_zstd = snap::encode_frame(
                SnapMeta { raw_len: 64, codec: 1, ..meta },
                "agg",
                &[0x28, 0xb5, 0x2f, 0xfd, 0, 0x58, 1, 2, 3],
            );
            let bl = le32(&bad_zstd, 4) as usize;
            let crc = crc32(&[&bad_zstd[..24], &bad_zstd[32..32 + bl]]);
            put32(&mut bad_zstd, 24, crc);
            out.push(("bad-zstd", bad_zstd));
            let mut reserved = f.clone();
            reserved[17] = 1;
            out.push(("reserved-set", reserved));
            let mut two = f.clone();
            two.extend_from_slice(&f);
            out.push(("two-frames", two));
        }
        "segment_open" => {
            let b = base();
            let active = b.active as u8;
            let idx = |name: &str| b.file_index(name).map(|i| i as u8);
            let seg0 = idx("00000000000000000000.seg").unwrap();
            let first_idx = b.files.iter().position(|f| f.0.ends_with(".idx")).unwrap() as u8;
            let snap_last = b.files.iter().rposition(|f| f.0.ends_with(".snap")).unwrap() as u8;
            let snap_first = b.files.iter().position(|f| f.0.ends_with(".snap")).unwrap() as u8;
            let sidx = b.files.iter().position(|f| f.0.ends_with(".sidx"));
            let prepared = idx("next-segment.prepared");
            let marker = idx("FACTLOG").unwrap();
            let nact = b.active_frames.len() as u8;
            let d = |x: i16| x.to_le_bytes();
            let mut v: Vec<(&str, Vec<u8>)> = vec![
                ("untouched", vec![3]),
                ("big-append-rolls", vec![250]),
                ("flip-last-frame-body", [&[0, 0, active, nact][..], &d(40), &[3]].concat()),
                ("flip-first-active-frame", [&[0, 0, active, 1][..], &d(12), &[0]].concat()),
                ("flip-mid-active-frame", [&[0, 0, active, nact / 2][..], &d(100), &[5]].concat()),
                ("flip-sealed-frame", [&[0, 0, seg0, 7][..], &d(60), &[1]].concat()),
                ("flip-sealed-header", [&[0, 0, seg0, 0][..], &d(20), &[1]].concat()),
                ("flip-active-header", [&[0, 0, active, 0][..], &d(3), &[7]].concat()),
                ("zero-from-last-frame", [&[0, 2, active, nact][..], &d(0), &d(-1)].concat()),
                ("zero-inside-last-frame", [&[0, 2, active, nact][..], &d(48), &d(64)].concat()),
                ("zero-mid-active", [&[0, 2, active, nact / 2][..], &d(0), &d(4096)].concat()),
                ("truncate-active-at-log-end", [&[0, 3, active, 254][..], &d(0)].concat()),
                ("truncate-active-in-last-frame", [&[0, 3, active, nact][..], &d(37)].concat()),
                ("truncate-active-mid", [&[0, 3, active, nact / 3][..], &d(0)].concat()),
                ("truncate-active-in-header", [&[0, 3, active, 0][..], &d(40)].concat()),
                ("truncate-sealed", [&[0, 3, seg0, 254][..], &d(0)].concat()),
                ("garbage-after-log-end", [&[0, 1, active, 254][..], &d(0), &[15], b"0123456789abcdef"].concat()),
                ("garbage-magic-after-log-end", [&[0, 1, active, 254][..], &d(16), &[3], b"FLRC"].concat()),
                ("append-garbage-to-active", vec![0, 4, active, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
                ("append-garbage-to-sealed", vec![0, 4, seg0, 3, 1, 2, 3, 4]),
                ("delete-first-idx", vec![0, 5, first_idx]),
                ("delete-active-segment", vec![0, 5, active]),
                ("delete-first-segment", vec![0, 5, seg0]),
                ("delete-marker", vec![0, 5, marker]),
                ("flip-marker", [&[0, 0, marker, 0][..], &d(20), &[0]].concat()),
                ("flip-idx-entry", [&[0, 0, first_idx, 9][..], &d(4), &[2]].concat()),
                ("truncate-idx", [&[0, 3, first_idx, 0][..], &d(50)].concat()),
                ("copy-frame-over-next", [&[0, 6, active, 3][..], &d(0), &[2], &d(0), &d(600)].concat()),
                ("copy-last-frame-after-log-end", [&[0, 6, active, 254][..], &d(0), &[nact], &d(0), &d(4000)].concat()),
                ("flip-then-fix-frame-crc", [&[0, 0, active, 5][..], &d(9), &[0, 7, active, 5], &d(0)].concat()),
                ("flip-version-fix-frame-crc", [&[0, 0, seg0, 4][..], &d(32 + 8), &[0, 7, seg0, 4], &d(0)].concat()),
                ("seg-size-fix-header-crc", [&[0, 1, active, 0][..], &d(24), &[3, 0, 0x80, 0, 0, 8, active]].concat()),
                ("idx-entry-fix-crc", [&[0, 1, first_idx, 8][..], &d(4), &[1, 0xe0, 0, 9, first_idx]].concat()),
                ("flip-last-snapshot", [&[0, 0, snap_last, 1][..], &d(40), &[2]].concat()),
                ("truncate-last-snapshot", [&[0, 3, snap_last, 1][..], &d(50)].concat()),
                ("flip-sealed-snapshot", [&[0, 0, snap_first, 1][..], &d(40), &[2]].concat()),
                ("zero-sealed-snapshot-tail", [&[0, 2, snap_first, 255][..], &d(-30), &d(30)].concat()),
            ];
            if let Some(s) = sidx {
                v.push(("flip-sidx", [&[0, 0, s as u8, 0][..], &d(30), &[1]].concat()));
                v.push(("delete-sidx", vec![0, 5, s as u8]));
            }
            if let Some(p) = prepared {
                v.push(("garbage-in-prepared", [&[250, 1, p, 0][..], &d(200), &[7], b"GARBAGE!"].concat()));
            }
            out = v;
        }
        "ops" => {
            let a = |agg: u8, expect: u8, n: u8, size: u8| vec![op::APPEND, agg, expect, n, size];
            let crash = |n: u8, mode: u8, cut: u32, mask: u32| {
                [&[op::CRASH, n, 1, 7, mode][..], &cut.to_le_bytes(), &mask.to_le_bytes()].concat()
            };
            let big = |agg: u8| a(agg, 0, 4, 3 + 4 * 60);
            let mut fill = Vec::new();
            for i in 0..6 {
                fill.extend(big(i % 4));
            }
            out.push(("appends", [a(0, 1, 1, 5), a(0, 3, 3, 9), a(1, 0, 5, 2), a(0, 2, 2, 1)].concat()));
            out.push(("conflicts", [a(0, 2, 1, 0), a(0, 4, 1, 0), a(1, 1, 2, 0), a(1, 1, 2, 0)].concat()));
            out.push(("retry", [a(2, 0, 3, 6), a(3, 0, 1, 6), vec![op::RETRY, 1], vec![op::RETRY, 0]].concat()));
            out.push(("dup-ids", [a(0, 0, 3, 1), vec![op::DUP_ID, 1, 0, 0, 0], vec![op::DUP_ID, 1, 0, 1, 1]].concat()));
            out.push((
                "reads",
                [a(0, 0, 5, 1), a(1, 0, 2, 1), vec![op::READ_AGG, 0, 2, 1, 3], vec![op::READ_ALL, 3, 0, 4]].concat(),
            ));
            out.push(("reopen", [a(0, 0, 2, 1), vec![op::REOPEN], a(0, 3, 1, 1), vec![op::REOPEN]].concat()));
            out.push(("roll", [fill.clone(), vec![op::REOPEN], vec![op::READ_ALL, 0, 0, 200]].concat()));
            out.push(("crash-nothing-in-flight", [a(0, 0, 3, 9), crash(0, 0, 12345, 0)].concat()));
            out.push(("crash-truncate", [a(0, 0, 3, 9), crash(3, 0, 100, 0)].concat()));
            out.push(("crash-zero-suffix", [a(0, 0, 3, 9), crash(5, 1, 777, 0)].concat()));
            out.push(("crash-sectors", [a(0, 0, 3, 9), crash(5, 2, 0, 0x5555_5555)].concat()));
            out.push(("crash-pages", [a(0, 0, 3, 9), crash(5, 6, 0, 0xaaaa_aaaa)].concat()));
            out.push(("crash-garbage", [a(0, 0, 3, 9), crash(2, 3, 0x0010_0040, 0xdead_beef)].concat()));
            out.push(("crash-intact", [a(0, 0, 3, 9), crash(3, 1, u32::MAX, 0)].concat()));
            out.push(("crash-roll-undo", [fill.clone(), crash(5, 8 + 1, 0, 0)].concat()));
            out.push(("crash-roll-no-idx", [fill.clone(), crash(5, 16 + 2, 0, 0x0f0f_0f0f)].concat()));
            out.push((
                "crash-then-append",
                [a(1, 0, 2, 9), crash(4, 2, 0, 1), a(1, 3, 1, 9), vec![op::REOPEN]].concat(),
            ));
            out.push((
                "snapshots",
                [
                    a(0, 0, 3, 9),
                    vec![op::SNAPSHOT, 0, 1, 20],
                    vec![op::SNAPSHOT, 0, 2, 31],
                    vec![op::SNAPSHOT, 0, 9, 8],
                ]
                .concat(),
            ));
            out.push(("crash-torn-snapshot-save", [a(1, 0, 3, 9), crash(2, 32 + 1, 300, 77)].concat()));
            out.push(("crash-whole-snapshot-save", [a(1, 0, 3, 9), crash(0, 32, 0, u32::MAX)].concat()));
            out.push((
                "snapshots-reopen",
                [a(1, 0, 4, 9), vec![op::SNAPSHOT, 1, 3, 200], vec![op::REOPEN], vec![op::SNAPSHOT, 1, 1, 201]]
                    .concat(),
            ));
        }
        other => panic!("no seed corpus for target {other:?}"),
    }
    out.into_iter().enumerate().map(|(i, (name, data))| (format!("seed-{i:02}-{name}"), data)).collect()
}

/// Finding F1: a [`record_decode`] input, a valid frame at position
/// `u64::MAX`, version 0, as the only frame of a segment named after that
/// position: recovery's scan steps the position past `u64::MAX` (a panic
/// with overflow checks; in release the store's end wraps to 0 and the event
/// is invisible).
pub fn finding_f1_input() -> Vec<u8> {
    encode_body(&sample_body(u64::MAX, 0, "acct-1", "FundsDeposited", b"{}"), 1, 0)
}

/// Finding F3: a [`segment_open`] input that plants a checksummed frame,
/// never validated by rkyv, in the zeroed tail of the first sealed segment
/// and points that segment's checkpoint entry for its last event at it (the
/// checkpoint's checksum recomputed). Its `aggregate_id` box points 1 GiB
/// past the frame. Opening serves it through `trusted_body`
/// (`access_unchecked`): the dedupe rebuild hashes the aggregate id and the
/// process faults.
pub fn finding_f3_input() -> Vec<u8> {
    let b = base();
    let seg = b.file_index("00000000000000000000.seg").expect("first segment");
    let idx = b.file_index("00000000000000000000.idx").expect("first checkpoint");
    let frames = frames_of(&b.files[seg].1);
    let (_, _, last_pos) = *frames.last().expect("frames");
    let at = b.log_end[seg];
    let body = Body {
        position: last_pos,
        version: 0,
        event_id: [0xf3; 16],
        occurred_at: 0,
        recorded_at: 0,
        event_version: 1,
        causation_id: None,
        correlation_id: None,
        aggregate_id: "x".repeat(7),
        event_type: "T".into(),
        metadata: Vec::new(),
        data: vec![0xaa; 5],
    };
    let mut frame = encode_body(&body, 1, 0);
    let body_len = le32(&frame, 4) as usize;
    // The root struct sits at the end of the archive; its four boxes
    // (aggregate id, type, metadata, data: i32 offset + u32 length each)
    // are its last 32 bytes.
    let root_end = FRAME_HEADER_BYTES + body_len;
    let boxes = root_end - 32;
    assert_eq!(
        (le32(&frame, boxes + 4), le32(&frame, boxes + 12), le32(&frame, boxes + 20), le32(&frame, boxes + 28)),
        (7, 1, 0, 5),
        "unexpected archive layout"
    );
    put32(&mut frame, boxes, 0x4000_0000);
    put32(&mut frame, boxes + 4, 0x7fff_0000);
    let crc = crc32(&[&frame[..24], &frame[28..32], &frame[32..root_end]]);
    put32(&mut frame, 24, crc);
    assert!(at + frame.len() <= b.files[seg].1.len(), "no room after the first segment's last frame");
    let mut input = vec![0u8];
    for (k, chunk) in frame.chunks(32).enumerate() {
        input.extend_from_slice(&[mutation::OVERWRITE, seg as u8, 254]);
        input.extend_from_slice(&((k * 32) as i16).to_le_bytes());
        input.push(chunk.len() as u8 - 1);
        input.extend_from_slice(chunk);
    }
    input.extend_from_slice(&[mutation::OVERWRITE, idx as u8, 255]);
    input.extend_from_slice(&(-12i16).to_le_bytes());
    input.push(3);
    input.extend_from_slice(&(at as u32).to_le_bytes());
    input.extend_from_slice(&[mutation::FIX_IDX_CRC, idx as u8]);
    input
}

/// A fuzz target's check function.
pub type Check = fn(&[u8]);

/// The fuzz targets, by name, with their check functions.
pub const TARGETS: [(&str, Check); 4] = [
    ("record_decode", record_decode),
    ("snapshot_decode", snapshot_decode),
    ("segment_open", segment_open),
    ("ops", ops),
];
