"""A fleet worker for the routing tests: one server process, its endpoints published into
the discovery the environment names, until SIGTERM (drain) or SIGKILL.

Endpoints: ``whoami`` (this instance's id), ``slow`` (waits the payload's seconds, then
answers its instance id), ``count`` (streams N chunks, one every 50 ms). Prints one JSON line
``{"instance": ..., "pid": ...}`` once everything is published.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import AsyncIterator

import anyio

from requestplane_core import Request, RequestPlane


async def main(backend: str) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with RequestPlane() as plane:
            server = await plane.server()
            me = (server.instance_id or "").encode()

            def whoami(request: Request) -> bytes:
                return me

            async def slow(request: Request) -> bytes:
                await anyio.sleep(float(request.payload or b"0"))
                return me

            async def count(request: Request) -> AsyncIterator[bytes]:
                for i in range(int(request.payload or b"0")):
                    yield f"{i}\n".encode()
                    await anyio.sleep(0.05)

            for name, handler in {"whoami": whoami, "slow": slow, "count": count}.items():
                await server.register(f"fleet/{name}", handler)
            sys.stdout.write(
                json.dumps({"instance": server.instance_id, "pid": os.getpid()}) + "\n"
            )
            sys.stdout.flush()
            async for _ in signals:
                break


if __name__ == "__main__":
    backend = sys.argv[1] if len(sys.argv) > 1 else "asyncio"
    anyio.run(main, backend, backend=backend)
