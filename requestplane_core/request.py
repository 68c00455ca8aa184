"""What a handler receives, and what it may return."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import attrs

__all__ = ["Handler", "HandlerResult", "Request"]


def _frozen_headers(value: Mapping[str, str] | None) -> Mapping[str, str]:
    return dict(value) if value else {}


@attrs.frozen(slots=True)
class Request:
    """One request as the server's handler sees it.

    ``deadline`` is on this process's :func:`anyio.current_time` clock (the transport turns the
    caller's remaining time into a local deadline), or ``None`` for no deadline.
    """

    endpoint: str
    payload: bytes
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_headers)
    deadline: float | None = None


HandlerResult = bytes | AsyncIterator[bytes]
"""``bytes`` for a single response, an async iterator of ``bytes`` for a stream."""

Handler = Callable[[Request], bytes | Awaitable[HandlerResult] | AsyncIterator[bytes]]
"""An endpoint: ``async def h(req) -> bytes``, ``async def h(req) -> AsyncIterator[bytes]``,
an async generator function ``async def h(req): yield b"..."``, or a synchronous
``def h(req) -> bytes``.

A synchronous handler is for answers computed without waiting on anything: transports that
can (tcp) run it on the spot, in the code that read the request, without a task or cancel
scope of its own, which makes it the cheapest kind of endpoint. Like any code that does not
await, it holds up the event loop while it runs, and nothing can cancel it."""
