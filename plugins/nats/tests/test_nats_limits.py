"""max_payload from the NATS server's INFO: refused before sending, both directions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio
import pytest
from nats_test_helpers import echo, nats_client_of, nats_server_of
from requestplane_nats import NatsServerProcess

from requestplane_core import PayloadTooLarge, Request

pytestmark = pytest.mark.anyio

LIMIT = 4096


@pytest.fixture(scope="module")
def small_nats() -> Iterator[NatsServerProcess]:
    with NatsServerProcess(config=f"max_payload: {LIMIT}\n") as server:
        yield server


async def test_max_payload_refused_before_sending(small_nats: NatsServerProcess) -> None:
    async def big(request: Request) -> bytes:
        return b"r" * (LIMIT + 1)

    async def big_chunks(request: Request) -> AsyncIterator[bytes]:
        yield b"fine"
        yield b"c" * LIMIT  # with its sequence header it no longer fits

    settings = {"url": small_nats.url}
    with anyio.fail_after(10):
        async with nats_server_of(settings) as server:
            address = await server.register("echo", echo)
            big_address = await server.register("big", big)
            chunks_address = await server.register("chunks", big_chunks)
            async with nats_client_of(settings) as client:
                assert await client.request(address, b"x" * (LIMIT - 100)) == b"x" * (LIMIT - 100)
                with pytest.raises(PayloadTooLarge, match="max_payload of 4096"):
                    await client.request(address, b"x" * (LIMIT + 1))
                with pytest.raises(PayloadTooLarge):  # the headers count too
                    await client.request(address, b"x" * LIMIT, headers={"k": "v"})
                with pytest.raises(PayloadTooLarge):
                    await client.request(big_address, b"")
                got: list[bytes] = []
                with pytest.raises(PayloadTooLarge):
                    async for chunk in client.stream(chunks_address, b""):
                        got.append(chunk)
                assert got == [b"fine"]
                # nothing oversized reached nats-server (it would have closed the connection)
                assert await client.request(address, b"still") == b"still"
                assert server.health().details["connected"]
                assert server.health().details["reconnects"] == 0
