"""Requests run in tasks spawned natively (not through an anyio task group): handlers still
get everything anyio offers, and no request task outlives its connection."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest
from tcp_test_helpers import (
    BOUND,
    client,
    echo,
    frame,
    raw_connect,
    read_to_eof,
    request_frame,
    running,
)

from requestplane_core import ConnectionLost, Request

pytestmark = pytest.mark.anyio


async def test_handlers_use_anyio_freely() -> None:
    async def busy(request: Request) -> bytes:
        parts: list[bytes] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.sleep, 0)
            parts.append(await anyio.to_thread.run_sync(bytes, request.payload))
        with anyio.move_on_after(0.01) as scope:
            await anyio.sleep_forever()
        assert scope.cancelled_caught
        with anyio.fail_after(BOUND):
            await anyio.lowlevel.checkpoint()
        return b"".join(parts) + b" done"

    async with running({"busy": busy}) as (_s, addresses), client() as c:
        with anyio.fail_after(BOUND):
            assert await c.request(addresses["busy"], b"work") == b"work done"


async def test_a_connection_ends_only_after_its_request_tasks() -> None:
    started = anyio.Event()
    release = anyio.Event()
    cleaned_up = anyio.Event()

    async def slow_to_stop(request: Request) -> bytes:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            # Cleanup that awaits, shielded: the connection must wait for it to finish.
            with anyio.CancelScope(shield=True):
                await release.wait()
                cleaned_up.set()
        return b""

    async with running({"slow": slow_to_stop}) as (server, addresses):
        with anyio.fail_after(BOUND):
            async with client() as c, anyio.create_task_group() as tg:

                async def call() -> None:
                    with pytest.raises(ConnectionLost):
                        await c.request(addresses["slow"], b"")

                tg.start_soon(call)
                await started.wait()
                await c.aclose()
            await anyio.wait_all_tasks_blocked()
            assert server.health().details["connections"] == 1, "waits for its request"
            release.set()
            while server.health().details["connections"]:
                await anyio.wait_all_tasks_blocked()
            assert cleaned_up.is_set()


async def test_many_requests_on_one_connection_then_close_leaves_no_task() -> None:
    async def echo(request: Request) -> bytes:
        await anyio.lowlevel.checkpoint()
        return request.payload

    async with running({"echo": echo}) as (server, addresses):
        baseline = len(anyio.get_running_tasks())
        with anyio.fail_after(BOUND):
            async with client() as c, anyio.create_task_group() as tg:
                for i in range(200):
                    tg.start_soon(c.request, addresses["echo"], str(i).encode())
            while server.health().details["connections"]:
                await anyio.wait_all_tasks_blocked()
        assert len(anyio.get_running_tasks()) == baseline


async def test_a_request_cancelled_before_its_task_ran_does_not_hold_up_the_close() -> None:
    # A REQUEST and a malformed frame in one packet: the reader spawns the request's task,
    # then closes the connection before that task ever ran.
    async with running({"echo": echo}) as (server, addresses):
        with anyio.fail_after(BOUND):
            for _ in range(3):
                bad = await raw_connect(addresses["echo"])
                await bad.send(request_frame(1, "echo", b"x") + frame(99, 2))
                await read_to_eof(bad)
                await bad.aclose()
            while server.health().details["connections"]:
                await anyio.wait_all_tasks_blocked()
            async with client() as c:
                assert await c.request(addresses["echo"], b"ok") == b"ok"
