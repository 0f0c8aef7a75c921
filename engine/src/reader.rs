//! The read side: [`Reader`], a consistent view of everything visible when it
//! was made, and its iterators over the global log ([`AllEvents`]) and one
//! aggregate ([`AggregateEvents`]), plus [`Loaded`] for rehydration. Readers
//! never take the writer's path and never block it for longer than an index
//! lookup: they read the memory maps up to the published watermark, so they
//! never see a partial batch, nor (in `Sync` mode) an event not yet durable.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::event::{AsOf, Direction, EventRef};
use crate::filter::Filter;
use crate::index::IndexState;
use crate::segment::{Check, FrameCursor, Segment, HEADER_BYTES};
use crate::shared::Shared;
use crate::snapshot::Snapshot;
use crate::streams::Visibility;
use crate::upcast::{UpcastEvents, Upcasters};

/// A consistent snapshot for zero-copy reads: sees exactly the events that
/// were visible when it was created. Holds the segment maps alive; events
/// borrowed from it are valid as long as it is.
pub struct Reader {
    shared: Arc<Shared>,
    segments: Arc<Vec<Arc<Segment>>>,
    visible_end: u64,
    /// What the aggregates' lifecycle rules hide (`None`: no rule exists).
    vis: Option<Visibility>,
}

impl Reader {
    /// A reader of everything visible now.
    pub(crate) fn new(shared: &Arc<Shared>) -> Reader {
        let visible_end = shared.visible_end.load(std::sync::atomic::Ordering::Acquire);
        let rules = shared.streams();
        let vis = (!rules.hides_nothing()).then(|| Visibility::new(rules, Some(&shared.index()), visible_end));
        Reader { shared: Arc::clone(shared), segments: shared.segments(), visible_end, vis }
    }

    /// Where this reader finds the frame of `position`: the index's place
    /// mapped to this reader's segment slots (retention may have removed
    /// segments before them since). `None` if this reader does not hold it.
    fn place_of(&self, idx: &IndexState, position: u64) -> Option<(usize, u64)> {
        let (i, offset) = idx.locate(position)?;
        let seg = idx.segment(i)?;
        if self.segments.get(i).is_some_and(|mine| Arc::ptr_eq(mine, seg)) {
            return Some((i, offset));
        }
        let j = self.segments.partition_point(|s| s.first_position <= seg.first_position).checked_sub(1)?;
        let mine = self.segments.get(j).filter(|mine| mine.first_position == seg.first_position)?;
        if Arc::ptr_eq(mine, seg) {
            return Some((j, offset));
        }
        // A scavenge rewrote the segment since this reader was made: the
        // index's offsets are the new file's; walk this reader's copy.
        mine.offset_of(position).map(|o| (j, o))
    }

    /// The aggregate's first version still in the log when retention removed
    /// the ones before it and they are not hidden by its own rules anyway,
    /// and `from_version` is below it: the events a fold from `from_version`
    /// would silently miss.
    pub(crate) fn removed_before(&self, aggregate_id: &str, from_version: u64) -> Option<u64> {
        let rules = self.shared.streams();
        let indexed = self.shared.index().positions(aggregate_id).filter(|v| !v.is_empty()).map(|v| v.base());
        // No event of it left: its version floor says how far its removed events went.
        let base = indexed.or_else(|| rules.version_floor(aggregate_id))?;
        let hidden_to = self.vis.as_ref().map_or(0, |v| v.first_version(aggregate_id));
        // `max_age` hides (and a scavenge removes) event by event: its own rule explains the gap.
        let by_age = rules.get(aggregate_id).is_some_and(|s| s.meta.max_age.is_some());
        // Only retention removes what a fold still needs (a scavenge removes what the rules hid).
        let retained = rules.log_start() > 0 || self.shared.index().first_position() > 0;
        (from_version < base && hidden_to < base && !by_age && retained).then_some(base)
    }

    /// Whether the aggregates' lifecycle rules hide anything from this reader.
    pub(crate) fn hides_any(&self) -> bool {
        self.vis.as_ref().is_some_and(|v| !v.is_empty())
    }

    /// The first version of the aggregate this reader's rules let through
    /// (before `max_age`, which hides event by event).
    pub(crate) fn first_visible_version(&self, aggregate_id: &str) -> u64 {
        self.vis.as_ref().map_or(0, |v| v.first_version(aggregate_id))
    }

    /// Whether the lifecycle rules hide this event from this reader (what a
    /// scavenge removes).
    pub(crate) fn hides(&self, e: &crate::event::Envelope<'_>) -> bool {
        self.hidden(e)
    }

    /// Whether this reader hides the event with this envelope.
    #[inline]
    fn hidden(&self, e: &crate::event::Envelope<'_>) -> bool {
        self.vis.as_ref().is_some_and(|v| v.hides(e.aggregate_id(), e.version(), e.recorded_at()))
    }

    /// Whether a soft delete (or a hard one) hides the aggregate's events up
    /// to `version`: its snapshots at or below it are not used.
    pub(crate) fn deleted_through(&self, aggregate_id: &str, version: u64) -> bool {
        self.vis.as_ref().is_some_and(|v| v.deleted_through(aggregate_id, version))
    }

    /// The segment maps this reader holds, in log order.
    pub(crate) fn segments(&self) -> &[Arc<Segment>] {
        &self.segments
    }

    /// Position of the first event the log holds (0 until retention removes
    /// segments from its head).
    pub fn first_position(&self) -> u64 {
        self.segments.first().map_or(0, |s| s.first_position)
    }

    /// One past the last position this reader sees.
    pub fn end_position(&self) -> u64 {
        self.visible_end
    }

    /// Events from `from_position` on, in global order.
    ///
    /// From below the log's first retained position (retention removed the
    /// events there) the walk yields [`Error::BelowRetainedStart`] and ends,
    /// unless `Retention::clamp_reads_below_start` makes it start there.
    pub fn read_all(&self, from_position: u64) -> AllEvents<'_> {
        let first = self.first_position();
        let position = from_position.max(first);
        let mut it = AllEvents::new(self, self.visible_end);
        if from_position < first && !self.shared.clamp_below_start.load(std::sync::atomic::Ordering::Relaxed) {
            it.error = Some(Error::BelowRetainedStart { position: from_position, first_retained: first });
            return it;
        }
        if position < self.visible_end {
            let idx = self.shared.index();
            let place = self.place_of(&idx, position);
            let index_first = idx.first_position();
            drop(idx);
            let started = match place {
                Some((seg, offset)) => it.start(seg, offset, position),
                // Retention removed it after this reader was made.
                None if position < index_first => {
                    Err(Error::BelowRetainedStart { position, first_retained: index_first })
                }
                None => Err(Error::InvalidInput(format!("position {position} is not indexed"))),
            };
            if let Err(e) = started {
                it.error = Some(e);
            }
        }
        it
    }

    /// Events from `place` on (a place an earlier walk of this log reported
    /// with [`AllEvents::place`]), without an index lookup: how a
    /// subscription continues batch after batch without taking the index
    /// lock the writer publishes under. Falls back to [`Reader::read_all`]
    /// when the place does not fit this reader's segments.
    pub(crate) fn read_all_from(&self, place: Place) -> AllEvents<'_> {
        // The same map (a scavenge may have rewritten the segment since, at other offsets).
        let fits =
            self.segments.get(place.seg).is_some_and(|s| s.id == place.seg_id && s.first_position <= place.position)
                && place.position >= self.first_position();
        if !fits {
            return self.read_all(place.position);
        }
        let mut it = AllEvents::new(self, self.visible_end);
        if let Err(e) = it.start(place.seg, place.offset, place.position) {
            it.error = Some(e);
        }
        it
    }

    /// Events from `from_position` on that pass `filter`, in global order.
    /// A skipped event's envelope is checked (its checksum) but its payload
    /// is never read.
    pub fn read_all_filtered<'r>(&'r self, from_position: u64, filter: &'r Filter) -> FilteredEvents<'r> {
        FilteredEvents { all: self.read_all(from_position), filter }
    }

    /// Events of one aggregate from `from_version`, forwards or backwards.
    pub fn read_aggregate<'r>(
        &'r self,
        aggregate_id: &str,
        from_version: u64,
        direction: Direction,
    ) -> AggregateEvents<'r> {
        self.read_aggregate_until(aggregate_id, from_version, u64::MAX, direction)
    }

    /// Events of one aggregate from `from_version`, considering only versions
    /// up to and including `until_version` (time travel by version).
    pub fn read_aggregate_until<'r>(
        &'r self,
        aggregate_id: &str,
        from_version: u64,
        until_version: u64,
        direction: Direction,
    ) -> AggregateEvents<'r> {
        let first = self.vis.as_ref().map_or(0, |v| v.first_version(aggregate_id));
        let idx = self.shared.index();
        let mut places = Vec::new();
        let mut error = None;
        if let Some(positions) = idx.positions(aggregate_id) {
            let base = positions.base();
            // Versions retention removed (not hidden by the aggregate's own
            // rules) that the read would start in: told, unless clamped.
            let wanted = match direction {
                Direction::Forward => from_version.max(first),
                Direction::Backward => first,
            };
            let clamp = self.shared.clamp_below_start.load(std::sync::atomic::Ordering::Relaxed);
            // Only retention removes what a reader still wants (a scavenge
            // removes what the aggregate's own rules hid or hide).
            let retained = idx.first_position() > 0;
            if wanted < base && retained && !clamp && !self.vis.as_ref().is_some_and(|v| v.ages(aggregate_id)) {
                error = Some(Error::AggregateTruncated { aggregate_id: aggregate_id.to_string(), first_version: base });
            }
            let first = first.max(base);
            let visible = positions.end_below(self.visible_end);
            let n = visible.min(until_version.saturating_add(1));
            // One walk over the aggregate's runs for the whole range.
            let found: Box<dyn Iterator<Item = u64>> = match direction {
                _ if first >= n => Box::new(std::iter::empty()),
                Direction::Forward => Box::new(positions.positions(from_version.max(first).min(n), n).into_iter()),
                Direction::Backward if from_version < first => Box::new(std::iter::empty()),
                Direction::Backward => {
                    let top = from_version.min(n - 1);
                    let found = positions.positions(first, top + 1);
                    // A version missing below the top: none from the top down to it.
                    let complete = found.len() as u64 == top + 1 - first;
                    Box::new(found.into_iter().rev().take(if complete { usize::MAX } else { 0 }))
                }
            };
            places.reserve(found.size_hint().0.min(1 << 20));
            for position in found {
                match self.place_of(&idx, position) {
                    Some((seg, offset)) => places.push((seg as u32, offset, position)),
                    None => break,
                }
            }
        }
        AggregateEvents { reader: self, places: places.into_iter(), error }
    }

    /// Events from `from_position` up to and including the point `as_of`, in
    /// global order: rebuild a projection as of a moment.
    pub fn read_all_until(&self, from_position: u64, as_of: AsOf) -> Result<AllEvents<'_>> {
        let end = match self.position_of(as_of)? {
            Some(p) => p + 1,
            None => 0,
        };
        let mut it = self.read_all(from_position.min(end));
        it.end = end.min(self.visible_end);
        Ok(it)
    }

    /// The last position at or before `as_of` that this reader sees, `None`
    /// if there is none.
    pub fn position_of(&self, as_of: AsOf) -> Result<Option<u64>> {
        let first = self.first_position();
        let last = match self.visible_end.checked_sub(1).filter(|l| *l >= first) {
            Some(l) => l,
            None => return Ok(None),
        };
        match as_of {
            AsOf::Position(p) if p < first => Ok(None),
            AsOf::Position(p) => Ok(Some(p.min(last))),
            AsOf::Version(v) => Err(Error::InvalidInput(format!(
                "AsOf::Version({v}) names a version of one aggregate; the log-wide position needs a position or a time"
            ))),
            AsOf::RecordedAt(t) => {
                // recorded_at is non-decreasing along the log: binary search.
                // A removed or hidden position counts as the next event's.
                let (mut lo, mut hi) = (first, last + 1);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    let at = match self.read_all(mid).next() {
                        Some(e) => e?.recorded_at(),
                        None => i64::MAX,
                    };
                    if at <= t {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                Ok(lo.checked_sub(1).filter(|p| *p >= first))
            }
        }
    }

    /// The event at a global position this reader sees.
    pub fn event_at_position(&self, position: u64) -> Result<EventRef<'_>> {
        if position >= self.visible_end {
            return Err(Error::InvalidInput(format!(
                "position {position} is not in the log (end {})",
                self.visible_end
            )));
        }
        let mut it = self.read_all(position);
        it.end = position + 1;
        match it.next() {
            Some(Ok(e)) if e.position() == position => Ok(e),
            Some(Err(e)) => Err(e),
            _ => Err(Error::EventRemoved { position }),
        }
    }

    /// The position of the aggregate's event at `version`, or of its last
    /// visible event when `version` is beyond it; `None` if it has none.
    pub fn position_of_version(&self, aggregate_id: &str, version: u64) -> Option<u64> {
        let idx = self.shared.index();
        let positions = idx.positions(aggregate_id)?;
        let last = positions.end_below(self.visible_end).checked_sub(1)?;
        positions.position(version.min(last))
    }

    /// The aggregates whose id starts with `prefix` that have events this
    /// reader sees, sorted by id. Holds the index lock while it copies the ids.
    pub fn aggregates(&self, prefix: &str) -> Vec<AggregateInfo> {
        let idx = self.shared.index();
        let mut out: Vec<AggregateInfo> = idx
            .aggregates()
            .filter(|(id, _)| id.starts_with(prefix))
            .filter_map(|(id, positions)| {
                let events = positions.end_below(self.visible_end);
                let last_position = positions.position(events.checked_sub(1)?)?;
                let first_version = self.vis.as_ref().map_or(0, |v| v.first_version(id)).max(positions.base());
                if first_version >= events {
                    return None;
                }
                Some(AggregateInfo { aggregate_id: id.to_string(), version: events - 1, first_version, last_position })
            })
            .collect();
        drop(idx);
        out.sort_by(|a, b| a.aggregate_id.cmp(&b.aggregate_id));
        out
    }

    /// Bytes of log the frames of positions `from..to` take (clamped to what
    /// this reader sees): how far behind a consumer at `from` is.
    pub(crate) fn log_bytes_between(&self, from: u64, to: u64) -> u64 {
        let from = from.max(self.first_position());
        let to = to.min(self.visible_end);
        if from >= to {
            return 0;
        }
        let idx = self.shared.index();
        let (Some((first_seg, first_off)), Some((last_seg, last_off))) = (idx.locate(from), idx.locate(to - 1)) else {
            return 0;
        };
        let frame_end = |seg: usize, off: u64| self.segments.get(seg).map_or(off, |s| s.frame_end(off));
        let ends: Vec<Option<u32>> = idx.last_offsets().map(|(_, last)| last).collect();
        let mut bytes = 0;
        for seg in first_seg..=last_seg {
            let start = if seg == first_seg { first_off } else { HEADER_BYTES };
            let end = if seg == last_seg {
                frame_end(seg, last_off)
            } else {
                ends.get(seg).copied().flatten().map_or(start, |o| frame_end(seg, u64::from(o)))
            };
            bytes += end.saturating_sub(start);
        }
        bytes
    }

    /// The aggregate's last version whose position is at or before `position`.
    pub fn version_at(&self, aggregate_id: &str, position: u64) -> Option<u64> {
        let idx = self.shared.index();
        let positions = idx.positions(aggregate_id)?;
        let bound = position.saturating_add(1).min(self.visible_end);
        positions.end_below(bound).checked_sub(1)
    }
}

/// An aggregate ready to rehydrate: fold `snapshot` (if any), then `events()`.
pub struct Loaded {
    /// The newest snapshot at or before the point loaded, decompressed.
    pub snapshot: Option<Snapshot>,
    reader: Reader,
    aggregate_id: String,
    from_version: u64,
    until_version: Option<u64>,
}

impl Loaded {
    /// The events of `aggregate_id` from `from_version` up to `until_version`
    /// (`None`: none), after `snapshot`.
    pub(crate) fn new(
        snapshot: Option<Snapshot>,
        reader: Reader,
        aggregate_id: &str,
        from_version: u64,
        until_version: Option<u64>,
    ) -> Loaded {
        Loaded { snapshot, reader, aggregate_id: aggregate_id.to_string(), from_version, until_version }
    }

    /// The events after the snapshot (all events if there is none), zero-copy.
    pub fn events(&self) -> AggregateEvents<'_> {
        match self.until_version {
            Some(until) => {
                self.reader.read_aggregate_until(&self.aggregate_id, self.from_version, until, Direction::Forward)
            }
            None => AggregateEvents { reader: &self.reader, places: Vec::new().into_iter(), error: None },
        }
    }

    /// The aggregate's version at the point loaded (`None`: no events yet).
    pub fn version(&self) -> Option<u64> {
        self.until_version
    }
}

impl Loaded {
    /// [`Loaded::events`], each upcast by `upcasters` (the store's are
    /// [`crate::Store::upcasters`]): zero-copy where none applies.
    pub fn upcast_events<'l>(&'l self, upcasters: &'l Upcasters) -> UpcastEvents<'l, AggregateEvents<'l>> {
        upcasters.events(self.events())
    }
}

/// Iterator over the global log; see [`Reader::read_all`].
pub struct AllEvents<'r> {
    reader: &'r Reader,
    /// Slot of the segment being read.
    seg: usize,
    /// First position of the segment after it (`u64::MAX`: none).
    next_first: u64,
    /// The walk of that segment's frames; `None` once the log ended.
    frames: Option<FrameCursor<'r>>,
    end: u64,
    /// An error to report from the next call, then stop.
    error: Option<Error>,
}

/// Where a walk of the global log stands: the next position and the byte
/// offset of its frame in segment slot `seg` (the offset where it will be
/// written, if it is not yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Place {
    pub seg: usize,
    /// The [`Segment::id`] of that segment's map.
    pub seg_id: u64,
    pub offset: u64,
    pub position: u64,
}

impl<'r> AllEvents<'r> {
    /// The same walk, ending before position `end` (if that is sooner).
    pub(crate) fn stop_at(mut self, end: u64) -> AllEvents<'r> {
        self.end = self.end.min(end);
        self
    }

    /// Where the walk stands now (`None` once it ended on an error).
    pub(crate) fn place(&self) -> Option<Place> {
        let frames = self.frames.as_ref()?;
        let seg_id = self.reader.segments.get(self.seg)?.id;
        Some(Place { seg: self.seg, seg_id, offset: frames.offset(), position: frames.position() })
    }

    fn new(reader: &'r Reader, end: u64) -> AllEvents<'r> {
        AllEvents { reader, seg: 0, next_first: u64::MAX, frames: None, end, error: None }
    }

    /// Starts the walk in segment slot `seg` at `offset`, the frame of `position`.
    fn start(&mut self, seg: usize, offset: u64, position: u64) -> Result<()> {
        let segs = &self.reader.segments;
        let segment = segs.get(seg).ok_or_else(|| Error::InvalidInput(format!("position {position} is not mapped")))?;
        self.seg = seg;
        self.next_first = segs.get(seg + 1).map_or(u64::MAX, |s| s.first_position);
        self.frames = Some(segment.frames(offset, position, Check::Trusted)?);
        Ok(())
    }

    /// Moves the walk into the next segment when it reached it; `None` at the
    /// walk's end.
    #[inline]
    fn advance(&mut self) -> Option<Result<&mut FrameCursor<'r>>> {
        let position = self.frames.as_ref()?.position();
        if position >= self.end {
            return None;
        }
        if position >= self.next_first {
            if let Err(e) = self.start(self.seg + 1, HEADER_BYTES, position) {
                return Some(Err(e));
            }
        }
        self.frames.as_mut().map(Ok)
    }

    fn step(&mut self) -> Option<Result<EventRef<'r>>> {
        loop {
            let frames = match self.advance()? {
                Ok(frames) => frames,
                Err(e) => return Some(Err(e)),
            };
            if let Some(event) = frames.next_trusted() {
                return Some(Ok(event));
            }
            // Unfiltered, a step skips only the removed tail of a sparse segment.
            match self.slow_step(None)? {
                Ok(Some(event)) => return Some(Ok(event)),
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// [`AllEvents::step`] past the events the lifecycle rules hide.
    #[cold]
    fn step_visible(&mut self) -> Option<Result<EventRef<'r>>> {
        loop {
            match self.next_filtered(&Filter::all())? {
                Ok(Some(e)) => return Some(Ok(e)),
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// The next event of the walk that passes `filter`: `Ok(None)` for one it
    /// skipped, whose payload it never read.
    #[inline]
    pub(crate) fn next_filtered(&mut self, filter: &Filter) -> Option<Result<Option<EventRef<'r>>>> {
        if let Some(e) = self.error.take() {
            self.frames = None;
            return Some(Err(e));
        }
        let (reader, end) = (self.reader, self.end);
        let frames = match self.advance()? {
            Ok(frames) => frames,
            Err(e) => {
                self.frames = None;
                return Some(Err(e));
            }
        };
        if let Some(found) = frames.next_trusted_kept(|e| !reader.hidden(e) && filter.matches(e)) {
            // A sparse segment's next frame may lie past the walk's end.
            if found.is_some_and(|e| e.position() >= end) {
                self.frames = None;
                return None;
            }
            return Some(Ok(found));
        }
        let r = self.slow_step(Some(filter));
        match &r {
            Some(Err(_)) => self.frames = None,
            Some(Ok(Some(e))) if e.position() >= end => {
                self.frames = None;
                return None;
            }
            _ => {}
        }
        r
    }

    /// The position the walk examines next.
    pub(crate) fn next_position(&self) -> Option<u64> {
        self.frames.as_ref().map(|f| f.position())
    }

    /// A step off the fast path: the frame is checked in full, or what is
    /// wrong with it is reported.
    #[cold]
    fn slow_step(&mut self, filter: Option<&Filter>) -> Option<Result<Option<EventRef<'r>>>> {
        let frames = self.frames.as_mut()?;
        let offset = frames.offset();
        match frames.next_frame() {
            Ok(Some(f)) => Some(Ok(
                Some(f.event).filter(|e| !self.reader.hidden(e) && filter.is_none_or(|filter| filter.matches(e)))
            )),
            // A sparse segment's frames ended: the positions after them were removed.
            Ok(None) if frames.position() >= self.next_first => Some(Ok(None)),
            Ok(None) => Some(Err(self.corrupt(offset, "log ends before the visible watermark".into()))),
            Err(e) => Some(Err(self.corrupt(offset, e.to_string()))),
        }
    }

    fn corrupt(&self, offset: u64, reason: String) -> Error {
        match self.reader.segments.get(self.seg) {
            Some(seg) => Error::corrupt(&seg.path, offset, reason),
            None => Error::InvalidInput(reason),
        }
    }
}

impl<'r> Iterator for AllEvents<'r> {
    type Item = Result<EventRef<'r>>;
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.error.take() {
            self.frames = None;
            return Some(Err(e));
        }
        if self.reader.vis.is_some() {
            return self.step_visible();
        }
        let r = self.step();
        match &r {
            Some(Err(_)) => self.frames = None,
            // A sparse segment's next frame may lie past the walk's end.
            Some(Ok(e)) if e.position() >= self.end => {
                self.frames = None;
                return None;
            }
            _ => {}
        }
        r
    }
}

/// Iterator over the events of the global log that pass a filter; see
/// [`Reader::read_all_filtered`].
pub struct FilteredEvents<'r> {
    all: AllEvents<'r>,
    filter: &'r Filter,
}

impl<'r> Iterator for FilteredEvents<'r> {
    type Item = Result<EventRef<'r>>;
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.all.next_filtered(self.filter)? {
                Ok(Some(event)) => return Some(Ok(event)),
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// Iterator over one aggregate; see [`Reader::read_aggregate`].
pub struct AggregateEvents<'r> {
    reader: &'r Reader,
    places: std::vec::IntoIter<(u32, u64, u64)>,
    /// Reported first, then the walk ends.
    error: Option<Error>,
}

impl<'r> Iterator for AggregateEvents<'r> {
    type Item = Result<EventRef<'r>>;
    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.error.take() {
            self.places = Vec::new().into_iter();
            return Some(Err(e));
        }
        loop {
            let (seg, offset, position) = self.places.next()?;
            let seg = self.reader.segments.get(seg as usize)?;
            let r = seg.event_at(offset, position).map(|(e, _)| e);
            // `max_age` hides a prefix of the versions, found event by event.
            if matches!(&r, Ok(e) if self.reader.hidden(e)) {
                continue;
            }
            return Some(r);
        }
    }
}

/// An aggregate as listed by [`Reader::aggregates`]. Its versions are dense
/// from `first_version` to `version` (removed and hidden versions come
/// first): [`AggregateInfo::events`] of them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AggregateInfo {
    /// Its id.
    pub aggregate_id: String,
    /// Its current version (visible to the reader).
    pub version: u64,
    /// Its first version the reader sees: 0 unless deletes, stream metadata
    /// (`truncate_before`, `max_count`) or retention removed or hide the
    /// ones before (`max_age` hides event by event and is not counted here).
    pub first_version: u64,
    /// Position of its last event.
    pub last_position: u64,
}

impl AggregateInfo {
    /// The events of it the reader sees (`version - first_version + 1`;
    /// `max_age` aside).
    pub fn events(&self) -> u64 {
        self.version - self.first_version + 1
    }
}
