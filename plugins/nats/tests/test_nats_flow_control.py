"""Flow control of streams: a slow reader slows its own stream, and nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
from nats_test_helpers import echo, nats_client_of, nats_server_of
from requestplane_nats import NatsServerProcess, NatsSettings

from requestplane_core import Request

pytestmark = pytest.mark.anyio

CHUNK = 1024
TOTAL = 20_000
WINDOW = NatsSettings().stream_window


def numbered(i: int) -> bytes:
    return i.to_bytes(4, "big") * (CHUNK // 4)


async def test_a_slow_reader_slows_its_own_stream_only() -> None:
    """The issue's reader (it pauses 20 ms every 1000 chunks) of a 20 MiB stream: the handler
    never gets more than the window ahead of it, an unrelated call on the same client goes
    through meanwhile, and the broker never had to cut a slow consumer off."""
    produced = consumed = ahead = 0

    async def stream(request: Request) -> AsyncIterator[bytes]:
        nonlocal produced, ahead
        for i in range(TOTAL):
            produced += 1
            ahead = max(ahead, produced - consumed)
            yield numbered(i)

    # A broker that cuts off a client 16 MiB behind (a quarter of the default max_pending),
    # less than this stream: only flow control keeps the reader from falling that far back.
    with NatsServerProcess(config="max_pending: 16777216\n") as broker:
        settings = {"url": broker.url}
        with anyio.fail_after(120):
            async with nats_server_of(settings) as server, nats_client_of(settings) as client:
                address = await server.register("numbered", stream)
                echo_address = await server.register("echo", echo)
                async with client.stream(address, b"", timeout=100) as chunks:
                    async for chunk in chunks:
                        assert chunk == numbered(consumed)
                        consumed += 1
                        if consumed % 1000 == 0:
                            await anyio.sleep(0.02)  # the slow reader's own pace
                            unrelated = await client.request(echo_address, b"hi", timeout=10)
                            assert unrelated == b"hi"
        log = broker.log_text()
    assert consumed == TOTAL
    # The credit of one window (each chunk costs its size + 64), plus the chunk the handler
    # yields while it waits for credit.
    assert ahead <= WINDOW // CHUNK + 2, ahead
    assert "Slow Consumer" not in log


async def test_a_handler_waiting_for_credit_is_cancelled_when_the_reader_leaves(
    nats_url: str,
) -> None:
    cancelled = anyio.Event()
    produced = 0

    async def endless(request: Request) -> AsyncIterator[bytes]:
        nonlocal produced
        try:
            while True:
                produced += 1
                yield numbered(produced)
        finally:
            cancelled.set()

    settings = {"url": nats_url}
    with anyio.fail_after(30):
        async with nats_server_of(settings) as server, nats_client_of(settings) as client:
            address = await server.register("endless", endless)
            async with client.stream(address, b"") as chunks:
                async for _chunk in chunks:
                    break  # the reader leaves; its handler is out of credit by now, or soon
            await cancelled.wait()
            assert await client.request(await server.register("echo", echo), b"x") == b"x"
    assert produced <= WINDOW // CHUNK + 2


async def test_a_stream_whose_request_came_in_parts_is_flow_controlled_too() -> None:
    produced = consumed = ahead = 0

    async def stream(request: Request) -> AsyncIterator[bytes]:
        nonlocal produced, ahead
        for i in range(TOTAL // 2):
            produced += 1
            ahead = max(ahead, produced - consumed)
            yield numbered(i)

    # max_payload 4 KiB: the 8 KiB request travels in parts
    with NatsServerProcess(config="max_payload: 4096\n") as broker:
        settings = {"url": broker.url}
        with anyio.fail_after(120):
            async with nats_server_of(settings) as server, nats_client_of(settings) as client:
                address = await server.register("numbered", stream)
                async with client.stream(address, b"r" * 8192, timeout=100) as chunks:
                    async for chunk in chunks:
                        assert chunk == numbered(consumed)
                        consumed += 1
                        if consumed % 1000 == 0:
                            await anyio.sleep(0.02)  # the slow reader's own pace
    assert consumed == TOTAL // 2
    assert ahead <= WINDOW // CHUNK + 2, ahead
