"""factlog: an embedded, log-structured event store.

Open one with ``factlog.Store(path)``, append ``factlog.Event`` objects to aggregates with optimistic
concurrency, and read them back as ``factlog.RecordedEvent`` objects. Every call that touches the disk
or waits for the writer releases the GIL, so threads appending at once share fsyncs (group commit).
"""

import os
import pathlib
import uuid
from types import TracebackType
from typing import Any, Iterable, Iterator, List, Optional, Tuple, Type, Union, final

__all__ = [
    "__version__", "Store", "Event", "RecordedEvent", "AppendResult", "ExpectedVersion", "EventIterator",
    "Snapshot", "SnapshotInfo", "Loaded", "Subscription", "Consumer", "Stats", "VerifyReport", "Problem",
    "ConsumerInfo", "ANY", "NO_STREAM", "STREAM_EXISTS", "Error", "WrongExpectedVersion", "DuplicateEventId",
    "InvalidInput", "EventTooLarge", "SnapshotAhead", "InvalidOptions", "PastEnd", "NotParked", "Corrupt",
    "UnsupportedFormat", "NotAStore", "Locked", "ConsumerLocked", "NoSpace", "IoError", "Poisoned",
    "ReadOnly", "Closed", "UnknownConsumer",
]

__version__: str

_Payload = Union[bytes, bytearray, memoryview, Any]
"""Event data, metadata or snapshot state: bytes as they are; any other value is stored as its
compact JSON text (``json.dumps``), so a ``str`` becomes a JSON string."""

_Id = Union[uuid.UUID, str]
"""An event, causation or correlation id: a ``uuid.UUID`` or its text."""

@final
class ExpectedVersion:
    """What an append expects of its aggregate, when not an exact version (an ``int``)."""

    ANY: "ExpectedVersion"
    """No check."""
    NO_STREAM: "ExpectedVersion"
    """The aggregate must have no events yet."""
    STREAM_EXISTS: "ExpectedVersion"
    """The aggregate must have at least one event."""

ANY: ExpectedVersion
"""``expected_version``: no check (the default)."""
NO_STREAM: ExpectedVersion
"""``expected_version``: the aggregate must have no events yet."""
STREAM_EXISTS: ExpectedVersion
"""``expected_version``: the aggregate must have at least one event."""

@final
class Event:
    """An event to append. Immutable once made.

    ``data`` and ``metadata`` are bytes, or any value ``json.dumps`` accepts, stored as its compact
    UTF-8 JSON text (a ``str`` is stored as a JSON string: pass ``text.encode()`` to store JSON text
    you already have). ``event_id`` is made (a time-ordered UUID, version 7) when omitted; appending
    the same ids again at the same place is an idempotent retry. ``occurred_at`` is unix nanoseconds,
    now when omitted.
    """

    def __new__(
        cls,
        type: str,
        data: _Payload,
        event_id: Optional[_Id] = None,
        metadata: Optional[_Payload] = None,
        causation_id: Optional[_Id] = None,
        correlation_id: Optional[_Id] = None,
        event_version: int = 1,
        occurred_at: Optional[int] = None,
    ) -> "Event": ...
    @property
    def event_type(self) -> str:
        """The event type name (1 to 255 bytes of UTF-8)."""
    @property
    def type(self) -> str:
        """The same as ``event_type``."""
    @property
    def data(self) -> bytes:
        """The payload bytes."""
    @property
    def event_id(self) -> uuid.UUID:
        """The event's unique id."""
    @property
    def metadata(self) -> bytes:
        """The metadata bytes (empty when none was given)."""
    @property
    def causation_id(self) -> Optional[uuid.UUID]:
        """The id of the event or command that caused this one."""
    @property
    def correlation_id(self) -> Optional[uuid.UUID]:
        """The id of the conversation this event belongs to."""
    @property
    def event_version(self) -> int:
        """The schema version of ``data``."""
    @property
    def occurred_at(self) -> int:
        """When it happened, unix nanoseconds (the caller's clock)."""
    def json(self) -> Any:
        """``data`` decoded with ``json.loads``."""

@final
class RecordedEvent:
    """A stored event, as reads, subscriptions and consumers return it. Its fields are those of the
    ``factlog read`` JSON lines. Immutable; equal to another copy of the same stored event."""

    @property
    def event_id(self) -> uuid.UUID:
        """The event's unique id."""
    @property
    def aggregate_id(self) -> str:
        """The aggregate it belongs to."""
    @property
    def version(self) -> int:
        """Its version within the aggregate (dense, from 0)."""
    @property
    def position(self) -> int:
        """Its global position in the log (dense, from 0, never renumbered)."""
    @property
    def event_type(self) -> str:
        """The event type name."""
    @property
    def event_version(self) -> int:
        """The schema version of ``data``."""
    @property
    def occurred_at(self) -> int:
        """When it happened (the appender's clock), unix nanoseconds."""
    @property
    def recorded_at(self) -> int:
        """When the engine wrote it, unix nanoseconds (never decreases along the log)."""
    @property
    def causation_id(self) -> Optional[uuid.UUID]:
        """The causing event or command, or None."""
    @property
    def correlation_id(self) -> Optional[uuid.UUID]:
        """The correlation id, or None."""
    @property
    def metadata(self) -> bytes:
        """The metadata bytes (empty when there is none)."""
    @property
    def data(self) -> bytes:
        """The payload bytes."""
    def json(self) -> Any:
        """``data`` decoded with ``json.loads`` (raises ``json.JSONDecodeError`` when it is not JSON)."""
    def metadata_json(self) -> Any:
        """``metadata`` decoded with ``json.loads``, or None when there is no metadata."""

@final
class AppendResult:
    """What an append wrote (or, for an idempotent retry, had written before)."""

    @property
    def first_version(self) -> int:
        """Version of the batch's first event."""
    @property
    def last_version(self) -> int:
        """Version of its last event: the aggregate's version after the append."""
    @property
    def first_position(self) -> int:
        """Global position of the first event."""
    @property
    def last_position(self) -> int:
        """Global position of the last event."""
    @property
    def deduplicated(self) -> bool:
        """True when every event was already stored at exactly this place and nothing was written."""
    @property
    def snapshot_due(self) -> bool:
        """True when the store's ``snapshot_every`` says it is time to save a snapshot."""

@final
class EventIterator(Iterator[RecordedEvent]):
    """Events of a read, over a consistent view of the store (the events visible when the read
    began). Raises ``Closed`` once the store is closed, ``Corrupt`` where a stored event fails its
    check."""

    def __iter__(self) -> "EventIterator": ...
    def __next__(self) -> RecordedEvent: ...

@final
class Snapshot:
    """A saved aggregate state, decompressed."""

    @property
    def aggregate_id(self) -> str:
        """The aggregate."""
    @property
    def version(self) -> int:
        """The aggregate version the state reflects (its events ``0..=version`` folded)."""
    @property
    def schema_version(self) -> int:
        """The caller's schema version of the state."""
    @property
    def taken_at(self) -> int:
        """When it was saved, unix nanoseconds."""
    @property
    def data(self) -> bytes:
        """The state bytes."""
    def json(self) -> Any:
        """``data`` decoded with ``json.loads``."""

@final
class SnapshotInfo:
    """What ``save_snapshot`` wrote."""

    @property
    def raw_bytes(self) -> int:
        """Bytes of the state, uncompressed."""
    @property
    def stored_bytes(self) -> int:
        """Bytes on disk, frame included."""
    @property
    def payload_bytes(self) -> int:
        """Bytes of the stored payload (compressed, or raw when that is smaller)."""

@final
class Loaded:
    """An aggregate ready to rehydrate: fold ``snapshot`` (when not None), then ``events()``."""

    @property
    def snapshot(self) -> Optional[Snapshot]:
        """The newest kept snapshot at or before the point loaded."""
    @property
    def version(self) -> Optional[int]:
        """The aggregate's version at the point loaded (None: it had no events then)."""
    def events(self) -> EventIterator:
        """The events after the snapshot (all of them when there is none) up to the point loaded."""

@final
class Stats:
    """Counters and sizes of a store."""

    events: int
    """Visible events."""
    aggregates: int
    """Aggregates with at least one event."""
    segments: int
    """Segment files."""
    segment_file_bytes: int
    """Bytes of segment files on disk (preallocated size)."""
    log_bytes: int
    """Bytes of those files holding frames (headers included)."""
    index_bytes: int
    """Approximate heap bytes of the in-memory index."""
    index_file_bytes: int
    """Bytes of index checkpoint files."""
    fsyncs: int
    """fdatasync calls made by the writer since the store was opened."""
    group_commits: int
    """Group commits made by the writer since the store was opened."""
    snapshot_files: int
    """Snapshot files."""
    snapshots: int
    """Snapshots kept."""
    snapshot_bytes: int
    """Bytes of snapshot files."""
    snapshot_dictionaries: int
    """Trained snapshot dictionaries."""

@final
class Problem:
    """One thing ``verify`` found wrong."""

    path: str
    """The file."""
    offset: int
    """Byte offset in it."""
    reason: str
    """What is wrong."""

@final
class VerifyReport:
    """What ``Store.verify()`` checked and found."""

    events: int
    """Events whose frames were checked."""
    aggregates: int
    """Aggregates in the index."""
    segments: int
    """Segment files."""
    checkpoints: int
    """Index checkpoint files compared with their segment."""
    snapshots: int
    """Snapshot records decoded."""
    problems: List[Problem]
    """Everything wrong, in log order (empty when the store is sound)."""
    @property
    def ok(self) -> bool:
        """True when ``problems`` is empty."""

@final
class ConsumerInfo:
    """A durable consumer as ``Store.consumers()`` lists it."""

    name: str
    """Its name."""
    next_position: int
    """The next position it will handle: every position below is handled."""
    checkpoint: Optional[int]
    """The last position whose handling is committed (None: none yet)."""
    committed_at: int
    """When the checkpoint was committed, unix nanoseconds."""
    lag_events: int
    """Durable events after its checkpoint (filtered-out ones included)."""
    lag_bytes: int
    """Bytes of log after its checkpoint."""
    parked: int
    """Events in its dead-letter list."""
    active: bool
    """Whether a handle (in any process) has it open now."""

@final
class Subscription(Iterator[RecordedEvent]):
    """A live, ordered feed of durable events: first those in the log, then each new one as soon
    as it is durable, with no gap and no duplicate. Iterating blocks until the next event (Ctrl-C
    interrupts it); after ``Store.close()`` it raises ``Closed``."""

    def __iter__(self) -> "Subscription": ...
    def __next__(self) -> RecordedEvent: ...
    def poll(self, timeout: Optional[float] = None) -> Optional[RecordedEvent]:
        """The next event, waiting at most ``timeout`` seconds (None: as long as it takes); None
        when none came in time."""
    @property
    def position(self) -> int:
        """The next global position (for ``subscribe_aggregate``: version) it will deliver."""

@final
class Consumer(Iterator[RecordedEvent]):
    """A durable consumer: a subscription that resumes after its last committed checkpoint, in this
    or a later process. Delivery is at least once: with ``auto_commit`` the events handed out are
    committed as the consumer asks for more (every ``commit_every_events`` events or
    ``commit_every`` seconds); after a crash, or a ``close()`` before that commit, it hands out again
    the events since the last commit. ``commit()`` commits at once. One handle per consumer at a
    time; ``close()`` (or leaving a ``with`` block, or closing the store) releases it."""

    def __iter__(self) -> "Consumer": ...
    def __next__(self) -> RecordedEvent: ...
    def poll(self, timeout: Optional[float] = None) -> Optional[RecordedEvent]:
        """The next event, waiting at most ``timeout`` seconds (None: as long as it takes); None
        when none came in time."""
    def commit(self, position: Optional[int] = None) -> None:
        """Commits durably that every event at or before ``position`` (default: every event handed
        out so far) is handled. Raises ``PastEnd`` for a position not durable in the log."""
    @property
    def name(self) -> str:
        """The consumer's name."""
    @property
    def position(self) -> int:
        """The next position it will hand out."""
    @property
    def committed(self) -> int:
        """The committed checkpoint: every position below it is handled."""
    def close(self) -> None:
        """Releases the consumer (its lock). Idempotent."""
    def __enter__(self) -> "Consumer": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

@final
class Store:
    """An open factlog store.

    Creates the store when ``path`` is missing or an empty directory (unless ``read_only``).
    ``durability="sync"`` (the default) acknowledges an append once it is on disk; ``"buffered"``
    once it is written, syncing at least every ``flush_interval_ms`` (default 100). ``read_only=True``
    opens an existing store for reading only, beside a writer in another process, which it follows.
    The other keywords are the engine's options of the same names (``lock_wait`` in seconds). Use it
    as a context manager, or call ``close()``. Open a path once per process and share the ``Store``
    between threads (a second open raises ``Locked``).
    """

    def __new__(
        cls,
        path: Union[str, "os.PathLike[str]"],
        durability: str = "sync",
        *,
        read_only: bool = False,
        flush_interval_ms: Optional[int] = None,
        segment_bytes: Optional[int] = None,
        max_event_bytes: Optional[int] = None,
        snapshot_every: Optional[int] = None,
        snapshots_keep: Optional[int] = None,
        lock_wait: float = 0.0,
        repair: bool = False,
    ) -> "Store": ...
    @property
    def path(self) -> pathlib.Path:
        """The store's directory, as given."""
    @property
    def read_only(self) -> bool:
        """Whether it was opened with ``read_only=True``."""
    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
    @property
    def last_position(self) -> Optional[int]:
        """Position of the last visible event, or None for an empty store."""
    @property
    def durable_position(self) -> Optional[int]:
        """Position of the last event known to be on disk, or None."""
    def close(self) -> None:
        """Syncs and closes the store and every consumer open on it; iterators, subscriptions and
        consumers made from it raise ``Closed`` from then on. Idempotent."""
    def __enter__(self) -> "Store": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...
    def append(
        self,
        aggregate_id: str,
        events: Union[Event, Iterable[Event]],
        expected_version: Union[int, ExpectedVersion] = ANY,
    ) -> AppendResult:
        """Appends ``events`` to ``aggregate_id`` as one atomic batch, if the aggregate's version
        matches ``expected_version`` (``ANY``, ``NO_STREAM``, ``STREAM_EXISTS``, or the exact version
        of its last event). Returns once the batch is durable (``"sync"``) or written
        (``"buffered"``). Raises ``WrongExpectedVersion``, ``DuplicateEventId``, ``InvalidInput``,
        ``EventTooLarge``, ``ReadOnly``, ``NoSpace``, ``Poisoned`` or ``Closed``."""
    def append_many(
        self,
        batches: Iterable[
            Union[
                Tuple[str, Union[Event, Iterable[Event]]],
                Tuple[str, Union[Event, Iterable[Event]], Union[int, ExpectedVersion]],
            ]
        ],
    ) -> List[AppendResult]:
        """Appends one batch to each of several aggregates as one atomic batch: all or none, in one
        group commit. ``batches`` holds ``(aggregate_id, events)`` or ``(aggregate_id, events,
        expected_version)`` tuples, each as ``append`` takes it (``ANY`` by default). If any
        expectation fails, nothing is written and ``WrongExpectedVersion`` names that aggregate.
        Returns one ``AppendResult`` per batch, in order (consecutive positions). Each aggregate
        may appear once and every batch needs an event (else ``InvalidInput``); a retry of stored
        batches is ``deduplicated``. Raises what ``append`` raises."""
    def read_aggregate(self, aggregate_id: str, from_version: int = 0) -> EventIterator:
        """The events of one aggregate from ``from_version`` on, in version order."""
    def read_aggregate_backward(self, aggregate_id: str, from_version: Optional[int] = None) -> EventIterator:
        """The events of one aggregate from ``from_version`` (None: its last) down to version 0."""
    def read_all(self, from_position: int = 0) -> EventIterator:
        """Every event from ``from_position`` on, in global order."""
    def aggregate_version(self, aggregate_id: str) -> Optional[int]:
        """The aggregate's current version, or None when it has no events."""
    def refresh(self) -> Optional[int]:
        """A read-only store: catches up with the writer process now; returns the durable position."""
    def save_snapshot(self, aggregate_id: str, version: int, state: _Payload, schema_version: int = 1) -> SnapshotInfo:
        """Saves ``state`` as the snapshot of ``aggregate_id`` at ``version``, compressed. Raises
        ``SnapshotAhead`` if the aggregate has not reached ``version``."""
    def latest_snapshot(self, aggregate_id: str, version: Optional[int] = None) -> Optional[Snapshot]:
        """The newest kept snapshot of the aggregate (at or before ``version``, when given)."""
    def load(self, aggregate_id: str) -> Loaded:
        """The aggregate now: its newest snapshot and the events after it."""
    def load_as_of(
        self,
        aggregate_id: str,
        *,
        version: Optional[int] = None,
        position: Optional[int] = None,
        recorded_at: Optional[int] = None,
    ) -> Loaded:
        """The aggregate as it stood at a past point, given by exactly one of ``version``,
        ``position`` or ``recorded_at`` (unix nanoseconds)."""
    def stats(self) -> Stats:
        """Counters and sizes."""
    def verify(self) -> VerifyReport:
        """Checks every record and index entry (appends go on meanwhile); problems are listed in
        the report, not raised."""
    def sync(self) -> None:
        """Forces an fdatasync of everything written (for ``"buffered"`` stores)."""
    def subscribe(
        self,
        from_position: int = 0,
        *,
        from_end: bool = False,
        event_types: Optional[Iterable[str]] = None,
        aggregate_prefixes: Optional[Iterable[str]] = None,
    ) -> Subscription:
        """A live subscription to the whole log from ``from_position`` (or, with ``from_end``, to
        the events appended from now on), filtered by event type and aggregate id prefix."""
    def subscribe_aggregate(self, aggregate_id: str, from_version: int = 0, *, from_end: bool = False) -> Subscription:
        """A live subscription to one aggregate's durable events, in version order."""
    def consumer(
        self,
        name: str,
        *,
        from_position: int = 0,
        from_end: bool = False,
        event_types: Optional[Iterable[str]] = None,
        aggregate_prefixes: Optional[Iterable[str]] = None,
        auto_commit: bool = True,
        commit_every_events: int = 1000,
        commit_every: float = 1.0,
    ) -> Consumer:
        """Opens the durable consumer ``name`` (1 to 64 ASCII letters, digits, ``_``, ``-``, ``.``),
        creating it at ``from_position`` (or the end) if it does not exist; an existing one resumes
        after its checkpoint. Filters as ``subscribe``. With ``auto_commit=False`` only
        ``Consumer.commit`` moves the checkpoint."""
    def consumers(self) -> List[ConsumerInfo]:
        """Every durable consumer of the store, by name."""
    def reset_consumer(self, name: str, *, position: Optional[int] = None, to_end: bool = False) -> int:
        """Moves a consumer nobody has open to ``position``, to the end (``to_end``), or to the start
        (neither given); returns its new next position. Raises ``UnknownConsumer``, ``PastEnd``,
        ``ConsumerLocked``."""
    def delete_consumer(self, name: str) -> None:
        """Deletes a consumer nobody has open (the events stay in the log). Raises
        ``UnknownConsumer``, ``ConsumerLocked``."""

class Error(Exception):
    """Base class of every error factlog raises."""

class WrongExpectedVersion(Error):
    """The aggregate's version did not match ``expected_version``; nothing was written."""

    aggregate_id: str
    expected: Union[int, ExpectedVersion]
    actual: Optional[int]
    """The aggregate's current version (None: it has no events)."""

class DuplicateEventId(Error):
    """An event id of the batch is already stored elsewhere; nothing was written."""

    event_id: uuid.UUID
    aggregate_id: str
    existing_aggregate: str
    existing_position: int

class InvalidInput(Error):
    """An argument the engine refuses (empty batch, empty or oversized id or type, ...)."""

class EventTooLarge(InvalidInput):
    """An event is over the store's ``max_event_bytes``."""

    aggregate_id: str
    index: int
    size: int
    max: int

class SnapshotAhead(InvalidInput):
    """A snapshot was offered for a version the aggregate has not reached."""

    aggregate_id: str
    version: int
    actual: Optional[int]

class InvalidOptions(InvalidInput):
    """The options given to ``Store(...)`` are inconsistent."""

class PastEnd(InvalidInput):
    """A position beyond the durable end of the log."""

    position: int
    end: int

class NotParked(InvalidInput):
    """The consumer has no parked event at that position."""

    consumer: str
    position: int

class Corrupt(Error):
    """A file failed its checksum or structural check."""

    path: str
    offset: int
    reason: str

class UnsupportedFormat(Corrupt):
    """A file has a format version this build cannot read (``offset`` is 0)."""

    found: int
    supported: int

class NotAStore(Error):
    """The directory is not empty and is not a factlog store."""

    path: str
    reason: str

class Locked(Error):
    """Another opener holds the store (another process, or another ``Store`` of this path here)."""

    path: str
    holder: str

class ConsumerLocked(Locked):
    """Another handle has the durable consumer open."""

    name: str

class NoSpace(Error):
    """The file system is full; the store works again once space is freed."""

    path: str

class IoError(Error):
    """An I/O operation failed."""

    op: str
    path: str
    errno: Optional[int]

class Poisoned(Error):
    """An earlier write or fsync failed: the store refuses writes until it is reopened."""

    cause: str

class ReadOnly(Error):
    """The store was opened with ``read_only=True``."""

    path: str

class Closed(Error):
    """The store was closed."""

class UnknownConsumer(Error):
    """No durable consumer of that name exists."""

    name: str
    path: str
