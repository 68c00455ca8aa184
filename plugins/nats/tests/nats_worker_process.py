"""A NATS worker in a child process, for the tests that kill one: ``python
nats_worker_process.py BACKEND SETTINGS_JSON``.

Prints ``serving <endpoint>=<address> ...`` once its endpoints are served, then ``started
<endpoint>`` each time a ``block`` or ``endless`` handler begins, so that a test kills it
exactly while those run. SIGTERM drains and exits.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import AsyncIterator

import anyio

from requestplane_core import Request, RequestPlane


def announce(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def block(request: Request) -> bytes:
    announce("started block")
    await anyio.sleep_forever()
    return b""


async def endless(request: Request) -> AsyncIterator[bytes]:
    announce("started endless")
    i = 0
    while True:
        yield b"tick %d" % i
        i += 1
        await anyio.sleep(0.01)  # a producer that takes its time, not a synchronization


async def main(settings: dict[str, object]) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM) as signals:
        async with RequestPlane("nats", settings=settings) as plane:
            server = await plane.server()
            served = [
                f"{n}={await server.register(n, h)}"
                for n, h in (("block", block), ("endless", endless))
            ]
            announce("serving " + " ".join(served))
            async for _ in signals:
                break


if __name__ == "__main__":
    anyio.run(main, json.loads(sys.argv[2]), backend=sys.argv[1])
