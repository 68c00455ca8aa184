"""The few primitives on the per-request path, taken from the running backend directly.

anyio's portable ``Event``, ``current_time`` and cancel scopes look up the backend on every
call; at tens of thousands of requests per second that lookup and the scope bookkeeping were
the largest cost of the transport (profiled). These are resolved once per client or server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

import sniffio

__all__ = ["Primitives", "Waiter", "primitives"]


class Waiter(Protocol):
    def set(self) -> None: ...

    async def wait(self) -> Any: ...


class Primitives:
    """``clock()`` is :func:`anyio.current_time`'s clock; ``event()`` a one-shot event.

    Deadlines: asyncio has cheap timers (``call_at(when, fn)`` returns a handle with
    ``cancel()``), so a call's deadline is one timer; trio has none but cheap cancel scopes
    (``move_on_at(when)``). Exactly one of the two is set.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        event: Callable[[], Waiter],
        call_at: Callable[[float, Callable[[], object]], Any] | None,
        move_on_at: Callable[[float], AbstractContextManager[Any]] | None,
    ) -> None:
        self.clock = clock
        self.event = event
        self.call_at = call_at
        self.move_on_at = move_on_at


def primitives() -> Primitives:
    if sniffio.current_async_library() == "asyncio":
        loop = asyncio.get_running_loop()
        return Primitives(loop.time, asyncio.Event, loop.call_at, None)
    import trio

    return Primitives(trio.current_time, trio.Event, None, trio.move_on_at)
