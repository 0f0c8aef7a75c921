"""Subscriptions and durable consumers as Python iterators."""

import threading
import time

import factlog


def append(store, agg, *values, type="T"):
    return store.append(agg, [factlog.Event(type, v) for v in values])


def test_subscription_catches_up_then_follows(store):
    append(store, "a", 0, 1, 2)
    sub = store.subscribe()
    assert [next(sub).json() for _ in range(3)] == [0, 1, 2]
    assert sub.poll(timeout=0.05) is None
    assert sub.position == 3

    def later():
        time.sleep(0.1)
        append(store, "b", 3)

    t = threading.Thread(target=later)
    t.start()
    got = next(sub)  # blocks without the GIL until the other thread's append is durable
    t.join()
    assert (got.aggregate_id, got.position, got.json()) == ("b", 3, 3)


def test_subscription_filters_and_start_points(store):
    append(store, "order-1", 0, type="Placed")
    append(store, "user-1", 1, type="Placed")
    append(store, "order-2", 2, type="Shipped")
    placed = store.subscribe(event_types=["Placed"])
    assert [placed.poll(0).json(), placed.poll(0).json(), placed.poll(0)] == [0, 1, None]
    orders = store.subscribe(aggregate_prefixes=["order-"])
    assert [e.aggregate_id for e in (orders.poll(0), orders.poll(0))] == ["order-1", "order-2"]
    assert store.subscribe(from_position=2).poll(0).json() == 2
    from_end = store.subscribe(from_end=True)
    assert from_end.poll(0) is None
    append(store, "x", 3)
    assert from_end.poll(1).json() == 3


def test_aggregate_subscription(store):
    append(store, "a", 0, 1)
    append(store, "b", 9)
    sub = store.subscribe_aggregate("a")
    assert [sub.poll(0).version, sub.poll(0).version, sub.poll(0)] == [0, 1, None]
    assert sub.position == 2
    append(store, "a", 2)
    assert sub.poll(1).json() == 2
    assert store.subscribe_aggregate("a", 1).poll(0).version == 1
    assert store.subscribe_aggregate("a", from_end=True).poll(0) is None


def test_consumer_resumes_after_its_checkpoint(store):
    append(store, "a", *range(5))
    with store.consumer("projector", commit_every_events=2) as c:
        assert c.name == "projector"
        assert [c.poll(0).json() for _ in range(5)] == list(range(5))
        assert c.position == 5 and c.committed == 0
        assert c.poll(timeout=0) is None  # asking for more commits what was handed out (5 >= 2 events)
        assert c.committed == 5
    append(store, "a", 5)
    with store.consumer("projector") as c:
        assert [e.json() for e in [c.poll(0)]] == [5]
    [info] = store.consumers()
    assert (info.name, info.next_position, info.active) == ("projector", 5, False)


def test_consumer_delivers_at_least_once(store):
    append(store, "a", *range(3))
    with store.consumer("c") as c:
        assert [c.poll(0).json() for _ in range(2)] == [0, 1]
        assert c.poll(0).json() == 2 and c.poll(0) is None
    # Nothing was committed (auto-commit waits for 1,000 events or 1 s): the next handle gets the
    # events again.
    with store.consumer("c") as c:
        assert c.poll(0).json() == 0
        c.commit()  # everything handed out so far: position 0
        assert c.committed == 1
    with store.consumer("c") as c:
        assert c.poll(0).json() == 1


def test_consumer_manual_commits_and_filters(store):
    append(store, "a", 0, type="Skip")
    append(store, "a", 1, type="Keep")
    append(store, "a", 2, type="Keep")
    with store.consumer("m", event_types=["Keep"], auto_commit=False) as c:
        assert [c.poll(0).json(), c.poll(0).json(), c.poll(0)] == [1, 2, None]
        assert c.committed == 0
        c.commit(1)
    with store.consumer("m") as c:
        assert c.position == 2 and c.poll(0).json() == 2
    assert store.reset_consumer("m") == 0
    with store.consumer("m") as c:
        assert c.poll(0).position == 0


def test_consumer_as_a_blocking_iterator(store):
    got = []

    def consume():
        with store.consumer("it", from_end=True) as c:
            ready.set()
            for event in c:
                got.append(event.json())
                if len(got) == 3:
                    return

    ready = threading.Event()
    t = threading.Thread(target=consume)
    t.start()
    ready.wait(5)
    for i in range(3):
        append(store, "a", i)
    t.join(10)
    assert not t.is_alive() and got == [0, 1, 2]
