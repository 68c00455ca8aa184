"""A tcp server in its own process, for tests that kill it: ``python tcp_server_process.py
PORT BACKEND``. Prints each endpoint's address on a line once it is served."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import anyio
from requestplane_tcp.plugin import requestplane_transports
from requestplane_tcp.settings import TcpSettings

from requestplane_core import Request, serve


async def echo(request: Request) -> bytes:
    return request.payload


async def endless(request: Request) -> AsyncIterator[bytes]:
    i = 0
    while True:
        yield b"%d" % i
        i += 1
        await anyio.sleep(0.01)


async def bulk(request: Request) -> AsyncIterator[bytes]:
    """Large chunks without end: whenever it dies, a chunk is most likely half sent."""
    chunk = b"b" * (1 << 20)
    while True:
        yield chunk


async def block(request: Request) -> bytes:
    await anyio.sleep_forever()
    return b""


async def main(port: int) -> None:
    spec = requestplane_transports()[0]
    async with serve(spec, TcpSettings(port=port)) as server:
        for name, handler in (
            ("echo", echo),
            ("endless", endless),
            ("block", block),
            ("bulk", bulk),
        ):
            print(await server.register(name, handler), flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]), backend=sys.argv[2])
