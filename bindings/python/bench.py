#!/usr/bin/env python3
"""factlog from Python against the standard library's sqlite3 used as an event store, in one run.

Three workloads, each run on both stores with the same events:

* durable appends, 1 thread: one event per append, each acknowledged only once it is on disk
  (factlog durability="sync"; sqlite3 in WAL mode with synchronous=FULL, one transaction per append);
* durable appends, 16 threads: the same from 16 Python threads (factlog: one shared Store, whose
  group commit folds the threads' appends into shared fsyncs; sqlite3: both of its usual set-ups,
  a connection per thread (busy_timeout) and one connection shared under a lock, and the better
  of the two is the one compared);
* aggregate replay: read every event of each aggregate in version order and touch its type and
  data, as a fold would (factlog: read_aggregate; sqlite3: SELECT of the whole envelope by
  aggregate ordered by version, a range scan of the primary key).

The sqlite3 event store is one table keyed by (aggregate_id, version) (WITHOUT ROWID, so a replay
is one clustered range scan), with a unique global position and a unique event id, as factlog
has. An append is BEGIN IMMEDIATE, the next position, the INSERT (the primary key refuses a
version that is taken: the optimistic concurrency check), COMMIT.

Run from a virtualenv where factlog is installed (README, "Bindings"):

    python bindings/python/bench.py            # about 20 s; --seconds sets each append phase
    python bindings/python/bench.py --json     # one JSON document
"""

import argparse
import json
import os
import shutil
import sqlite3
import tempfile
import threading
import time
import uuid

import factlog

AGGREGATES_PER_THREAD = 50


def payload(i):
    """A ~200-byte JSON event payload, as bytes (both stores get the same bytes)."""
    return json.dumps({"account": i, "amount": i % 1000, "currency": "EUR", "note": "n" * 140}).encode()


# --- the sqlite3 event store -------------------------------------------------------------------

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    aggregate_id   TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    position       INTEGER NOT NULL UNIQUE,
    event_id       BLOB    NOT NULL UNIQUE,
    event_type     TEXT    NOT NULL,
    event_version  INTEGER NOT NULL,
    occurred_at    INTEGER NOT NULL,
    recorded_at    INTEGER NOT NULL,
    causation_id   BLOB,
    correlation_id BLOB,
    metadata       BLOB    NOT NULL,
    data           BLOB    NOT NULL,
    PRIMARY KEY (aggregate_id, version)
) WITHOUT ROWID
"""

INSERT = "INSERT INTO events VALUES (?, ?, ?, ?, ?, 1, ?, ?, NULL, NULL, x'', ?)"
REPLAY = (
    "SELECT event_id, aggregate_id, version, position, event_type, event_version, occurred_at, "
    "recorded_at, causation_id, correlation_id, metadata, data FROM events WHERE aggregate_id = ? "
    "ORDER BY version"
)


def sqlite_connect(path):
    """A connection in WAL mode with synchronous=FULL: a commit returns once the WAL is fsynced."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=60.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(SCHEMA)
    return conn


def sqlite_append(conn, aggregate_id, version, event_type, data):
    """Appends one event at `version` (the aggregate's next), durably; IntegrityError on a conflict."""
    now = time.time_ns()
    conn.execute("BEGIN IMMEDIATE")
    try:
        (position,) = conn.execute("SELECT COALESCE(MAX(position) + 1, 0) FROM events").fetchone()
        conn.execute(INSERT, (aggregate_id, version, position, uuid.uuid4().bytes, event_type, now, now, data))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


# --- the workloads -----------------------------------------------------------------------------


def run_threads(threads, seconds, work):
    """Runs work(thread_index, deadline) -> events in `threads` threads; returns events per second."""
    counts = [0] * threads
    barrier = threading.Barrier(threads + 1)

    def body(t):
        barrier.wait()
        counts[t] = work(t, deadline[0])

    deadline = [0.0]
    pool = [threading.Thread(target=body, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    start = time.perf_counter()
    deadline[0] = start + seconds
    barrier.wait()
    for th in pool:
        th.join()
    return sum(counts) / (time.perf_counter() - start)


def factlog_appends(store, threads, seconds, tag):
    """Durable one-event appends from `threads` threads, each to its own aggregates, expecting exact versions."""
    data = payload(7)

    def work(t, deadline):
        versions = {}
        n = 0
        while time.perf_counter() < deadline:
            agg = f"{tag}-t{t}-a{n % AGGREGATES_PER_THREAD}"
            expected = versions.get(agg, factlog.NO_STREAM)
            r = store.append(agg, [factlog.Event("FundsDeposited", data)], expected_version=expected)
            versions[agg] = r.last_version
            n += 1
        return n

    return run_threads(threads, seconds, work)


def sqlite_appends(path, threads, seconds, tag, shared):
    """The same appends to sqlite3: a connection per thread, or one shared under a lock (`shared`)."""
    data = payload(7)
    conns = [sqlite_connect(path)] if shared else [sqlite_connect(path) for _ in range(threads)]
    lock = threading.Lock()

    def work(t, deadline):
        conn = conns[0] if shared else conns[t]
        versions = {}
        n = 0
        while time.perf_counter() < deadline:
            agg = f"{tag}-t{t}-a{n % AGGREGATES_PER_THREAD}"
            version = versions.get(agg, -1) + 1
            if shared:
                with lock:
                    sqlite_append(conn, agg, version, "FundsDeposited", data)
            else:
                sqlite_append(conn, agg, version, "FundsDeposited", data)
            versions[agg] = version
            n += 1
        return n

    try:
        return run_threads(threads, seconds, work)
    finally:
        for c in conns:
            c.close()


def fill(store, conn, aggregates, per_aggregate):
    """Writes the replay data set to both stores, in large batches (not timed)."""
    conn.execute("BEGIN IMMEDIATE")
    (position,) = conn.execute("SELECT COALESCE(MAX(position) + 1, 0) FROM events").fetchone()
    for a in range(aggregates):
        agg = f"replay-{a}"
        events = [factlog.Event("FundsDeposited", payload(v)) for v in range(per_aggregate)]
        store.append(agg, events, expected_version=factlog.NO_STREAM)
        now = time.time_ns()
        rows = [
            (agg, v, position + v, e.event_id.bytes, "FundsDeposited", now, now, payload(v))
            for v, e in enumerate(events)
        ]
        position += per_aggregate
        conn.executemany(INSERT, rows)
    conn.execute("COMMIT")


def best_of(rounds, f):
    """The fastest of `rounds` runs of f(), in seconds."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - start)
    return best


def replay(store, conn, aggregates, per_aggregate, rounds):
    """Events per second replaying every aggregate on each store (best of `rounds`)."""
    ids = [f"replay-{a}" for a in range(aggregates)]

    def factlog_pass():
        n = 0
        for agg in ids:
            for ev in store.read_aggregate(agg):
                ev.event_type
                ev.data
                n += 1
        assert n == aggregates * per_aggregate, n

    def sqlite_pass():
        n = 0
        for agg in ids:
            for row in conn.execute(REPLAY, (agg,)):
                row[4]
                row[11]
                n += 1
        assert n == aggregates * per_aggregate, n

    total = aggregates * per_aggregate
    return total / best_of(rounds, factlog_pass), total / best_of(rounds, sqlite_pass)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="length of each append phase (default 3)")
    ap.add_argument("--threads", type=int, default=16, help="threads of the concurrent phase (default 16)")
    ap.add_argument("--aggregates", type=int, default=100, help="aggregates of the replay set (default 100)")
    ap.add_argument("--per-aggregate", type=int, default=1000, help="events per replayed aggregate (default 1000)")
    ap.add_argument("--dir", help="where to make the stores (default: a temporary directory under ./target)")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    args = ap.parse_args()

    base = args.dir or os.path.join(os.getcwd(), "target")
    os.makedirs(base, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="factlog-pybench-", dir=base)
    results = {}
    try:
        fl_path, sq_path = os.path.join(tmp, "factlog"), os.path.join(tmp, "events.sqlite")
        with factlog.Store(fl_path, durability="sync") as store:
            factlog_appends(store, 1, 0.3, "warm")
            results["append_1_factlog"] = factlog_appends(store, 1, args.seconds, "one")
            before = store.stats()
            results["append_n_factlog"] = factlog_appends(store, args.threads, args.seconds, "many")
            after = store.stats()
            fsyncs = after.fsyncs - before.fsyncs
            per_fsync = (after.events - before.events) / fsyncs if fsyncs else float("nan")
            sqlite_connect(sq_path).close()
            sqlite_appends(sq_path, 1, 0.3, "warm", shared=True)
            results["append_1_sqlite"] = sqlite_appends(sq_path, 1, args.seconds, "one", shared=True)
            results["append_n_sqlite_connection_per_thread"] = sqlite_appends(
                sq_path, args.threads, args.seconds, "many", shared=False
            )
            results["append_n_sqlite_shared_connection"] = sqlite_appends(
                sq_path, args.threads, args.seconds, "many-shared", shared=True
            )
            conn = sqlite_connect(sq_path)
            try:
                fill(store, conn, args.aggregates, args.per_aggregate)
                fl, sq = replay(store, conn, args.aggregates, args.per_aggregate, rounds=3)
            finally:
                conn.close()
            results["replay_factlog"], results["replay_sqlite"] = fl, sq
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    sqlite_n = max(results["append_n_sqlite_connection_per_thread"], results["append_n_sqlite_shared_connection"])
    ratios = {
        "append_1": results["append_1_factlog"] / results["append_1_sqlite"],
        "append_n": results["append_n_factlog"] / sqlite_n,
        "replay": results["replay_factlog"] / results["replay_sqlite"],
    }
    if args.json:
        doc = {"threads": args.threads, "events_per_second": results, "ratios": ratios, "appends_per_fsync": per_fsync}
        print(json.dumps(doc, indent=2))
        return
    n = args.threads
    rows = [
        ("durable appends, 1 thread", results["append_1_factlog"], results["append_1_sqlite"], ratios["append_1"]),
        (f"durable appends, {n} threads", results["append_n_factlog"], sqlite_n, ratios["append_n"]),
        ("aggregate replay", results["replay_factlog"], results["replay_sqlite"], ratios["replay"]),
    ]
    print(f"{'workload (events/s)':<30} {'factlog':>12} {'sqlite3':>12} {'factlog/sqlite3':>16}")
    for name, a, b, r in rows:
        print(f"{name:<30} {a:>12,.0f} {b:>12,.0f} {r:>15.1f}x")
    print(
        f"(sqlite3 with {n} threads: {results['append_n_sqlite_connection_per_thread']:,.0f}/s with a connection "
        f"per thread, {results['append_n_sqlite_shared_connection']:,.0f}/s sharing one; the better is compared)"
    )
    print(f"(factlog with {n} threads: {per_fsync:.1f} appends per fsync, the writer's group commit)")


if __name__ == "__main__":
    main()
