"""Snapshots, load and time travel."""

import time

import pytest

import factlog


def test_save_and_load(store):
    store.append("acct", [factlog.Event("Deposited", {"amount": a}) for a in (10, 20, 30)])
    info = store.save_snapshot("acct", 1, {"balance": 30}, schema_version=2)
    assert info.raw_bytes == len(b'{"balance":30}') and info.stored_bytes > 0 and info.payload_bytes > 0
    snap = store.latest_snapshot("acct")
    assert (snap.aggregate_id, snap.version, snap.schema_version) == ("acct", 1, 2)
    assert snap.data == b'{"balance":30}' and snap.json() == {"balance": 30}
    assert 0 < snap.taken_at <= time.time_ns()
    assert store.latest_snapshot("acct", 0) is None
    assert store.latest_snapshot("other") is None

    loaded = store.load("acct")
    assert loaded.version == 2 and loaded.snapshot == snap
    assert [e.json() for e in loaded.events()] == [{"amount": 30}]
    assert [e.version for e in loaded.events()] == [2]  # a new iterator each time


def test_load_without_snapshot_or_events(store):
    store.append("a", [factlog.Event("T", i) for i in range(300)])
    loaded = store.load("a")
    assert loaded.snapshot is None and loaded.version == 299
    assert [e.version for e in loaded.events()] == list(range(300))
    empty = store.load("nobody")
    assert empty.snapshot is None and empty.version is None and list(empty.events()) == []


def test_load_as_of_version_position_and_time(store):
    store.append("a", [factlog.Event("T", 0), factlog.Event("T", 1)])
    store.append("b", factlog.Event("T", "b"))
    store.save_snapshot("a", 0, b"state@0")
    time.sleep(0.002)
    middle = time.time_ns()
    time.sleep(0.002)
    store.append("a", factlog.Event("T", 2))

    by_version = store.load_as_of("a", version=1)
    assert by_version.version == 1 and by_version.snapshot.data == b"state@0"
    assert [e.json() for e in by_version.events()] == [1]

    by_position = store.load_as_of("a", position=2)  # position 2 is b's event: a stood at version 1
    assert by_position.version == 1

    by_time = store.load_as_of("a", recorded_at=middle)
    assert by_time.version == 1 and [e.version for e in by_time.events()] == [1]
    before_anything = store.load_as_of("a", recorded_at=0)
    assert before_anything.version is None and list(before_anything.events()) == []

    with pytest.raises(TypeError):
        store.load_as_of("a")
    with pytest.raises(TypeError):
        store.load_as_of("a", version=1, position=1)


def test_snapshot_due_and_reopen(path):
    with factlog.Store(path, snapshot_every=3) as s:
        results = [s.append("a", factlog.Event("T", i)) for i in range(3)]
        assert [r.snapshot_due for r in results] == [False, False, True]
        s.save_snapshot("a", 2, bytes(range(256)))
    with factlog.Store(path) as s:
        assert s.latest_snapshot("a").data == bytes(range(256))
        assert s.stats().snapshots == 1
