"""What hypercorn left behind when HTTP/2 streams end abnormally, and the streams-per-connection
limit: many cancelled calls, a client that goes away while handlers are blocked writing, and
a connection kept at its concurrent stream limit (see requestplane_http/_compat.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
from http_test_helpers import BOUND, http_settings, served
from requestplane_http.h2_connection import STREAM_WINDOW

from requestplane_core import Request, load_plugins

pytestmark = pytest.mark.anyio


async def test_a_thousand_cancelled_calls_leave_the_connection_serving() -> None:
    # Each cancelled call resets its stream. hypercorn kept reset streams in its priority
    # tree, which refuses stream 1001: the connection died (on trio the whole server). (No
    # reset budget here: 1100 resets in under 1.8 s would exceed the default one, which
    # test_http_rapid_reset.py tests, on a fast machine.)
    async with served(
        {"max_resets_per_second": float("inf")}, client_settings={"max_connections": 1}
    ) as s:
        with anyio.fail_after(BOUND * 4):
            for _ in range(1100):
                s.probe.started = anyio.Event()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(s.client.request, s.addr("block"), b"")
                    await s.probe.started.wait()
                    tg.cancel_scope.cancel()
            assert await s.client.request(s.addr("echo"), b"still") == b"still"
        assert s.client.stats.open_connections == 1
        assert s.client.stats.errors == 0


async def test_handlers_blocked_writing_are_cancelled_when_the_client_goes_away() -> None:
    # The client reads nothing: the handlers fill the client's stream window, then block in
    # hypercorn's send buffer. Closing the client closes the connection; hypercorn stopped
    # its send task and left the buffers as they were, so the handlers waited for ever.
    handlers = 4
    chunk = b"f" * 16384
    filled = anyio.Event()
    cancelled = anyio.Event()
    counts = {"filled": 0, "cancelled": 0}

    async def flood(request: Request) -> AsyncIterator[bytes]:
        sent = 0
        try:
            while True:
                yield chunk
                sent += len(chunk)
                if sent == STREAM_WINDOW:  # the next ~32 KiB and it blocks
                    counts["filled"] += 1
                    if counts["filled"] == handlers:
                        filled.set()
        except BaseException:
            counts["cancelled"] += 1
            if counts["cancelled"] == handlers:
                cancelled.set()
            raise

    spec = load_plugins(only="http").transport("http").spec
    async with served() as s:
        address = await s.server.register("flood", flood)
        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:
                client = spec.client(http_settings())
                client.start(tg)
                streams = [client.stream(address, b"") for _ in range(handlers)]
                for stream in streams:
                    tg.start_soon(stream.__anext__)  # sends the request, takes one chunk
                await filled.wait()
                await client.aclose()
            await cancelled.wait()


async def test_a_connection_kept_at_its_stream_limit() -> None:
    # One connection, always full: hypercorn dropped a finished stream from its tree only
    # after flushing its end, by when the client had already opened the next one (stream
    # 1001 of a tree that holds 1000: the connection died).
    async with served(
        {"max_concurrent_streams": 1000}, client_settings={"max_connections": 1}
    ) as s:
        done = 0

        async def call() -> None:
            nonlocal done
            assert await s.client.request(s.addr("echo"), b"x" * 100) == b"x" * 100
            done += 1

        with anyio.fail_after(BOUND * 4):
            async with anyio.create_task_group() as tg:
                for _ in range(3000):
                    tg.start_soon(call)
    assert done == 3000
    assert s.client.stats.errors == 0
