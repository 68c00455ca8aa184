"""Frames larger than one receive are gathered piece by piece and joined once: they must
come out whole whatever the split, with the frames around them intact."""

from __future__ import annotations

import logging

import anyio
import pytest
from requestplane_tcp.connection import RECEIVE_SIZE
from requestplane_tcp.framing import PREAMBLE, RESPONSE
from tcp_test_helpers import (
    BOUND,
    RawReader,
    client,
    echo,
    raw_connect,
    read_to_eof,
    request_frame,
    running,
)

from requestplane_core import Request

pytestmark = pytest.mark.anyio

SIZES = [5, RECEIVE_SIZE - 30, RECEIVE_SIZE, RECEIVE_SIZE + 1, 1_000_003, 3 * RECEIVE_SIZE, 7]


def _payload(i: int, size: int) -> bytes:
    return bytes((i + k) % 251 for k in range(min(size, 251))) * (size // 251) + b"t" * (size % 251)


async def test_large_and_small_responses_interleaved_reach_the_client_whole() -> None:
    async with running({"echo": echo}) as (_s, addresses), client() as c:
        results: dict[int, bytes] = {}

        async def call(i: int, size: int) -> None:
            results[i] = await c.request(addresses["echo"], _payload(i, size))

        with anyio.fail_after(BOUND * 2):
            for _round in range(2):
                async with anyio.create_task_group() as tg:
                    for i, size in enumerate(SIZES * 2):
                        tg.start_soon(call, i, size)
                assert results == {i: _payload(i, s) for i, s in enumerate(SIZES * 2)}
                results.clear()


@pytest.mark.parametrize("step", [65537, 300_001, 10**9])
async def test_large_requests_split_anywhere_reach_the_server_whole(step: int) -> None:
    seen: dict[int, int] = {}

    async def size(request: Request) -> bytes:
        assert request.payload == _payload(int(request.headers["i"]), len(request.payload))
        seen[int(request.headers["i"])] = len(request.payload)
        return b"%d" % len(request.payload)

    async with running({"size": size}) as (_s, addresses):
        stream = await raw_connect(addresses["size"], preamble=None)
        wire = PREAMBLE + b"".join(
            request_frame(i + 1, "size", _payload(i + 1, n), {"i": str(i + 1)})
            for i, n in enumerate(SIZES)
        )
        reader = RawReader(stream)
        answers = {}
        with anyio.fail_after(BOUND * 2):
            async with anyio.create_task_group() as tg:

                async def send() -> None:
                    for start in range(0, len(wire), step):
                        await stream.send(wire[start : start + step])

                tg.start_soon(send)
                assert await reader.preamble() == PREAMBLE
                for _ in SIZES:
                    kind, rid, body = await reader.frame()
                    assert kind == RESPONSE
                    answers[rid] = int(body)
        await stream.aclose()
        assert answers == {i + 1: n for i, n in enumerate(SIZES)}
        assert seen == answers


async def test_a_large_frame_cut_short_is_logged_and_costs_its_connection_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="requestplane.tcp")
    async with running({"echo": echo}) as (server, addresses), client() as good:
        bad = await raw_connect(addresses["echo"])
        with anyio.fail_after(BOUND):
            frame = request_frame(1, "echo", b"x" * (3 * RECEIVE_SIZE))
            await bad.send(frame[: 2 * RECEIVE_SIZE])
            await bad.send_eof()
            answer = await read_to_eof(bad)
            await bad.aclose()
            assert await good.request(addresses["echo"], b"still") == b"still"
        assert answer.startswith(PREAMBLE)
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert any("middle of a frame" in line for line in warnings)
        with anyio.fail_after(BOUND):
            while server.health().details["connections"] > 1:
                await anyio.wait_all_tasks_blocked()
