"""A burst of frames goes to the socket from the task that fills the queue (write-through),
besides the writer task: nothing may be reordered, lost or torn, whatever the mix of sizes,
and a peer that does not read must still slow the senders down."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import anyio
import pytest
from requestplane_tcp.connection import FrameConnection
from requestplane_tcp.framing import CHUNK, END, PREAMBLE
from tcp_test_helpers import (
    BOUND,
    RawReader,
    client,
    echo,
    raw_connect,
    request_frame,
    running,
)

from requestplane_core import Request

pytestmark = pytest.mark.anyio


async def test_plain_tcp_streams_have_write_through() -> None:
    # If anyio's internals change, write-through quietly turns off (slower, still correct):
    # this test is how we would notice.
    async with running({"echo": echo}) as (_s, addresses):
        address = addresses["echo"]
        assert address.port is not None
        stream = await anyio.connect_tcp(address.host, address.port)
        async with stream:
            assert FrameConnection(stream, "peer", [])._write_now is not None


async def test_mixed_sizes_at_high_concurrency_come_back_intact() -> None:
    rng = random.Random(7)
    sizes = [rng.choice([0, 1, 500, 1024, 9000, 33000, 70000, 150000]) for _ in range(400)]
    async with running({"echo": echo}) as (_s, addresses), client() as c:
        results: dict[int, bytes] = {}

        async def call(i: int) -> None:
            payload = bytes([i % 256]) * sizes[i]
            results[i] = await c.request(addresses["echo"], payload)

        with anyio.fail_after(BOUND * 2):
            async with anyio.create_task_group() as tg:
                for i in range(len(sizes)):
                    tg.start_soon(call, i)
        assert all(results[i] == bytes([i % 256]) * sizes[i] for i in range(len(sizes)))


async def test_interleaved_streams_keep_their_order() -> None:
    async def numbers(request: Request) -> AsyncIterator[bytes]:
        size = int(request.payload)
        for n in range(200):
            yield b"%d:" % n + b"x" * size

    async with running({"numbers": numbers}) as (_s, addresses), client() as c:

        async def consume(size: int) -> None:
            seen = [chunk async for chunk in c.stream(addresses["numbers"], b"%d" % size)]
            assert [int(chunk.split(b":")[0]) for chunk in seen] == list(range(200))
            assert all(len(chunk.split(b":")[1]) == size for chunk in seen)

        with anyio.fail_after(BOUND * 2):
            async with anyio.create_task_group() as tg:
                for size in (0, 100, 1000, 5000, 40000) * 4:
                    tg.start_soon(consume, size)


async def test_a_peer_that_stops_reading_slows_the_handlers_and_gets_everything_later() -> None:
    produced = 0

    async def flood(request: Request) -> AsyncIterator[bytes]:
        nonlocal produced
        for n in range(5000):
            produced += 1
            yield b"%08d" % n + b"y" * 4000

    async with running({"flood": flood}) as (_s, addresses):
        stream = await raw_connect(addresses["flood"])
        reader = RawReader(stream)
        with anyio.fail_after(BOUND * 2):
            await stream.send(request_frame(1, "flood", b""))
            assert await reader.preamble() == PREAMBLE
            kind, rid, body = await reader.frame()  # it started
            assert (kind, rid) == (CHUNK, 1)
            # Stop reading: socket buffers and then the send queue fill up; the handler has
            # to wait instead of queueing its 20 MB.
            await anyio.wait_all_tasks_blocked()
            assert produced < 5000
            numbers = [int(body[:8])]
            while True:
                kind, rid, body = await reader.frame()
                if kind == END:
                    break
                assert kind == CHUNK
                numbers.append(int(body[:8]))
        await stream.aclose()
        assert numbers == list(range(5000))
