"""Appends and reads: every field of an event round-trips, every payload form, every expected version."""

import json
import time
import uuid

import pytest

import factlog


def test_every_field_round_trips(store):
    eid, cause, corr = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    ev = factlog.Event(
        "FundsDeposited",
        {"amount": 100, "note": "caf\u00e9"},
        event_id=eid,
        metadata={"user": "ada"},
        causation_id=cause,
        correlation_id=str(corr),
        event_version=3,
        occurred_at=-5,
    )
    before = time.time_ns()
    r = store.append("acct-1", [ev], expected_version=factlog.NO_STREAM)
    after = time.time_ns()
    assert (r.first_version, r.last_version, r.first_position, r.last_position) == (0, 0, 0, 0)
    assert not r.deduplicated and not r.snapshot_due

    [got] = list(store.read_aggregate("acct-1"))
    assert got.event_id == eid and isinstance(got.event_id, uuid.UUID)
    assert got.aggregate_id == "acct-1"
    assert got.version == 0 and got.position == 0
    assert got.event_type == "FundsDeposited"
    assert got.event_version == 3
    assert got.occurred_at == -5
    assert before <= got.recorded_at <= after
    assert got.causation_id == cause
    assert got.correlation_id == corr
    assert got.metadata == b'{"user":"ada"}' and got.metadata_json() == {"user": "ada"}
    assert got.data == '{"amount":100,"note":"caf\u00e9"}'.encode()
    assert got.json() == {"amount": 100, "note": "caf\u00e9"}
    assert got == next(store.read_all())


def test_event_defaults():
    before = time.time_ns()
    ev = factlog.Event("Opened", b"\x00\xff")
    assert ev.event_type == ev.type == "Opened"
    assert ev.data == b"\x00\xff"
    assert isinstance(ev.event_id, uuid.UUID) and ev.event_id.version == 7
    assert ev.metadata == b"" and ev.causation_id is None and ev.correlation_id is None
    assert ev.event_version == 1
    assert before <= ev.occurred_at <= time.time_ns()
    assert factlog.Event("Opened", b"").event_id != ev.event_id


def test_optional_fields_stay_absent(store):
    store.append("a", factlog.Event("T", b"raw"))
    [got] = list(store.read_all())
    assert got.causation_id is None and got.correlation_id is None
    assert got.metadata == b"" and got.metadata_json() is None
    with pytest.raises(json.JSONDecodeError):
        got.json()


@pytest.mark.parametrize(
    "value, stored",
    [
        (b"bytes", b"bytes"),
        (bytearray(b"\x01\x02"), b"\x01\x02"),
        (memoryview(b"view"), b"view"),
        ({"a": [1, 2.5, None, True]}, b'{"a":[1,2.5,null,true]}'),
        ([1, "x"], b'[1,"x"]'),
        ("text", b'"text"'),
        (42, b"42"),
        (None, b"null"),
    ],
)
def test_payload_forms(store, value, stored):
    store.append("a", factlog.Event("T", value, metadata=value))
    [got] = list(store.read_all())
    assert got.data == stored
    # metadata=None means no metadata; data=None is the JSON value null.
    assert got.metadata == (b"" if value is None else stored)
    if not isinstance(value, (bytes, bytearray, memoryview)):
        assert got.json() == value


def test_ids_given_as_text_or_uuid():
    text = "0b0c0d0e-0f10-4111-8213-141516171819"
    ev = factlog.Event("T", b"", event_id=text, causation_id=uuid.UUID(text))
    assert ev.event_id == ev.causation_id == uuid.UUID(text)
    with pytest.raises(ValueError):
        factlog.Event("T", b"", event_id="not a uuid")
    with pytest.raises(TypeError):
        factlog.Event("T", b"", event_id=12)


def test_expected_versions(store):
    assert store.append("a", factlog.Event("T", 1), expected_version=factlog.NO_STREAM).last_version == 0
    assert store.append("a", factlog.Event("T", 2), expected_version=factlog.STREAM_EXISTS).last_version == 1
    assert store.append("a", factlog.Event("T", 3), expected_version=1).last_version == 2
    assert store.append("a", factlog.Event("T", 4), expected_version=factlog.ANY).last_version == 3
    assert store.append("a", factlog.Event("T", 5)).last_version == 4
    assert store.aggregate_version("a") == 4 and store.aggregate_version("nope") is None
    with pytest.raises(ValueError):
        store.append("a", factlog.Event("T", 6), expected_version=-1)
    with pytest.raises(TypeError):
        store.append("a", factlog.Event("T", 6), expected_version=True)
    with pytest.raises(TypeError):
        store.append("a", factlog.Event("T", 6), expected_version="any")
    assert repr(factlog.ANY) == "factlog.ANY" and factlog.ANY != factlog.NO_STREAM


def test_batches_are_atomic_and_ordered(store):
    r = store.append("a", (factlog.Event("T", i) for i in range(5)))
    assert (r.first_version, r.last_version, r.first_position, r.last_position) == (0, 4, 0, 4)
    r = store.append("b", [factlog.Event("T", i) for i in range(3)])
    assert (r.first_position, r.last_position) == (5, 7)
    assert [e.json() for e in store.read_aggregate("a")] == list(range(5))
    assert [e.position for e in store.read_all()] == list(range(8))
    assert store.last_position == 7 and store.durable_position == 7
    with pytest.raises(TypeError):
        store.append("a", ["not an event"])


def test_retry_of_a_stored_batch_is_deduplicated(store):
    events = [factlog.Event("T", i) for i in range(3)]
    first = store.append("a", events, expected_version=factlog.NO_STREAM)
    again = store.append("a", events, expected_version=factlog.NO_STREAM)
    assert again.deduplicated
    assert (again.first_position, again.last_position) == (first.first_position, first.last_position)
    assert len(list(store.read_all())) == 3


def test_reads_from_a_version_or_position_across_chunks(store):
    # More events than one chunk (256) of the iterator, in two aggregates interleaved.
    for i in range(300):
        store.append("even" if i % 2 == 0 else "odd", [factlog.Event("T", i), factlog.Event("T", -i)])
    even = list(store.read_aggregate("even"))
    assert [e.version for e in even] == list(range(300))
    assert [e.json() for e in even[:4]] == [0, 0, 2, -2]
    assert [e.version for e in store.read_aggregate("even", 250)] == list(range(250, 300))
    assert list(store.read_aggregate("even", 300)) == []
    assert list(store.read_aggregate("nobody")) == []
    assert [e.position for e in store.read_all(550)] == list(range(550, 600))
    assert list(store.read_all(600)) == []
    back = list(store.read_aggregate_backward("odd"))
    assert [e.version for e in back] == list(range(299, -1, -1))
    assert [e.version for e in store.read_aggregate_backward("odd", 2)] == [2, 1, 0]
    assert [e.version for e in store.read_aggregate_backward("odd", 10_000)][0] == 299
    assert list(store.read_aggregate_backward("nobody")) == []


def test_a_read_sees_the_store_as_it_was_when_it_began(store):
    store.append("a", [factlog.Event("T", i) for i in range(3)])
    it = store.read_aggregate("a")
    everything = store.read_all()
    store.append("a", factlog.Event("T", 3))
    assert len(list(it)) == 3 and len(list(everything)) == 3
    assert len(list(store.read_aggregate("a"))) == 4


def test_reopen_keeps_everything(path):
    with factlog.Store(path) as s:
        s.append("a", [factlog.Event("T", i) for i in range(10)])
        written = list(s.read_all())
    with factlog.Store(path) as s:
        assert list(s.read_all()) == written
        assert s.append("a", factlog.Event("T", 10), expected_version=9).last_position == 10


def test_buffered_durability_and_sync(path):
    with factlog.Store(path, "buffered", flush_interval_ms=5) as s:
        s.append("a", factlog.Event("T", 1))
        s.sync()
        assert s.durable_position == 0
    with factlog.Store(path) as s:
        assert len(list(s.read_all())) == 1
    with pytest.raises(ValueError):
        factlog.Store(path, "sometimes")
    with pytest.raises(ValueError):
        factlog.Store(path, "sync", flush_interval_ms=5)


def test_stats_and_verify(store):
    store.append("a", [factlog.Event("T", i) for i in range(4)])
    store.append("b", factlog.Event("T", 0))
    stats = store.stats()
    assert (stats.events, stats.aggregates, stats.segments) == (5, 2, 1)
    assert stats.fsyncs >= 1 and stats.log_bytes > 0 and stats.segment_file_bytes >= stats.log_bytes
    report = store.verify()
    assert report.ok and report.problems == []
    assert (report.events, report.aggregates, report.segments) == (5, 2, 1)


def test_store_properties(path):
    with factlog.Store(str(path)) as s:
        assert s.path == path and not s.read_only and not s.closed
        assert s.last_position is None and s.durable_position is None
        assert "factlog.Store(" in repr(s)
    assert s.closed and "closed" in repr(s)
