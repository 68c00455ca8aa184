"""A server out of file descriptors (a real process with a lowered RLIMIT_NOFILE, flooded
with connections that idle after their handshake): it logs once for the burst, keeps
serving its open connections, and recovers by itself once the idle ones are closed."""

from __future__ import annotations

import anyio
import pytest
from anyio.abc import SocketStream
from tcp_test_helpers import BOUND, LogLines, client, raw_connect, server_process

pytestmark = pytest.mark.anyio

# Descriptors the server may still open once it serves, and connections the flood opens:
# more than it can take, fewer than twice as many (the rest of the flood, accepted once the
# first idle ones are closed, fits: one burst, not two).
ROOM = 30
FLOOD = 50
CANNOT_ACCEPT = "cannot accept connections"
ACCEPTS_AGAIN = "accepts connections again"


async def test_out_of_file_descriptors_logs_once_keeps_serving_and_recovers(
    anyio_backend: str,
) -> None:
    async with (
        server_process(0, anyio_backend, "idle_timeout=1", f"room={ROOM}", capture_stderr=True) as (
            process,
            addresses,
        ),
        client() as established,
        client() as newcomer,
    ):
        log = LogLines(process)
        flood: list[SocketStream] = []
        echo = addresses["echo"]
        try:
            with anyio.fail_after(BOUND):
                # A connection opened before the flood, kept busy by a stream in flight.
                stream = established.stream(addresses["endless"], b"")
                assert await stream.__anext__() == b"0"
                for _ in range(FLOOD):
                    flood.append(await raw_connect(echo))  # handshake, then idle
                await log.wait_for(CANNOT_ACCEPT)
                # Out of descriptors, the server still serves the connections it has.
                assert await established.request(echo, b"open") == b"open"
                # A new caller gets through once the flood's idle connections are closed.
                assert await newcomer.request(echo, b"new") == b"new"
                await log.wait_for(ACCEPTS_AGAIN)
                assert await stream.__anext__()  # the stream was never cut
                await stream.aclose()
        finally:
            for raw in flood:
                await raw.aclose()
        assert log.count(CANNOT_ACCEPT) == 1, log.lines
        assert log.count(ACCEPTS_AGAIN) == 1, log.lines
