"""Client-side deadlines: timers of the event loop (a timer task on trio), not cancel scopes.

A mute server (it speaks the protocol but never answers) makes sure it is the client's own
timer that ends a call, not the server's deadline.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketStream
from requestplane_tcp.framing import CANCEL, PREAMBLE, REQUEST, RESPONSE, decode_request
from tcp_test_helpers import BOUND, RawReader, client, echo, frame, make_settings, running, spec

from requestplane_core import Address, DeadlineExceeded, Request

pytestmark = pytest.mark.anyio


class MuteServer:
    """Answers requests to ``echo`` at once and never anything else; records CANCELs."""

    def __init__(self) -> None:
        self.requests: list[int] = []
        self.cancels: list[int] = []
        self.cancelled = anyio.Event()

    async def serve(self, stream: SocketStream) -> None:
        await stream.send(PREAMBLE)
        reader = RawReader(stream)
        await reader.preamble()
        while True:
            kind, rid, body = await reader.frame()
            if kind == REQUEST:
                endpoint, _headers, _remaining, _payload = decode_request(memoryview(body))
                if endpoint == "echo":
                    await stream.send(frame(RESPONSE, rid))
                else:
                    self.requests.append(rid)
            elif kind == CANCEL:
                self.cancels.append(rid)
                self.cancelled.set()


@asynccontextmanager
async def mute_server() -> AsyncIterator[tuple[MuteServer, Callable[[str], Address]]]:
    server = MuteServer()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(SocketAttribute.local_port)

    async def serve_one(stream: SocketStream) -> None:
        async with stream:
            try:
                await server.serve(stream)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass

    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve_one)
        yield server, lambda endpoint: Address("tcp", "127.0.0.1", port, endpoint)
        tg.cancel_scope.cancel()


async def test_the_client_times_out_a_mute_server_and_cancels() -> None:
    async with mute_server() as (server, addr), client() as c:
        with anyio.fail_after(BOUND):
            with pytest.raises(DeadlineExceeded, match=r"within the 0\.2s timeout"):
                await c.request(addr("mute"), b"", timeout=0.2)
            await server.cancelled.wait()
        assert server.cancels == server.requests
        assert c.stats.errors == 1


async def test_a_short_timeout_behind_a_long_one_fires_in_time() -> None:
    async with mute_server() as (_server, addr), client() as c:
        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: c.request(addr("mute"), b"", timeout=3600))
                await anyio.wait_all_tasks_blocked()
                with pytest.raises(DeadlineExceeded):
                    await c.request(addr("mute"), b"", timeout=0.2)
                tg.cancel_scope.cancel()


async def test_timers_of_answered_calls_are_dropped() -> None:
    async with mute_server() as (_server, addr), client() as c:
        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:
                for _ in range(300):
                    tg.start_soon(lambda: c.request(addr("echo"), b"", timeout=3600))
            for _ in range(300):
                await c.request(addr("echo"), b"", timeout=3600)
            with pytest.raises(DeadlineExceeded):
                await c.request(addr("mute"), b"", timeout=0.2)
        # trio keeps its own heap of timers: the answered calls' ones must not pile up.
        heap = getattr(c._timers, "_heap", [])  # type: ignore[attr-defined]
        assert len(heap) < 200


async def test_a_stream_times_out_on_a_mute_server_and_cancels() -> None:
    async with mute_server() as (server, addr), client() as c:
        with anyio.fail_after(BOUND):
            with pytest.raises(DeadlineExceeded, match=r"within its 0\.2s timeout"):
                async for _chunk in c.stream(addr("mute"), b"", timeout=0.2):
                    pass
            await server.cancelled.wait()
        assert server.cancels == server.requests


async def test_a_dropped_stream_with_a_deadline_still_cancels_its_handler_at_once() -> None:
    stopped = anyio.Event()

    async def ticks(request: Request) -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"tick"
                await anyio.sleep(0.01)
        finally:
            stopped.set()

    async with running({"ticks": ticks}) as (_s, addresses), client() as c:
        with anyio.fail_after(BOUND):  # far less than the stream's timeout
            async for _chunk in c.stream(addresses["ticks"], b"", timeout=3600):
                break  # no aclose(): the stream object is dropped here
            await stopped.wait()


async def test_closing_a_client_started_in_the_callers_task_group_stops_its_timers() -> None:
    async with running({"echo": echo}) as (_s, addresses):
        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:
                c = spec().client(make_settings())
                c.start(tg)
                assert await c.request(addresses["echo"], b"x", timeout=60) == b"x"
                await c.aclose()
            # The task group ended: nothing of the client (reader, timer task) was left.
