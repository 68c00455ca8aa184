"""The server closes connections that idle (nothing in flight, no bytes arriving) for
REQUESTPLANE_TCP_IDLE_TIMEOUT, and those stalled inside a frame for
REQUESTPLANE_TCP_FRAME_TIMEOUT, or that read nothing they are sent for as long; a connection
with a request in flight is never idle."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import anyio
import pytest
from requestplane_tcp.framing import CHUNK, END, ERROR, PREAMBLE
from tcp_test_helpers import (
    BOUND,
    RawReader,
    client,
    echo,
    error_code,
    parse_frames,
    raw_connect,
    read_to_eof,
    request_frame,
    running,
)

from requestplane_core import Request

pytestmark = pytest.mark.anyio


class Slow:
    """A handler that answers once released; says when it started and if it was cancelled."""

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.release = anyio.Event()
        self.cancelled = anyio.Event()

    async def __call__(self, request: Request) -> bytes:
        self.started.set()
        try:
            await self.release.wait()
        except BaseException:
            self.cancelled.set()
            raise
        return b"done"


@pytest.mark.parametrize("sent", ["preamble", "half a frame"])
async def test_an_idle_connection_is_closed_and_the_client_reconnects(sent: str) -> None:
    async with running({"echo": echo}, idle_timeout=0.3) as (server, addresses), client() as c:
        address = addresses["echo"]
        with anyio.fail_after(BOUND):
            assert await c.request(address, b"first") == b"first"
            idle = await raw_connect(address)
            if sent == "half a frame":
                await idle.send(request_frame(1, "echo", b"x" * 100)[:40])
            # Closed by the server, silently: the peer had nothing in flight.
            assert await read_to_eof(idle) == PREAMBLE
            await idle.aclose()
            # The client's connection idled longer still: gone too, and replaced on demand.
            while c.stats.open_connections or server.health().details["connections"]:
                await anyio.wait_all_tasks_blocked()
            assert await c.request(address, b"again") == b"again"


async def test_a_slow_request_in_flight_is_never_closed_for_idleness() -> None:
    slow = Slow()
    async with (
        running({"slow": slow, "echo": echo}, idle_timeout=0.3) as (_server, addresses),
        client() as c,
    ):
        outcome: list[bytes] = []

        async def call() -> None:
            outcome.append(await c.request(addresses["slow"], b""))

        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                await slow.started.wait()
                # A connection opened after the slow request went quiet is closed for
                # idleness; the slow request's connection, quiet for longer, is not.
                idle = await raw_connect(addresses["echo"])
                assert await read_to_eof(idle) == PREAMBLE
                await idle.aclose()
                slow.release.set()
        assert outcome == [b"done"]
        assert not slow.cancelled.is_set()


async def test_a_frame_stalled_with_a_request_in_flight_is_cut_off_by_the_frame_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="requestplane.tcp")
    slow = Slow()
    handlers = {"slow": slow, "echo": echo}
    async with running(handlers, idle_timeout=0.3, frame_timeout=0.3) as (_server, addresses):
        bad = await raw_connect(addresses["echo"])
        with anyio.fail_after(BOUND):
            await bad.send(request_frame(1, "slow", b""))
            await slow.started.wait()
            await bad.send(request_frame(2, "echo", b"x" * 100)[:50])  # and nothing more
            answer = await read_to_eof(bad)
            await slow.cancelled.wait()  # the connection's handlers go with it
        await bad.aclose()
        frames = parse_frames(answer[len(PREAMBLE) :])
        assert frames[-1][:2] == (ERROR, 0)
        assert error_code(frames[-1][2]) == "protocol"
        assert b"REQUESTPLANE_TCP_FRAME_TIMEOUT" in frames[-1][2]
        assert any(
            "FRAME_TIMEOUT" in r.getMessage() and r.levelno == logging.WARNING
            for r in caplog.records
        )


async def test_a_trickled_frame_is_cut_off_by_the_frame_timeout() -> None:
    """Bytes keep arriving, so the connection is never idle; the frame never completes."""
    async with running({"echo": echo}, idle_timeout=5.0, frame_timeout=0.5) as (_s, addresses):
        bad = await raw_connect(addresses["echo"])
        whole = request_frame(1, "echo", b"x" * 100_000)
        answer = b""

        async def trickle() -> None:
            for i in range(len(whole)):
                await bad.send(whole[i : i + 1])
                await anyio.sleep(0.05)  # the pace of the slow peer, not a synchronization

        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:
                tg.start_soon(trickle)
                answer = await read_to_eof(bad)
                tg.cancel_scope.cancel()
        await bad.aclose()
        frames = parse_frames(answer[len(PREAMBLE) :])
        assert frames[-1][:2] == (ERROR, 0)
        assert b"REQUESTPLANE_TCP_FRAME_TIMEOUT" in frames[-1][2]


async def test_a_peer_that_reads_nothing_it_is_sent_is_cut_off_by_the_frame_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its requests' handlers would otherwise wait on a full send queue for ever."""
    caplog.set_level(logging.INFO, logger="requestplane.tcp")
    cancelled = anyio.Event()

    async def flood(request: Request) -> AsyncIterator[bytes]:
        try:
            while True:
                yield bytes(65536)
        except BaseException:
            cancelled.set()
            raise

    handlers = {"flood": flood, "echo": echo}
    async with (
        running(handlers, idle_timeout=5.0, frame_timeout=0.5) as (server, addresses),
        client() as c,
    ):
        deaf = await raw_connect(addresses["flood"])
        with anyio.fail_after(BOUND):
            await deaf.send(request_frame(1, "flood", b""))
            await cancelled.wait()  # and never a byte read
            while server.health().details["connections"]:
                await anyio.wait_all_tasks_blocked()
            assert await c.request(addresses["echo"], b"others") == b"others"
        await deaf.aclose()
    assert any(
        "has not read" in r.getMessage() and "FRAME_TIMEOUT" in r.getMessage()
        for r in caplog.records
    )


async def test_a_peer_that_reads_slowly_is_not_cut_off() -> None:
    """Reading, however slowly, is progress: only a peer that reads nothing is dropped."""
    chunks = 20

    async def burst(request: Request) -> AsyncIterator[bytes]:
        for _ in range(chunks):  # 20 MiB: more than the kernel buffers between the two ends
            yield bytes(1 << 20)

    async with running({"burst": burst}, idle_timeout=5.0, frame_timeout=0.5) as (_, addresses):
        slow = await raw_connect(addresses["burst"])
        reader = RawReader(slow)
        kinds: list[int] = []
        with anyio.fail_after(BOUND):
            await slow.send(request_frame(1, "burst", b""))
            assert await reader.preamble() == PREAMBLE
            while not kinds or kinds[-1] == CHUNK:
                kinds.append((await reader.frame())[0])
                await anyio.sleep(0.05)  # the pace of the slow reader, not a synchronization
        await slow.aclose()
    assert kinds == [CHUNK] * chunks + [END]
