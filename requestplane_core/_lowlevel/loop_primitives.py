"""The per-request primitives of the running event loop, resolved once per client or server.

anyio's portable ``Event``, ``current_time`` and cancel scopes look the backend up on every
call; at tens of thousands of requests per second that lookup and the scope bookkeeping were
the largest cost of a transport (profiled). :func:`primitives` resolves them once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import anyio
import sniffio

from ..clock import loop_clock
from .timers import TimerHandle
from .waiter import Waiter, waiter_factory

__all__ = ["Primitives", "cancel_scope_factory", "primitives"]


class Primitives:
    """``clock()`` is :func:`anyio.current_time`'s clock; ``event()`` a one-shot
    :class:`Waiter`.

    Deadlines: asyncio has cheap timers (``call_at(when, fn)`` returns a handle with
    ``cancel()``), so a call's deadline is one timer; trio has none but cheap cancel scopes
    (``move_on_at(when)``). Exactly one of the two is set. (A transport that wants timers on
    both loops uses :func:`loop_timers`, which runs a timer task on trio.)
    """

    __slots__ = ("call_at", "clock", "event", "move_on_at")

    def __init__(
        self,
        clock: Callable[[], float],
        event: Callable[[], Waiter],
        call_at: Callable[[float, Callable[[], object]], TimerHandle] | None,
        move_on_at: Callable[[float], AbstractContextManager[Any]] | None,
    ) -> None:
        self.clock = clock
        self.event = event
        self.call_at = call_at
        self.move_on_at = move_on_at


def primitives() -> Primitives:
    """The running event loop's primitives (call it in that loop)."""
    if sniffio.current_async_library() == "trio":
        import trio

        return Primitives(loop_clock(), waiter_factory(), None, trio.move_on_at)
    return Primitives(loop_clock(), waiter_factory(), asyncio.get_running_loop().call_at, None)


def cancel_scope_factory() -> Callable[[], anyio.CancelScope]:
    """The running backend's concrete cancel scope class: ``anyio.CancelScope()`` looks the
    backend up on every call."""
    return type(anyio.CancelScope())
