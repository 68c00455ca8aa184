"""A repair to hypercorn's connection reader: a cancelled read closes the connection.

When hypercorn stops (its graceful close timed out), it cancels every connection's task. The
reader (``TCPServer._read_data``) tells the protocol that the connection is gone only when a
read ends normally; cancelled, it leaves the protocol thinking the peer is still there. A
handler's last write (shielded, see :class:`~.asgi_app._Responder`) that waits for flow
control from a caller who stopped reading then waits for ever, the connection's task group
never exits, and neither does the server (seen on trio: a caller holding an unread stream
kept the server's process alive indefinitely).

The repair: whatever ends the reader abnormally, close the socket and hand the protocol
``Closed`` (which wakes every writer), shielded and bounded, then let the cancellation go on.
Applied to the class of each hypercorn backend present; skipped with a warning should a
hypercorn version lack the method (the server then stops as before).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

__all__ = ["apply_cancelled_read_fix"]

log = logging.getLogger("requestplane.http")

_CLOSE_BOUND = 2.0  # seconds; closing a socket and a protocol takes microseconds when healthy
_MODULES = ("hypercorn.asyncio.tcp_server", "hypercorn.trio.tcp_server")
_applied = False


def apply_cancelled_read_fix() -> None:
    global _applied
    if _applied:
        return
    _applied = True
    from hypercorn.events import Closed

    for name in _MODULES:
        try:
            server_class = importlib.import_module(name).TCPServer
        except (ImportError, AttributeError):
            continue  # the trio half needs trio, which is optional
        original = getattr(server_class, "_read_data", None)
        if original is None:
            log.warning("hypercorn %s: %s has no _read_data; not repaired", _version(), name)
            continue
        server_class._read_data = _closing_on_exit(original, Closed)


def _closing_on_exit(
    original: Callable[[Any], Awaitable[None]], closed: type
) -> Callable[[Any], Awaitable[None]]:
    async def _read_data(self: Any) -> None:
        try:
            await original(self)
        except BaseException:
            with anyio.CancelScope(shield=True) as scope:
                scope.deadline = anyio.current_time() + _CLOSE_BOUND
                await _close_socket(self)
                await self.protocol.handle(closed())
            raise

    return _read_data


async def _close_socket(server: Any) -> None:
    writer = getattr(server, "writer", None)  # asyncio's TCPServer
    try:
        if writer is not None:
            writer.close()
        else:
            await server.stream.aclose()  # trio's
    except Exception:  # already closed or broken: what we wanted
        pass


def _version() -> str:
    from importlib.metadata import version

    try:
        return version("hypercorn")
    except Exception:
        return "(unknown version)"
