"""A requestplane HTTP server in its own process, for tests that kill it.

    python http_server_process.py PORT BACKEND

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


async def main(port: int) -> None:
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

    spec = load_plugins(only="http").transport("http").spec
    settings = load_settings(
        HttpSettings, prefix="REQUESTPLANE_HTTP_", environ={}, overrides={"port": port}
    )
    async with serve(spec, settings) as server:
        addresses = {
            name: str(await server.register(name, handler))
            for name, handler in {"echo": echo, "block": block, "endless": endless}.items()
        }
        print(json.dumps(addresses), flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]), backend=sys.argv[2])
