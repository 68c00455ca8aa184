"""The manager over a real transport: sharing, lifetimes, and the observing hooks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from requestplane_core import (
    ConfigError,
    RemoteError,
    Request,
    RequestPlane,
    hookimpl,
    load_plugins,
)
from requestplane_core.instrumentation import InstrumentedClient, RequestEvent

BOUND = 15.0


async def echo(request: Request) -> bytes:
    return request.payload


async def count(request: Request) -> AsyncIterator[bytes]:
    for i in range(int(request.payload)):
        yield b"%d" % i


async def fail(request: Request) -> bytes:
    raise RuntimeError("no")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_new_event_loop_gets_a_fresh_server(backend: str) -> None:
    seen = []

    async def main() -> None:
        async with RequestPlane("tcp", environ={}) as plane:
            server = await plane.server()
            address = await server.register("echo", echo)
            seen.append((server, address))
            assert await plane.client().request(address, b"x") == b"x"

    anyio.run(main, backend=backend)
    anyio.run(main, backend=backend)
    (first, _), (second, _) = seen
    assert first is not second and first.closed and second.closed


@pytest.mark.anyio
async def test_shared_server_refuses_other_settings() -> None:
    async with RequestPlane("tcp", environ={}) as one:
        await one.server()
        async with RequestPlane("tcp", environ={}, settings={"max_message_size": 1024}) as two:
            with pytest.raises(ConfigError, match="other settings"):
                await two.server()


@pytest.mark.anyio
async def test_last_manager_to_close_closes_the_server() -> None:
    async with RequestPlane("tcp", environ={}) as one:
        server = await one.server()
        async with RequestPlane("tcp", environ={}) as two:
            assert await two.server() is server
        assert not server.closed  # `one` still uses it
    assert server.closed


@pytest.mark.anyio
async def test_without_observing_plugins_the_client_is_the_transports_own() -> None:
    # The repo's own example instrumentation plugin is installed in the test environment.
    async with RequestPlane("tcp", environ={"REQUESTPLANE_DISABLE_PLUGINS": "otel"}) as plane:
        client = plane.client()
        assert not isinstance(client, InstrumentedClient)
        assert type(client).__module__.startswith("requestplane_tcp")


class Recorder:
    """An observing plugin registered in-process, as an entry point plugin would be."""

    def __init__(self) -> None:
        self.started: list[RequestEvent] = []
        self.finished: list[RequestEvent] = []
        self.servers: list[str] = []

    @hookimpl
    def requestplane_request_started(self, event: RequestEvent) -> None:
        if event.side == "client":
            event.headers["traceparent"] = "00-trace-span-01"
        self.started.append(event)

    @hookimpl
    def requestplane_request_finished(self, event: RequestEvent) -> None:
        self.finished.append(event)

    @hookimpl
    def requestplane_server_started(self, transport: str) -> None:
        self.servers.append(f"started {transport}")

    @hookimpl
    def requestplane_server_stopped(self, transport: str) -> None:
        self.servers.append(f"stopped {transport}")


@pytest.mark.anyio
async def test_observing_hooks_see_both_sides_and_can_add_headers() -> None:
    recorder = Recorder()
    registry = load_plugins(only="tcp")
    registry.register_module(recorder, "recorder", None, None)
    received: list[dict[str, str]] = []

    async def headers(request: Request) -> bytes:
        received.append(dict(request.headers))
        return b"ok"

    async with RequestPlane("tcp", environ={}, plugins=registry) as plane:
        server = await plane.server()
        client = plane.client()
        addresses = {
            name: await server.register(name, h)
            for name, h in {"headers": headers, "count": count, "fail": fail}.items()
        }
        with anyio.fail_after(BOUND):
            assert await client.request(addresses["headers"], b"12345") == b"ok"
            assert [c async for c in client.stream(addresses["count"], b"3")] == [b"0", b"1", b"2"]
            with pytest.raises(RemoteError):
                await client.request(addresses["fail"], b"")
    assert received == [{"traceparent": "00-trace-span-01"}]
    # The last manager's `async with` returns once the shared server has fully stopped.
    assert recorder.servers == ["started tcp", "stopped tcp"]
    by = {(e.side, e.endpoint): e for e in recorder.finished}
    assert by["client", "headers"].outcome == "ok" and by["client", "headers"].bytes_out == 5
    assert by["server", "headers"].outcome == "ok" and by["server", "headers"].bytes_in == 5
    assert by["server", "count"].chunks == 3 and by["client", "count"].chunks == 3
    assert by["client", "fail"].outcome == "RemoteError"
    assert by["server", "fail"].outcome == "RemoteError"
    assert all(e.duration is not None and e.duration >= 0 for e in recorder.finished)
    assert len(recorder.started) == len(recorder.finished) == 6


@pytest.mark.anyio
async def test_settings_conflict_names_fields_not_values() -> None:
    async with RequestPlane("tcp", environ={}, settings={"connect_timeout": 3.25}) as one:
        await one.server()
        async with RequestPlane("tcp", environ={}, settings={"connect_timeout": 7.5}) as two:
            with pytest.raises(ConfigError) as info:
                await two.server()
    assert "connect_timeout" in str(info.value)
    assert "3.25" not in str(info.value) and "7.5" not in str(info.value)
