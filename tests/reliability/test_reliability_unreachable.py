"""Nothing listens where a call goes (a worker not started yet or already gone; for NATS, the
broker): the call ends at once with ``Unavailable``, which is retriable because nothing was
sent, and its message names the peer. Bug B7 of /work/brief/bugs.md: NATS says
``ConnectionLost`` (not retriable) for a broker it cannot reach.
"""

from __future__ import annotations

import socket

import anyio
import pytest
from reliability_helpers import BOUND, plane

from requestplane_core import Unavailable

pytestmark = pytest.mark.anyio


def _free_port() -> int:
    # A port nobody listens on: bound once by the OS for us, then released unused.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_nothing_listening_is_unavailable(mode: str) -> None:
    port = _free_port()
    settings: dict[str, object] = {}
    address = {
        "tcp": f"tcp://127.0.0.1:{port}/echo",
        "http": f"http://127.0.0.1:{port}/v1/rpc/echo",
        "nats": "nats://127.0.0.1/requestplane.echo",
    }[mode]
    if mode == "nats":
        settings = {"url": f"nats://127.0.0.1:{port}", "connect_timeout": 2.0}
    async with plane(mode, settings) as p:
        client = p.client()
        with anyio.fail_after(BOUND):
            with pytest.raises(Unavailable) as info:
                await client.request(address, b"x", timeout=BOUND)
            assert info.value.retriable
            assert str(port) in str(info.value)
            with pytest.raises(Unavailable):
                async with client.stream(address, b"x", timeout=BOUND) as chunks:
                    async for _ in chunks:
                        pass
