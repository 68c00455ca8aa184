"""A requestplane HTTP server in its own process, for tests that kill it.

    python http_server_process.py PORT BACKEND [DRAIN_TIMEOUT]

Prints one JSON line of addresses when serving, then ``started`` each time a blocking or
streaming handler begins; exits when stdin closes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator

import anyio
from requestplane_http.settings import HttpSettings

from requestplane_core import Request, load_plugins, load_settings, serve


async def main(port: int, drain_timeout: float) -> None:
    async def echo(request: Request) -> bytes:
        return request.payload

    async def block(request: Request) -> bytes:
        print("started", flush=True)
        await anyio.sleep_forever()
        return b""

    async def endless(request: Request) -> AsyncIterator[bytes]:
        print("started", flush=True)
        while True:
            yield b"tick"
            await anyio.sleep(0.01)

    async def flood(request: Request) -> AsyncIterator[bytes]:
        print("started", flush=True)
        while True:  # fills the caller's flow-control window once it stops reading
            yield bytes(65536)

    spec = load_plugins(only="http").transport("http").spec
    settings = load_settings(
        HttpSettings, prefix="REQUESTPLANE_HTTP_", environ={}, overrides={"port": port}
    )
    async with serve(spec, settings, drain_timeout=drain_timeout) as server:
        addresses = {
            name: str(await server.register(name, handler))
            for name, handler in {
                "echo": echo,
                "block": block,
                "endless": endless,
                "flood": flood,
            }.items()
        }
        print(json.dumps(addresses), flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)
        print("stopping", flush=True)


if __name__ == "__main__":
    drain = float(sys.argv[3]) if len(sys.argv) > 3 else 10.0
    anyio.run(main, int(sys.argv[1]), drain, backend=sys.argv[2])
