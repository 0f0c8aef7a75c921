"""Every exception Python can provoke, with its attributes. NotParked (it needs a consumer handler
run, which the bindings do not offer), Poisoned (a failed fsync), UnsupportedFormat and a bare
IoError from the writer cannot be provoked from here: the crate's Rust unit test builds every engine
error variant and checks the class, message and attributes each one raises with."""

import ctypes
import os
import subprocess
import sys

import pytest

import factlog

ALL = [
    "WrongExpectedVersion", "DuplicateEventId", "InvalidInput", "EventTooLarge", "SnapshotAhead",
    "InvalidOptions", "PastEnd", "NotParked", "Corrupt", "UnsupportedFormat", "NotAStore", "Locked",
    "ConsumerLocked", "NoSpace", "IoError", "Poisoned", "ReadOnly", "Closed", "UnknownConsumer",
]


def test_every_exception_is_a_factlog_error():
    assert issubclass(factlog.Error, Exception)
    for name in ALL:
        assert issubclass(getattr(factlog, name), factlog.Error), name
    assert issubclass(factlog.EventTooLarge, factlog.InvalidInput)
    assert issubclass(factlog.UnsupportedFormat, factlog.Corrupt)
    assert issubclass(factlog.ConsumerLocked, factlog.Locked)


def test_wrong_expected_version(store):
    store.append("a", [factlog.Event("T", 1), factlog.Event("T", 2)])
    for expected, shown in [(0, 0), (factlog.NO_STREAM, factlog.NO_STREAM)]:
        with pytest.raises(factlog.WrongExpectedVersion) as e:
            store.append("a", factlog.Event("T", 3), expected_version=expected)
        assert (e.value.aggregate_id, e.value.expected, e.value.actual) == ("a", shown, 1)
        assert '"a"' in str(e.value)
    with pytest.raises(factlog.WrongExpectedVersion) as e:
        store.append("new", factlog.Event("T", 3), expected_version=factlog.STREAM_EXISTS)
    assert e.value.expected == factlog.STREAM_EXISTS and e.value.actual is None
    assert store.aggregate_version("a") == 1 and store.aggregate_version("new") is None


def test_duplicate_event_id(store):
    ev = factlog.Event("T", 1)
    store.append("a", ev)
    with pytest.raises(factlog.DuplicateEventId) as e:
        store.append("b", ev)
    assert e.value.event_id == ev.event_id
    assert (e.value.aggregate_id, e.value.existing_aggregate, e.value.existing_position) == ("b", "a", 0)


def test_invalid_input(store):
    with pytest.raises(factlog.InvalidInput, match="empty batch"):
        store.append("a", [])
    with pytest.raises(factlog.InvalidInput):
        store.append("", factlog.Event("T", 1))
    with pytest.raises(factlog.InvalidInput):
        store.append("a", factlog.Event("x" * 256, 1))
    assert list(store.read_all()) == []


def test_event_too_large(path):
    with factlog.Store(path, max_event_bytes=1024) as s:
        with pytest.raises(factlog.EventTooLarge) as e:
            s.append("a", [factlog.Event("T", b"small"), factlog.Event("T", b"x" * 2000)])
        assert (e.value.aggregate_id, e.value.index, e.value.max) == ("a", 1, 1024) and e.value.size > 1024
        assert isinstance(e.value, factlog.InvalidInput)


def test_snapshot_ahead(store):
    store.append("a", factlog.Event("T", 1))
    with pytest.raises(factlog.SnapshotAhead) as e:
        store.save_snapshot("a", 5, {"state": 1})
    assert (e.value.aggregate_id, e.value.version, e.value.actual) == ("a", 5, 0)


def test_invalid_options(path):
    with pytest.raises(factlog.InvalidOptions):
        factlog.Store(path, segment_bytes=1000)
    with pytest.raises(ValueError):
        factlog.Store(path, lock_wait=-1)


def test_corrupt(path):
    marker = b"corrupt-me-please"
    with factlog.Store(path) as s:
        s.append("a", factlog.Event("T", marker))
        for i in range(3):
            s.append("a", factlog.Event("T", i))
    [segment] = [p for p in path.iterdir() if p.suffix == ".seg"]
    raw = bytearray(segment.read_bytes())
    at = raw.index(marker)
    raw[at] ^= 0xFF
    segment.write_bytes(bytes(raw))
    with pytest.raises(factlog.Corrupt) as e:
        factlog.Store(path)
    assert e.value.path == str(segment)
    assert 0 < e.value.offset < at and e.value.reason
    # A read-only open with repair is the repair's dry run; a read-write one cuts the log there.
    with factlog.Store(path, read_only=True, repair=True) as dry_run:
        assert list(dry_run.read_all()) == []
    with factlog.Store(path, repair=True) as repaired:
        assert list(repaired.read_all()) == []
        assert repaired.verify().ok


def test_not_a_store(tmp_path):
    (tmp_path / "something.txt").write_text("hello")
    with pytest.raises(factlog.NotAStore) as e:
        factlog.Store(tmp_path)
    assert e.value.path == str(tmp_path) and e.value.reason


def test_locked(store, path):
    with pytest.raises(factlog.Locked) as e:
        factlog.Store(path)
    assert e.value.path == str(path) and "this process" in e.value.holder


def test_locked_by_another_process(store, path):
    code = "import factlog, sys\ntry:\n    factlog.Store(sys.argv[1])\nexcept factlog.Locked as e:\n    print(e.holder)\n"
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"process {os.getpid()}"


def test_read_only(store, path):
    store.append("a", factlog.Event("T", 1))
    with factlog.Store(path, read_only=True) as ro:
        assert [e.json() for e in ro.read_all()] == [1]
        with pytest.raises(factlog.ReadOnly) as e:
            ro.append("a", factlog.Event("T", 2))
        assert e.value.path == str(path)
        with pytest.raises(factlog.ReadOnly):
            ro.save_snapshot("a", 0, b"state")


def test_io_error(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(factlog.IoError) as e:
        factlog.Store(a_file / "store")
    assert e.value.errno == 20 and e.value.op and str(a_file) in e.value.path  # ENOTDIR


def test_consumer_errors(store):
    store.append("a", factlog.Event("T", 1))
    with pytest.raises(factlog.UnknownConsumer) as e:
        store.delete_consumer("nobody")
    assert e.value.name == "nobody"
    with pytest.raises(factlog.InvalidInput):
        store.consumer("bad/name")
    with store.consumer("c") as c:
        with pytest.raises(factlog.ConsumerLocked) as e:
            store.consumer("c")
        assert e.value.name == "c" and isinstance(e.value, factlog.Locked)
        with pytest.raises(factlog.PastEnd) as e:
            c.commit(5)
        assert (e.value.position, e.value.end) == (5, 1)
    with pytest.raises(factlog.PastEnd):
        store.reset_consumer("c", position=7)
    assert store.reset_consumer("c", to_end=True) == 1
    store.delete_consumer("c")
    assert store.consumers() == []


def _mount_tmpfs(where, size):
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.mount(b"factlog-test", str(where).encode(), b"tmpfs", 0, f"size={size}".encode()) == 0


def test_no_space(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or not _mount_tmpfs(mnt, 1536 * 1024):
        pytest.skip("needs root to mount a small tmpfs")
    try:
        with factlog.Store(mnt / "store") as s:
            big = b"x" * 60_000
            with pytest.raises(factlog.NoSpace) as e:
                for _ in range(100):  # the first 1 MiB segment fills, the 2 MiB one does not fit
                    s.append("a", [factlog.Event("T", big) for _ in range(4)])
            assert e.value.path.startswith(str(mnt))
            written = s.aggregate_version("a")
            assert written is not None and len(list(s.read_all())) == written + 1
    finally:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.umount2(str(mnt).encode(), 2)
