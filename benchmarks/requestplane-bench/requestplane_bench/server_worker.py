"""The server process of a case: serve the bench endpoints until standard input closes.

It announces ``{"event": "ready", "addresses": {...}, "instance": ...}`` (or ``unsupported``
when the transport cannot serve) and exits when the parent closes its standard input, which also
happens if the parent dies, so no server outlives its benchmark.
"""

from __future__ import annotations

import os
import sys
from contextlib import AsyncExitStack

import anyio

from requestplane_core import RequestPlane, Server, serve

from .case import Case
from .emit import emit
from .endpoints import ENDPOINTS

__all__ = ["serve_case"]


def _wait_for_eof() -> None:
    while sys.stdin.buffer.read(4096):
        pass


async def serve_case(case: Case) -> None:
    async with AsyncExitStack() as stack:
        server: Server
        try:
            if case.direct:
                # The manager only resolves the settings here; serve() runs the transport.
                plane = RequestPlane(case.mode)
                server = await stack.enter_async_context(
                    serve(plane.transport.spec, plane.settings)
                )
            else:
                plane = await stack.enter_async_context(RequestPlane(case.mode))
                server = await plane.server()
        except NotImplementedError as exc:
            emit("unsupported", reason=f"{type(exc).__name__}: {exc}")
            return
        addresses = {}
        for name, handler in ENDPOINTS.items():
            addresses[name] = str(await server.register(name, handler))
        emit("ready", addresses=addresses, pid=os.getpid(), instance=server.instance_id)
        await anyio.to_thread.run_sync(_wait_for_eof, abandon_on_cancel=True)
