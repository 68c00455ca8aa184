"""nats-server restarts and shutdown: typed errors during the outage, success after it."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import pytest
from nats_test_helpers import echo, nats_client_of, nats_server_of
from requestplane_nats import NatsServerProcess

from requestplane_core import (
    ConnectionLost,
    DeadlineExceeded,
    EndpointNotFound,
    Request,
    Unavailable,
)

pytestmark = pytest.mark.anyio

TYPED = (ConnectionLost, DeadlineExceeded, EndpointNotFound, Unavailable)


async def test_restart_under_live_traffic(private_nats_server: NatsServerProcess) -> None:
    url = private_nats_server.url
    blocked, slow_cancelled = anyio.Event(), anyio.Event()

    async def slow(request: Request) -> bytes:
        blocked.set()
        try:
            await anyio.sleep_forever()
        finally:
            slow_cancelled.set()
        raise AssertionError("unreachable")

    outcomes: Counter[str] = Counter()
    started = 0
    phase = {"name": "before"}
    enough = {"before": anyio.Event(), "after": anyio.Event()}
    stop = anyio.Event()

    with anyio.fail_after(60):
        async with nats_server_of({"url": url}) as server:
            address = await server.register("echo", echo)
            slow_address = await server.register("slow", slow)
            async with nats_client_of({"url": url}) as client:

                async def traffic() -> None:
                    nonlocal started
                    while not stop.is_set():
                        started += 1
                        try:
                            assert await client.request(address, b"ping", timeout=2) == b"ping"
                        except TYPED as exc:
                            outcomes[type(exc).__name__] += 1
                            await anyio.sleep(0.01)  # pace retries during the outage
                            continue
                        outcomes[f"ok-{phase['name']}"] += 1
                        if outcomes[f"ok-{phase['name']}"] >= 200:
                            enough[phase["name"]].set()

                in_flight: list[BaseException] = []

                async def stuck_call() -> None:
                    try:
                        await client.request(slow_address, b"", timeout=30)
                    except TYPED as exc:
                        in_flight.append(exc)

                async with anyio.create_task_group() as tg:
                    for _ in range(8):
                        tg.start_soon(traffic)
                    tg.start_soon(stuck_call)
                    await enough["before"].wait()
                    await blocked.wait()
                    await anyio.to_thread.run_sync(private_nats_server.restart)
                    phase["name"] = "after"
                    await enough["after"].wait()
                    stop.set()
                # the call in flight when nats-server went down ended typed, promptly
                assert len(in_flight) == 1 and isinstance(in_flight[0], ConnectionLost)
                # ... and once reconnected, the client cancelled its handler on the server
                await slow_cancelled.wait()
                assert await client.request(address, b"after", timeout=5) == b"after"
                assert server.health().details["reconnects"] >= 1
    assert sum(outcomes.values()) == started  # every call ended in exactly one outcome
    assert outcomes["ok-before"] >= 200 and outcomes["ok-after"] >= 200


async def test_close_leaves_no_thread_behind(nats_url: str) -> None:
    def bridge_threads() -> int:
        return sum(t.name == "requestplane-nats-loop" for t in threading.enumerate())

    before = bridge_threads()
    with anyio.fail_after(10):
        async with nats_server_of({"url": nats_url}) as server:
            address = await server.register("echo", echo)
            async with nats_client_of({"url": nats_url}) as client:
                assert await client.request(address, b"x") == b"x"
    assert bridge_threads() == before


async def test_unreachable_nats_is_unavailable() -> None:
    with NatsServerProcess() as gone:
        url = gone.url
    async with nats_client_of({"url": url, "connect_timeout": 2.0}) as client:
        with anyio.fail_after(10), pytest.raises(Unavailable, match="cannot connect"):
            await client.request(f"nats://{url[7:]}/requestplane.echo", b"")


async def test_url_list_skips_a_dead_server(nats_url: str) -> None:
    with NatsServerProcess() as gone:
        dead = gone.url
    settings = {"url": f"{dead},{nats_url}"}
    with anyio.fail_after(15):
        async with nats_server_of(settings) as server:
            address = await server.register("echo", echo)
            assert f"nats://{address.host}:{address.port}" == nats_url
            async with nats_client_of(settings) as client:
                assert await client.request(address, b"second") == b"second"


async def test_no_responders_while_workers_resubscribe_is_waited_out(
    private_nats_server: NatsServerProcess,
) -> None:
    """After a restart of nats-server this client is back before the worker is (its
    reconnect_wait is 20x the client's): until the worker has resubscribed, NATS answers
    "no responders", which must not reach the caller as EndpointNotFound."""
    url = private_nats_server.url
    worker_lost = anyio.Event()

    class Noticed(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "lost its NATS connection" in record.getMessage():
                worker_lost.set()

    async def chunks(request: Request) -> AsyncIterator[bytes]:
        yield b"a"
        yield b"b"

    log = logging.getLogger("requestplane.nats")
    noticed = Noticed()
    log.addHandler(noticed)
    try:
        with anyio.fail_after(60):
            async with nats_server_of({"url": url, "reconnect_wait": 1.0}) as server:
                address = await server.register("echo", echo)
                chunks_address = await server.register("chunks", chunks)
                async with nats_client_of({"url": url, "reconnect_wait": 0.05}) as client:
                    assert await client.request(address, b"before") == b"before"
                    await anyio.to_thread.run_sync(private_nats_server.stop)
                    await worker_lost.wait()
                    await anyio.to_thread.run_sync(private_nats_server.start)
                    unavailable = 0

                    async def until_answered(call: Callable[[], Awaitable[object]]) -> None:
                        nonlocal unavailable
                        while True:
                            try:
                                await call()
                                return
                            except Unavailable:  # this client still reconnecting: not sent
                                unavailable += 1
                                await anyio.sleep(0.01)  # pace retries during the outage

                    async def unary() -> None:
                        assert await client.request(address, b"after", timeout=10) == b"after"

                    async def stream() -> None:
                        got = [c async for c in client.stream(chunks_address, b"", timeout=10)]
                        assert got == [b"a", b"b"]

                    async with anyio.create_task_group() as tg:
                        tg.start_soon(until_answered, unary)
                        tg.start_soon(until_answered, stream)
                    assert client.stats.errors == unavailable
    finally:
        log.removeHandler(noticed)
