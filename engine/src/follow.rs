//! A read-only store beside a writer in another process: how it opens (up to
//! the writer's published durable watermark, or the whole log when no writer
//! is live) and how it follows the writer afterwards ([`Follower`], the
//! `shared::Follow` hook that `Store::reader`, `Store::refresh` and
//! subscriptions call). It reads the `WATERMARK` file (module `watermark`),
//! scans the new frames with full checks (they are another process's bytes),
//! maps the segments the writer rolled to, and publishes them to the index
//! and the watermarks exactly as the writer thread does in-process.
//!
//! It must never index a byte at or past the published durable end while a
//! writer is live (the writer may be writing there), never write a file,
//! and never move the view backwards: a watermark below what it already
//! shows (a stale one) changes nothing.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::directory::DirLock;
use crate::error::{Error, LockHolder, Result};
use crate::options::Options;
use crate::recovery::{self, Limit, Recovered};
use crate::segment::{self, Segment, HEADER_BYTES};
use crate::shared::{Follow, Shared};
use crate::watermark::{Watermark, WatermarkReader, WATERMARK_BYTES};

/// How many times a read-only open without a live writer scans again
/// because a writer opened (or published) while it scanned.
const OPEN_ATTEMPTS: u32 = 3;
/// How often an open beside a writer that has not published yet looks again.
const PUBLISH_POLL: Duration = Duration::from_millis(1);

/// Recovers the store in `dir` for a read-only open holding `lock`. With a
/// live writer, the view ends at its published watermark (a stale one from
/// an earlier writer is a safe, shorter view: recovery never cuts below a
/// durable end); without one, it is today's read-only recovery of the whole
/// log. Returns the recovery and a follower positioned at its end.
pub(crate) fn open(dir: &Path, opts: &Options, lock: Arc<DirLock>) -> Result<(Recovered, Follower)> {
    let mut wm = WatermarkReader::new(dir);
    for _ in 0..OPEN_ATTEMPTS {
        let before = wm.raw()?;
        if let Some(holder) = lock.live_writer()? {
            if opts.repair {
                // A repair's dry run reads the whole log, past what the writer made durable.
                return Err(Error::Locked { path: dir.to_path_buf(), holder });
            }
            let w = published(&mut wm, dir, holder, opts.lock_wait)?;
            let limit = Limit { end: w.durable_end, segment_first: w.segment_first, end_offset: w.end_offset };
            let rec = recovery::recover_to(dir, opts, limit)?;
            let follower = Follower::new(dir, lock, wm, Some(w.encode()), &rec);
            return Ok((rec, follower));
        }
        let rec = match recovery::recover(dir, opts, true) {
            Ok(rec) => rec,
            // A writer that opened during the scan can make the tail look
            // damaged (it cuts and rewrites it): look again, beside it.
            Err(_) if wm.raw()? != before || lock.live_writer()?.is_some() => continue,
            Err(e) => return Err(e),
        };
        // A writer that opened while we scanned may have written past what
        // it made durable: scan again, then beside it.
        let after = wm.raw()?;
        if after == before && lock.live_writer()?.is_none() {
            // What a killed writer left in the page cache is not durable yet:
            // make it so before the view (and its subscribers) calls it durable.
            sync_active(&rec)?;
            let follower = Follower::new(dir, lock, wm, after, &rec);
            return Ok((rec, follower));
        }
    }
    Err(Error::Locked { path: dir.to_path_buf(), holder: LockHolder::Unknown })
}

/// `fdatasync`s the last segment of a recovered log (allowed on a file
/// opened read-only), so that every event the view shows is on disk.
fn sync_active(rec: &Recovered) -> Result<()> {
    let Some(seg) = rec.index.segments().last() else { return Ok(()) };
    let file = std::fs::File::open(&seg.path).map_err(|e| Error::io("open segment to sync it", &seg.path, e))?;
    file.sync_data().map_err(|e| Error::io("fsync the segment a killed writer left", &seg.path, e))
}

/// The live writer's watermark, waiting up to `wait` for a writer that has
/// not published one yet (it publishes right after its recovery). A record
/// that fails its checksum meanwhile is an old one (a power cut can tear the
/// file, which is never synced): the wait goes on, and only at its end is
/// that an error.
fn published(wm: &mut WatermarkReader, dir: &Path, holder: LockHolder, wait: Duration) -> Result<Watermark> {
    let deadline = Instant::now() + wait;
    loop {
        let read = wm.read();
        if let Ok(Some(w)) = read {
            return Ok(w);
        }
        if Instant::now() >= deadline {
            read?;
            return Err(Error::Locked { path: dir.to_path_buf(), holder });
        }
        std::thread::sleep(PUBLISH_POLL);
    }
}

/// Where a read-only store's view ends, and how to move it.
pub(crate) struct Follower {
    dir: PathBuf,
    lock: Arc<DirLock>,
    state: Mutex<FollowState>,
}

/// The end of the view, as the follower left it.
struct FollowState {
    watermark: WatermarkReader,
    /// The record last acted on: an unchanged file needs no more work.
    last_raw: Option<[u8; WATERMARK_BYTES]>,
    /// The last segment of the index (`None`: the store had no segment).
    seg: Option<Arc<Segment>>,
    /// Where its complete batches end.
    offset: u64,
    /// One past the last indexed position.
    next_position: u64,
    /// The `STREAMS` file's (length, modification time) when last loaded.
    streams_seen: Option<(u64, std::time::SystemTime)>,
}

/// One index change of a refresh, applied in order under the index lock.
enum Change {
    Segment(Arc<Segment>),
    Event { aggregate_id: String, version: u64, position: u64, offset: u32 },
}

impl Follower {
    fn new(
        dir: &Path,
        lock: Arc<DirLock>,
        watermark: WatermarkReader,
        last_raw: Option<[u8; WATERMARK_BYTES]>,
        rec: &Recovered,
    ) -> Follower {
        let seg = rec.index.segments().last().cloned();
        let state = FollowState {
            watermark,
            last_raw,
            seg,
            offset: rec.active_write_offset,
            next_position: rec.index.next_position(),
            streams_seen: streams_stamp(dir),
        };
        Follower { dir: dir.to_path_buf(), lock, state: Mutex::new(state) }
    }

    /// The watermark to follow now, if it changed since the last look. A
    /// record that does not read while no writer is live is left alone (it
    /// only serves live followers; the next writer overwrites it).
    fn changed_watermark(&self, st: &mut FollowState) -> Result<Option<Watermark>> {
        let raw = st.watermark.raw()?;
        if raw.is_none() || raw == st.last_raw {
            return Ok(None);
        }
        match st.watermark.read() {
            Ok(w) => Ok(w),
            Err(_) if self.lock.live_writer()?.is_none() => {
                st.last_raw = raw;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The index changes that take the view from `st` to `w`'s durable end;
    /// with `restart_at`, from the first segment at or after it instead (the
    /// writer's retention removed what the view had still to read).
    fn changes_to(
        &self,
        st: &FollowState,
        w: &Watermark,
        restart_at: Option<u64>,
    ) -> Result<(Vec<Change>, Arc<Segment>, u64)> {
        let mut changes = Vec::new();
        let (mut seg, mut offset, mut position) = match st.seg.as_ref().filter(|_| restart_at.is_none()) {
            Some(seg) => (Arc::clone(seg), st.offset, st.next_position),
            None => {
                let seg = self.next_segment(restart_at.and_then(|p| p.checked_sub(1)), w)?;
                changes.push(Change::Segment(Arc::clone(&seg)));
                let first = seg.first_position;
                (seg, HEADER_BYTES, first)
            }
        };
        loop {
            let (stop, end_offset) = if seg.first_position == w.segment_first {
                (w.durable_end, Some(w.end_offset))
            } else if seg.first_position < w.segment_first {
                (self.next_first(seg.first_position)?, None)
            } else {
                let reason = format!(
                    "the watermark's segment starts at {}, before the followed segment {}",
                    w.segment_first, seg.first_position
                );
                return Err(Error::corrupt(self.dir.join(crate::watermark::WATERMARK_NAME), 0, reason));
            };
            let scan = recovery::scan_from(&seg, offset, position, Some(stop));
            // A sparse segment (scavenged) ends at its end position.
            let scanned_end = scan.end_position;
            recovery::check_reached(&seg, &scan, scanned_end, stop, end_offset)?;
            for e in &scan.entries {
                changes.push(Change::Event {
                    aggregate_id: e.aggregate_id.to_string(),
                    version: e.version,
                    position: e.position,
                    offset: e.offset,
                });
            }
            (offset, position) = (scan.end_offset, scanned_end);
            drop(scan);
            if end_offset.is_some() {
                return Ok((changes, seg, offset));
            }
            seg = self.next_segment(Some(seg.first_position), w)?;
            changes.push(Change::Segment(Arc::clone(&seg)));
            offset = HEADER_BYTES;
        }
    }

    /// First position of the segment after the one starting at `first`.
    fn next_first(&self, first: u64) -> Result<u64> {
        let segs = recovery::list_segments(&self.dir, true)?;
        segs.iter().map(|(f, _)| *f).find(|f| *f > first).ok_or_else(|| {
            let path = self.dir.join(segment::file_name(first));
            Error::corrupt(path, 0, "the writer rolled past this segment, but no later segment file exists")
        })
    }

    /// Maps the segment after the one starting at `after` (the first one for `None`).
    fn next_segment(&self, after: Option<u64>, w: &Watermark) -> Result<Arc<Segment>> {
        let segs = recovery::list_segments(&self.dir, true)?;
        let Some((first, path)) = segs.into_iter().find(|(f, _)| after.is_none_or(|a| *f > a)) else {
            return Err(Error::corrupt(&self.dir, 0, "the watermark names a segment that does not exist"));
        };
        if first > w.segment_first {
            return Err(Error::corrupt(&path, 0, "segment files skip the watermark's segment"));
        }
        let seg = Segment::open(path.clone(), None)?;
        if seg.first_position != first {
            let reason = format!("header says first position {}, file name says {first}", seg.first_position);
            return Err(Error::corrupt(&path, 16, reason));
        }
        Ok(Arc::new(seg))
    }
}

impl Follow for Follower {
    fn refresh(&self, shared: &Shared) -> Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        // The writer's lifecycle rules (deletes, metadata, erasures) as they are now.
        let stamp = streams_stamp(&self.dir);
        if stamp != st.streams_seen {
            shared.set_streams(crate::streams::Rules::load(&self.dir)?);
            st.streams_seen = stamp;
        }
        let Some(w) = self.changed_watermark(&mut st)? else { return Ok(()) };
        if w.durable_end <= st.next_position {
            st.last_raw = Some(w.encode());
            return Ok(());
        }
        // The writer's retention removed segments this view has not read to
        // their end: their events are gone. The view goes on from the log's
        // new start (below it, its readers get `BelowRetainedStart`, as the
        // writer's do).
        let log_start = shared.streams().log_start();
        let restart_at = (log_start > st.next_position).then_some(log_start);
        let (changes, seg, offset) = self.changes_to(&st, &w, restart_at)?;
        let mut idx = shared.index_mut();
        idx.set_following();
        let mut new_segments = false;
        for change in changes {
            let applied = match change {
                Change::Segment(seg) => {
                    if restart_at.is_some() && !new_segments {
                        // Every segment of the view lies below the new start.
                        idx.drop_head(seg.first_position);
                    }
                    new_segments = true;
                    idx.push_segment(seg, 0)
                }
                Change::Event { aggregate_id, version, position, offset } => {
                    idx.push(&aggregate_id, version, position, offset)
                }
            };
            applied.map_err(|e| Error::corrupt(&seg.path, offset, format!("followed frames break the index: {e}")))?;
        }
        debug_assert_eq!(idx.next_position(), w.durable_end, "the view ends at the watermark");
        // IMPORTANT: segments first, then the watermarks that make their events visible.
        if new_segments {
            shared.publish_segments(&idx);
        }
        shared.visible_end.store(w.durable_end, Ordering::Release);
        shared.publish_durable(w.durable_end);
        drop(idx);
        (st.seg, st.offset, st.next_position, st.last_raw) = (Some(seg), offset, w.durable_end, Some(w.encode()));
        Ok(())
    }
}

/// The `STREAMS` file's length and modification time (`None`: no file):
/// whether the writer changed the lifecycle rules since they were loaded.
fn streams_stamp(dir: &Path) -> Option<(u64, std::time::SystemTime)> {
    let m = std::fs::metadata(dir.join(crate::streams::STREAMS_NAME)).ok()?;
    Some((m.len(), m.modified().ok()?))
}
