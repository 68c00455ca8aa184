"""InstanceFeed, the event bookkeeping every backend shares: whatever order and repetition
its store reports changes in, a watcher gets one Snapshot, then each change once."""

from __future__ import annotations

import anyio
import pytest

from requestplane_core import ConfigError
from requestplane_core.discovery import (
    Added,
    Instance,
    InstanceFeed,
    Removed,
    Snapshot,
    WatchEvent,
    instance_from_json,
    instance_to_json,
)

pytestmark = pytest.mark.anyio


def _i(instance_id: str, port: int = 1, name: str = "kit/feed") -> Instance:
    return Instance(name, instance_id, "tcp", f"tcp://h:{port}/{name}")


async def _drain(feed: InstanceFeed) -> list[WatchEvent]:
    """The events queued so far (the feed never blocks its backend)."""
    events: list[WatchEvent] = []
    with anyio.move_on_after(0.05):
        while True:
            events.append(await feed.__anext__())
    return events


async def test_replace_reports_the_difference(anyio_backend: str) -> None:
    closed: list[bool] = []
    feed = InstanceFeed("kit/feed", on_close=lambda: closed.append(True))
    assert not feed.started
    feed.put(_i("early"))  # before the snapshot: nothing to say yet
    feed.replace([_i("b"), _i("a"), _i("x", name="kit/other")])
    assert feed.started
    feed.replace([_i("a"), _i("b")])  # the same: nothing
    feed.replace([_i("b", port=2), _i("c")])  # a moved, b moved, c new
    assert await _drain(feed) == [
        Snapshot((_i("a"), _i("b"))),
        Removed(_i("a")),
        Removed(_i("b")),
        Added(_i("b", port=2)),
        Added(_i("c")),
    ]
    assert (await _drain(feed)) == []
    await feed.aclose()
    await feed.aclose()
    assert closed == [True], "on_close runs once"
    feed.replace([])  # after close: dropped, no error
    with pytest.raises(StopAsyncIteration):
        await feed.__anext__()


async def test_put_and_delete_ignore_repeats(anyio_backend: str) -> None:
    feed = InstanceFeed("kit/feed")
    feed.replace([])
    feed.put(_i("a"))
    feed.put(_i("a"))  # a repeat
    feed.put(_i("a", port=2))  # a new address: the old one goes first
    feed.put(_i("z", name="kit/other"))  # another name
    feed.delete(("kit/feed", "a"))
    feed.delete(("kit/feed", "a"))  # a repeat
    feed.delete(("kit/feed", "nobody"))
    assert await _drain(feed) == [
        Snapshot(()),
        Added(_i("a")),
        Removed(_i("a")),
        Added(_i("a", port=2)),
        Removed(_i("a", port=2)),
    ]
    await feed.aclose()


def test_records_round_trip_and_bad_ones_are_value_errors() -> None:
    one = Instance("kit/feed", "a", "tcp", "tcp://h:1/x", {"zone": "a"}, 12.5)
    parsed, record = instance_from_json(instance_to_json(one, pid=7))
    assert parsed == one and dict(parsed.metadata) == {"zone": "a"}
    assert parsed.registered_at == 12.5 and record["pid"] == 7
    bad = [
        b"",
        b"{",
        b"[]",
        b'{"name": "kit/feed"}',
        b'{"name": "a b", "instance": "a", "transport": "t", "address": "x"}',
        b'{"name": "n", "instance": "a", "transport": "t", "address": "x", "metadata": {"k": 1}}',
        b'{"name": "n", "instance": "a", "transport": "t", "address": "x", "registered_at": "1"}',
        b'{"name": "n", "instance": "a", "transport": "t", "address": "x", "metadata": 5}',
        b"\xff\xfe",
        b"[" * 50_000,
    ]
    for data in bad:
        with pytest.raises(ValueError):
            instance_from_json(data)
    with pytest.raises(ConfigError):
        Instance("kit/feed", "not an id", "tcp", "x")
