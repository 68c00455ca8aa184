"""The conformance suite, written once against the public contracts only."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from importlib.metadata import entry_points
from typing import Any, ClassVar

import anyio
import attrs
import pytest
import sniffio

from requestplane_core import (
    Address,
    ConnectionLost,
    DeadlineExceeded,
    EndpointNotFound,
    Overloaded,
    PayloadTooLarge,
    RemoteError,
    Request,
    RequestPlane,
    Server,
    TransportClient,
    Unavailable,
)
from requestplane_core.plugins import OBSERVER_ENTRY_POINT_GROUP, PluginRegistry, load_plugins

from .bounds import bounded_case, bounded_spec

# Generous bounds: they only turn a hang into a failure, on a loaded 2-core machine.
BOUND = 15.0


class _Probe:
    """Events a handler sets so a test can wait for what happened on the server."""

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.cancelled = anyio.Event()
        self.release = anyio.Event()
        self.deadline: float | None = math.nan


@attrs.define
class _Fixture:
    server: Server
    client: TransportClient
    plane: RequestPlane
    probe: _Probe
    addresses: dict[str, Address]

    def addr(self, endpoint: str) -> Address:
        return self.addresses[endpoint]


async def _echo(request: Request) -> bytes:
    return request.payload


async def _count(request: Request) -> AsyncIterator[bytes]:
    for i in range(int(request.payload or b"0")):
        yield f"{i}\n".encode()


async def _headers(request: Request) -> bytes:
    return json.dumps(dict(request.headers), sort_keys=True).encode()


async def _fail(request: Request) -> bytes:
    raise ValueError(f"bad input: {request.payload.decode(errors='replace')}")


async def _fail_midstream(request: Request) -> AsyncIterator[bytes]:
    yield b"first"
    yield b"second"
    raise KeyError("lost its place")


def _echo_sync(request: Request) -> bytes:
    return b"sync:" + request.payload


def _fail_sync(request: Request) -> bytes:
    raise LookupError(request.payload.decode(errors="replace"))


def _blocking(probe: _Probe) -> Any:
    async def handler(request: Request) -> bytes:
        probe.deadline = request.deadline
        probe.started.set()
        try:
            await probe.release.wait()
        except anyio.get_cancelled_exc_class():
            probe.cancelled.set()
            raise
        return b"released:" + request.payload

    return handler


def _endless(probe: _Probe) -> Any:
    async def handler(request: Request) -> AsyncIterator[bytes]:
        probe.started.set()
        try:
            i = 0
            while True:
                yield b"tick %d" % i
                i += 1
                await anyio.sleep(0.01)
        except BaseException:
            probe.cancelled.set()
            raise

    return handler


def _big(size: int) -> Any:
    async def handler(request: Request) -> bytes:
        return b"x" * size

    return handler


class TransportConformance:
    """Every case runs on asyncio and trio against the transport named by ``mode``.

    Override the ``transport_settings`` fixture instead of ``settings`` when the settings
    depend on another fixture (a broker started for the test, say).
    """

    mode: ClassVar[str]
    settings: ClassVar[Mapping[str, object]] = {}
    #: The largest payload the transport accepts; ``None`` reads ``max_message_size`` from
    #: the transport's settings.
    max_payload: ClassVar[int | None] = None
    #: The limit the suite sets through ``max_message_size`` (when the transport has that
    #: setting) so that the size cases stay fast.
    size_limit: ClassVar[int] = 2 * 1024 * 1024
    #: Run with the installed observing plugins (instrumentation) active; by default they are
    #: disabled so that the transport's own path is what is tested.
    observed: ClassVar[bool] = False
    #: Seconds a whole case may take; the kit fails it, naming where it waited, after that.
    case_timeout: ClassVar[float] = 120.0
    #: Seconds each lifecycle step of the transport (server ``start()``, ``aclose()``,
    #: ``endpoint_added()``, client ``aclose()``) may take before the case fails naming it.
    step_timeout: ClassVar[float] = 10.0

    pytestmark = pytest.mark.anyio

    @pytest.fixture(params=["asyncio", "trio"])
    def anyio_backend(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture
    def transport_settings(self) -> Mapping[str, object]:
        return dict(self.settings)

    # -- helpers ---------------------------------------------------------------------------

    def _plane(self, settings: Mapping[str, object], **kwargs: Any) -> RequestPlane:
        kwargs.setdefault("plugins", self._plugins())
        plane = RequestPlane(self.mode, settings=settings, environ=self._environ(), **kwargs)
        backend = sniffio.current_async_library()
        if backend not in plane.transport.spec.capabilities.backends:
            pytest.skip(f"not applicable: transport {self.mode!r} does not declare {backend}")
        if "max_message_size" not in settings and hasattr(plane.settings, "max_message_size"):
            plane = RequestPlane(
                self.mode,
                settings={**settings, "max_message_size": self.size_limit},
                environ=self._environ(),
                **kwargs,
            )
        return plane

    def _plugins(self) -> PluginRegistry:
        """The installed plugins, the transport's server and client wrapped so that each of
        their lifecycle steps is bounded by ``step_timeout``."""
        registry = load_plugins(
            only=self.mode, deny=self._environ().get("REQUESTPLANE_DISABLE_PLUGINS")
        )
        loaded = registry.transport(self.mode)
        spec = bounded_spec(loaded.spec, self.step_timeout)
        registry.transports[self.mode] = attrs.evolve(loaded, spec=spec)
        return registry

    def _environ(self) -> dict[str, str]:
        """No environment but, unless ``observed``, the observing plugins disabled: the kit
        tests the transport's own client and server path."""
        if self.observed:
            return {}
        names = [ep.name for ep in entry_points(group=OBSERVER_ENTRY_POINT_GROUP)]
        return {"REQUESTPLANE_DISABLE_PLUGINS": ",".join(names)} if names else {}

    def _limit(self, plane: RequestPlane) -> int:
        if self.max_payload is not None:
            return self.max_payload
        limit = getattr(plane.settings, "max_message_size", None)
        if not isinstance(limit, int):
            pytest.skip("not applicable: the transport has no max_message_size setting")
        return limit

    def _needs(self, plane: RequestPlane, capability: str) -> None:
        if not getattr(plane.transport.spec.capabilities, capability):
            pytest.skip(f"not applicable: transport {self.mode!r} declares {capability}=False")

    @asynccontextmanager
    async def _open(self, settings: Mapping[str, object], **kwargs: Any) -> AsyncIterator[_Fixture]:
        probe = _Probe()
        async with self._plane(settings, **kwargs) as plane:
            server = await plane.server()
            handlers = {
                "echo": _echo,
                "echo-sync": _echo_sync,
                "fail-sync": _fail_sync,
                # A plain function handing back async work: served in a task all the same.
                "count-wrapped": lambda request: _count(request),
                "count": _count,
                "headers": _headers,
                "fail": _fail,
                "fail-midstream": _fail_midstream,
                "block": _blocking(probe),
                "endless": _endless(probe),
            }
            addresses = {name: await server.register(name, h) for name, h in handlers.items()}
            yield _Fixture(server, plane.client(), plane, probe, addresses)

    # -- unary -----------------------------------------------------------------------------

    async def test_unary_echo(self, transport_settings: Mapping[str, object]) -> None:
        async with self._open(transport_settings) as f:
            with anyio.fail_after(BOUND):
                assert await f.client.request(f.addr("echo"), b"hello") == b"hello"
                assert await f.client.request(str(f.addr("echo")), b"") == b""
                assert await f.client.request(f.addr("echo"), bytes(range(256))) == bytes(
                    range(256)
                )

    async def test_address_round_trips(self, transport_settings: Mapping[str, object]) -> None:
        async with self._open(transport_settings) as f:
            address = f.addr("echo")
            schemes = f.plane.transport.spec.address_schemes
            assert address.scheme in schemes, (
                f"{address} has scheme {address.scheme!r}, not one of the schemes the transport "
                f"declares: {schemes} (TransportSpec.schemes, default: its name)"
            )
            assert Address.parse(str(address)) == address
            assert f.server.address("echo") == address

    async def test_headers_round_trip(self, transport_settings: Mapping[str, object]) -> None:
        headers = {"x-trace": "abc-123", "tenant": "blue team", "empty": ""}
        async with self._open(transport_settings) as f:
            with anyio.fail_after(BOUND):
                body = await f.client.request(f.addr("headers"), b"", headers=headers)
        received = json.loads(body)
        for key, value in headers.items():
            assert received.get(key) == value, received

    async def test_unknown_endpoint(self, transport_settings: Mapping[str, object]) -> None:
        async with self._open(transport_settings) as f:
            gone = await f.server.register("gone", _echo)
            await f.server.unregister("gone")
            with anyio.fail_after(BOUND), pytest.raises(EndpointNotFound):
                await f.client.request(gone, b"x")
            # the server keeps serving the others
            with anyio.fail_after(BOUND):
                assert await f.client.request(f.addr("echo"), b"still") == b"still"

    async def test_handler_error(self, transport_settings: Mapping[str, object]) -> None:
        failing = [("fail", "ValueError", "bad input: 42"), ("fail-sync", "LookupError", "42")]
        async with self._open(transport_settings) as f:
            for endpoint, type_name, message in failing:  # async and synchronous handlers
                with anyio.fail_after(BOUND), pytest.raises(RemoteError) as info:
                    await f.client.request(f.addr(endpoint), b"42")
                assert info.value.type_name == type_name
                assert message in info.value.remote_message
            with anyio.fail_after(BOUND):
                assert await f.client.request(f.addr("echo"), b"ok") == b"ok"
                assert await f.client.request(f.addr("echo-sync"), b"ok") == b"sync:ok"

    # -- synchronous handlers --------------------------------------------------------------

    async def test_synchronous_handler(self, transport_settings: Mapping[str, object]) -> None:
        async with self._open(transport_settings) as f:
            with anyio.fail_after(BOUND):
                assert await f.client.request(f.addr("echo-sync"), b"hi") == b"sync:hi"
                assert await f.client.request(f.addr("echo-sync"), b"") == b"sync:"
                stream = [c async for c in f.client.stream(f.addr("echo-sync"), b"s")]
                assert b"".join(stream) == b"sync:s"

    async def test_plain_function_returning_a_stream(
        self, transport_settings: Mapping[str, object]
    ) -> None:
        async with self._open(transport_settings) as f:
            self._needs(f.plane, "streaming")
            with anyio.fail_after(BOUND):
                chunks = [c async for c in f.client.stream(f.addr("count-wrapped"), b"5")]
            assert chunks == [f"{i}\n".encode() for i in range(5)]

    async def test_synchronous_and_async_handlers_interleave(
        self, transport_settings: Mapping[str, object]
    ) -> None:
        answers: dict[int, bytes] = {}
        async with self._open(transport_settings) as f:
            with anyio.fail_after(BOUND * 2):
                async with anyio.create_task_group() as tg:

                    async def call(i: int) -> None:
                        name = "echo-sync" if i % 2 else "echo"
                        answers[i] = await f.client.request(f.addr(name), b"%d" % i)

                    for i in range(200):
                        tg.start_soon(call, i)
        assert answers == {i: (b"sync:%d" if i % 2 else b"%d") % i for i in range(200)}

    # -- client statistics -----------------------------------------------------------------

    async def test_client_stats_count_each_call_and_each_failure_once(
        self, transport_settings: Mapping[str, object]
    ) -> None:
        async with self._open(transport_settings) as f:
            self._needs(f.plane, "streaming")
            client = f.plane.client()
            before = client.stats.snapshot()
            with anyio.fail_after(BOUND):
                assert await client.request(f.addr("echo"), b"12345") == b"12345"
                with pytest.raises(RemoteError):
                    await client.request(f.addr("fail"), b"x")
                assert [c async for c in client.stream(f.addr("count"), b"2")] == [b"0\n", b"1\n"]
                failing = client.stream(f.addr("fail-midstream"), b"")
                with pytest.raises(RemoteError):
                    async for _chunk in failing:
                        pass
                # a stream that failed stays failed: iterating again ends it, counts nothing
                with pytest.raises((RemoteError, StopAsyncIteration)):
                    await failing.__anext__()
                await failing.aclose()
            after = client.stats.snapshot()
            delta = {key: after[key] - before[key] for key in ("requests", "streams", "errors")}
            assert delta == {"requests": 2, "streams": 2, "errors": 2}, delta
            assert after["bytes_sent"] - before["bytes_sent"] >= 5 + 1 + 1
            received = after["bytes_received"] - before["bytes_received"]
            assert received >= 5 + 4 + len(b"first") + len(b"second"), received

    # -- streaming -------------------------------------------------------------------------

    async def test_stream(self, transport_settings: Mapping[str, object]) -> None:
        async with self._open(transport_settings) as f:
            self._needs(f.plane, "streaming")
            with anyio.fail_after(BOUND):
                chunks = [c async for c in f.client.stream(f.addr("count"), b"50")]
            assert chunks == [f"{i}\n".encode() for i in range(50)]

    async def test_empty_stream(self, transport_settings: Mapping[str, object]) -> None:
        async with self._open(transport_settings) as f:
            self._needs(f.plane, "streaming")
            with anyio.fail_after(BOUND):
                assert [c async for c in f.client.stream(f.addr("count"), b"0")] == []

    async def test_request_joins_stream_and_stream_wraps_unary(
        self, transport_settings: Mapping[str, object]
    ) -> None:
        async with self._open(transport_settings) as f:
            self._needs(f.plane, "streaming")
            with anyio.fail_after(BOUND):
                assert await f.client.request(f.addr("count"), b"3") == b"0\n1\n2\n"
                async with f.client.stream(f.addr("echo"), b"one") as chunks:
                    assert [c async for c in chunks] == [b"one"]

    async def test_stream_error_midway(self, transport_settings: Mapping[str, object]) -> None:
        async with self._open(transport_settings) as f:
            self._needs(f.plane, "streaming")
            seen: list[bytes] = []
            with anyio.fail_after(BOUND), pytest.raises(RemoteError) as info:
                async with f.client.stream(f.addr("fail-midstream"), b"") as chunks:
                    async for chunk in chunks:
                        seen.append(chunk)
            assert seen == [b"first", b"second"]
            assert info.value.type_name == "KeyError"

    async def test_stream_closed_early_cancels_handler(
        self, transport_settings: Mapping[str, object]
    ) -> None:
        async with self._open(transport_settings) as f:
            self._needs(f.plane, "streaming")
            self._needs(f.plane, "cancellation")
            with anyio.fail_after(BOUND):
                async with f.client.stream(f.addr("endless"), b"") as chunks:
                    async for chunk in chunks:
                        assert chunk.startswith(b"tick")
                        break
                await f.probe.cancelled.wait()
                assert await f.client.request(f.addr("echo"), b"after") == b"after"

    # -- sizes -----------------------------------------------------------------------------

    async def test_large_payload_near_limit(self, transport_settings: Mapping[str, object]) -> None:
        async with self._open(transport_settings) as f:
            size = self._limit(f.plane) - 1024
            payload = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
            with anyio.fail_after(BOUND * 2):
                assert await f.client.request(f.addr("echo"), payload) == payload

    async def test_oversize_request_refused(self, transport_settings: Mapping[str, object]) -> None:
        async with self._open(transport_settings) as f:
            limit = self._limit(f.plane)
            with anyio.fail_after(BOUND), pytest.raises(PayloadTooLarge):
                await f.client.request(f.addr("echo"), b"x" * (limit + 1))
            with anyio.fail_after(BOUND):
                assert await f.client.request(f.addr("echo"), b"fine") == b"fine"

    async def test_oversize_response_refused(
        self, transport_settings: Mapping[str, object]
    ) -> None:
        async with self._open(transport_settings) as f:
            limit = self._limit(f.plane)
            big = await f.server.register("big", _big(limit + 1))
            # a synchronous handler's answer may take another path: the same limit holds
            big_sync = await f.server.register("big-sync", lambda request: b"x" * (limit + 1))
            for address in (big, big_sync):
                with anyio.fail_after(BOUND), pytest.raises(PayloadTooLarge):
                    await f.client.request(address, b"")
            with anyio.fail_after(BOUND):
                assert await f.client.request(f.addr("echo"), b"fine") == b"fine"
                assert await f.client.request(f.addr("echo-sync"), b"fine") == b"sync:fine"

    async def test_client_refuses_oversize_request_before_sending(
        self, transport_settings: Mapping[str, object]
    ) -> None:
        # A server that takes twice the client's limit: only the client's own check can stop
        # the request, and the handler must never see it.
        async with self._open(transport_settings) as f:
            self._limit(f.plane)
            if not hasattr(f.plane.settings, "max_message_size"):
                pytest.skip("not applicable: the transport has no max_message_size setting")
            client_limit = f.plane.settings.max_message_size // 2
            seen: list[int] = []

            async def counted(request: Request) -> bytes:
                seen.append(len(request.payload))
                return b"ok"

            address = await f.server.register("counted", counted)
            small = {**transport_settings, "max_message_size": client_limit}
            async with self._plane(small) as caller:
                client = caller.client()
                with anyio.fail_after(BOUND):
                    try:
                        await client.request(address, b"x" * (client_limit + 1))
                    except PayloadTooLarge:
                        refused = True
                    else:
                        refused = False
                    assert refused and not seen, (
                        f"a request of {client_limit + 1} bytes, over the client's "
                        f"max_message_size ({client_limit}), was "
                        f"{'refused' if refused else 'not refused with PayloadTooLarge'} and "
                        f"{'reached' if seen else 'did not reach'} the handler: the client must "
                        "refuse it before sending, not rely on the server"
                    )
                    assert await client.request(address, b"x" * client_limit) == b"ok"

    # -- cancellation and deadlines --------------------------------------------------------

    async def test_cancellation_reaches_handler(
        self, transport_settings: Mapping[str, object]
    ) -> None:
        async with self._open(transport_settings) as f:
            self._needs(f.plane, "cancellation")
            outcome: list[object] = []
            with anyio.fail_after(BOUND):
                async with anyio.create_task_group() as tg:

                    async def call() -> None:
                        outcome.append(await f.client.request(f.addr("block"), b"x"))

                    tg.start_soon(call)
                    await f.probe.started.wait()
                    tg.cancel_scope.cancel()
                await f.probe.cancelled.wait()
            assert outcome == []
            with anyio.fail_after(BOUND):
                assert await f.client.request(f.addr("echo"), b"next") == b"next"

    async def test_deadline(self, transport_settings: Mapping[str, object]) -> None:
        async with self._open(transport_settings) as f:
            self._needs(f.plane, "deadlines")
            with anyio.fail_after(BOUND), pytest.raises(DeadlineExceeded):
                await f.client.request(f.addr("block"), b"x", timeout=0.5)
            assert f.probe.deadline is not None and not math.isnan(f.probe.deadline)
            with anyio.fail_after(BOUND):
                await f.probe.cancelled.wait()

    async def test_request_timeout_setting_bounds_calls_without_timeout(
        self, transport_settings: Mapping[str, object]
    ) -> None:
        if not hasattr(self._plane(transport_settings).settings, "request_timeout"):
            pytest.skip("not applicable: the transport has no request_timeout setting")
        async with self._open({**transport_settings, "request_timeout": 0.5}) as f:
            self._needs(f.plane, "deadlines")
            with anyio.fail_after(BOUND):
                with anyio.move_on_after(BOUND / 3) as waited, pytest.raises(DeadlineExceeded):
                    await f.client.request(f.addr("block"), b"unary")
                assert not waited.cancelled_caught, (
                    f"a call without timeout, with request_timeout=0.5 set, still ran after "
                    f"{BOUND / 3:g} s: the client must use request_timeout as the default timeout"
                )
                assert f.probe.deadline is not None and not math.isnan(f.probe.deadline), (
                    "with request_timeout set and no timeout passed, the handler's "
                    f"request.deadline must be set; it was {f.probe.deadline!r}"
                )

    async def test_no_deadline_by_default_reaches_handler_as_none(
        self, transport_settings: Mapping[str, object]
    ) -> None:
        if getattr(self._plane(transport_settings).settings, "request_timeout", None) is not None:
            # A transport may default to a finite timeout; the case is about "none" travelling.
            transport_settings = {**transport_settings, "request_timeout": None}
        async with self._open(transport_settings) as f:
            with anyio.fail_after(BOUND):
                async with anyio.create_task_group() as tg:

                    async def call() -> None:
                        assert await f.client.request(f.addr("block"), b"y") == b"released:y"

                    tg.start_soon(call)
                    await f.probe.started.wait()
                    f.probe.release.set()
            assert f.probe.deadline is None

    # -- concurrency and sharing -----------------------------------------------------------

    async def test_many_concurrent_requests_on_one_client(
        self, transport_settings: Mapping[str, object]
    ) -> None:
        results: dict[int, bytes] = {}
        async with self._open(transport_settings) as f:

            async def call(i: int) -> None:
                results[i] = await f.client.request(f.addr("echo"), b"%d" % i * (i % 7 + 1))

            with anyio.fail_after(BOUND * 2):
                async with anyio.create_task_group() as tg:
                    for i in range(300):
                        tg.start_soon(call, i)
            assert results == {i: b"%d" % i * (i % 7 + 1) for i in range(300)}
            assert f.client.stats.requests >= 300
            assert f.client.stats.errors == 0

    async def test_concurrent_streams_interleave(
        self, transport_settings: Mapping[str, object]
    ) -> None:
        async with self._open(transport_settings) as f:
            self._needs(f.plane, "streaming")
            results: dict[int, list[bytes]] = {}

            async def consume(i: int) -> None:
                results[i] = [c async for c in f.client.stream(f.addr("count"), b"%d" % i)]

            with anyio.fail_after(BOUND * 2):
                async with anyio.create_task_group() as tg:
                    for i in range(20):
                        tg.start_soon(consume, i)
            assert results == {i: [f"{j}\n".encode() for j in range(i)] for i in range(20)}

    async def test_two_managers_share_one_server(
        self, transport_settings: Mapping[str, object]
    ) -> None:
        async with self._plane(transport_settings) as one, self._plane(transport_settings) as two:
            server_one, server_two = await one.server(), await two.server()
            assert server_one is server_two
            a = await server_one.register("worker-a", _echo)
            b = await server_two.register("worker-b", _headers)
            assert (a.host, a.port) == (b.host, b.port)
            client = two.client()
            with anyio.fail_after(BOUND):
                assert await client.request(a, b"a") == b"a"
                assert json.loads(await client.request(b, b"", headers={"k": "v"}))["k"] == "v"

    async def test_server_is_fresh_in_a_new_event_loop(
        self, transport_settings: Mapping[str, object]
    ) -> None:
        # The shared server of an earlier event loop (here: one run to its end in a thread)
        # must not be handed out again: this loop gets a server of its own, and it serves.
        backend = sniffio.current_async_library()
        earlier: list[Server] = []

        async def earlier_loop() -> None:
            async with self._plane(transport_settings) as plane:
                earlier.append(await plane.server())

        with anyio.fail_after(BOUND * 2):
            await anyio.to_thread.run_sync(lambda: anyio.run(earlier_loop, backend=backend))
            async with self._plane(transport_settings) as plane:
                server = await plane.server()
                assert server is not earlier[0], "a server of an earlier event loop was reused"
                assert not server.closed and server.health().serving
                address = await server.register("fresh", _echo)
                assert await plane.client().request(address, b"fresh") == b"fresh"

    # -- endpoint lifecycle and drain -------------------------------------------------------

    async def test_register_twice_is_an_error(
        self, transport_settings: Mapping[str, object]
    ) -> None:
        async with self._open(transport_settings) as f:
            with pytest.raises(ValueError, match="already registered"):
                await f.server.register("echo", _echo)

    async def test_unregister_lets_inflight_finish(
        self, transport_settings: Mapping[str, object]
    ) -> None:
        async with self._open(transport_settings) as f:
            outcome: list[bytes] = []
            with anyio.fail_after(BOUND):
                async with anyio.create_task_group() as tg:

                    async def call() -> None:
                        outcome.append(await f.client.request(f.addr("block"), b"z"))

                    tg.start_soon(call)
                    await f.probe.started.wait()
                    tg.start_soon(f.server.unregister, "block")
                    with pytest.raises((Unavailable, EndpointNotFound)):
                        await f.client.request(f.addr("block"), b"refused")
                    f.probe.release.set()
            assert outcome == [b"released:z"]
            assert "block" not in f.server.endpoints
            with anyio.fail_after(BOUND), pytest.raises(EndpointNotFound):
                await f.client.request(f.addr("block"), b"gone")

    async def test_drain_on_close(self, transport_settings: Mapping[str, object]) -> None:
        async with self._open(transport_settings, drain_timeout=BOUND) as f:
            outcome: list[bytes] = []
            with anyio.fail_after(BOUND * 2):
                async with anyio.create_task_group() as tg:

                    async def call() -> None:
                        outcome.append(await f.client.request(f.addr("block"), b"d"))

                    tg.start_soon(call)
                    await f.probe.started.wait()
                    tg.start_soon(f.server.aclose)
                    await anyio.wait_all_tasks_blocked()  # aclose has begun draining
                    assert f.server.health().draining
                    with pytest.raises(Unavailable):
                        await f.client.request(f.addr("echo"), b"late")
                    f.probe.release.set()
            assert outcome == [b"released:d"]
            assert f.server.closed

    async def test_drain_timeout_cancels_stragglers(
        self, transport_settings: Mapping[str, object]
    ) -> None:
        async with self._open(transport_settings, drain_timeout=0.3) as f:
            with anyio.fail_after(BOUND):
                async with anyio.create_task_group() as tg:

                    async def call() -> None:
                        with pytest.raises(Unavailable):
                            await f.client.request(f.addr("block"), b"s")

                    tg.start_soon(call)
                    await f.probe.started.wait()
                    await f.server.aclose()
                await f.probe.cancelled.wait()

    async def test_health(self, transport_settings: Mapping[str, object]) -> None:
        async with self._open(transport_settings) as f:
            health = f.server.health()
            assert health.transport == self.mode
            assert health.serving and not health.draining
            assert "echo" in health.endpoints

    async def test_admission_control_sheds_with_overloaded(
        self, transport_settings: Mapping[str, object]
    ) -> None:
        async with self._open(transport_settings, max_inflight=1) as f:
            outcome: list[bytes] = []
            with anyio.fail_after(BOUND):
                async with anyio.create_task_group() as tg:

                    async def call() -> None:
                        outcome.append(await f.client.request(f.addr("block"), b"first"))

                    tg.start_soon(call)
                    await f.probe.started.wait()
                    with pytest.raises(Overloaded) as info:
                        await f.client.request(f.addr("echo"), b"second")
                    assert info.value.retriable
                    with pytest.raises(Overloaded):
                        await f.client.request(f.addr("echo-sync"), b"second")
                    f.probe.release.set()
                assert await f.client.request(f.addr("echo"), b"third") == b"third"
            assert outcome == [b"released:first"]

    async def test_open_connections_gauge(self, transport_settings: Mapping[str, object]) -> None:
        async with self._open(transport_settings) as f:
            client = f.plane.client()
            with anyio.fail_after(BOUND):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(client.request, f.addr("block"), b"g")
                    await f.probe.started.wait()
                    during = client.stats.open_connections
                    f.probe.release.set()
                assert during >= 1, (
                    "ClientStats.open_connections was "
                    f"{during} while a call was in flight; expected >= 1 (the client must "
                    "count the connections it opens)"
                )
                await client.aclose()
            after = client.stats.open_connections
            assert after == 0, f"ClientStats.open_connections is {after} after aclose(); expected 0"

    async def test_cancelled_callers_leave_shared_connections_usable(
        self, transport_settings: Mapping[str, object]
    ) -> None:
        # Many large requests, most of them cancelled while being written: a write to a
        # connection other calls share must be shielded (or the connection given up), or a
        # cancelled caller leaves half a frame on it and the calls behind it fail.
        async with self._open(transport_settings) as f:
            limit = self.max_payload or getattr(f.plane.settings, "max_message_size", None)
            size = min(limit if isinstance(limit, int) else 1 << 20, 1 << 20) // 2
            client = f.plane.client()
            answers: dict[int, bytes] = {}
            with anyio.fail_after(BOUND):
                # How long one call takes here: the cancellations below are spread over the
                # time the calls spend writing, so that some land in the middle of a write.
                rtt = math.inf
                for _ in range(3):
                    started = anyio.current_time()
                    await client.request(f.addr("echo"), b"w" * size)
                    rtt = min(rtt, anyio.current_time() - started)

            async def call(i: int, offset: float) -> None:
                payload = bytes([i]) * size
                if i % 4 == 0:
                    answers[i] = await client.request(f.addr("echo"), payload)
                    return
                with anyio.move_on_after(rtt * (offset + 0.23 * i)):
                    await client.request(f.addr("echo"), payload)

            for offset in (0.1, 0.2):  # two rounds: a torn write is likely, not certain
                with anyio.fail_after(BOUND * 2):
                    async with anyio.create_task_group() as tg:
                        for i in range(32):
                            tg.start_soon(call, i, offset)
                    after = await client.request(f.addr("echo"), b"after")
                wrong = [i for i, body in answers.items() if body != bytes([i]) * size]
                assert not wrong, f"uncancelled calls {wrong} got a wrong answer"
                assert sorted(answers) == list(range(0, 32, 4)) and after == b"after"

    async def test_client_close_fails_inflight_with_connection_lost(
        self, transport_settings: Mapping[str, object]
    ) -> None:
        async with self._open(transport_settings) as f:
            client = f.plane.client()
            with anyio.fail_after(BOUND):
                async with anyio.create_task_group() as tg:

                    async def call() -> None:
                        with pytest.raises(ConnectionLost):
                            await client.request(f.addr("block"), b"c")

                    tg.start_soon(call)
                    await f.probe.started.wait()
                    await client.aclose()
                await f.probe.cancelled.wait()  # the server noticed the caller left


# Every case of the kit runs under the kit's own deadline (subclasses inherit the wrapped ones).
for _name, _case in list(vars(TransportConformance).items()):
    if _name.startswith("test_"):
        setattr(TransportConformance, _name, bounded_case(_case))
