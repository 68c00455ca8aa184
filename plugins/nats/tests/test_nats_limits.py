"""Message sizes: messages over the broker's max_payload travel in parts, up to the
transport's max_message_size, which is refused before sending, in both directions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
from nats_test_helpers import address_of, echo, nats_client_of, nats_server_of, raw_responder
from requestplane_nats import NatsServerProcess

from requestplane_core import ConnectionLost, PayloadTooLarge, Request

pytestmark = pytest.mark.anyio

LIMIT = 4096  # the broker's max_payload
MAX = 64 * 1024  # the transport's max_message_size in the refusal test


@pytest.fixture(scope="module")
def small_nats() -> Iterator[NatsServerProcess]:
    with NatsServerProcess(config=f"max_payload: {LIMIT}\n") as server:
        yield server


def pattern(size: int) -> bytes:
    """Bytes whose every part differs from its neighbours: a part lost, repeated or out of
    order shows."""
    return b"".join(i.to_bytes(4, "big") for i in range(size // 4 + 1))[:size]


async def test_messages_over_max_payload_travel_in_parts(small_nats: NatsServerProcess) -> None:
    big = pattern(100_000)  # 25 parts of the 4 KiB max_payload

    async def chunks(request: Request) -> AsyncIterator[bytes]:
        yield b"small"
        yield request.payload  # a chunk of its own, in parts
        yield b"after"

    settings = {"url": small_nats.url}
    with anyio.fail_after(30):
        async with nats_server_of(settings) as server:
            address = await server.register("echo", echo)
            sync_address = await server.register("echo-sync", lambda request: request.payload)
            chunks_address = await server.register("chunks", chunks)
            async with nats_client_of(settings) as client:
                assert await client.request(address, big, headers={"k": "v"}) == big
                assert await client.request(sync_address, big) == big
                got = [c async for c in client.stream(chunks_address, big)]
                assert got == [b"small", big, b"after"]
                assert await client.request(address, b"still") == b"still"
                assert server.health().details["reconnects"] == 0


async def test_a_4_mib_echo_comes_back_byte_identical(nats_url: str) -> None:
    big = pattern(4 * 1024 * 1024)  # nats-server's default max_payload is 1 MiB
    settings = {"url": nats_url}
    with anyio.fail_after(60):
        async with nats_server_of(settings) as server:
            address = await server.register("echo", echo)
            async with nats_client_of(settings) as client:
                assert await client.request(address, big) == big


async def test_max_message_size_refused_before_sending(small_nats: NatsServerProcess) -> None:
    async def big(request: Request) -> bytes:
        return b"r" * (MAX + 1)

    async def big_chunks(request: Request) -> AsyncIterator[bytes]:
        yield b"fine"
        yield b"c" * (MAX + 1)

    settings = {"url": small_nats.url, "max_message_size": MAX}
    with anyio.fail_after(30):
        async with nats_server_of(settings) as server:
            address = await server.register("echo", echo)
            big_address = await server.register("big", big)
            big_sync = await server.register("big-sync", lambda request: b"s" * (MAX + 1))
            chunks_address = await server.register("chunks", big_chunks)
            async with nats_client_of(settings) as client:
                assert await client.request(address, b"x" * (MAX - 100)) == b"x" * (MAX - 100)
                with pytest.raises(PayloadTooLarge, match="over the limit of 65536"):
                    await client.request(address, b"x" * (MAX + 1))
                with pytest.raises(PayloadTooLarge):  # the headers count too
                    await client.request(address, b"x" * MAX, headers={"k": "v"})
                for address_of_big in (big_address, big_sync):
                    with pytest.raises(PayloadTooLarge):
                        await client.request(address_of_big, b"")
                got: list[bytes] = []
                with pytest.raises(PayloadTooLarge):
                    async for chunk in client.stream(chunks_address, b""):
                        got.append(chunk)
                assert got == [b"fine"]
                # nothing oversized reached nats-server (it would have closed the connection)
                assert await client.request(address, b"still") == b"still"
                assert server.health().details["connected"]
                assert server.health().details["reconnects"] == 0


async def test_a_caller_larger_than_the_server_allows_is_refused(
    small_nats: NatsServerProcess,
) -> None:
    """The server checks the announced size of a request in parts against its own limit."""
    with anyio.fail_after(30):
        async with nats_server_of({"url": small_nats.url, "max_message_size": MAX}) as server:
            address = await server.register("echo", echo)
            async with nats_client_of({"url": small_nats.url}) as client:
                with pytest.raises(PayloadTooLarge, match="max_message_size of 65536"):
                    await client.request(address, b"x" * (MAX + 1))
                assert await client.request(address, b"x" * MAX) == b"x" * MAX


async def test_response_parts_that_do_not_add_up_are_connection_lost(nats_url: str) -> None:
    async def behave(nc: Any, msg: Any) -> None:
        await nc.publish(msg.reply, b"ab", headers={"Rp-L": "6", "Rp-P": "0"})
        await nc.publish(msg.reply, b"ef", headers={"Rp-L": "6", "Rp-P": "4"})  # "cd" lost

    subject = "requestplane.faulty.parts"
    with raw_responder(nats_url, subject, behave):
        async with nats_client_of({"url": nats_url}) as client:
            with anyio.fail_after(10), pytest.raises(ConnectionLost, match="do not add up"):
                await client.request(address_of(nats_url, subject), b"")
