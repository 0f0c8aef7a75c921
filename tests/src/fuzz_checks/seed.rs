//! Seed inputs of the fuzz targets and the built inputs of fixed findings.
//! Owns only how those inputs are made; `tests/tests/fuzz_corpus.rs` writes
//! them into `fuzz/corpus/` on request. Nothing here checks anything beyond
//! the assumptions an input is built on.

use factlog::record::{self, FRAME_HEADER_BYTES};
use factlog::snapshot::{self as snap, SnapMeta};
use factlog::{ExpectedVersion, NewEvent, Store};
use rkyv::util::AlignedVec;

use super::base::base;
use super::layout::{fix_record_crc, fix_snap_crc, frames_of, le32, put32, snap_frames_of, BODY_LEN_AT, DATA_LEN_AT};
use super::ops::op;
use super::record_decode::{encode_body, Body};
use super::scratch::{fuzz_options, read_tree, scratch_dir};
use super::segment_open::mutation;
use crate::random;

/// Named seed inputs, before numbering.
type Seeds = Vec<(&'static str, Vec<u8>)>;

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
    let out = match target {
        "record_decode" => record_seeds(),
        "snapshot_decode" => snapshot_seeds(),
        "segment_open" => segment_open_seeds(),
        "ops" => ops_seeds(),
        other => panic!("no seed corpus for target {other:?}"),
    };
    out.into_iter().enumerate().map(|(i, (name, data))| (format!("seed-{i:02}-{name}"), data)).collect()
}

fn record_seeds() -> Seeds {
    let mut out: Seeds = Vec::new();
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
    out.extend(damaged_frames(&encode_body(b, 1, 0)));
    out
}

/// Damaged copies of a valid frame.
fn damaged_frames(frame: &[u8]) -> Seeds {
    let mut out: Seeds = Vec::new();
    let mut flipped = frame.to_vec();
    flipped[40] ^= 0x10;
    out.push(("body-bit-flip", flipped));
    let mut flipped = frame.to_vec();
    flipped[9] ^= 1;
    out.push(("header-bit-flip", flipped));
    out.push(("truncated", frame[..frame.len() - 20].to_vec()));
    out.push(("header-only", frame[..32].to_vec()));
    let mut garbage = frame.to_vec();
    garbage.extend_from_slice(b"trailing garbage after the frame");
    out.push(("trailing-garbage", garbage));
    // A header claiming a longer payload than the body's (checksums fixed):
    // the layout rule must refuse it.
    let mut other = frame.to_vec();
    let longer = le32(&other, DATA_LEN_AT) + 3;
    put32(&mut other, DATA_LEN_AT, longer);
    fix_record_crc(&mut other);
    out.push(("payload-length-mismatch", other));
    let mut bad_len = frame.to_vec();
    put32(&mut bad_len, BODY_LEN_AT, 0xffff_fff0);
    out.push(("huge-body-length", bad_len));
    out.push(("zeros-32", vec![0; 32]));
    out.push(("zeros-7", vec![0; 7]));
    out.push(("empty", Vec::new()));
    out.push(("magic-only", b"FLRC".to_vec()));
    let mut rk = frame.to_vec();
    let l = rk.len();
    rk[l - 20..].fill(0xee);
    out.push(("body-tail-garbage", rk));
    out
}

fn snapshot_seeds() -> Seeds {
    let mut out = stored_snapshot_frames();
    let meta = SnapMeta { seq: 9, version: 3, schema_version: 1, taken_at: -1, raw_len: 5, codec: 0, dict_id: 0 };
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
    fix_snap_crc(&mut bad_zstd);
    out.push(("bad-zstd", bad_zstd));
    let mut reserved = f.clone();
    reserved[17] = 1;
    out.push(("reserved-set", reserved));
    let mut two = f.clone();
    two.extend_from_slice(&f);
    out.push(("two-frames", two));
    out
}

/// Real frames as a store writes them: zstd, raw and an empty state.
fn stored_snapshot_frames() -> Seeds {
    let dir = scratch_dir();
    let store = Store::open(dir.path(), fuzz_options()).unwrap();
    store.append("acct-1", ExpectedVersion::Any, vec![NewEvent::new([1; 16], "T", &b"x"[..])]).unwrap();
    store.save_snapshot("acct-1", 0, factlog::SchemaVersion(1), "compress me ".repeat(40).as_bytes()).unwrap();
    store.save_snapshot("acct-1", 0, factlog::SchemaVersion(2), &random::noise(&[0x5eed], 300)).unwrap();
    store.save_snapshot("acct-1", 0, factlog::SchemaVersion(3), b"").unwrap();
    store.close().unwrap();
    let files = read_tree(dir.path());
    let mut frames = Vec::new();
    for (_, bytes) in files.iter().filter(|f| f.0.ends_with(".snap")) {
        for off in snap_frames_of(bytes) {
            let f = snap::decode_frame(&bytes[off..]).unwrap().unwrap();
            frames.push(bytes[off..off + f.frame_len].to_vec());
        }
    }
    ["zstd", "raw", "empty-state"].into_iter().zip(frames).collect()
}

fn segment_open_seeds() -> Seeds {
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
    let mut v: Seeds = vec![
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
        // Format version 4 (a recycled segment): recovery's recycled path on the active segment.
        ("recycled-active", [&[0, 1, active, 0][..], &d(8), &[0, 4, 8, active]].concat()),
        (
            "recycled-active-own-frame-after-end",
            [&[0, 1, active, 0][..], &d(8), &[0, 4, 6, active, 254], &d(0), &[nact], &d(0), &d(4000), &[8, active]]
                .concat(),
        ),
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
    v
}

fn ops_seeds() -> Seeds {
    let a = |agg: u8, expect: u8, n: u8, size: u8| vec![op::APPEND, agg, expect, n, size];
    let crash = |n: u8, mode: u8, cut: u32, mask: u32| {
        [&[op::CRASH, n, 1, 7, mode][..], &cut.to_le_bytes(), &mask.to_le_bytes()].concat()
    };
    let big = |agg: u8| a(agg, 0, 4, 3 + 4 * 60);
    let fill: Vec<u8> = (0..6).flat_map(|i| big(i % 4)).collect();
    let life = |kind: u8, agg: u8| vec![op::LIFECYCLE + kind, agg];
    vec![
        ("appends", [a(0, 1, 1, 5), a(0, 3, 3, 9), a(1, 0, 5, 2), a(0, 2, 2, 1)].concat()),
        ("conflicts", [a(0, 2, 1, 0), a(0, 4, 1, 0), a(1, 1, 2, 0), a(1, 1, 2, 0)].concat()),
        ("retry", [a(2, 0, 3, 6), a(3, 0, 1, 6), vec![op::RETRY, 1], vec![op::RETRY, 0]].concat()),
        ("dup-ids", [a(0, 0, 3, 1), vec![op::DUP_ID, 1, 0, 0, 0], vec![op::DUP_ID, 1, 0, 1, 1]].concat()),
        ("reads", [a(0, 0, 5, 1), a(1, 0, 2, 1), vec![op::READ_AGG, 0, 2, 1, 3], vec![op::READ_ALL, 3, 0, 4]].concat()),
        ("reopen", [a(0, 0, 2, 1), vec![op::REOPEN], a(0, 3, 1, 1), vec![op::REOPEN]].concat()),
        ("roll", [fill.clone(), vec![op::REOPEN], vec![op::READ_ALL, 0, 0, 200]].concat()),
        ("crash-nothing-in-flight", [a(0, 0, 3, 9), crash(0, 0, 12345, 0)].concat()),
        ("crash-truncate", [a(0, 0, 3, 9), crash(3, 0, 100, 0)].concat()),
        ("crash-zero-suffix", [a(0, 0, 3, 9), crash(5, 1, 777, 0)].concat()),
        ("crash-sectors", [a(0, 0, 3, 9), crash(5, 2, 0, 0x5555_5555)].concat()),
        ("crash-pages", [a(0, 0, 3, 9), crash(5, 6, 0, 0xaaaa_aaaa)].concat()),
        ("crash-garbage", [a(0, 0, 3, 9), crash(2, 3, 0x0010_0040, 0xdead_beef)].concat()),
        ("crash-intact", [a(0, 0, 3, 9), crash(3, 1, u32::MAX, 0)].concat()),
        ("crash-roll-undo", [fill.clone(), crash(5, 8 + 1, 0, 0)].concat()),
        ("crash-roll-no-idx", [fill.clone(), crash(5, 16 + 2, 0, 0x0f0f_0f0f)].concat()),
        ("crash-then-append", [a(1, 0, 2, 9), crash(4, 2, 0, 1), a(1, 3, 1, 9), vec![op::REOPEN]].concat()),
        (
            "snapshots",
            [a(0, 0, 3, 9), vec![op::SNAPSHOT, 0, 1, 20], vec![op::SNAPSHOT, 0, 2, 31], vec![op::SNAPSHOT, 0, 9, 8]]
                .concat(),
        ),
        ("crash-torn-snapshot-save", [a(1, 0, 3, 9), crash(2, 32 + 1, 300, 77)].concat()),
        ("crash-whole-snapshot-save", [a(1, 0, 3, 9), crash(0, 32, 0, u32::MAX)].concat()),
        (
            "lifecycle-delete-scavenge-restart",
            [
                fill.clone(),
                life(op::DELETE, 0),
                vec![op::LIFECYCLE + op::SCAVENGE],
                vec![op::REOPEN],
                a(0, 1, 1, 5),
                vec![op::READ_ALL, 0, 0, 200],
                vec![op::REOPEN],
            ]
            .concat(),
        ),
        (
            "lifecycle-truncate-crash",
            [
                fill.clone(),
                life(op::TRUNCATE, 1),
                vec![3],
                vec![op::LIFECYCLE + op::SCAVENGE],
                crash(3, 1, 777, 0),
                vec![op::READ_AGG, 1, 0, 0, 50],
                vec![op::REOPEN],
            ]
            .concat(),
        ),
        (
            "lifecycle-scavenge-then-roll-undo",
            [fill.clone(), life(op::DELETE, 2), vec![op::LIFECYCLE + op::SCAVENGE], crash(5, 8 + 1, 0, 0)].concat(),
        ),
        (
            "snapshots-reopen",
            [a(1, 0, 4, 9), vec![op::SNAPSHOT, 1, 3, 200], vec![op::REOPEN], vec![op::SNAPSHOT, 1, 1, 201]].concat(),
        ),
    ]
}

/// Finding F1: a [`record_decode`](super::record_decode()) input, a valid
/// frame at position `u64::MAX`, version 0, as the only frame of a segment
/// named after that position: recovery's scan steps the position past
/// `u64::MAX` (a panic with overflow checks; in release the store's end
/// wraps to 0 and the event is invisible).
pub fn finding_f1_input() -> Vec<u8> {
    encode_body(&sample_body(u64::MAX, 0, "acct-1", "FundsDeposited", b"{}"), 1, 0)
}

/// Finding F3: a [`segment_open`](super::segment_open()) input that plants a
/// checksummed frame, never validated by rkyv, in the zeroed tail of the
/// first sealed segment and points that segment's checkpoint entry for its
/// last event at it (the checkpoint's checksum recomputed). Its
/// `aggregate_id` box points 1 GiB past the frame. Opening serves it through
/// `trusted_body` (`access_unchecked`): the dedupe rebuild hashes the
/// aggregate id and the process faults.
pub fn finding_f3_input() -> Vec<u8> {
    let b = base();
    let seg = b.file_index("00000000000000000000.seg").expect("first segment");
    let idx = b.file_index("00000000000000000000.idx").expect("first checkpoint");
    let frames = frames_of(&b.files[seg].1);
    let (_, _, last_pos) = *frames.last().expect("frames");
    let at = b.log_end[seg];
    let frame = lying_frame(last_pos);
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

/// Finding F6: a [`segment_open`](super::segment_open()) input that cuts
/// the active segment inside the zero padding of a batch's last frame
/// (every checksummed byte still there). A read-write open pads the file
/// back and keeps the batch; a read-only open used to find the frame
/// running past the end of the file and drop it.
pub fn finding_f6_input() -> Vec<u8> {
    let b = base();
    let active = &b.files[b.active].1;
    let padding =
        |&(off, len, _): &(usize, usize, u64)| len - FRAME_HEADER_BYTES - le32(active, off + BODY_LEN_AT) as usize;
    let k = (0..b.active_frames.len())
        .rev()
        .find(|k| padding(&b.active_frames[*k]) >= 2 && b.batch_ends.contains(&(b.active_frames[*k].2 + 1)))
        .expect("a batch of the active segment whose last frame has padding");
    let cut = b.active_frames[k].1 as i16 - 2;
    [&[0, mutation::TRUNCATE, b.active as u8, anchor_of_frame(k)][..], &cut.to_le_bytes()].concat()
}

/// A [`segment_open`](super::segment_open()) input that zeroes the active
/// segment from the start of a batch in its second half to its end: on disk
/// exactly what a crash before those writes leaves, so recovery may drop
/// those batches without reporting a torn tail (a check once wrongly
/// refused that).
pub fn zeroed_suffix_input() -> Vec<u8> {
    let b = base();
    let frames = &b.active_frames;
    let k = (frames.len() / 2..frames.len())
        .find(|k| b.batch_ends.contains(&frames[*k].2))
        .expect("a batch starting in the second half of the active segment");
    [&[0, mutation::ZERO, b.active as u8, anchor_of_frame(k)][..], &0i16.to_le_bytes(), &u16::MAX.to_le_bytes()]
        .concat()
}

/// The anchor byte that names the start of frame `k` of a segment (its points are its frame starts).
fn anchor_of_frame(k: usize) -> u8 {
    assert!(k < 253, "frame {k} cannot be named by an anchor byte");
    k as u8 + 1
}

/// A frame for `position` with a valid checksum whose `aggregate_id` box
/// points 1 GiB past it, 2 GiB long: rkyv validation refuses it.
fn lying_frame(position: u64) -> Vec<u8> {
    let body = Body {
        position,
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
    let (body_len, data_len) = (le32(&frame, BODY_LEN_AT) as usize, le32(&frame, DATA_LEN_AT) as usize);
    // The root struct sits at the end of the archive (the envelope, which the
    // payload follows); its four boxes (aggregate id, type, metadata, data:
    // i32 offset + u32 length each, the data archived empty) are its last 32 bytes.
    let boxes = FRAME_HEADER_BYTES + body_len - data_len - 32;
    assert_eq!(
        (le32(&frame, boxes + 4), le32(&frame, boxes + 12), le32(&frame, boxes + 20), le32(&frame, boxes + 28)),
        (7, 1, 0, 0),
        "unexpected archive layout"
    );
    put32(&mut frame, boxes, 0x4000_0000);
    put32(&mut frame, boxes + 4, 0x7fff_0000);
    fix_record_crc(&mut frame);
    frame
}
