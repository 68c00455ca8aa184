"""The ``file`` discovery backend: the conformance kit, then what only a directory of record
files can get wrong (corrupt files, an unusable directory, deleted records, zombies)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from requestplane_core import ConfigError, Request, RequestPlane
from requestplane_core.discovery import (
    Added,
    DiscoveryBackend,
    Instance,
    Removed,
    Snapshot,
    Watch,
    WatchEvent,
    instance_to_json,
)
from requestplane_core.testing import DiscoveryConformance


class TestFileDiscovery(DiscoveryConformance):
    backend_name = "file"

    @pytest.fixture
    def discovery_settings(self, tmp_path: Path) -> Mapping[str, object]:
        return {"dir": tmp_path / "discovery"}


# -- what only the file backend can get wrong --------------------------------------------------

BOUND = 15.0
VAR = "REQUESTPLANE_DISCOVERY_FILE_DIR"

# A worker in a process of its own: registers one instance, says so, and waits to be killed.
CHILD = """
import sys, time, anyio
from requestplane_core import ConfigError, RequestPlane
from requestplane_core.discovery import Instance

async def main():
    async with RequestPlane() as plane:
        name, instance_id = sys.argv[1:3]
        address = f"tcp://127.0.0.1:3/{name}"
        try:
            await plane.discovery().register(Instance(name, instance_id, "tcp", address))
        except ConfigError:
            print("refused", flush=True)
            return
        print("registered", flush=True)
        await anyio.sleep_forever()

anyio.run(main)
"""


def _instance(name: str, instance_id: str, port: int = 1) -> Instance:
    return Instance(name, instance_id, "tcp", f"tcp://127.0.0.1:{port}/{name}")


@asynccontextmanager
async def _backend(root: Path, **settings: object) -> AsyncIterator[DiscoveryBackend]:
    plane = RequestPlane(environ={}, discovery="file", discovery_settings={"dir": root, **settings})
    async with plane:
        yield plane.discovery()


async def _until(predicate: Callable[[], Awaitable[bool]], what: str, bound: float = BOUND) -> None:
    """Poll ``predicate`` (a file appearing, a process state: nothing to wait on) until it
    holds, or fail saying ``what`` did not happen."""
    with anyio.move_on_after(bound):
        while True:
            if await predicate():
                return
            await anyio.sleep(0.02)
    pytest.fail(f"not within {bound}s: {what}")


async def _next(watch: Watch, expected: str) -> WatchEvent:
    with anyio.move_on_after(BOUND):
        return await watch.__anext__()
    pytest.fail(f"no watch event within {BOUND}s: expected {expected}")


def _spawn(root: Path, name: str, instance_id: str, ttl: float) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REQUESTPLANE_")}
    env.update({VAR: str(root), "REQUESTPLANE_DISCOVERY_FILE_TTL": str(ttl)})
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, name, instance_id], env=env, stdout=subprocess.PIPE
    )


async def _said(child: subprocess.Popen[bytes]) -> bytes:
    assert child.stdout is not None
    with anyio.fail_after(BOUND * 2):
        return await anyio.to_thread.run_sync(child.stdout.readline, abandon_on_cancel=True)


async def _registered(child: subprocess.Popen[bytes]) -> None:
    line = await _said(child)
    assert line == b"registered\n", f"the child said {line!r}"


def _dead_pid() -> int:
    """The pid of a process that ran and was reaped."""
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return process.pid


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", "rb") as stat:
        return stat.read().rsplit(b")", 1)[-1].split()[0].decode()


async def test_corrupt_records_are_skipped_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, anyio_backend: str
) -> None:
    caplog.set_level(logging.WARNING, "requestplane.discovery")
    directory = tmp_path / "kit" / "corrupt"
    directory.mkdir(parents=True)
    good = _instance("kit/corrupt", "good")
    (directory / "garbage.json").write_bytes(b"{not json")
    (directory / "list.json").write_bytes(b"[1, 2]")
    (directory / "deep.json").write_bytes(b"[" * 100_000 + b"]" * 100_000)
    (directory / "binary.json").write_bytes(bytes(range(256)))
    (directory / "huge.json").write_bytes(
        b" " * 1_000_000 + instance_to_json(_instance("kit/corrupt", "huge"))
    )
    # A valid record under another instance's file name.
    (directory / "misnamed.json").write_bytes(instance_to_json(_instance("kit/corrupt", "x")))
    (directory / "folder.json").mkdir()  # not even a file
    async with _backend(tmp_path) as backend:
        with anyio.fail_after(BOUND):
            await backend.register(good)
            assert await backend.list_instances("kit/corrupt") == [good]
        async with backend.watch("kit/corrupt") as watch:
            snap = await _next(watch, "a Snapshot")
            assert snap == Snapshot((good,)), snap
            # The watch goes on: a new record still reaches it.
            late = _instance("kit/corrupt", "late", port=2)
            with anyio.fail_after(BOUND):
                await backend.register(late)
            assert await _next(watch, "Added(late)") == Added(late)
    for bad in ("garbage", "list", "deep", "binary", "huge", "misnamed", "folder"):
        bad += ".json"
        warned = [r for r in caplog.records if bad in r.getMessage()]
        assert len(warned) == 1, f"{bad}: expected one warning, got {len(warned)}: {warned}"
        assert warned[0].levelno == logging.WARNING


async def test_unwritable_directory_is_a_config_error_naming_the_variable(
    tmp_path: Path, anyio_backend: str
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    root = blocker / "discovery"  # unwritable even for root: its parent is a regular file
    async with _backend(root) as backend:
        with anyio.fail_after(BOUND), pytest.raises(ConfigError) as info:
            await backend.register(_instance("kit/ro", "one"))
        assert VAR in str(info.value) and str(root) in str(info.value), info.value
        with anyio.fail_after(BOUND):
            assert await backend.list_instances("kit/ro") == []
    # A server refuses to serve an endpoint it cannot publish, from the environment alike.
    plane = RequestPlane("tcp", settings={"port": 0}, environ={VAR: str(root)})
    async with plane:
        server = await plane.server()
        with anyio.fail_after(BOUND), pytest.raises(ConfigError) as info:
            await server.register("kit/ro", _echo)
        assert VAR in str(info.value), info.value
        assert server.health().endpoints == ()


async def _echo(request: Request) -> bytes:
    return request.payload


def test_unknown_backend_lists_the_installed_ones() -> None:
    with pytest.raises(ConfigError) as info:
        RequestPlane(environ={}, discovery="nope")
    message = str(info.value)
    for word in ("REQUESTPLANE_DISCOVERY='nope'", "file", "static", "'none'"):
        assert word in message, f"expected {word!r} in: {message}"


@pytest.mark.parametrize(
    ("environ", "settings", "words"),
    [
        ({"REQUESTPLANE_DISCOVERY_FILE_TTL": "soon"}, {}, ["REQUESTPLANE_DISCOVERY_FILE_TTL"]),
        ({"REQUESTPLANE_DISCOVERY_FILE_TTL": "0.5"}, {}, ["out of range", "1 to 86400"]),
        ({"REQUESTPLANE_DISCOVERY_FILE_TTL": "nan"}, {}, ["REQUESTPLANE_DISCOVERY_FILE_TTL"]),
        ({}, {"ttl": 100000}, ["'ttl'", "1 to 86400"]),
        ({}, {"ttl": "inf"}, ["'ttl'"]),
        ({"REQUESTPLANE_DISCOVERY_FILE_POLL_INTERVAL": "0"}, {}, ["POLL_INTERVAL"]),
    ],
)
def test_malformed_settings(
    environ: dict[str, str], settings: dict[str, object], words: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        RequestPlane(environ=environ, discovery="file", discovery_settings=settings)
    for word in words:
        assert word in str(info.value), f"expected {word!r} in: {info.value}"


async def test_heartbeat_recreates_a_record_deleted_under_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, anyio_backend: str
) -> None:
    one = _instance("kit/beat", "one")
    record = tmp_path / "kit" / "beat" / "one.json"
    async with _backend(tmp_path, ttl=1) as backend, _backend(tmp_path) as reader:
        with anyio.fail_after(BOUND):
            await backend.register(one)
        assert record.is_file()
        record.unlink()
        assert await reader.list_instances("kit/beat") == []

        async def back() -> bool:
            return await reader.list_instances("kit/beat") == [one]

        await _until(back, "the heartbeat to write the deleted record again")
    assert any("vanished" in r.getMessage() for r in caplog.records), caplog.records


async def test_a_zombie_owner_counts_as_dead(tmp_path: Path, anyio_backend: str) -> None:
    # A TTL far longer than the test: only the owner's liveness can remove the record.
    child = _spawn(tmp_path, "kit/zombie", "z", ttl=600)
    try:
        await _registered(child)
        async with _backend(tmp_path) as backend:
            with anyio.fail_after(BOUND):
                listed = await backend.list_instances("kit/zombie")
            assert [i.instance_id for i in listed] == ["z"], listed
            os.kill(child.pid, signal.SIGKILL)

            async def zombie() -> bool:
                return _state(child.pid) == "Z"

            await _until(zombie, "the killed, unreaped child to be a zombie")
            with anyio.fail_after(BOUND):
                listed = await backend.list_instances("kit/zombie")
            assert listed == [], f"a zombie's record is listed: {listed}"
            assert child.poll() is not None  # reaped only now
            # Its id is free again for a live owner.
            with anyio.fail_after(BOUND):
                await backend.register(_instance("kit/zombie", "z", port=4))
                listed = await backend.list_instances("kit/zombie")
            assert [i.address for i in listed] == ["tcp://127.0.0.1:4/kit/zombie"], listed
    finally:
        child.kill()
        child.wait()


async def test_a_dead_owners_record_file_is_removed(tmp_path: Path, anyio_backend: str) -> None:
    child = _spawn(tmp_path, "kit/gc", "dead", ttl=600)
    record = tmp_path / "kit" / "gc" / "dead.json"
    try:
        await _registered(child)
    finally:
        child.kill()
        child.wait()
    assert record.is_file()
    async with _backend(tmp_path) as backend, backend.watch("kit/gc") as watch:
        assert await _next(watch, "a Snapshot") == Snapshot(())

        async def gone() -> bool:
            return not record.exists()

        await _until(gone, f"the dead owner's record {record} to be removed")


async def test_a_record_from_another_host_lives_by_its_ttl(
    tmp_path: Path, anyio_backend: str
) -> None:
    # Another machine's process cannot be checked: only the heartbeat (mtime) counts.
    other = _instance("kit/remote", "far")
    directory = tmp_path / "kit" / "remote"
    directory.mkdir(parents=True)
    record = directory / "far.json"
    record.write_bytes(instance_to_json(other, pid=1, host="elsewhere.invalid", ttl=1.0))
    async with _backend(tmp_path) as backend:
        with anyio.fail_after(BOUND):
            assert await backend.list_instances("kit/remote") == [other]
        async with backend.watch("kit/remote") as watch:
            assert await _next(watch, "a Snapshot") == Snapshot((other,))
            # Not refreshed: it goes after its own TTL (1 s), not the reader's (10 s).
            with anyio.fail_after(1.0 + 2.0):
                assert await _next(watch, "Removed(far)") == Removed(other)
        os.utime(record)  # a heartbeat brings it back
        with anyio.fail_after(BOUND):
            assert await backend.list_instances("kit/remote") == [other]


async def test_an_id_registered_again_with_another_address_is_seen(
    tmp_path: Path, anyio_backend: str
) -> None:
    # The filesystem may give the new record the inode the old one just freed: a reader must
    # not take it for the record it read before.
    old, new = _instance("kit/again", "same", port=1), _instance("kit/again", "same", port=2)
    async with _backend(tmp_path) as owner, _backend(tmp_path) as reader:
        with anyio.fail_after(BOUND):
            await owner.register(old)
        async with reader.watch("kit/again") as watch:
            assert await _next(watch, "a Snapshot") == Snapshot((old,))
            with anyio.fail_after(BOUND):
                await owner.unregister(old)
                await owner.register(new)
            events = [await _next(watch, "Removed(old)"), await _next(watch, "Added(new)")]
            assert events == [Removed(old), Added(new)], events
            assert events[1].instance.address == new.address  # type: ignore[union-attr]
        with anyio.fail_after(BOUND):
            listed = await reader.list_instances("kit/again")
        assert [i.address for i in listed] == [new.address], listed


async def test_of_processes_registering_one_id_one_wins(tmp_path: Path, anyio_backend: str) -> None:
    # Duplicates refused across processes (whether they truly overlap is up to the
    # scheduler: the hard link makes the overlap safe, this test cannot force it).
    children = [_spawn(tmp_path, "kit/race", "same", ttl=600) for _ in range(4)]
    try:
        said = sorted([(await _said(c)).decode().strip() for c in children])
        assert said == ["refused"] * 3 + ["registered"], said
        async with _backend(tmp_path) as backend:
            with anyio.fail_after(BOUND):
                listed = await backend.list_instances("kit/race")
        assert [i.instance_id for i in listed] == ["same"], listed
    finally:
        for c in children:
            c.kill()
            c.wait()


async def test_a_record_from_another_pid_namespace_lives_by_its_ttl(
    tmp_path: Path, anyio_backend: str
) -> None:
    # A container on the host's network: our host name, but its pids are not ours to look
    # up. A pid dead here says nothing about its owner.
    dead = _dead_pid()
    other = _instance("kit/ns", "boxed")
    directory = tmp_path / "kit" / "ns"
    directory.mkdir(parents=True)
    record = directory / "boxed.json"
    data = instance_to_json(other, pid=dead, host=socket.gethostname(), pidns="pid:[1]", ttl=60.0)
    record.write_bytes(data)
    async with _backend(tmp_path) as backend:
        with anyio.fail_after(BOUND):
            assert await backend.list_instances("kit/ns") == [other]
        assert record.exists(), "a live record of another namespace was deleted"
        # The same record without the namespace (an older writer) is taken as ours: dead.
        record.write_bytes(instance_to_json(other, pid=dead, host=socket.gethostname(), ttl=60.0))
        with anyio.fail_after(BOUND):
            assert await backend.list_instances("kit/ns") == []
