"""The discovery conformance kit: one suite every discovery backend must pass, on asyncio and
trio, written against the public contract only (:mod:`requestplane_core.discovery`).

Subclass :class:`DiscoveryConformance` in a test module of your backend::

    from requestplane_core.testing import DiscoveryConformance

    class TestMyDiscovery(DiscoveryConformance):
        backend_name = "mine"

        @pytest.fixture
        def discovery_settings(self, my_store): return {"url": my_store.url}

Cases that need something a backend does not have (a store to restart, a TTL setting) are
skipped with a reason starting "not applicable", like the transport kit's capabilities.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from importlib.metadata import entry_points
from typing import Any, ClassVar

import anyio
import pytest
import sniffio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from requestplane_core import ConfigError, Request, RequestPlane, RequestPlaneError
from requestplane_core.config import discovery_env_prefix
from requestplane_core.discovery import (
    Added,
    DiscoveryBackend,
    Instance,
    Removed,
    Snapshot,
    Watch,
    WatchEvent,
)
from requestplane_core.plugins import OBSERVER_ENTRY_POINT_GROUP

__all__ = ["DiscoveryConformance", "StoreRestart"]

# Generous bounds: they only turn a hang into a failure, on a loaded 2-core machine.
BOUND = 15.0

#: Stops the backend's store and starts it again (its data kept or not, as the store does).
StoreRestart = Callable[[], Awaitable[None]]

_Key = tuple[str, str]


def _instance(name: str, instance_id: str, port: int = 1, **labels: str) -> Instance:
    return Instance(
        name=name,
        instance_id=instance_id,
        transport="tcp",
        address=f"tcp://127.0.0.1:{port}/{name}",
        metadata=labels,
        registered_at=time.time(),
    )


def _show(event: WatchEvent) -> str:
    if isinstance(event, Snapshot):
        return f"Snapshot({[i.instance_id for i in event.instances]})"
    return f"{type(event).__name__}({event.instance.name}/{event.instance.instance_id})"


class _Table:
    """What a caller builds from a watch: it checks every event is consistent with the ones
    before it (one Snapshot first; no Added for a known instance, no Removed for an unknown
    one), which is what "no event lost or repeated" means to a router."""

    def __init__(self, watch: Watch, name: str) -> None:
        self.watch = watch
        self.name = name
        self.instances: dict[_Key, Instance] | None = None
        self.events: list[str] = []

    def apply(self, event: WatchEvent) -> None:
        self.events.append(_show(event))
        if isinstance(event, Snapshot):
            assert self.instances is None, f"a second Snapshot on one watch: {self.events}"
            keys = [i.key for i in event.instances]
            assert keys == sorted(set(keys)), f"a Snapshot not ordered by id, or repeating: {keys}"
            for instance in event.instances:
                assert instance.name == self.name, f"{instance} in a watch of {self.name!r}"
            self.instances = {i.key: i for i in event.instances}
            return
        assert self.instances is not None, f"the first event is not a Snapshot: {self.events}"
        instance = event.instance
        assert instance.name == self.name, f"{instance} in a watch of {self.name!r}"
        if isinstance(event, Added):
            assert instance.key not in self.instances, (
                f"Added for an instance already in the table (a repeated event): {self.events}"
            )
            self.instances[instance.key] = instance
        else:
            assert instance.key in self.instances, (
                f"Removed for an instance not in the table: {self.events}"
            )
            del self.instances[instance.key]

    @property
    def ids(self) -> list[str]:
        assert self.instances is not None
        return sorted(key[1] for key in self.instances)

    async def next(self, expected: str) -> WatchEvent:
        """The next event, applied; a failure saying what was ``expected`` if none comes."""
        with anyio.move_on_after(BOUND):
            try:
                event = await self.watch.__anext__()
            except StopAsyncIteration:
                pytest.fail(f"the watch of {self.name!r} ended; expected {expected}")
            self.apply(event)
            return event
        pytest.fail(f"no event within {BOUND}s on the watch of {self.name!r}: expected {expected}")

    async def snapshot(self) -> Snapshot:
        event = await self.next("a Snapshot")
        assert isinstance(event, Snapshot), f"the first event is {_show(event)}, not a Snapshot"
        return event

    async def until(
        self, predicate: Callable[[], bool], expected: str, bound: float = BOUND
    ) -> float:
        """Apply events until ``predicate()`` holds; the seconds it took."""
        start = time.monotonic()
        with anyio.move_on_after(bound):
            while not predicate():
                try:
                    self.apply(await self.watch.__anext__())
                except StopAsyncIteration:
                    pytest.fail(f"the watch of {self.name!r} ended; expected {expected}")
            return time.monotonic() - start
        pytest.fail(f"not within {bound}s on the watch of {self.name!r}: {expected}; {self.events}")


def _env_value(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _Child:
    """A process of its own registering one instance through ``RequestPlane().discovery()``
    configured by the environment alone, as a deployed worker is."""

    def __init__(self, process: Process) -> None:
        self.process = process
        assert process.stdout is not None
        self._stdout = BufferedByteReceiveStream(process.stdout)

    async def line(self) -> str:
        with anyio.fail_after(BOUND * 2):
            return (await self._stdout.receive_until(b"\n", 1 << 16)).decode()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)

    async def reap(self) -> None:
        with anyio.CancelScope(shield=True):
            if self.process.returncode is None:
                self.process.kill()
            await self.process.wait()
            await self.process.aclose()


_CHILD = "from requestplane_core.testing.discovery_conformance import _child_main; _child_main()"


def _child_main() -> None:
    """Entry of the registering child: ``<backend> <name> <instance id>`` in argv."""
    library, name, instance_id = sys.argv[1:4]

    async def main() -> None:
        async with RequestPlane() as plane:
            await plane.discovery().register(_instance(name, instance_id, port=2))
            print("registered", flush=True)
            await anyio.sleep_forever()

    anyio.run(main, backend=library)


class DiscoveryConformance:
    """Every case runs on asyncio and trio against the discovery backend ``backend_name``.

    Fixtures to override: ``discovery_settings`` (setting overrides, e.g. the URL of a store
    started for the test), ``discovery_transport`` (the transport the server case serves on),
    ``expected_instances`` (read-only backends: what the settings list) and
    ``discovery_store_restart`` (backends with a store: restart it).
    """

    backend_name: ClassVar[str]
    settings: ClassVar[Mapping[str, object]] = {}
    #: A backend that cannot publish (a fixed list): only the reading cases run.
    read_only: ClassVar[bool] = False
    #: The setting that bounds how long a dead owner's records stay (None: the backend has
    #: none, and the expiry case is not applicable).
    ttl_setting: ClassVar[str | None] = "ttl"
    #: The value the expiry case sets it to (short, yet long enough that an owner's
    #: heartbeats, a third of it apart on most backends, survive a busy machine).
    fast_ttl: ClassVar[float] = 2.0
    #: How much later than ``fast_ttl`` after a SIGKILL the removal may be seen (the issue's
    #: goal is TTL + 1 s; slack for a loaded machine).
    expiry_margin: ClassVar[float] = 2.0

    pytestmark = pytest.mark.anyio

    @pytest.fixture(params=["asyncio", "trio"])
    def anyio_backend(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture
    def discovery_settings(self) -> Mapping[str, object]:
        return dict(self.settings)

    @pytest.fixture
    def discovery_transport(self) -> tuple[str, Mapping[str, object]]:
        """The transport (name, settings) the server case serves on."""
        return ("tcp", {"port": 0})

    @pytest.fixture(autouse=True)
    def _use_transport(self, discovery_transport: tuple[str, Mapping[str, object]]) -> None:
        self._transport = discovery_transport
        # Names of this test alone: a store shared by the whole run (a NATS server) may
        # still hold the records of an earlier test for a TTL.
        self._space = f"kit{secrets.token_hex(4)}"

    def _n(self, rest: str = "") -> str:
        """A name of this test: ``<unique>/rest``."""
        return f"{self._space}/{rest}" if rest else self._space

    @pytest.fixture
    def expected_instances(self) -> Sequence[Instance]:
        """What a read-only backend lists under ``discovery_settings``."""
        if self.read_only:
            pytest.fail("a read_only backend's tests must provide the expected_instances fixture")
        return ()

    @pytest.fixture
    def discovery_store_restart(self) -> StoreRestart | None:
        """Restart the backend's store; None (the default): the case is not applicable."""
        return None

    @pytest.fixture
    def bad_discovery_settings(self) -> Sequence[Mapping[str, object]]:
        """Setting overrides each of which must be refused with ConfigError."""
        bad: list[Mapping[str, object]] = [{"kit_no_such_setting": "1"}]
        if self.ttl_setting is not None:
            bad += [{self.ttl_setting: "soon"}, {self.ttl_setting: -1.0}]
        return bad

    # -- helpers ---------------------------------------------------------------------------

    def _environ(self) -> dict[str, str]:
        """No environment but the observing plugins disabled: the kit tests the backend."""
        names = [ep.name for ep in entry_points(group=OBSERVER_ENTRY_POINT_GROUP)]
        return {"REQUESTPLANE_DISABLE_PLUGINS": ",".join(names)} if names else {}

    def _plane(self, settings: Mapping[str, object], **kwargs: Any) -> RequestPlane:
        mode, transport_settings = self._transport
        return RequestPlane(
            mode,
            settings=transport_settings,
            environ=self._environ(),
            discovery=self.backend_name,
            discovery_settings=settings,
            **kwargs,
        )

    @asynccontextmanager
    async def _backend(self, settings: Mapping[str, object]) -> AsyncIterator[DiscoveryBackend]:
        async with self._plane(settings) as plane:
            yield plane.discovery()

    def _writable(self) -> None:
        if self.read_only:
            pytest.skip(f"not applicable: discovery backend {self.backend_name!r} is read-only")

    def _reading(self) -> None:
        if not self.read_only:
            pytest.skip("not applicable: a writable backend's reading is tested through register")

    async def _spawn(self, settings: Mapping[str, object], name: str, instance_id: str) -> _Child:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REQUESTPLANE_")}
        env.update(self._environ())
        env["REQUESTPLANE_DISCOVERY"] = self.backend_name
        prefix = discovery_env_prefix(self.backend_name)
        for key, value in settings.items():
            env[prefix + key.upper()] = _env_value(value)
        library = sniffio.current_async_library()
        process = await anyio.open_process(
            [sys.executable, "-c", _CHILD, library, name, instance_id], env=env, stderr=None
        )
        return _Child(process)

    # -- publishing, listing, watching -----------------------------------------------------

    async def test_register_list_watch_unregister(
        self, discovery_settings: Mapping[str, object]
    ) -> None:
        self._writable()
        one = _instance(self._n("basic"), "one", version="2")
        async with self._backend(discovery_settings) as backend:
            with anyio.fail_after(BOUND):
                assert await backend.list_instances(self._n("basic")) == [], (
                    "a fresh name lists none"
                )
                await backend.register(one)
                listed = await backend.list_instances(self._n("basic"))
                assert listed == [one], f"expected the registered instance, listed {listed}"
                assert listed[0].address == one.address
                assert dict(listed[0].metadata) == {"version": "2"}, listed[0].metadata
                assert listed[0].transport == "tcp"
            async with backend.watch(self._n("basic")) as watch:
                table = _Table(watch, self._n("basic"))
                snap = await table.snapshot()
                assert snap.instances == (one,), f"expected a Snapshot of [one], got {snap}"
                with anyio.fail_after(BOUND):
                    await backend.unregister(one)
                event = await table.next("Removed(one) after unregister")
                assert event == Removed(one), f"expected Removed(one), got {_show(event)}"
                with anyio.fail_after(BOUND):
                    assert await backend.list_instances(self._n("basic")) == []
                    await backend.unregister(one)  # unknown now: ignored

    async def test_two_instances_of_one_name_both_listed(
        self, discovery_settings: Mapping[str, object]
    ) -> None:
        self._writable()
        a, b = _instance(self._n("pair"), "a", port=1), _instance(self._n("pair"), "b", port=2)
        # A shorter name that is a prefix of the other, and a longer one under it: neither
        # leaks into the other's list.
        parent, child = _instance(self._n(), "p"), _instance(self._n("pair/sub"), "c")
        async with self._backend(discovery_settings) as first:
            async with self._backend(discovery_settings) as second:
                with anyio.fail_after(BOUND):
                    await first.register(b)
                    await second.register(a)
                    await first.register(parent)
                    await second.register(child)
                    for backend in (first, second):
                        listed = await backend.list_instances(self._n("pair"))
                        assert listed == [a, b], f"expected [a, b] ordered by id, got {listed}"
                        assert [i.address for i in listed] == [a.address, b.address]
                    assert await first.list_instances(self._n()) == [parent]
                    assert await first.list_instances(self._n("pair/sub")) == [child]
                    assert await first.list_instances(self._n("other")) == []

    async def test_duplicate_instance_id_refused(
        self, discovery_settings: Mapping[str, object]
    ) -> None:
        self._writable()
        one = _instance(self._n("dup"), "same", port=1)
        impostor = _instance(self._n("dup"), "same", port=9)
        async with self._backend(discovery_settings) as first:
            async with self._backend(discovery_settings) as second:
                with anyio.fail_after(BOUND):
                    await first.register(one)
                    with pytest.raises(ConfigError):
                        await first.register(one)
                    with pytest.raises(ConfigError):
                        await second.register(impostor)  # another owner, the same id
                    listed = await second.list_instances(self._n("dup"))
                    assert [i.address for i in listed] == [one.address], (
                        f"a refused duplicate changed the record: {listed}"
                    )
                    # The same id under another name is another record.
                    await second.register(_instance(self._n("dup2"), "same"))
                    await first.unregister(one)
                    await second.register(impostor)  # the id is free again
                    listed = await first.list_instances(self._n("dup"))
                    assert [i.address for i in listed] == [impostor.address], listed

    async def test_watch_events_in_order(self, discovery_settings: Mapping[str, object]) -> None:
        self._writable()
        name = self._n("order")
        early = _instance(name, "early")
        a, b, c = (_instance(name, i, port=n) for n, i in enumerate("abc", 1))
        async with self._backend(discovery_settings) as backend:
            with anyio.fail_after(BOUND):
                await backend.register(early)
            async with backend.watch(name) as watch:
                table = _Table(watch, name)
                snap = await table.snapshot()
                assert snap.instances == (early,), f"expected Snapshot([early]), got {snap}"
                steps: list[tuple[str, Instance, WatchEvent]] = [
                    ("register", a, Added(a)),
                    ("register", b, Added(b)),
                    ("unregister", a, Removed(a)),
                    ("unregister", early, Removed(early)),
                    ("register", c, Added(c)),
                    ("unregister", b, Removed(b)),
                ]
                for verb, instance, expected in steps:
                    with anyio.fail_after(BOUND):
                        await getattr(backend, verb)(instance)
                    event = await table.next(_show(expected))
                    assert event == expected, (
                        f"after {verb} {instance.instance_id}: expected {_show(expected)}, "
                        f"got {_show(event)} (events so far: {table.events})"
                    )
                assert table.ids == ["c"]
                # Several changes at once: all reported, none twice, the table right.
                more = [_instance(name, f"m{i}", port=10 + i) for i in range(5)]
                with anyio.fail_after(BOUND):
                    for instance in more:
                        await backend.register(instance)
                    await backend.unregister(c)
                want = sorted(i.instance_id for i in more)
                await table.until(lambda: table.ids == want, f"the table to become {want}")

    async def test_several_watches_of_one_name(
        self, discovery_settings: Mapping[str, object]
    ) -> None:
        self._writable()
        name = self._n("many")
        a, b = _instance(name, "a", port=1), _instance(name, "b", port=2)
        async with self._backend(discovery_settings) as backend:
            first = _Table(backend.watch(name), name)
            await first.snapshot()
            with anyio.fail_after(BOUND):
                await backend.register(a)
            assert await first.next("Added(a)") == Added(a)
            # A watch opened later starts from the state at that moment.
            second = _Table(backend.watch(name), name)
            snap = await second.snapshot()
            assert snap.instances == (a,), f"a later watch's Snapshot: expected [a], got {snap}"
            await first.watch.aclose()  # the other watch goes on
            with anyio.fail_after(BOUND):
                await backend.register(b)
            assert await second.next("Added(b)") == Added(b)
            third = _Table(backend.watch(name), name)
            snap = await third.snapshot()
            assert snap.instances == (a, b), f"expected a Snapshot of [a, b], got {snap}"
            with anyio.fail_after(BOUND):
                await backend.unregister(a)
            assert await second.next("Removed(a)") == Removed(a)
            assert await third.next("Removed(a)") == Removed(a)
            await second.watch.aclose()
            await third.watch.aclose()

    async def test_watch_ends_when_closed(self, discovery_settings: Mapping[str, object]) -> None:
        async with self._backend(discovery_settings) as backend:
            watch = backend.watch(self._n("closed"))
            kept = backend.watch(self._n("kept"))
            await _Table(watch, self._n("closed")).snapshot()
            await _Table(kept, self._n("kept")).snapshot()
            await watch.aclose()
            with anyio.fail_after(BOUND), pytest.raises(StopAsyncIteration):
                await watch.__anext__()
            await watch.aclose()  # twice is fine
            ended = anyio.Event()

            async def follow() -> None:
                async for _ in kept:
                    pass
                ended.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(follow)
                await anyio.wait_all_tasks_blocked()
                with anyio.fail_after(BOUND):
                    await backend.aclose()
                with anyio.move_on_after(BOUND):
                    await ended.wait()
                if not ended.is_set():
                    tg.cancel_scope.cancel()
                    pytest.fail("a watch still open when its backend closed did not end")

    # -- other processes -------------------------------------------------------------------

    async def test_another_process_registers_then_dies(
        self, discovery_settings: Mapping[str, object]
    ) -> None:
        self._writable()
        if self.ttl_setting is None:
            pytest.skip(f"not applicable: {self.backend_name!r} declares no ttl_setting")
        settings = {**discovery_settings, self.ttl_setting: self.fast_ttl}
        name, instance_id = self._n("remote"), f"child{os.getpid()}"
        async with self._backend(settings) as backend:
            async with backend.watch(name) as watch:
                table = _Table(watch, name)
                await table.snapshot()
                child = await self._spawn(settings, name, instance_id)
                try:
                    line = await child.line()
                    assert line == "registered", f"the child said {line!r}"
                    await table.until(
                        lambda: table.ids == [instance_id],
                        f"Added({instance_id}) registered by another process",
                    )
                    # Kept alive while its owner lives: two TTLs without a change. (Waiting
                    # is the point here: nothing must happen.)
                    with anyio.move_on_after(2 * self.fast_ttl + 0.5):
                        event = await table.next("nothing")
                        pytest.fail(
                            f"{_show(event)} while the owner still runs: a live owner's "
                            f"record must outlive its TTL ({self.fast_ttl}s)"
                        )
                    listed = await backend.list_instances(name)
                    assert [i.instance_id for i in listed] == [instance_id], listed
                    child.kill()
                    bound = self.fast_ttl + self.expiry_margin
                    took = await table.until(
                        lambda: table.ids == [],
                        f"Removed({instance_id}) within {bound}s of its owner's SIGKILL "
                        f"(ttl {self.fast_ttl}s)",
                        bound=bound,
                    )
                    assert table.events[-1].startswith("Removed"), table.events
                    assert took <= bound
                finally:
                    await child.reap()
                with anyio.fail_after(BOUND):
                    assert await backend.list_instances(name) == []

    # -- servers ---------------------------------------------------------------------------

    @pytest.mark.parametrize("how", ["unregister", "aclose"])
    async def test_server_publishes_and_withdraws_before_draining(
        self,
        how: str,
        discovery_settings: Mapping[str, object],
        discovery_transport: tuple[str, Mapping[str, object]],
    ) -> None:
        self._writable()
        name = self._n("slow")
        started, release, finished = anyio.Event(), anyio.Event(), anyio.Event()

        async def slow(request: Request) -> bytes:
            started.set()
            try:
                await release.wait()
            finally:
                finished.set()
            return b"done"

        replies: list[bytes | RequestPlaneError] = []
        seen_while_running: list[bool] = []
        async with self._plane(discovery_settings) as caller:
            async with caller.discovery().watch(name) as watch:
                table = _Table(watch, name)
                await table.snapshot()
                # A drain timeout well inside BOUND: withdrawing after the drain would show
                # as the handler cancelled before Removed, not as a hang.
                plane = self._plane(discovery_settings, drain_timeout=5)
                async with anyio.create_task_group() as tg:
                    async with plane:
                        server = await plane.server()
                        instance_id = server.health().instance
                        assert instance_id, "health().instance is empty with discovery on"
                        address = await server.register(name, slow)
                        event = await table.next(f"Added(server {instance_id})")
                        assert isinstance(event, Added), _show(event)
                        assert event.instance.instance_id == instance_id
                        assert event.instance.transport == discovery_transport[0]

                        async def call() -> None:
                            try:
                                replies.append(await caller.client().request(address, b""))
                            except RequestPlaneError as exc:  # reported by the asserts below
                                replies.append(exc)

                        async def release_when_removed() -> None:
                            gone = await table.next(f"Removed(server) on {how}")
                            assert isinstance(gone, Removed), _show(gone)
                            seen_while_running.append(not finished.is_set())
                            release.set()

                        tg.start_soon(call)
                        with anyio.fail_after(BOUND):
                            await started.wait()
                        tg.start_soon(release_when_removed)
                        if how == "unregister":
                            with anyio.fail_after(BOUND):
                                await server.unregister(name)
                            assert server.health().instance == instance_id, (
                                "a server keeps one instance id for its lifetime"
                            )
                    # leaving `async with plane` closed the server: withdraw, then drain
        assert seen_while_running == [True], (
            f"on {how}, the watcher saw Removed only after the in-flight request ended: "
            "the record must be withdrawn before draining"
        )
        assert replies == [b"done"], f"the in-flight request did not finish: {replies}"

    async def test_server_keeps_one_instance_id(
        self, discovery_settings: Mapping[str, object]
    ) -> None:
        self._writable()

        async def echo(request: Request) -> bytes:
            return request.payload

        async with self._plane(discovery_settings) as plane:
            server = await plane.server()
            instance_id = server.health().instance
            backend = plane.discovery()
            with anyio.fail_after(BOUND):
                for name in (self._n("one"), self._n("two")):
                    await server.register(name, echo)
                await server.unregister(self._n("one"))
                await server.register(self._n("one"), echo)
                for name in (self._n("one"), self._n("two")):
                    listed = await backend.list_instances(name)
                    assert [i.instance_id for i in listed] == [instance_id], (
                        f"{name}: expected one instance {instance_id}, listed {listed}"
                    )

    # -- a store that restarts -------------------------------------------------------------

    async def test_records_restored_after_store_restart(
        self,
        discovery_settings: Mapping[str, object],
        discovery_store_restart: StoreRestart | None,
    ) -> None:
        self._writable()
        if discovery_store_restart is None:
            pytest.skip(f"not applicable: {self.backend_name!r} has no store to restart")
        name = self._n("restart")
        before, after = _instance(name, "before", port=1), _instance(name, "after", port=2)
        async with self._backend(discovery_settings) as owner:
            async with self._backend(discovery_settings) as reader:
                with anyio.fail_after(BOUND):
                    await owner.register(before)
                async with reader.watch(name) as watch:
                    table = _Table(watch, name)
                    await table.snapshot()
                    assert table.ids == ["before"], table.events
                    with anyio.fail_after(BOUND * 2):
                        await discovery_store_restart()
                    # The owner re-asserts its record; the watcher resumes; a change made
                    # after the restart reaches it, and its table is right (the _Table
                    # refuses a repeated or unmatched event).
                    with anyio.fail_after(BOUND * 2):
                        while True:
                            try:
                                await owner.register(after)
                                break
                            except ConfigError:
                                raise
                            except Exception:  # the store still coming back
                                await anyio.sleep(0.1)
                    await table.until(
                        lambda: table.ids == ["after", "before"],
                        "the table to hold [after, before] after the store restarted",
                    )
                    with anyio.fail_after(BOUND):
                        listed = await reader.list_instances(name)
                    assert [i.instance_id for i in listed] == ["after", "before"], listed

    # -- bad input -------------------------------------------------------------------------

    async def test_invalid_name_is_config_error(
        self, discovery_settings: Mapping[str, object]
    ) -> None:
        async with self._backend(discovery_settings) as backend:
            for bad in ("", "a b", "../up", "a/b/c/d", "x.y", "a//b", "/a"):
                with anyio.fail_after(BOUND), pytest.raises(ConfigError):
                    await backend.list_instances(bad)
                with pytest.raises(ConfigError):
                    backend.watch(bad)
            with pytest.raises(ConfigError):
                _instance("not a name", "x")

    async def test_bad_settings_are_config_errors(
        self,
        discovery_settings: Mapping[str, object],
        bad_discovery_settings: Sequence[Mapping[str, object]],
    ) -> None:
        for bad in bad_discovery_settings:
            with pytest.raises(ConfigError):
                async with self._backend({**discovery_settings, **bad}) as backend:
                    with anyio.fail_after(BOUND):
                        await backend.list_instances(self._n("bad"))
                        if not self.read_only:
                            await backend.register(_instance(self._n("bad"), "x"))
                pytest.fail(f"the setting(s) {bad} were accepted: expected ConfigError")

    async def test_unknown_backend_lists_this_one(
        self, discovery_settings: Mapping[str, object]
    ) -> None:
        with pytest.raises(ConfigError) as info:
            RequestPlane(environ=self._environ(), discovery="kit-no-such-backend")
        assert self.backend_name in str(info.value), (
            f"expected the error to list the installed backend {self.backend_name!r}: {info.value}"
        )

    # -- read-only backends ----------------------------------------------------------------

    async def test_read_only_lists_and_watches_what_it_was_given(
        self,
        discovery_settings: Mapping[str, object],
        expected_instances: Sequence[Instance],
    ) -> None:
        self._reading()
        names = sorted({i.name for i in expected_instances})
        assert names, "expected_instances is empty: give the kit something to read"
        async with self._backend(discovery_settings) as backend:
            for name in names:
                want = sorted((i for i in expected_instances if i.name == name), key=_by_id)
                with anyio.fail_after(BOUND):
                    listed = await backend.list_instances(name)
                assert listed == want, f"{name}: expected {want}, listed {listed}"
                assert [i.address for i in listed] == [i.address for i in want]
                async with backend.watch(name) as watch:
                    snap = await _Table(watch, name).snapshot()
                    assert list(snap.instances) == want, f"{name}: Snapshot {snap}"
            with anyio.fail_after(BOUND):
                assert await backend.list_instances("kit/unlisted") == []

    async def test_read_only_refuses_register_and_servers_skip_it(
        self, discovery_settings: Mapping[str, object]
    ) -> None:
        self._reading()

        async def echo(request: Request) -> bytes:
            return request.payload

        async with self._plane(discovery_settings) as plane:
            backend = plane.discovery()
            assert backend.read_only, f"{self.backend_name!r} does not declare read_only"
            with anyio.fail_after(BOUND), pytest.raises(ConfigError):
                await backend.register(_instance("kit/ro", "x"))
            server = await plane.server()
            with anyio.fail_after(BOUND):
                address = await server.register("kit/ro", echo)  # served, not published
                assert await plane.client().request(address, b"hi") == b"hi"
                assert await backend.list_instances("kit/ro") == []


def _by_id(instance: Instance) -> str:
    return instance.instance_id
