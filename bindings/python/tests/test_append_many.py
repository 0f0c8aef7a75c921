"""append_many: several aggregates in one atomic batch, all or nothing, with the engine's errors."""

import pytest

import factlog


def test_a_transfer_is_written_whole_with_consecutive_positions(store):
    store.append("acct-1", factlog.Event("AccountOpened", {}), expected_version=factlog.NO_STREAM)
    results = store.append_many(
        [
            ("acct-1", [factlog.Event("FundsWithdrawn", {"amount": 30}), factlog.Event("FeeCharged", 1)], 0),
            ("acct-2", factlog.Event("FundsDeposited", {"amount": 30}), factlog.NO_STREAM),
            ("log", iter([factlog.Event("TransferLogged", "t-1")])),  # no expectation: ANY
        ]
    )
    assert [(r.first_version, r.last_version, r.first_position, r.last_position) for r in results] == [
        (1, 2, 1, 2),
        (0, 0, 3, 3),
        (0, 0, 4, 4),
    ]
    assert all(isinstance(r, factlog.AppendResult) and not r.deduplicated for r in results)
    assert [(e.position, e.aggregate_id, e.event_type) for e in store.read_all()][1:] == [
        (1, "acct-1", "FundsWithdrawn"),
        (2, "acct-1", "FeeCharged"),
        (3, "acct-2", "FundsDeposited"),
        (4, "log", "TransferLogged"),
    ]


def test_one_stale_expectation_writes_nothing_and_names_its_aggregate(store):
    store.append("a", factlog.Event("T", 1))
    with pytest.raises(factlog.WrongExpectedVersion) as e:
        store.append_many([("new", factlog.Event("T", 2), factlog.NO_STREAM), ("a", factlog.Event("T", 3), 5)])
    assert (e.value.aggregate_id, e.value.expected, e.value.actual) == ("a", 5, 0)
    assert store.aggregate_version("new") is None and store.last_position == 0


def test_a_retry_is_deduplicated_as_a_whole(store):
    batches = [("x", factlog.Event("T", 1), factlog.NO_STREAM), ("y", [factlog.Event("T", 2)], factlog.NO_STREAM)]
    first = store.append_many(batches)
    again = store.append_many(batches)
    assert [r.deduplicated for r in again] == [True, True]
    assert [r.last_position for r in again] == [r.last_position for r in first]
    assert store.last_position == 1


def test_bad_batches_raise_and_write_nothing(store):
    ev = factlog.Event("T", 1)
    with pytest.raises(factlog.InvalidInput, match="appears twice"):
        store.append_many([("a", ev), ("a", factlog.Event("T", 2))])
    with pytest.raises(factlog.InvalidInput, match="no batches"):
        store.append_many([])
    with pytest.raises(factlog.InvalidInput, match="empty batch"):
        store.append_many([("a", ev), ("b", [])])
    with pytest.raises(TypeError, match="batch 1 is not one"):
        store.append_many([("a", ev), ("b",)])
    with pytest.raises(TypeError, match="batch 0 is not one"):
        store.append_many([["a", ev]])
    with pytest.raises(TypeError, match="aggregate_id of batch 0"):
        store.append_many([(7, ev)])
    with pytest.raises(TypeError, match="factlog.Event"):
        store.append_many([("a", ["not an event"])])
    with pytest.raises(ValueError, match="expected_version -1"):
        store.append_many([("a", ev, -1)])
    assert store.last_position is None


def test_closed_and_read_only_stores_refuse(path):
    with factlog.Store(path) as s:
        s.append("a", factlog.Event("T", 1))
        with factlog.Store(path, read_only=True) as ro:
            with pytest.raises(factlog.ReadOnly):
                ro.append_many([("b", factlog.Event("T", 2))])
    with pytest.raises(factlog.Closed):
        s.append_many([("b", factlog.Event("T", 2))])
