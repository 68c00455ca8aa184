"""A server process killed (SIGKILL) under a client, then restarted on the same port."""

from __future__ import annotations

import hashlib
import signal

import anyio
import pytest
from tcp_test_helpers import BOUND, client, server_process

from requestplane_core import ConnectionLost, ProtocolError

pytestmark = pytest.mark.anyio

# The lagging consumer: CPU work per chunk (~5 ms), and how long the server is let fill
# its send buffer before it is killed.
_DIGESTS_PER_CHUNK = 8
_KILL_AFTER_CHUNKS = 8


async def test_sigkill_fails_inflight_calls_and_a_restart_is_used(anyio_backend: str) -> None:
    async with client() as c:
        async with server_process(0, anyio_backend) as (process, addresses):
            port = addresses["echo"].port
            assert port is not None
            with anyio.fail_after(BOUND):
                assert await c.request(addresses["echo"], b"before") == b"before"
            outcomes: list[str] = []
            streaming = anyio.Event()

            async def stream() -> None:
                with pytest.raises(ConnectionLost):
                    async for _chunk in c.stream(addresses["endless"], b""):
                        streaming.set()
                outcomes.append("stream")

            async def blocked() -> None:
                with pytest.raises(ConnectionLost):
                    await c.request(addresses["block"], b"")
                outcomes.append("request")

            with anyio.fail_after(BOUND):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(stream)
                    tg.start_soon(blocked)
                    await streaming.wait()
                    process.send_signal(signal.SIGKILL)
            assert sorted(outcomes) == ["request", "stream"]
        async with server_process(port, anyio_backend) as (_process, again):
            with anyio.fail_after(BOUND):
                assert await c.request(again["echo"], b"after") == b"after"


async def test_sigkill_in_the_middle_of_a_frame_is_connection_lost(anyio_backend: str) -> None:
    """A server killed while a stream's consumer lags (it digests each 1 MiB chunk
    synchronously, so its connection is read only between chunks and the server's send
    buffer fills up; the server dies with a chunk half sent): the caller sees the
    connection lost, not a protocol error."""
    async with client() as c, server_process(0, anyio_backend) as (process, addresses):
        with anyio.fail_after(BOUND):
            chunks = 0
            with pytest.raises(ConnectionLost) as info:
                async for chunk in c.stream(addresses["bulk"], b""):
                    for _ in range(_DIGESTS_PER_CHUNK):
                        hashlib.sha256(chunk).digest()
                    chunks += 1
                    if chunks == _KILL_AFTER_CHUNKS:
                        process.send_signal(signal.SIGKILL)
    assert not isinstance(info.value, ProtocolError), info.value
