//! The `record_decode` target: arbitrary bytes as one event frame. Owns the
//! owned mirror of a record body ([`Body`]) and the checks that the frame
//! decoders agree with the byte layout, that a validated body re-encodes to
//! the same values, and that a valid frame is served by a store built
//! around it. It builds stores only in scratch directories.

use factlog::record::{
    self, ArchivedRecordBody, FrameError, FrameFormat, FrameHeader, RecordBody, FRAME_HEADER_BYTES, FRAME_MAGIC,
};
use factlog::{Direction, Error, ExpectedVersion, NewEvent, RecordedEvent, Store};
use rkyv::util::AlignedVec;

use super::layout::{
    fix_record_crc, le32, payload_crc, put32, record_crc, segment_header, BATCH_INDEX_AT, BATCH_LEN_AT, BODY_LEN_AT,
    DATA_CRC_AT, DATA_LEN_AT, FRAME_CRC_AT, FRAME_MAGIC_AT, SEG_HEADER, WRITE_SLOT_AT,
};
use super::scratch::{fuzz_options, scratch_dir, verbose, MARKER_TEXT, MAX_EVENT_BYTES, SEGMENT_BYTES};

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

// Deref coercions from the archived string and byte boxes.
fn str_of(s: &str) -> &str {
    s
}

fn bytes_of(b: &[u8]) -> &[u8] {
    b
}

impl Body {
    /// The body of an archived envelope and its frame's payload.
    fn from_archived(a: &ArchivedRecordBody<'_>, payload: &[u8]) -> Body {
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
            data: payload.to_vec(),
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
            && e.causation_id == self.causation_id.map(factlog::EventId)
            && e.correlation_id == self.correlation_id.map(factlog::EventId)
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

/// Rewrites `data` into a frame that passes `parse_header` and `checked_body`
/// (both checksums fixed).
pub fn fix_frame(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() <= FRAME_HEADER_BYTES {
        return None;
    }
    let mut f = data.to_vec();
    put32(&mut f, FRAME_MAGIC_AT, FRAME_MAGIC);
    let avail = (f.len() - FRAME_HEADER_BYTES) as u32;
    let mut body_len = le32(&f, BODY_LEN_AT);
    if body_len == 0 || body_len > avail {
        body_len = avail;
    }
    put32(&mut f, BODY_LEN_AT, body_len);
    let data_len = le32(&f, DATA_LEN_AT) % body_len;
    put32(&mut f, DATA_LEN_AT, data_len);
    f.resize(FRAME_HEADER_BYTES + record::pad_len(body_len as usize), 0);
    let mut batch_len = le32(&f, BATCH_LEN_AT);
    if batch_len == 0 {
        batch_len = 1;
    }
    let batch_index = le32(&f, BATCH_INDEX_AT) % batch_len;
    put32(&mut f, BATCH_LEN_AT, batch_len);
    put32(&mut f, BATCH_INDEX_AT, batch_index);
    fix_record_crc(&mut f);
    Some(f)
}

/// Runs the frame decoders over `raw` (copied to a 16-aligned buffer, as
/// frames are in a segment map), once with the whole input as the segment
/// and once with the store's event size limit. Returns the body if it
/// validates with the whole input as the segment. `must_pass_crc`: the
/// bytes come from [`fix_frame`], so the header and checksum must be accepted.
fn check_frame_bytes(raw: &[u8], must_pass_crc: bool) -> Option<Body> {
    let mut buf = AlignedVec::<16>::new();
    buf.extend_from_slice(raw);
    let buf = &buf[..];
    let mut result = None;
    for max_body in [buf.len(), MAX_EVENT_BYTES as usize] {
        let whole = max_body == buf.len();
        let Some(h) = check_header(buf, max_body, must_pass_crc && whole) else { continue };
        let Some(envelope) = check_checksum(buf, &h, must_pass_crc) else { continue };
        let Some(decoded) = check_validated(buf, envelope, &h) else { continue };
        if whole {
            result = Some(decoded);
        }
    }
    result
}

/// `parse_header` with `max_body`: zeros are `Empty`, anything else refused
/// is `Invalid` (never when `must_parse`), and an accepted header says
/// exactly what its bytes say.
fn check_header(buf: &[u8], max_body: usize, must_parse: bool) -> Option<FrameHeader> {
    let prefix_zero = buf[..buf.len().min(FRAME_HEADER_BYTES)].iter().all(|b| *b == 0);
    let h = match record::parse_header(buf, max_body, FrameFormat::CURRENT) {
        Err(FrameError::Empty) => {
            assert!(prefix_zero, "parse_header said Empty for a non-zero header");
            return None;
        }
        Err(FrameError::Invalid(reason)) => {
            assert!(!prefix_zero, "parse_header said Invalid ({reason}) for zeroed space");
            assert!(!must_parse, "fixed-up frame refused: {reason}");
            return None;
        }
        Ok(h) => h,
    };
    assert!(
        buf.len() >= FRAME_HEADER_BYTES && le32(buf, FRAME_MAGIC_AT) == FRAME_MAGIC,
        "header accepted without magic"
    );
    let field = |at| le32(buf, at);
    assert_eq!(
        (h.body_len, h.data_len, h.data_crc, h.batch_len, h.batch_index, h.crc, h.write_slot),
        (
            field(BODY_LEN_AT),
            field(DATA_LEN_AT),
            field(DATA_CRC_AT),
            field(BATCH_LEN_AT),
            field(BATCH_INDEX_AT),
            field(FRAME_CRC_AT),
            field(WRITE_SLOT_AT)
        ),
        "parsed header differs from its bytes"
    );
    assert_eq!((h.format, h.claimed_position), (FrameFormat::V2, None), "format 2 claims positions in the body");
    assert!(h.body_len > 0 && h.body_len as usize <= max_body, "body length {} accepted", h.body_len);
    assert!(h.data_len < h.body_len, "payload of {} bytes accepted in a body of {}", h.data_len, h.body_len);
    assert!(h.batch_index < h.batch_len, "batch slot {}/{} accepted", h.batch_index, h.batch_len);
    assert_eq!(h.frame_len(), FRAME_HEADER_BYTES + (h.body_len as usize).div_ceil(16) * 16);
    assert!(h.frame_len() <= buf.len(), "frame of {} bytes accepted in {} bytes", h.frame_len(), buf.len());
    assert_eq!(h.offset_in_write(), u64::from(h.write_slot & !record::SLOT_SYNC_BIT) * 16);
    assert_eq!(h.written_synced(), h.write_slot & record::SLOT_SYNC_BIT != 0);
    Some(h)
}

/// `checked_envelope` accepts the frame exactly when the stored checksum is
/// the CRC32 of the frame's fields but the payload, `checked_body` exactly
/// when the payload's checksum matches too, and both return the envelope's
/// own bytes (the body without its trailing payload).
fn check_checksum<'a>(buf: &'a [u8], h: &FrameHeader, must_pass_crc: bool) -> Option<&'a [u8]> {
    let end = FRAME_HEADER_BYTES + (h.body_len - h.data_len) as usize;
    let computed = record_crc(buf, h.body_len as usize);
    let computed_payload = payload_crc(buf, h.body_len as usize);
    assert_eq!(record::frame_crc(buf, end, FrameFormat::CURRENT), computed, "frame_crc is not crc32 of its fields");
    let envelope_ok = record::checked_envelope(buf, h).is_ok();
    assert_eq!(envelope_ok, computed == h.crc, "checked_envelope disagrees with the envelope checksum");
    let body = match record::checked_body(buf, h) {
        Ok(body) => body,
        Err(e) => {
            assert!(
                computed != h.crc || computed_payload != h.data_crc,
                "checked_body refused matching checksums: {e:?}"
            );
            assert!(!must_pass_crc, "fixed-up checksum refused");
            return None;
        }
    };
    assert_eq!((computed, computed_payload), (h.crc, h.data_crc), "checked_body accepted a wrong checksum");
    assert!(std::ptr::eq(body, &buf[FRAME_HEADER_BYTES..end]), "checked_body returned other bytes than the envelope");
    Some(body)
}

/// An envelope that `validate_body` accepts agrees with its header, has
/// names in range and an empty archived payload, and survives a re-encoding
/// round trip with the frame's payload.
fn check_validated(frame: &[u8], envelope: &[u8], h: &FrameHeader) -> Option<Body> {
    let archived = record::validate_body(envelope, h).ok()?;
    assert!(archived.data.is_empty(), "a format 2 envelope archives a payload");
    let payload = record::checked_payload(frame, h).expect("checked").expect("format 2 has a separate payload");
    let decoded = Body::from_archived(archived, payload);
    assert!(
        (1..=factlog::NAME_BYTES_MAX).contains(&decoded.aggregate_id.len())
            && (1..=factlog::NAME_BYTES_MAX).contains(&decoded.event_type.len()),
        "validated body has out-of-range names ({} / {} bytes)",
        decoded.aggregate_id.len(),
        decoded.event_type.len()
    );
    round_trip(&decoded, h.batch_len, h.batch_index);
    Some(decoded)
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
        // Everything but the checksum and the write slot (which differ) is the same.
        let same = FRAME_MAGIC_AT..WRITE_SLOT_AT;
        assert_eq!(out[same.clone()], out[n1 + same.start..n1 + same.end], "encoding is not deterministic");
        assert_eq!(out[32..n1], out[n1 + 32..], "encoding is not deterministic");
        for (at, slot) in [(0usize, 0u64), (n1, n1 as u64)] {
            let frame = &out[at..];
            let h = record::parse_header(frame, frame.len(), FrameFormat::CURRENT).expect("re-encoded header refused");
            assert_eq!((h.data_len as usize, h.batch_len, h.batch_index), (body.data.len(), batch_len, batch_index));
            assert_eq!((h.offset_in_write(), h.written_synced()), (slot, synced), "write slot");
            let b = record::checked_body(frame, &h).expect("re-encoded checksum refused");
            let a = record::validate_body(b, &h).expect("re-encoded body refused");
            let payload = record::checked_payload(frame, &h).expect("checked").expect("format 2");
            assert_eq!(&Body::from_archived(a, payload), body, "re-encoded frame decodes to other values");
        }
    }
}

/// The validated frame (batch slot forced to 1/0, checksum fixed) as the only
/// event of a segment whose first position is the frame's: opening must
/// accept it exactly when the index can take it (version 0), and then serve
/// it, take an append after it, and keep both across a reopen.
fn store_with_frame(frame: &[u8], body: &Body) {
    let Some(seg) = segment_with_frame(frame, body.position) else { return };
    let dir = scratch_dir();
    std::fs::write(dir.path().join("FACTLOG"), MARKER_TEXT).unwrap();
    std::fs::write(dir.path().join(format!("{:020}.seg", body.position)), &seg).unwrap();
    let opened = Store::open(dir.path(), fuzz_options());
    if verbose() {
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
            // A log starting above 0 with no retention recorded is missing its head.
            let headless = body.position > 0 && matches!(e, Error::Corrupt { .. });
            assert!(body.version != 0 || headless, "a store whose only frame is valid (version 0) failed to open: {e}");
            return;
        }
    };
    assert_eq!(body.version, 0, "opened a store whose only event has version {}", body.version);
    check_one_event_store(&store, body);
    if body.position >= factlog::POSITION_LIMIT - 2 {
        return;
    }
    append_and_reopen(store, dir.path(), body);
}

/// A whole segment file holding `frame` (batch slot 1/0, checksum fixed) as
/// its only frame, or `None` if the frame does not fit.
fn segment_with_frame(frame: &[u8], first_position: u64) -> Option<Vec<u8>> {
    let frame_len = record::parse_header(frame, frame.len(), FrameFormat::CURRENT).expect("validated").frame_len();
    if (SEG_HEADER + frame_len) as u64 > SEGMENT_BYTES {
        return None;
    }
    let mut seg = vec![0u8; SEGMENT_BYTES as usize];
    seg[..SEG_HEADER].copy_from_slice(&segment_header(first_position, SEGMENT_BYTES));
    let f = &mut seg[SEG_HEADER..SEG_HEADER + frame_len];
    f.copy_from_slice(&frame[..frame_len]);
    put32(f, BATCH_LEN_AT, 1);
    put32(f, BATCH_INDEX_AT, 0);
    fix_record_crc(f);
    Some(seg)
}

fn check_one_event_store(store: &Store, body: &Body) {
    let got = store.read_all_owned(0, usize::MAX).expect("read_all of a one-event store");
    assert!(got.len() == 1 && body.matches(&got[0]), "one-event store reads back {got:?}, not {body:?}");
    let agg =
        store.read_aggregate_owned(&body.aggregate_id, 0, Direction::Forward, usize::MAX).expect("read_aggregate");
    assert_eq!(agg, got, "read_aggregate differs from read_all");
    assert_eq!(store.last_position(), Some(body.position));
    assert_eq!(store.aggregate_version(&body.aggregate_id), Some(0));
}

fn append_and_reopen(store: Store, dir: &std::path::Path, body: &Body) {
    let mut id = body.event_id;
    id[0] ^= 0xff;
    let ev = NewEvent::new(id, body.event_type.clone(), &b"after"[..]);
    let r = store.append(&body.aggregate_id, ExpectedVersion::Exact(0), vec![ev]).expect("append after a valid frame");
    assert_eq!((r.first_position, r.first_version), (body.position + 1, 1));
    store.close().expect("close");
    let store = Store::open(dir, fuzz_options()).expect("reopen after append");
    let got = store.read_all_owned(0, usize::MAX).expect("read_all after reopen");
    assert!(got.len() == 2 && body.matches(&got[0]) && got[1].event_id == id, "after reopen: {got:?}");
    store.close().expect("close");
}
