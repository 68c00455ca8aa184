"""Large DATA frames: the client advertises 1 MiB frames and must accept them from the moment
the server acknowledges that, whatever else arrives in the same read."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
from h2_ack_merging_proxy import ack_merging_proxy
from http_test_helpers import BOUND, http_settings, served

from requestplane_core import Address, Request, load_plugins

pytestmark = pytest.mark.anyio

STREAMS = 64
CHUNKS = 100
CHUNK = b"c" * 1024


async def _burst(request: Request) -> AsyncIterator[bytes]:
    # Small chunks as fast as hypercorn takes them: it coalesces what a stream has buffered
    # (up to 32 KiB) into one DATA frame, larger than the default 16 KiB frame size.
    for _ in range(CHUNKS):
        yield CHUNK


async def test_many_streams_of_small_chunks_survive_the_settings_ack_arriving_with_big_frames() -> (
    None
):
    # The benchmark's failure: 64 streams of 100 x 1 KiB chunks over one fresh connection;
    # the ACK of the client's SETTINGS (1 MiB frames) came in one read with a 32928-byte DATA
    # frame, and h2 still checked that frame against 16384: every stream on the connection
    # failed with "Received overlong frame".
    spec = load_plugins(only="http").transport("http").spec
    async with served() as s:
        served_at = await s.server.register("burst", _burst)
        async with ack_merging_proxy(served_at.port or 0) as proxy:
            address = Address(served_at.scheme, "127.0.0.1", proxy.port, served_at.path)
            received: list[int] = []
            async with spec.client(http_settings()) as client:

                async def one() -> None:
                    count = 0
                    async with client.stream(address, b"") as stream:
                        async for chunk in stream:
                            assert chunk == CHUNK
                            count += 1
                    received.append(count)

                with anyio.fail_after(BOUND * 2):
                    async with anyio.create_task_group() as tg:
                        for _ in range(STREAMS):
                            tg.start_soon(one)
            assert client.stats.open_connections == 0
            assert proxy.merged == 1, "hypercorn sent no DATA frame over 16 KiB: nothing tested"
    assert received == [CHUNKS] * STREAMS
