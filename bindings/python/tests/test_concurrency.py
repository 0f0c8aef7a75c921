"""Threads: the GIL is released while an append waits for its fsync, so Python threads appending at
once share fsyncs through the engine's group commit."""

import threading
import time

import factlog

THREADS = 16
SECONDS = 1.0


def durable_appends(store, threads, seconds, tag):
    """Appends one event per call from `threads` threads for `seconds`; returns (appends, elapsed)."""
    counts = [0] * threads
    errors = []
    barrier = threading.Barrier(threads + 1)

    def work(t):
        barrier.wait()
        deadline = time.perf_counter() + seconds
        version = None
        try:
            while time.perf_counter() < deadline:
                expected = factlog.NO_STREAM if version is None else version
                r = store.append(f"{tag}-{t}", factlog.Event("T", {"t": t, "n": counts[t]}), expected_version=expected)
                version = r.last_version
                counts[t] += 1
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    start = time.perf_counter()
    barrier.wait()
    for th in pool:
        th.join()
    assert errors == []
    return counts, time.perf_counter() - start


def on_tmpfs(path):
    """Whether `path` is on a RAM file system, where fsync is free and group commit gains nothing."""
    best, fstype = "", ""
    with open("/proc/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if str(path).startswith(fields[1]) and len(fields[1]) > len(best):
                best, fstype = fields[1], fields[2]
    return fstype in ("tmpfs", "ramfs")


def test_sixteen_threads_group_commit_durable_appends(path):
    with factlog.Store(path, durability="sync") as store:
        durable_appends(store, 1, 0.2, "warmup")
        one, one_s = durable_appends(store, 1, SECONDS, "one")
        before = store.stats()
        many, many_s = durable_appends(store, THREADS, SECONDS, "many")
        after = store.stats()

        # Correctness first: every acknowledged append is there, dense, in order, once.
        for t, n in enumerate(many):
            events = list(store.read_aggregate(f"many-{t}"))
            assert [e.version for e in events] == list(range(n))
            assert [e.json() for e in events] == [{"t": t, "n": i} for i in range(n)]
        positions = [e.position for e in store.read_all()]
        assert positions == list(range(len(positions)))
        assert store.verify().ok

        appends = sum(many)
        fsyncs = after.fsyncs - before.fsyncs
        one_rate, many_rate = one[0] / one_s, appends / many_s
        print(f"1 thread: {one_rate:,.0f} appends/s; {THREADS} threads: {many_rate:,.0f} appends/s, "
              f"{appends} appends in {fsyncs} fsyncs")
        assert all(n > 0 for n in many), many  # every thread got through: the GIL was not held
        if on_tmpfs(path):
            return  # no fsync cost to share: nothing more to show
        # Group commit: the writer folded the threads' appends into shared fsyncs. Were the GIL held
        # during the wait, each fsync would carry a single append. Expected: about one fsync per 5
        # to 16 appends, even on a loaded machine (the threads queue up during each fsync).
        assert fsyncs * 2 <= appends, (fsyncs, appends)
        # And so more events per second than one thread (a margin of several times on a disk with
        # a real fsync; CPU load slows both phases alike).
        assert many_rate > one_rate, (many_rate, one_rate)


def test_threads_reading_while_others_append(store):
    stop = threading.Event()
    seen = [[], []]
    errors = []

    def reader(mine):
        try:
            while not stop.is_set():
                events = list(store.read_all())
                # A read is a consistent prefix of the log, and never shows half a batch.
                assert [e.position for e in events] == list(range(len(events)))
                assert len(events) % 2 == 0
                mine.append(len(events))
        except BaseException as e:
            errors.append(e)

    readers = [threading.Thread(target=reader, args=(mine,)) for mine in seen]
    for r in readers:
        r.start()
    for i in range(200):
        store.append(f"agg-{i % 7}", [factlog.Event("T", i), factlog.Event("T", i)])
    stop.set()
    for r in readers:
        r.join()
    assert errors == []
    for mine in seen:
        assert mine == sorted(mine)  # each reader saw the log only grow
    assert len(list(store.read_all())) == 400


def test_conflicting_appenders_one_wins_each_version(store):
    store.append("contended", factlog.Event("T", "start"))
    wins, conflicts = [], []
    barrier = threading.Barrier(8)

    def work(t):
        barrier.wait()
        try:
            store.append("contended", factlog.Event("T", t), expected_version=0)
            wins.append(t)
        except factlog.WrongExpectedVersion as e:
            assert e.actual == 1
            conflicts.append(t)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    assert len(wins) == 1 and len(conflicts) == 7
    assert store.aggregate_version("contended") == 1
