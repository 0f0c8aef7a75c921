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
use crate::segment::{Check, FrameCursor, Segment, HEADER_BYTES};
use crate::shared::Shared;
use crate::snapshot::Snapshot;
use crate::upcast::{UpcastEvents, Upcasters};

/// A consistent snapshot for zero-copy reads: sees exactly the events that
/// were visible when it was created. Holds the segment maps alive; events
/// borrowed from it are valid as long as it is.
pub struct Reader {
    shared: Arc<Shared>,
    segments: Arc<Vec<Arc<Segment>>>,
    visible_end: u64,
}

impl Reader {
    /// A reader of everything visible now.
    pub(crate) fn new(shared: &Arc<Shared>) -> Reader {
        let visible_end = shared.visible_end.load(std::sync::atomic::Ordering::Acquire);
        Reader { shared: Arc::clone(shared), segments: shared.segments(), visible_end }
    }

    /// The segment maps this reader holds, in log order.
    pub(crate) fn segments(&self) -> &[Arc<Segment>] {
        &self.segments
    }

    /// Position of the first event the log holds.
    pub(crate) fn first_position(&self) -> u64 {
        self.segments.first().map_or(0, |s| s.first_position)
    }

    /// One past the last position this reader sees.
    pub fn end_position(&self) -> u64 {
        self.visible_end
    }

    /// Events from `from_position` on, in global order.
    pub fn read_all(&self, from_position: u64) -> AllEvents<'_> {
        let position = from_position.max(self.first_position());
        let mut it = AllEvents::new(self, self.visible_end);
        if position < self.visible_end {
            let place = self.shared.index().locate(position);
            let started = match place {
                Some((seg, offset)) => it.start(seg, offset, position),
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
        let fits = self.segments.get(place.seg).is_some_and(|s| s.first_position <= place.position)
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
        let idx = self.shared.index();
        let mut places = Vec::new();
        if let Some(positions) = idx.positions(aggregate_id) {
            let visible = positions.partition_point(|p| *p < self.visible_end) as u64;
            let n = visible.min(until_version.saturating_add(1));
            let versions: Box<dyn Iterator<Item = u64>> = match direction {
                Direction::Forward => Box::new(from_version.min(n)..n),
                Direction::Backward if n == 0 => Box::new(0..0),
                Direction::Backward => Box::new((0..=from_version.min(n - 1)).rev()),
            };
            places.reserve(versions.size_hint().0.min(1 << 20));
            for v in versions {
                let position = positions[v as usize];
                match idx.locate(position) {
                    Some((seg, offset)) => places.push((seg as u32, offset, position)),
                    None => break,
                }
            }
        }
        AggregateEvents { reader: self, places: places.into_iter() }
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
                let (mut lo, mut hi) = (first, last + 1);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    let at = self.event_at_position(mid)?.recorded_at();
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
        let mut it = self.read_all(position);
        it.end = (position + 1).min(self.visible_end);
        match it.next() {
            Some(r) => r,
            None => {
                Err(Error::InvalidInput(format!("position {position} is not in the log (end {})", self.visible_end)))
            }
        }
    }

    /// The position of the aggregate's event at `version`, or of its last
    /// visible event when `version` is beyond it; `None` if it has none.
    pub fn position_of_version(&self, aggregate_id: &str, version: u64) -> Option<u64> {
        let idx = self.shared.index();
        let positions = idx.positions(aggregate_id)?;
        let visible = positions.partition_point(|p| *p < self.visible_end);
        let v = usize::try_from(version).unwrap_or(usize::MAX).min(visible.checked_sub(1)?);
        positions.get(v).copied()
    }

    /// The aggregates whose id starts with `prefix` that have events this
    /// reader sees, sorted by id. Holds the index lock while it copies the ids.
    pub fn aggregates(&self, prefix: &str) -> Vec<AggregateInfo> {
        let idx = self.shared.index();
        let mut out: Vec<AggregateInfo> = idx
            .aggregates()
            .filter(|(id, _)| id.starts_with(prefix))
            .filter_map(|(id, positions)| {
                let events = positions.partition_point(|p| *p < self.visible_end) as u64;
                let last_position = *positions.get(usize::try_from(events.checked_sub(1)?).ok()?)?;
                Some(AggregateInfo { aggregate_id: id.to_string(), version: events - 1, last_position })
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
        (positions.partition_point(|p| *p < bound) as u64).checked_sub(1)
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
            None => AggregateEvents { reader: &self.reader, places: Vec::new().into_iter() },
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
        Some(Place { seg: self.seg, offset: frames.offset(), position: frames.position() })
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
        let frames = match self.advance()? {
            Ok(frames) => frames,
            Err(e) => return Some(Err(e)),
        };
        if let Some(event) = frames.next_trusted() {
            return Some(Ok(event));
        }
        // Unfiltered, a step never skips: `Ok(None)` does not occur.
        self.slow_step(None)?.transpose()
    }

    /// The next event of the walk that passes `filter`: `Ok(None)` for one it
    /// skipped, whose payload it never read.
    #[inline]
    pub(crate) fn next_filtered(&mut self, filter: &Filter) -> Option<Result<Option<EventRef<'r>>>> {
        if let Some(e) = self.error.take() {
            self.frames = None;
            return Some(Err(e));
        }
        let frames = match self.advance()? {
            Ok(frames) => frames,
            Err(e) => {
                self.frames = None;
                return Some(Err(e));
            }
        };
        if let Some(found) = frames.next_trusted_kept(|e| filter.matches(e)) {
            return Some(Ok(found));
        }
        let r = self.slow_step(Some(filter));
        if matches!(r, Some(Err(_))) {
            self.frames = None;
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
            Ok(Some(f)) => Some(Ok(Some(f.event).filter(|e| filter.is_none_or(|filter| filter.matches(e))))),
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
        let r = self.step();
        if matches!(r, Some(Err(_))) {
            self.frames = None;
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
}

impl<'r> Iterator for AggregateEvents<'r> {
    type Item = Result<EventRef<'r>>;
    fn next(&mut self) -> Option<Self::Item> {
        let (seg, offset, position) = self.places.next()?;
        let seg = self.reader.segments.get(seg as usize)?;
        Some(seg.event_at(offset, position).map(|(e, _)| e))
    }
}

/// An aggregate as listed by [`Reader::aggregates`]. Versions are dense, so
/// it has `version + 1` events.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AggregateInfo {
    /// Its id.
    pub aggregate_id: String,
    /// Its current version (visible to the reader).
    pub version: u64,
    /// Position of its last event.
    pub last_position: u64,
}
