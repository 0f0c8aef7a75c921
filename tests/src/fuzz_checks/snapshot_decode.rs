//! The `snapshot_decode` target: arbitrary bytes as one snapshot frame.
//! Owns the checks that `decode_frame` agrees with the byte layout and
//! re-encodes byte for byte, and that `decompress` yields exactly the
//! declared size or fails. It never opens a store.

use factlog::snapshot::{self as snap, SnapFrame, SnapMeta};

use super::layout::{fix_snap_crc, le32, put32, SNAP_BODY_FIXED, SNAP_FRAME_HEADER};
use super::scratch::MAX_SNAPSHOT_BYTES;

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
    fix_snap_body(&mut f[SNAP_FRAME_HEADER..SNAP_FRAME_HEADER + body_len]);
    fix_snap_crc(&mut f);
    Some(f)
}

/// Makes a snapshot body's fixed fields valid: codec 0..=2, an aggregate id
/// of 1..=255 lowercase letters that fits, reserved bytes zero, a dictionary
/// id exactly for codec 2, and the payload length that fills the body.
fn fix_snap_body(b: &mut [u8]) {
    let body_len = b.len();
    b[24] %= 3;
    let agg_len = usize::from(b[25]).clamp(1, (body_len - SNAP_BODY_FIXED).min(255));
    b[25] = agg_len as u8;
    b[26..28].fill(0);
    // Codec 2 (zstd with a dictionary) needs a dictionary id, the others none.
    if b[24] == 2 {
        b[32] |= 1;
    } else {
        b[32..36].fill(0);
    }
    b[36..SNAP_BODY_FIXED].fill(0);
    put32(b, 28, (body_len - SNAP_BODY_FIXED - agg_len) as u32);
    for c in &mut b[SNAP_BODY_FIXED..SNAP_BODY_FIXED + agg_len] {
        *c = b'a' + *c % 26;
    }
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
    check_decoded(bytes, &frame);
    check_decompress(&frame);
}

/// A decoded frame agrees with its bytes and re-encodes to them.
fn check_decoded(bytes: &[u8], frame: &SnapFrame<'_>) {
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
    assert_eq!(again[..end], bytes[..end], "re-encoded snapshot frame differs");
}

/// `decompress` yields exactly the declared size, or fails for a reason.
fn check_decompress(frame: &SnapFrame<'_>) {
    match snap::decompress(frame, MAX_SNAPSHOT_BYTES) {
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
