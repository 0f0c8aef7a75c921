"""After close(), the store and everything made from it raise factlog.Closed; nothing crashes."""

import gc
import threading
import time

import pytest

import factlog


def fill(store, n=600):
    store.append("a", [factlog.Event("T", i) for i in range(n)])


def test_iterators_raise_after_close(path):
    store = factlog.Store(path)
    fill(store)
    started = store.read_aggregate("a")
    assert next(started).version == 0  # a chunk is buffered now
    fresh = store.read_all()
    backward = store.read_aggregate_backward("a")
    loaded = store.load("a")
    events = loaded.events()
    store.close()
    for it in (started, fresh, backward, events, loaded.events()):
        with pytest.raises(factlog.Closed):
            next(it)
        with pytest.raises(factlog.Closed):  # and again: still no crash
            next(it)


def test_every_method_raises_after_close(path):
    store = factlog.Store(path)
    fill(store, 3)
    store.close()
    store.close()  # idempotent
    calls = [
        lambda: store.append("a", factlog.Event("T", 1)),
        lambda: store.read_aggregate("a"),
        lambda: store.read_aggregate_backward("a"),
        lambda: store.read_all(),
        lambda: store.aggregate_version("a"),
        lambda: store.last_position,
        lambda: store.durable_position,
        lambda: store.refresh(),
        lambda: store.save_snapshot("a", 0, b"s"),
        lambda: store.latest_snapshot("a"),
        lambda: store.load("a"),
        lambda: store.load_as_of("a", version=0),
        lambda: store.stats(),
        lambda: store.verify(),
        lambda: store.sync(),
        lambda: store.subscribe(),
        lambda: store.subscribe_aggregate("a"),
        lambda: store.consumer("c"),
        lambda: store.consumers(),
        lambda: store.reset_consumer("c"),
        lambda: store.delete_consumer("c"),
    ]
    for call in calls:
        with pytest.raises(factlog.Closed):
            call()
    assert store.closed


def test_close_releases_the_lock_while_iterators_live(path):
    store = factlog.Store(path)
    fill(store, 3)
    it = store.read_all()
    sub = store.subscribe()
    consumer = store.consumer("c")
    store.close()
    with factlog.Store(path) as again:  # no Locked: nothing kept the old handle open
        assert len(list(again.read_all())) == 3
        with again.consumer("c") as c:  # the consumer's lock was released by close() too
            assert c.poll(timeout=0).position == 0
    for thing in (it, sub, consumer):
        with pytest.raises(factlog.Closed):
            next(thing)


def test_subscription_blocked_in_another_thread_ends_with_closed(path):
    store = factlog.Store(path)
    sub = store.subscribe(from_end=True)
    consumer = store.consumer("waiting", from_end=True)
    outcome = {}

    def wait(name, feed):
        try:
            next(feed)
        except factlog.Closed:
            outcome[name] = "closed"

    threads = [threading.Thread(target=wait, args=(n, f)) for n, f in (("sub", sub), ("consumer", consumer))]
    for t in threads:
        t.start()
    time.sleep(0.2)
    store.close()
    for t in threads:
        t.join(timeout=10)
        assert not t.is_alive()
    assert outcome == {"sub": "closed", "consumer": "closed"}


def test_dropping_the_store_without_close_releases_it(path):
    store = factlog.Store(path)
    fill(store, 2)
    del store
    gc.collect()
    with factlog.Store(path) as again:
        assert len(list(again.read_all())) == 2


def test_an_iterator_keeps_what_it_reads_alive(path):
    def make():
        s = factlog.Store(path)
        fill(s, 300)
        return s.read_all()  # the Store object itself is dropped here

    it = make()
    gc.collect()
    assert [e.position for e in it] == list(range(300))
