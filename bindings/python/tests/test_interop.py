"""Rust and Python share one format: a store written by the Rust `factlog` tool is read from Python,
field by field, and a store written from Python is read by the tool, and followed by a read-only
Python store beside its writer."""

import base64
import json
import subprocess
import uuid

import factlog

CLI_KEYS = [
    "event_id", "aggregate_id", "version", "position", "event_type", "event_version", "occurred_at",
    "recorded_at", "causation_id", "correlation_id",
]


def run(cli, *args, stdin=None):
    out = subprocess.run([cli, *map(str, args)], input=stdin, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_store_written_by_rust_read_from_python(cli, path):
    lines = [
        {
            "type": "Opened",
            "data": {"owner": "ada", "tags": [1, 2]},
            "id": "11111111-2222-4333-8444-555555555555",
            "event_version": 2,
            "occurred_at": 1_714_564_800_500_000_000,
            "causation_id": "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa",
            "correlation_id": "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb",
            "metadata": {"user": "ops"},
        },
        {"type": "Scanned", "data_base64": base64.b64encode(b"\x00\x01\xff").decode(), "occurred_at": -7},
    ]
    jsonl = "".join(json.dumps(line) + "\n" for line in lines)
    run(cli, "append", path, "--aggregate", "acct-1", "--jsonl", "-", stdin=jsonl)
    run(cli, "append", path, "--aggregate", "acct-2", "--type", "Closed", "--data", "{}")

    with factlog.Store(path) as store:
        opened, scanned = store.read_aggregate("acct-1")
        assert opened.event_id == uuid.UUID("11111111-2222-4333-8444-555555555555")
        assert (opened.aggregate_id, opened.version, opened.position) == ("acct-1", 0, 0)
        assert (opened.event_type, opened.event_version) == ("Opened", 2)
        assert opened.occurred_at == 1_714_564_800_500_000_000 and opened.recorded_at > 0
        assert opened.causation_id == uuid.UUID("aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa")
        assert opened.correlation_id == uuid.UUID("bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb")
        assert opened.metadata_json() == {"user": "ops"}
        assert opened.json() == {"owner": "ada", "tags": [1, 2]}
        assert scanned.data == b"\x00\x01\xff" and scanned.occurred_at == -7 and scanned.metadata == b""
        assert scanned.causation_id is None and scanned.event_version == 1
        assert [e.aggregate_id for e in store.read_all()] == ["acct-1", "acct-1", "acct-2"]
        # And Python appends where Rust left off.
        assert store.append("acct-2", factlog.Event("Reopened", {}), expected_version=0).last_position == 3


def test_store_written_by_python_read_by_rust(cli, path):
    with factlog.Store(path) as store:
        store.append(
            "acct-1",
            [
                factlog.Event("Opened", {"owner": "ada"}, metadata={"user": "ops"}, causation_id=uuid.uuid4(),
                              event_version=3, occurred_at=123),
                factlog.Event("Scanned", b"\x00\xff"),
            ],
        )
        ours = list(store.read_aggregate("acct-1"))
        # Read by the CLI while this process holds the store open (it follows the writer read-only).
        theirs = [json.loads(line) for line in run(cli, "read", path, "--aggregate", "acct-1").splitlines()]
    assert len(theirs) == 2
    for mine, line in zip(ours, theirs):
        for key in CLI_KEYS:
            value = getattr(mine, key)
            assert (str(value) if isinstance(value, uuid.UUID) else value) == line[key], key
    assert theirs[0]["data"] == ours[0].json() and theirs[0]["metadata"] == ours[0].metadata_json()
    assert base64.b64decode(theirs[1]["data_base64"]) == ours[1].data and theirs[1]["metadata"] is None
    assert run(cli, "verify", path)


def test_read_only_store_follows_a_writer(path):
    with factlog.Store(path) as writer:
        writer.append("a", factlog.Event("T", 0))
        with factlog.Store(path, read_only=True) as reader:
            assert [e.json() for e in reader.read_all()] == [0]
            writer.append("a", factlog.Event("T", 1))
            assert reader.refresh() == 1
            assert [e.json() for e in reader.read_aggregate("a")] == [0, 1]
            sub = reader.subscribe(from_position=2)
            writer.append("a", factlog.Event("T", 2))
            assert sub.poll(timeout=5).json() == 2
