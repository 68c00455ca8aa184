"""Scenario 2: a caller cancels, leaves, or disconnects mid-stream.

Every way a caller can stop listening must cancel its handler on the server promptly, and
nothing may leak: the server's in-flight count, the event loop's tasks and the process's open
file descriptors all come back to where they were (counted, after the loop settles).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from reliability_helpers import (
    BOUND,
    Countdown,
    Tally,
    open_fds,
    plane,
    running_tasks,
    settle,
    worker_env,
)

from requestplane_core import Address, DeadlineExceeded, Request, Server, TransportClient

pytestmark = pytest.mark.anyio

CALLER_SCRIPT = Path(__file__).with_name("reliability_caller.py")
ROUNDS = 5


class Handlers:
    """Endless streams and blocked calls that count how many of them are running."""

    def __init__(self) -> None:
        self.running = 0
        self.ended = 0
        self.started: dict[bytes, anyio.Event] = {}
        self._changed = anyio.Event()

    def _enter(self, request: Request) -> None:
        self.running += 1
        self.started.setdefault(request.payload, anyio.Event()).set()

    def _exit(self) -> None:
        self.running -= 1
        self.ended += 1
        self._changed.set()
        self._changed = anyio.Event()

    async def endless(self, request: Request) -> AsyncIterator[bytes]:
        self._enter(request)
        try:
            i = 0
            while True:
                yield b"tick %d" % i
                i += 1
                await anyio.sleep(0.01)
        finally:
            self._exit()

    async def block(self, request: Request) -> bytes:
        self._enter(request)
        try:
            await anyio.sleep_forever()
        finally:
            self._exit()
        return b""

    async def wait_idle(self) -> None:
        while self.running:
            await self._changed.wait()

    def started_event(self, tag: bytes) -> anyio.Event:
        return self.started.setdefault(tag, anyio.Event())


async def _serve(server: Server, handlers: Handlers) -> dict[str, Address]:
    return {
        "endless": await server.register("endless", handlers.endless),
        "block": await server.register("block", handlers.block),
        "echo": await server.register("echo", _echo),
    }


async def _echo(request: Request) -> bytes:
    return request.payload


def _snapshot(server: Server, client: TransportClient | None = None) -> dict[str, object]:
    """What a leak would grow: the server's in-flight requests (and the transport's own
    count of connections or requests, where it reports one), the event loop's tasks, this
    process's file descriptors, the client's open connections."""
    health = server.health()
    counts: dict[str, object] = {
        "inflight": health.inflight,
        "tasks": running_tasks(),
        "fds": open_fds(),
        **{k: v for k, v in health.details.items() if k in ("connections", "inflight")},
    }
    if client is not None:
        counts["client_connections"] = client.stats.open_connections
    return counts


def _back_to(
    server: Server, base: dict[str, object], client: TransportClient | None = None
) -> bool:
    now = _snapshot(server, client)
    return all(now[k] <= v for k, v in base.items())  # type: ignore[operator]


# -- the ways a caller stops listening -----------------------------------------------------


async def _scope_cancelled_inside_async_with(client: TransportClient, a: Address) -> str:
    with anyio.CancelScope() as scope:
        async with client.stream(a, b"") as chunks:
            async for _ in chunks:
                scope.cancel()
    assert scope.cancelled_caught
    return "cancelled"


async def _scope_cancelled_bare_iteration(client: TransportClient, a: Address) -> str:
    # No aclose() and no `async with`: cancelling the consumer alone must reach the handler.
    with anyio.CancelScope() as scope:
        async for _ in client.stream(a, b""):
            scope.cancel()
    assert scope.cancelled_caught
    return "cancelled"


async def _left_early(client: TransportClient, a: Address) -> str:
    async with client.stream(a, b"") as chunks:
        async for _ in chunks:
            break
    return "left"


async def _stream_deadline(client: TransportClient, a: Address) -> str:
    with pytest.raises(DeadlineExceeded):
        async for _ in client.stream(a, b"", timeout=0.1):
            pass
    return "DeadlineExceeded"


async def _unary_cancelled(
    client: TransportClient, a: Address, handlers: Handlers, tag: bytes
) -> str:
    started = handlers.started_event(tag)
    async with anyio.create_task_group() as tg:
        tg.start_soon(client.request, a, tag)
        await started.wait()
        tg.cancel_scope.cancel()
    return "cancelled"


async def test_every_way_of_cancelling_cancels_the_handler_and_leaks_nothing(
    mode: str, settings: dict[str, object]
) -> None:
    handlers = Handlers()
    tally = Tally()
    async with plane(mode, settings) as p:
        server = await p.server()
        addr = await _serve(server, handlers)
        client = p.client()
        with anyio.fail_after(BOUND):
            # Warm up: connections and lazily created tasks exist before the baseline, which
            # (like the final count) is taken after a completed call: hypercorn runs a
            # keep-alive timer task per idle connection.
            await _left_early(client, addr["endless"])
            await handlers.wait_idle()
            assert await client.request(addr["echo"], b"warm") == b"warm"
            await anyio.wait_all_tasks_blocked()
        base = _snapshot(server, client)

        for round_ in range(ROUNDS):

            async def case(fn: object, *args: object) -> None:
                tally.add(await fn(*args))  # type: ignore[operator]

            with anyio.fail_after(BOUND):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(case, _scope_cancelled_inside_async_with, client, addr["endless"])
                    tg.start_soon(case, _scope_cancelled_bare_iteration, client, addr["endless"])
                    tg.start_soon(case, _left_early, client, addr["endless"])
                    tg.start_soon(case, _stream_deadline, client, addr["endless"])
                    tg.start_soon(
                        case, _unary_cancelled, client, addr["block"], handlers, b"%d" % round_
                    )
                # Promptly: the handlers end without any deadline of their own.
                await handlers.wait_idle()

        tally.assert_accounted(5 * ROUNDS, {"cancelled", "left", "DeadlineExceeded"})
        assert handlers.ended == 5 * ROUNDS + 1
        with anyio.fail_after(BOUND):
            assert await client.request(addr["echo"], b"after") == b"after"
        await settle(
            lambda: _back_to(server, base, client),
            lambda: f"before {base}, after {_snapshot(server, client)}",
        )


async def test_client_closed_mid_stream_fails_its_calls_and_frees_everything(
    mode: str, settings: dict[str, object]
) -> None:
    handlers = Handlers()
    tally = Tally()
    streams = 5
    async with plane(mode, settings) as p:
        server = await p.server()
        addr = await _serve(server, handlers)
        await anyio.wait_all_tasks_blocked()
        base = _snapshot(server)

        leaving = p.client()
        streaming = Countdown(streams)

        async def consume() -> None:
            first = True
            async for _ in leaving.stream(addr["endless"], b""):
                if first:
                    first = False
                    streaming.arrive()

        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:
                for _ in range(streams):
                    tg.start_soon(tally.run, consume)
                tg.start_soon(tally.run, lambda: leaving.request(addr["block"], b"u"))
                await streaming.wait()
                await handlers.started_event(b"u").wait()
                await leaving.aclose()
            await handlers.wait_idle()

        tally.assert_accounted(streams + 1, {"ConnectionLost"})
        assert leaving.stats.open_connections == 0
        await settle(
            lambda: _back_to(server, base), lambda: f"before {base}, after {_snapshot(server)}"
        )


async def test_caller_process_killed_mid_stream_ends_the_handler(
    mode: str, settings: dict[str, object], anyio_backend: str
) -> None:
    """A caller that dies without a word (SIGKILL). tcp and http see the connection drop and
    cancel the handler at once; NATS cannot see a caller go, so the handler runs until the
    deadline the caller sent (its timeout), which the server enforces."""
    timeout = 2.0 if mode == "nats" else 600.0
    handlers = Handlers()
    async with plane(mode, settings) as p:
        server = await p.server()
        addr = await _serve(server, handlers)
        await anyio.wait_all_tasks_blocked()
        base = _snapshot(server)

        process = await anyio.open_process(
            [sys.executable, str(CALLER_SCRIPT), anyio_backend, str(addr["endless"]), str(timeout)],
            env=worker_env(mode, 0, settings),
            stderr=None,
        )
        try:
            assert process.stdout is not None
            lines = BufferedByteReceiveStream(process.stdout)
            with anyio.fail_after(BOUND * 2):
                assert await lines.receive_until(b"\n", 100) == b"streaming"
            assert handlers.running == 1
            process.kill()
            with anyio.fail_after(BOUND if mode != "nats" else timeout + BOUND):
                await handlers.wait_idle()
        finally:
            with anyio.CancelScope(shield=True):
                if process.returncode is None:
                    process.kill()
                await process.wait()
                await process.aclose()

        await settle(
            lambda: _back_to(server, base), lambda: f"before {base}, after {_snapshot(server)}"
        )
