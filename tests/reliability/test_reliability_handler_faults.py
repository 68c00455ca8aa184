"""Scenario 3: handlers that fail in every way a handler can, mixed with healthy traffic.

Raising, hanging past the deadline, yielding then raising or hanging, returning something
that is not bytes, ignoring cancellation: each call ends with its typed error (and the chunks
sent before it, exactly), and the server is unaffected: healthy calls running alongside
succeed, a call afterwards succeeds, nothing stays in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from reliability_helpers import BOUND, Tally, plane, settle

from requestplane_core import (
    Address,
    DeadlineExceeded,
    RemoteError,
    Request,
    TransportClient,
)

pytestmark = pytest.mark.anyio

DEADLINE = 0.3
ROUNDS = 3


class Faulty:
    """The failing handlers, and what the stubborn one is waiting for."""

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.hung_ended = 0

    async def echo(self, request: Request) -> bytes:
        return request.payload

    async def raises(self, request: Request) -> bytes:
        raise ValueError("no good")

    async def hangs(self, request: Request) -> bytes:
        try:
            await anyio.sleep_forever()
        finally:
            self.hung_ended += 1
        return b""

    async def yields_then_raises(self, request: Request) -> AsyncIterator[bytes]:
        for i in range(3):
            yield b"part %d" % i
        raise KeyError("lost its place")

    async def yields_then_hangs(self, request: Request) -> AsyncIterator[bytes]:
        yield b"first"
        yield b"second"
        try:
            await anyio.sleep_forever()
        finally:
            self.hung_ended += 1

    async def raises_before_yielding(self, request: Request) -> AsyncIterator[bytes]:
        raise RuntimeError("could not start")
        yield b""  # an async generator all the same

    async def returns_none(self, request: Request) -> Any:
        return None

    async def returns_text(self, request: Request) -> Any:
        return "text, not bytes"

    async def stubborn(self, request: Request) -> bytes:
        # Ignores cancellation until the test releases it: the caller's deadline must hold
        # all the same, on the caller's side.
        with anyio.CancelScope(shield=True):
            await self.release.wait()
        return b"too late"


@asynccontextmanager
async def _released(faulty: Faulty) -> AsyncIterator[None]:
    """Whatever happens, let the stubborn handlers go before the server drains."""
    try:
        yield
    finally:
        faulty.release.set()


async def _expect_remote(call: Awaitable[object], type_name: str | None = None) -> str:
    with pytest.raises(RemoteError) as info:
        await call
    if type_name is not None:
        assert info.value.type_name == type_name
    return "RemoteError"


async def _stream_until_error(
    client: TransportClient, address: Address, error: type[Exception], **kwargs: Any
) -> list[bytes]:
    seen: list[bytes] = []
    with pytest.raises(error):
        async with client.stream(address, b"", **kwargs) as chunks:
            async for chunk in chunks:
                seen.append(chunk)
    return seen


async def test_failing_handlers_end_typed_and_the_server_keeps_serving(
    mode: str, settings: dict[str, object]
) -> None:
    faulty = Faulty()
    tally = Tally()
    async with plane(mode, settings) as p, _released(faulty):
        server = await p.server()
        names = [
            "echo",
            "raises",
            "hangs",
            "yields_then_raises",
            "yields_then_hangs",
            "raises_before_yielding",
            "returns_none",
            "returns_text",
            "stubborn",
        ]
        a = {name: await server.register(name, getattr(faulty, name)) for name in names}
        client = p.client()

        async def raises() -> str:
            return await _expect_remote(client.request(a["raises"], b""), "ValueError")

        async def raises_streamed() -> str:
            assert await _stream_until_error(client, a["raises"], RemoteError) == []
            return "RemoteError"

        async def hangs() -> str:
            with pytest.raises(DeadlineExceeded):
                await client.request(a["hangs"], b"", timeout=DEADLINE)
            return "DeadlineExceeded"

        async def yields_then_raises() -> str:
            seen = await _stream_until_error(client, a["yields_then_raises"], RemoteError)
            assert seen == [b"part 0", b"part 1", b"part 2"]
            return "RemoteError"

        async def yields_then_raises_joined() -> str:
            return await _expect_remote(client.request(a["yields_then_raises"], b""), "KeyError")

        async def yields_then_hangs() -> str:
            seen = await _stream_until_error(
                client, a["yields_then_hangs"], DeadlineExceeded, timeout=DEADLINE
            )
            assert seen == [b"first", b"second"]
            return "DeadlineExceeded"

        async def raises_before_yielding() -> str:
            assert await _stream_until_error(client, a["raises_before_yielding"], RemoteError) == []
            return "RemoteError"

        async def returns_none() -> str:
            return await _expect_remote(client.request(a["returns_none"], b""))

        async def returns_text() -> str:
            return await _expect_remote(client.request(a["returns_text"], b""))

        async def stubborn() -> str:
            with pytest.raises(DeadlineExceeded):
                await client.request(a["stubborn"], b"", timeout=DEADLINE)
            return "DeadlineExceeded"

        async def healthy(i: int) -> str:
            payload = b"healthy %d" % i
            assert await client.request(a["echo"], payload) == payload
            return "ok"

        cases: list[Callable[[], Awaitable[str]]] = [
            raises,
            raises_streamed,
            hangs,
            yields_then_raises,
            yields_then_raises_joined,
            yields_then_hangs,
            raises_before_yielding,
            returns_none,
            returns_text,
            stubborn,
        ]

        async def record(case: Callable[[], Awaitable[str]]) -> None:
            tally.add(await case())

        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:
                for round_ in range(ROUNDS):
                    for case in cases:
                        tg.start_soon(record, case)
                    for i in range(5):
                        tg.start_soon(record, lambda i=round_ * 5 + i: healthy(i))

        expected = ROUNDS * (len(cases) + 5)
        tally.assert_accounted(expected, {"ok", "RemoteError", "DeadlineExceeded"})
        assert tally.counts["ok"] == ROUNDS * 5
        assert tally.counts["DeadlineExceeded"] == ROUNDS * 3

        # The server is unaffected: hung handlers were cancelled at their deadline, the
        # stubborn ones finish once released, and nothing stays in flight.
        await settle(lambda: server.health().inflight == ROUNDS, lambda: str(server.health()))
        faulty.release.set()
        await settle(lambda: server.health().inflight == 0, lambda: str(server.health()))
        assert faulty.hung_ended == ROUNDS * 2
        with anyio.fail_after(BOUND):
            assert await client.request(a["echo"], b"after") == b"after"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_handler_raising_cancelled_error_is_a_remote_error(
    mode: str, settings: dict[str, object]
) -> None:
    """A handler that lets a ``CancelledError`` out without being cancelled (it awaited a
    future someone else cancelled) has failed like any other handler: the caller gets
    ``RemoteError`` and the server keeps serving. asyncio only: trio's ``Cancelled`` cannot
    be raised by user code. (Bug B2 of /work/brief/bugs.md: before the dispatcher's fix, tcp
    lost its whole server, nats never answered and http answered a bare 500.)"""

    async def leaks_cancelled(request: Request) -> bytes:
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        future.cancel()
        return await future

    async def echo(request: Request) -> bytes:
        return request.payload

    async with plane(mode, settings) as p:
        server = await p.server()
        bad = await server.register("leaks-cancelled", leaks_cancelled)
        good = await server.register("echo", echo)
        client = p.client()
        with anyio.fail_after(BOUND):
            with pytest.raises(RemoteError):
                await client.request(bad, b"", timeout=3.0)
            assert await client.request(good, b"still serving", timeout=3.0) == b"still serving"
