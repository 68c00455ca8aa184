"""A worker process for the reliability scenarios that kill servers: ``python
reliability_worker.py BACKEND``, configured like a deployed worker by the environment only
(``REQUESTPLANE_MODE``, ``REQUESTPLANE_<MODE>_PORT``, ``REQUESTPLANE_NATS_URL``...).

Prints ``serving <endpoint>=<address> ...`` once every endpoint is served, then
``started <endpoint>`` each time a ``block`` or ``endless`` handler begins, so that a test
kills it exactly while those are in flight. SIGTERM drains and exits.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import AsyncIterator

import anyio

from requestplane_core import Handler, Request, RequestPlane

#: Seconds a ``slow`` load request works: long enough for callers to cancel it mid-flight.
SLOW = 0.05


def announce(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def echo(request: Request) -> bytes:
    return request.payload


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
        await anyio.sleep(0.01)


async def work(request: Request) -> bytes:
    """The load test's unary endpoint: the payload's first word says what to do."""
    kind = request.payload.split(b":", 1)[0]
    if kind == b"fail":
        raise ValueError("injected handler error")
    if kind == b"slow":
        await anyio.sleep(SLOW)
    return request.payload


async def chunks(request: Request) -> AsyncIterator[bytes]:
    """The load test's stream: ``kind:i:n`` streams n chunks; ``fail`` breaks off midway."""
    kind, _, rest = request.payload.partition(b":")
    tag, _, count = rest.partition(b":")
    for j in range(int(count)):
        if kind == b"fail" and j == int(count) // 2:
            raise KeyError("injected mid-stream error")
        yield tag + b".%d" % j


ENDPOINTS: dict[str, Handler] = {
    "echo": echo,
    "block": block,
    "endless": endless,
    "work": work,
    "chunks": chunks,
}


async def main() -> None:
    with anyio.open_signal_receiver(signal.SIGTERM) as signals:
        async with RequestPlane() as plane:
            server = await plane.server()
            addresses = [f"{n}={await server.register(n, h)}" for n, h in ENDPOINTS.items()]
            announce("serving " + " ".join(addresses))
            async for _ in signals:
                break


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1])
