"""A tcp server in its own process, for tests that kill it or starve it of file descriptors:
``python tcp_server_process.py PORT BACKEND [NAME=VALUE ...] [room=N]``. ``NAME=VALUE`` are
tcp settings (as in ``REQUESTPLANE_TCP_<NAME>``); ``room=N`` lowers the process's file
descriptor limit to the descriptors it has open once it serves, plus N. Prints each
endpoint's address on a line once it is served; logs WARNING and above to stderr."""

from __future__ import annotations

import logging
import os
import resource
import sys
from collections.abc import AsyncIterator

import anyio
from requestplane_tcp.plugin import requestplane_transports
from requestplane_tcp.settings import TcpSettings

from requestplane_core import Request, load_settings, serve


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


async def main(port: int, options: dict[str, str]) -> None:
    room = options.pop("room", None)
    spec = requestplane_transports()[0]
    settings = load_settings(
        TcpSettings,
        prefix="REQUESTPLANE_TCP_",
        environ={"REQUESTPLANE_TCP_" + k.upper(): v for k, v in options.items()},
        overrides={"port": port},
    )
    async with serve(spec, settings) as server:
        addresses = [
            await server.register(name, handler)
            for name, handler in (
                ("echo", echo),
                ("endless", endless),
                ("block", block),
                ("bulk", bulk),
            )
        ]
        if room is not None:
            in_use = len(os.listdir("/proc/self/fd"))
            _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + int(room), hard))
        for address in addresses:
            print(address, flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    options = dict(arg.split("=", 1) for arg in sys.argv[3:])
    anyio.run(main, int(sys.argv[1]), options, backend=sys.argv[2])
