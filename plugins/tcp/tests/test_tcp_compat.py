"""The reaches of requestplane_tcp/_compat.py into anyio's private parts find what they look
for on the installed anyio, and the fast paths built on them are taken on a real connection:
an upgrade that moves them fails here, loudly, instead of leaving the transport silently
slower."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
import sniffio
from anyio.abc import SocketStream
from requestplane_tcp._compat import (
    asyncio_stream_parts,
    asyncio_transport,
    missing_private_reaches,
    socket_stream_backend,
)
from requestplane_tcp.protocol_reader import protocol_source
from requestplane_tcp.socket_writer import socket_writer

pytestmark = pytest.mark.anyio


def test_the_installed_anyio_has_everything_the_reaches_need() -> None:
    assert missing_private_reaches() == []


@asynccontextmanager
async def connected() -> AsyncIterator[SocketStream]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    try:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            yield stream
    finally:
        await listener.aclose()


async def test_a_plain_connection_takes_the_fast_paths() -> None:
    with anyio.fail_after(10):
        async with connected() as stream:
            backend = sniffio.current_async_library()
            assert socket_stream_backend(stream) == backend
            assert socket_writer(stream) is not None
            if backend == "asyncio":
                assert asyncio_transport(stream) is not None
                assert asyncio_stream_parts(stream) is not None
                assert protocol_source(stream) is not None
            else:
                assert asyncio_transport(stream) is None
                assert protocol_source(stream) is None
