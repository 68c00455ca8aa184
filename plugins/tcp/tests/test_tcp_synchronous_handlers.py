"""Synchronous handlers are answered in the connection's reader, and a peer that sends without
reading stops being read instead of growing the server's queue."""

from __future__ import annotations

import anyio
import pytest
from requestplane_tcp.connection import HIGH_WATER, RECEIVE_SIZE, FrameConnection
from requestplane_tcp.framing import RESPONSE
from tcp_test_helpers import BOUND, RawReader, client, echo, raw_connect, request_frame, running

from requestplane_core import Request

pytestmark = pytest.mark.anyio


async def test_a_synchronous_handler_runs_in_the_reader_and_an_async_one_in_a_task() -> None:
    seen: dict[str, list[int]] = {"sync": [], "async": []}
    all_in = anyio.Event()

    def sync_task(request: Request) -> bytes:
        seen["sync"].append(anyio.get_current_task().id)
        return b"s"

    async def async_task(request: Request) -> bytes:
        seen["async"].append(anyio.get_current_task().id)
        if len(seen["async"]) == 3:
            all_in.set()
        await all_in.wait()  # all three alive at once: their task ids cannot be reused
        return b"a"

    handlers = {"sync": sync_task, "async": async_task}
    async with running(handlers) as (_server, addresses), client() as c:
        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(c.request, addresses["async"], b"")
                for _ in range(3):
                    assert await c.request(addresses["sync"], b"") == b"s"
    # one connection: its reader answered every synchronous request, each async one had a
    # task of its own
    assert len(set(seen["sync"])) == 1
    assert len(set(seen["async"])) == 3
    assert not set(seen["sync"]) & set(seen["async"])


async def test_a_peer_that_never_reads_is_paused_and_the_rest_are_served(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def sync_echo(request: Request) -> bytes:
        return request.payload

    paused = anyio.Event()
    wait_drained = FrameConnection.wait_drained

    async def spied(self: FrameConnection) -> None:
        paused.set()  # the reader, paused: no handler here meets a congested queue
        await wait_drained(self)

    monkeypatch.setattr(FrameConnection, "wait_drained", spied)
    count, size = 400, 60_000  # 24 MB of answers: far more than the kernel's buffers hold
    flood = b"".join(request_frame(rid, "echo", bytes(size)) for rid in range(1, count + 1))
    async with running({"echo": sync_echo, "async-echo": echo}) as (server, addresses):
        stream = await raw_connect(addresses["echo"])
        async with stream, anyio.create_task_group() as tg:
            tg.start_soon(stream.send, flood)
            with anyio.fail_after(BOUND):
                await paused.wait()
            (conn,) = server._transport._connections  # type: ignore[attr-defined]
            queued = conn.fc._out_bytes
            assert HIGH_WATER < queued <= HIGH_WATER + RECEIVE_SIZE + size
            async with client() as c:
                with anyio.fail_after(BOUND):
                    assert await c.request(addresses["async-echo"], b"others") == b"others"
                    assert await c.request(addresses["echo"], b"served") == b"served"
            # once the peer reads, every request it sent is answered, in order
            reader = RawReader(stream)
            with anyio.fail_after(BOUND * 2):
                await reader.preamble()
                for rid in range(1, count + 1):
                    kind, got_rid, body = await reader.frame()
                    assert (kind, got_rid, len(body)) == (RESPONSE, rid, size)
