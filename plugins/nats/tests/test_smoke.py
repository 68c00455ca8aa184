from __future__ import annotations

import anyio
import pytest
from nats_test_helpers import nats_client_of, nats_server_of

from requestplane_core import Request

pytestmark = pytest.mark.anyio


async def echo(req: Request) -> bytes:
    return req.payload


async def test_echo(nats_url: str) -> None:
    with anyio.fail_after(10):
        async with nats_server_of({"url": nats_url}) as server:
            address = await server.register("echo", echo)
            async with nats_client_of({"url": nats_url}) as client:
                assert await client.request(address, b"hi") == b"hi"
