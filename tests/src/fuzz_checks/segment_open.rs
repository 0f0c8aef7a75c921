//! The `segment_open` target: mutations of a copy of the [`base`] store,
//! then a read-only open, an open, reads of everything, one append and a
//! reopen. Owns the mutation language ([`mutation`]) and what each kind of
//! damage lets recovery do. It works on copies in scratch directories and
//! never changes the reference store.

use std::path::Path;

use bytes::Bytes;
use factlog::{Direction, Error, ExpectedVersion, NewEvent, Reader, RecordedEvent, RecoveryReport, Store};

use super::base::{base, Base};
use super::input::Input;
use super::layout::crc32;
use super::layout::{fix_header_crc, fix_record_crc, fix_snap_crc, header_crc_ok, le64, put32, SEG_HEADER};
use super::scratch::{fuzz_options, read_tree, scratch_dir, verbose};

/// A crafted segment header may declare any size up to `SEGMENT_BYTES_MAX`;
/// recovery pads a short active segment up to it. Inputs declaring more than
/// this (and no more than the maximum) are not opened, to keep runs fast.
const HUGE_SEGMENT: u64 = 4 << 20;

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

/// The reference store's files after the mutations (`None`: deleted).
struct Mutated {
    files: Vec<Option<Vec<u8>>>,
    /// A checksum was recomputed: the files may say anything.
    crafted: bool,
    /// Bytes were copied inside a file (a frame may now appear twice).
    copied: bool,
}

/// What one mutation did beyond changing bytes.
enum Mark {
    Plain,
    Copied,
    Crafted,
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
    let x = Expect::of(base, &m);
    if declares_huge_segment(base, &m) {
        return;
    }
    let verbose = verbose();
    if verbose {
        eprintln!(
            "segment_open: crafted={} copied={} strong={} must_open={} active_diff={} must_keep={}/{}",
            x.crafted,
            m.copied,
            x.strong,
            x.must_open,
            x.active_diff,
            x.must_keep,
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
    let ro_end = read_only_pass(base, &m, dir.path(), verbose);
    let Some(store) = open_mutated(dir.path(), &x, verbose) else { return };
    let reader = store.reader();
    let read = check_log(base, &m, &x, &store, &reader, ro_end, verbose);
    check_aggregates(base, &x, &store, &reader);
    drop(reader);
    let end = read.end;
    let ev = appended_event(append_sel);
    let appended = check_append(&store, &ev, end, &x);
    let closed = store.close();
    let Some(pos) = appended else { return };
    if closed.is_err() && x.crafted {
        return;
    }
    closed.expect("close after append");
    check_reopen(dir.path(), pos, &ev, &read.events, &x);
}

fn at(base: &Base, file: usize, anchor: u8, delta: i16, len: usize) -> usize {
    (base.anchor(file, anchor) as i64 + i64::from(delta)).clamp(0, len as i64) as usize
}

/// Applies up to 16 mutations of the input to a copy of the base files.
fn mutate(base: &Base, inp: &mut Input<'_>) -> Mutated {
    let mut m =
        Mutated { files: base.files.iter().map(|f| Some(f.1.clone())).collect(), crafted: false, copied: false };
    let nfiles = base.files.len();
    let mut count = 0;
    while !inp.is_empty() && count < 16 {
        count += 1;
        let tag = inp.u8() % 10;
        let fi = inp.u8() as usize % nfiles;
        if tag == mutation::DELETE {
            m.files[fi] = None;
            continue;
        }
        // A deleted file takes its mutation in a scratch buffer (the input is consumed alike).
        let mut scratch = Vec::new();
        let b = match m.files[fi].as_mut() {
            Some(b) => b,
            None => &mut scratch,
        };
        match apply(base, fi, tag, b, inp) {
            Mark::Plain => {}
            Mark::Copied => m.copied = true,
            Mark::Crafted => m.crafted = true,
        }
    }
    m
}

/// Applies one mutation `tag` (not a delete) to file `fi`'s bytes `b`.
fn apply(base: &Base, fi: usize, tag: u8, b: &mut Vec<u8>, inp: &mut Input<'_>) -> Mark {
    let len = b.len();
    let place = |inp: &mut Input<'_>| at(base, fi, inp.u8(), inp.i16(), len);
    match tag {
        mutation::FLIP_BIT => {
            let p = place(inp);
            let bit = inp.u8() % 8;
            if let Some(x) = b.get_mut(p) {
                *x ^= 1 << bit;
            }
        }
        mutation::OVERWRITE => {
            let p = place(inp);
            let n = 1 + inp.u8() as usize % 32;
            for (i, x) in inp.bytes(n).iter().enumerate() {
                if let Some(y) = b.get_mut(p + i) {
                    *y = *x;
                }
            }
        }
        mutation::ZERO => {
            let p = place(inp);
            let n = inp.u16() as usize;
            b[p..(p + n).min(len)].fill(0);
        }
        mutation::TRUNCATE => {
            let p = place(inp);
            b.truncate(p);
        }
        mutation::APPEND => {
            let n = 1 + inp.u8() as usize;
            b.extend_from_slice(inp.bytes(n));
        }
        mutation::COPY => {
            let dst = place(inp);
            let src = place(inp);
            let n = (inp.u16() as usize % 8192).min(len - src).min(len - dst);
            b.copy_within(src..src + n, dst);
            return Mark::Copied;
        }
        mutation::FIX_FRAME_CRC => {
            let p = place(inp);
            if base.files[fi].0.ends_with(".snap") {
                fix_snap_crc(&mut b[p..]);
            } else {
                fix_record_crc(&mut b[p..]);
            }
            return Mark::Crafted;
        }
        mutation::FIX_HEADER_CRC => {
            fix_header_crc(b);
            return Mark::Crafted;
        }
        _ => {
            fix_checkpoint_crc(&base.files[fi].0, b);
            return Mark::Crafted;
        }
    }
    Mark::Plain
}

/// Recomputes the checksum of a segment index file (`.idx`: bytes 16.. at
/// 12) or snapshot checkpoint (`.sidx`: bytes 24.. at 16).
fn fix_checkpoint_crc(name: &str, b: &mut [u8]) {
    let len = b.len();
    if name.ends_with(".idx") && len >= 16 {
        let crc = crc32(&[&b[16..]]);
        put32(b, 12, crc);
    } else if name.ends_with(".sidx") && len >= 24 {
        let crc = crc32(&[&b[24..]]);
        put32(b, 16, crc);
    }
}

/// What the mutations changed, and so what opening the store must guarantee.
struct Expect {
    /// A checksum was recomputed: only errors-not-panics and self-consistency are checked.
    crafted: bool,
    /// Every segment file is still there.
    segs_intact: bool,
    /// No snapshot file changed.
    snaps_unchanged: bool,
    /// First changed byte of the active segment (`usize::MAX`: unchanged).
    active_diff: usize,
    /// Nothing crafted, and only the active segment past its header changed
    /// (checkpoints and the prepared segment aside): recovery must keep what
    /// precedes the damage, and reads must not fail.
    strong: bool,
    /// The open must succeed: the damage is confined to the last batch or what follows it.
    must_open: bool,
    /// Events the open must keep: the batches that end before the first changed byte.
    must_keep: u64,
}

impl Expect {
    fn of(base: &Base, m: &Mutated) -> Expect {
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
        let strong = !m.crafted && only_active_tail && active_diff >= SEG_HEADER && snaps_unchanged;
        let last_batch_start = {
            let last_first = base.batch_ends.iter().rev().nth(1).copied().unwrap_or(0);
            base.active_frames.iter().find(|f| f.2 == last_first).map_or(SEG_HEADER, |f| f.0)
        };
        let must_open = strong && !m.copied && active_diff >= last_batch_start;
        let must_keep = if strong { kept_before(base, active_diff) } else { 0 };
        Expect { crafted: m.crafted, segs_intact, snaps_unchanged, active_diff, strong, must_open, must_keep }
    }
}

/// One past the last event of the last batch of the active segment that
/// ends before byte `active_diff` (the active segment's first position if none does).
fn kept_before(base: &Base, active_diff: usize) -> u64 {
    let mut keep = base.active_frames.first().map_or(base.events.len() as u64, |f| f.2);
    for &(off, len, pos) in &base.active_frames {
        if off + len <= active_diff && base.batch_ends.contains(&(pos + 1)) {
            keep = pos + 1;
        }
    }
    keep
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

/// Crafted headers may declare any size up to SEGMENT_BYTES_MAX (larger
/// ones are refused at open since F2 was fixed), and recovery pads a short
/// active segment up to it: such inputs are skipped rather than spending
/// seconds writing zeros.
fn declares_huge_segment(base: &Base, m: &Mutated) -> bool {
    base.files.iter().zip(&m.files).any(|((name, _), b)| {
        b.as_deref().is_some_and(|b| {
            name.ends_with(".seg")
                && header_crc_ok(b)
                && (HUGE_SEGMENT + 1..=factlog::SEGMENT_BYTES_MAX).contains(&le64(b, 24))
        })
    })
}

fn ok_error(e: &Error) -> bool {
    !matches!(e, Error::Locked { .. } | Error::InvalidOptions(_) | Error::Closed)
}

/// Opens the mutated copy read-only, reads it and runs `verify`: no file may
/// change, every event read must be the reference's, and `verify` must report
/// problems exactly when a read fails. Returns the end position and first
/// position read, if the open succeeded.
fn read_only_pass(base: &Base, m: &Mutated, dir: &Path, verbose: bool) -> Option<(u64, Option<u64>)> {
    let result = match Store::open_read_only(dir, fuzz_options()) {
        Ok(store) => Some(read_only_checks(base, m.crafted, store, verbose)),
        Err(e) => {
            assert!(ok_error(&e), "read-only open failed with an unexpected error: {e}");
            if verbose {
                eprintln!("  read-only open failed: {e}");
            }
            None
        }
    };
    assert_files_unchanged(base, m, dir);
    result
}

/// Reads everything from a read-only store, then verifies it. Returns the
/// end position and the first position read.
fn read_only_checks(base: &Base, crafted: bool, store: Store, verbose: bool) -> (u64, Option<u64>) {
    let reader = store.reader();
    let end = reader.end_position();
    let mut first = None;
    let mut read_err = None;
    for r in reader.read_all(0) {
        match r {
            Ok(ev) => {
                first.get_or_insert(ev.position());
                if !crafted {
                    assert_eq!(&ev.to_recorded(), &base.events[ev.position() as usize], "read-only read differs");
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
    (end, first)
}

/// A read-only open changed, created or removed no file.
fn assert_files_unchanged(base: &Base, m: &Mutated, dir: &Path) {
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
}

/// Opens the mutated copy read-write; a failure must be an allowed one.
fn open_mutated(dir: &Path, x: &Expect, verbose: bool) -> Option<Store> {
    match Store::open(dir, fuzz_options()) {
        Ok(s) => Some(s),
        Err(e) => {
            if verbose {
                eprintln!("  open failed: {e}");
            }
            assert!(ok_error(&e), "open failed with an unexpected error: {e}");
            assert!(!x.must_open, "open failed although only the last batch or what follows was damaged: {e}");
            assert!(
                !x.strong || matches!(e, Error::Corrupt { .. }),
                "tail damage of the active segment failed the open with a non-corruption error: {e}"
            );
            None
        }
    }
}

/// What a read-write open serves through `read_all`.
struct LogRead {
    /// End position of the log.
    end: u64,
    /// Every event read, up to the first error.
    events: Vec<RecordedEvent>,
}

/// Reads the whole log of the opened store and checks it: dense positions,
/// the same log as the read-only open, and (unless crafted) the reference's
/// events, nothing dropped silently, and what `strong` damage must keep.
fn check_log(
    base: &Base,
    m: &Mutated,
    x: &Expect,
    store: &Store,
    reader: &Reader,
    ro_end: Option<(u64, Option<u64>)>,
    verbose: bool,
) -> LogRead {
    let report = store.recovery_report().clone();
    let end = reader.end_position();
    let mut read: Vec<RecordedEvent> = Vec::new();
    let mut read_err = None;
    for r in reader.read_all(0) {
        match r {
            Ok(ev) => read.push(ev.to_recorded()),
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
    if let (Some((ro_end, ro_first)), false) = (ro_end, x.crafted) {
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
    if read_err.is_none() && x.segs_intact && !x.crafted {
        assert_eq!(read.len() as u64, end, "read_all stopped early without an error");
    }
    if !x.crafted {
        check_against_base(base, m, x, &read, end, &report);
    }
    if x.strong {
        assert!(read_err.is_none(), "tail damage made read_all fail: {read_err:?}");
        assert!(
            end >= x.must_keep,
            "recovery dropped events before the first damaged byte (offset {}): kept {end}, must keep {}; {report:?}",
            x.active_diff,
            x.must_keep
        );
    }
    LogRead { end, events: read }
}

/// Every event read is the reference's, and events are dropped without a
/// report only where the active segment is now zeros.
fn check_against_base(base: &Base, m: &Mutated, x: &Expect, read: &[RecordedEvent], end: u64, report: &RecoveryReport) {
    assert!(end <= base.events.len() as u64, "store has {end} events, the original {}", base.events.len());
    for ev in read {
        assert_eq!(ev, &base.events[ev.position as usize], "event at position {} differs", ev.position);
    }
    if x.segs_intact && end < base.events.len() as u64 && report.torn_tail.is_none() && report.repaired.is_none() {
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

/// Reads every aggregate forward and backward, and its latest snapshot.
fn check_aggregates(base: &Base, x: &Expect, store: &Store, reader: &Reader) {
    for agg in &base.aggregates {
        let n = check_aggregate_read(base, x, reader, agg);
        if !x.crafted {
            assert_eq!(store.aggregate_version(agg), n.checked_sub(1), "aggregate_version vs read_aggregate");
        }
        let back = reader.read_aggregate(agg, u64::MAX, Direction::Backward).count() as u64;
        assert!(x.crafted || back == n, "backward read of {agg:?} has {back} events, forward {n}");
        check_latest_snapshot(base, x, store, agg);
    }
}

/// Reads `agg` forward: its own events, dense versions, the reference's
/// bytes. Returns the number of items the read yielded.
fn check_aggregate_read(base: &Base, x: &Expect, reader: &Reader, agg: &str) -> u64 {
    let mut n = 0u64;
    for r in reader.read_aggregate(agg, 0, Direction::Forward) {
        match r {
            Ok(ev) => {
                if !x.crafted {
                    assert_eq!(ev.aggregate_id(), agg, "read_aggregate returned another aggregate's event");
                    assert_eq!(ev.version(), n, "read_aggregate versions not dense");
                    assert_eq!(&ev.to_recorded(), &base.events[ev.position() as usize]);
                }
            }
            Err(e) => {
                assert!(ok_error(&e), "read_aggregate: unexpected error {e}");
                assert!(!x.strong, "tail damage made read_aggregate fail: {e}");
            }
        }
        n += 1;
    }
    n
}

/// The latest snapshot of `agg` is one that was saved, and with intact
/// snapshot files it is the reference's latest.
fn check_latest_snapshot(base: &Base, x: &Expect, store: &Store, agg: &str) {
    match store.latest_snapshot(agg) {
        Ok(Some(s)) if !x.crafted => {
            let saved = base.snapshots_saved.get(agg).map(|v| &v[..]).unwrap_or(&[]);
            assert!(
                s.aggregate_id == *agg
                    && saved.iter().any(|(v, sv, d)| *v == s.version && *sv == s.schema_version && *d == s.data),
                "snapshot of {agg:?} at version {} was never saved",
                s.version
            );
            if x.snaps_unchanged {
                assert_eq!(Some(&s), base.snapshots_latest.get(agg), "latest snapshot changed");
            }
        }
        Ok(None) if !x.crafted && x.snaps_unchanged => {
            assert!(!base.snapshots_latest.contains_key(agg), "snapshot of {agg:?} lost");
        }
        Ok(_) => {}
        Err(e) => {
            assert!(ok_error(&e), "latest_snapshot: unexpected error {e}");
            assert!(x.crafted || !x.snaps_unchanged, "intact snapshot files failed a read: {e}");
        }
    }
}

/// The event appended after the checks: `append_sel * 60` bytes of `append_sel`.
fn appended_event(append_sel: u8) -> NewEvent {
    NewEvent {
        event_id: factlog::EventId(*b"fuzz-append-0001"),
        event_type: "Appended".into(),
        event_version: 1,
        occurred_at: 42,
        causation_id: None,
        correlation_id: Some(factlog::EventId([7; 16])),
        metadata: Bytes::from_static(b"{}"),
        data: Bytes::from(vec![append_sel; append_sel as usize * 60]),
    }
}

/// Appends `ev` to a new aggregate; returns its position if that succeeded.
fn check_append(store: &Store, ev: &NewEvent, end: u64, x: &Expect) -> Option<u64> {
    match store.append("fuzz-new", ExpectedVersion::NoStream, vec![ev.clone()]) {
        Ok(r) => {
            assert_eq!((r.first_position, r.first_version, r.deduplicated), (end, 0, false), "append result");
            let got = store.read_all_owned(end, 1).expect("read the appended event");
            assert!(got.len() == 1 && got[0].event_id == ev.event_id && got[0].data == ev.data, "appended event");
            Some(end)
        }
        Err(e) => {
            assert!(ok_error(&e), "append: unexpected error {e}");
            assert!(
                x.crafted || !matches!(e, Error::WrongExpectedVersion { .. } | Error::DuplicateEventId { .. }),
                "append of a new aggregate refused: {e}"
            );
            assert!(!x.strong, "append after tail damage failed: {e}");
            None
        }
    }
}

/// After a clean close, the appended event (and with `strong` damage, the
/// whole log read before) is there on reopen.
fn check_reopen(dir: &Path, pos: u64, ev: &NewEvent, read: &[RecordedEvent], x: &Expect) {
    match Store::open(dir, fuzz_options()) {
        Ok(store) => {
            let got = store.read_all_owned(pos, 1);
            if !x.crafted {
                let got = got.expect("read the appended event after reopening");
                assert!(got.len() == 1 && got[0].event_id == ev.event_id, "appended event lost on reopen");
                if x.strong {
                    let all = store.read_all_owned(0, usize::MAX).expect("read_all after reopen");
                    assert_eq!(all[..read.len()], read[..], "reopen changed the events");
                }
            }
            let _ = store.close();
        }
        Err(e) => {
            assert!(ok_error(&e), "reopen: unexpected error {e}");
            assert!(x.crafted, "a store that opened and took an append fails to reopen: {e}");
        }
    }
}
