"""The stream protocol on the reply inbox: markers, truncation, cancellation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from nats_test_helpers import address_of, nats_client_of, nats_server_of, raw_responder

from requestplane_core import ConnectionLost, DeadlineExceeded, ProtocolError, RemoteError, Request

pytestmark = pytest.mark.anyio


async def test_stream_end_and_error_markers(nats_url: str) -> None:
    async def chunks(request: Request) -> AsyncIterator[bytes]:
        for i in range(int(request.payload)):
            yield b"%d" % i
        if request.headers.get("fail"):
            raise RuntimeError("after the chunks")

    with anyio.fail_after(10):
        async with nats_server_of({"url": nats_url}) as server:
            address = await server.register("chunks", chunks)
            async with nats_client_of({"url": nats_url}) as client:
                assert [c async for c in client.stream(address, b"200")] == [
                    b"%d" % i for i in range(200)
                ]
                got: list[bytes] = []
                with pytest.raises(RemoteError, match="after the chunks"):
                    async for chunk in client.stream(address, b"3", headers={"fail": "1"}):
                        got.append(chunk)
                assert got == [b"0", b"1", b"2"]


async def _chunk(nc: Any, msg: Any, seq: int, data: bytes) -> None:
    await nc.publish(msg.reply, data, headers={"Rp-S": str(seq)})


async def test_lost_chunk_is_connection_lost(nats_url: str) -> None:
    async def behave(nc: Any, msg: Any) -> None:
        await _chunk(nc, msg, 0, b"a")
        await _chunk(nc, msg, 2, b"c")  # chunk 1 never comes
        await nc.publish(msg.reply, b"", headers={"Rp-E": "3"})

    subject = "requestplane.faulty.gap"
    with raw_responder(nats_url, subject, behave):
        async with nats_client_of({"url": nats_url}) as client:
            got: list[bytes] = []
            with anyio.fail_after(10), pytest.raises(ConnectionLost, match="lost chunks"):
                async for chunk in client.stream(address_of(nats_url, subject), b""):
                    got.append(chunk)
            assert got == [b"a"]
            with anyio.fail_after(10), pytest.raises(ConnectionLost):
                await client.request(address_of(nats_url, subject), b"")


async def test_end_marker_with_wrong_count_is_connection_lost(nats_url: str) -> None:
    async def behave(nc: Any, msg: Any) -> None:
        await _chunk(nc, msg, 0, b"a")
        await nc.publish(msg.reply, b"", headers={"Rp-E": "2"})  # says 2 chunks were sent

    subject = "requestplane.faulty.count"
    with raw_responder(nats_url, subject, behave):
        async with nats_client_of({"url": nats_url}) as client:
            with anyio.fail_after(10), pytest.raises(ConnectionLost, match="sent 2 chunks"):
                await client.request(address_of(nats_url, subject), b"")


async def test_stream_that_stops_is_deadline_exceeded_and_cancelled(nats_url: str) -> None:
    async def behave(nc: Any, msg: Any) -> None:
        await _chunk(nc, msg, 0, b"a")
        await _chunk(nc, msg, 1, b"b")  # then silence: no end marker

    subject = "requestplane.faulty.silent"
    with raw_responder(nats_url, subject, behave) as responder:
        async with nats_client_of({"url": nats_url}) as client:
            got: list[bytes] = []
            with anyio.fail_after(10), pytest.raises(DeadlineExceeded):
                # generous: the two chunks must arrive before it even on a loaded machine
                async for chunk in client.stream(address_of(nats_url, subject), b"", timeout=2.0):
                    got.append(chunk)
            assert got == [b"a", b"b"]
            # the server was told to stop: a cancel naming the request's reply inbox
            assert await anyio.to_thread.run_sync(responder.cancelled.wait, 10)
            assert responder.cancels[0].decode().startswith("_INBOX.")


async def test_foreign_reply_is_a_protocol_error(nats_url: str) -> None:
    async def behave(nc: Any, msg: Any) -> None:
        await nc.publish(msg.reply, b"?", headers={"Something": "else"})

    subject = "requestplane.faulty.foreign"
    with raw_responder(nats_url, subject, behave):
        async with nats_client_of({"url": nats_url}) as client:
            with anyio.fail_after(10), pytest.raises(ProtocolError):
                await client.request(address_of(nats_url, subject), b"")


async def test_plain_nats_requester_is_served(nats_url: str) -> None:
    """A NATS client that is not requestplane (no deadline token) gets the unary reply."""
    import nats

    async def shout(request: Request) -> bytes:
        assert request.deadline is None
        return request.payload.upper()

    with anyio.fail_after(10):
        async with nats_server_of({"url": nats_url}) as server:
            address = await server.register("shout", shout)

            def call() -> bytes:
                import asyncio

                async def main() -> bytes:
                    nc = await nats.connect(nats_url)
                    try:
                        return (await nc.request(address.path, b"hi", timeout=5)).data
                    finally:
                        await nc.close()

                return asyncio.run(main())

            assert await anyio.to_thread.run_sync(call) == b"HI"


async def test_stream_cancellation_reaches_the_handler(nats_url: str) -> None:
    started, cancelled = anyio.Event(), anyio.Event()

    async def endless(request: Request) -> AsyncIterator[bytes]:
        started.set()
        try:
            while True:
                yield b"tick"
                await anyio.sleep(0.01)
        except BaseException:
            cancelled.set()
            raise

    with anyio.fail_after(10):
        async with nats_server_of({"url": nats_url}) as server:
            address = await server.register("endless", endless)
            async with nats_client_of({"url": nats_url}) as client:
                async with anyio.create_task_group() as tg:

                    async def consume() -> None:
                        async for _ in client.stream(address, b""):
                            pass

                    tg.start_soon(consume)
                    await started.wait()
                    tg.cancel_scope.cancel()
                await cancelled.wait()


async def test_batched_chunks_keep_order_sizes_and_empties(nats_url: str) -> None:
    sizes = [0, 1, 5000, 0, 70_000, 3, 65_536, 0, 10] * 20

    async def mixed(request: Request) -> AsyncIterator[bytes]:
        for i, size in enumerate(sizes):
            yield bytes([i % 251]) * size

    with anyio.fail_after(20):
        async with nats_server_of({"url": nats_url}) as server:
            address = await server.register("mixed", mixed)
            async with nats_client_of({"url": nats_url}) as client:
                got = [c async for c in client.stream(address, b"")]
                joined = await client.request(address, b"")
    assert got == [bytes([i % 251]) * size for i, size in enumerate(sizes)]
    assert joined == b"".join(got)


async def test_slow_producer_chunk_is_not_held_back(nats_url: str) -> None:
    """Each chunk must reach the caller while the handler waits for the caller's reaction."""
    seen = [anyio.Event() for _ in range(5)]

    async def ping_pong(request: Request) -> AsyncIterator[bytes]:
        for i in range(5):
            yield b"%d" % i
            await seen[i].wait()  # released only once the caller has chunk i

    with anyio.fail_after(10):
        async with nats_server_of({"url": nats_url}) as server:
            address = await server.register("ping-pong", ping_pong)
            async with nats_client_of({"url": nats_url}) as client:
                got = []
                async for chunk in client.stream(address, b""):
                    got.append(chunk)
                    seen[int(chunk)].set()
    assert got == [b"0", b"1", b"2", b"3", b"4"]


async def test_malformed_batch_is_a_protocol_error(nats_url: str) -> None:
    async def behave(nc: Any, msg: Any) -> None:
        # claims three chunks but frames only one
        await nc.publish(msg.reply, b"\x00\x00\x00\x01a", headers={"Rp-S": "0", "Rp-C": "3"})

    subject = "requestplane.faulty.batch"
    with raw_responder(nats_url, subject, behave):
        async with nats_client_of({"url": nats_url}) as client:
            with anyio.fail_after(10), pytest.raises(ProtocolError, match="batch"):
                await client.request(address_of(nats_url, subject), b"")
