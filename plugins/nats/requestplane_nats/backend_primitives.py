"""The few primitives on the per-request path, taken from the running backend directly.

anyio's portable ``Event``, ``current_time`` and cancel scopes look up the backend on every
call; at tens of thousands of requests per second that lookup and the scope bookkeeping were
the largest cost of the transport (profiled). These are resolved once per client or server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractContextManager
from functools import partial
from typing import Any, Protocol

import anyio
import sniffio
from anyio.abc import TaskGroup

__all__ = ["Primitives", "Spawner", "Waiter", "cancel_scope_factory", "primitives"]

log = logging.getLogger("requestplane.nats")


class Waiter(Protocol):
    def set(self) -> None: ...

    def wait(self) -> Awaitable[Any]: ...


class _FutureWaiter:
    """A one-shot event that is just a future: cheaper than ``asyncio.Event``."""

    __slots__ = ("_future",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._future: asyncio.Future[None] = loop.create_future()

    def set(self) -> None:
        if not self._future.done():  # done: its waiter was cancelled
            self._future.set_result(None)

    def wait(self) -> Awaitable[None]:
        return self._future


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
        return Primitives(loop.time, partial(_FutureWaiter, loop), loop.call_at, None)
    import trio

    return Primitives(trio.current_time, trio.Event, None, trio.move_on_at)


def cancel_scope_factory() -> Callable[[], anyio.CancelScope]:
    """The running backend's concrete cancel scope class: ``anyio.CancelScope()`` looks the
    backend up on every call."""
    return type(anyio.CancelScope())


class Spawner:
    """Starts one task per request, and waits for the stragglers at close.

    anyio's ``start_soon`` builds a handle and an event per task, which the profile showed as
    the server's largest cost of its own. On asyncio a plain ``loop.create_task`` is used; the
    tasks are still owned: tracked here, cancelled through their request's cancel scope and
    awaited by :meth:`join`. On trio the tasks go to a trio nursery that lives inside the
    server's anyio task group (:meth:`start`).
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nursery: Any = None

    async def start(self, task_group: TaskGroup) -> None:
        if sniffio.current_async_library() == "asyncio":
            self._loop = asyncio.get_running_loop()
        else:
            self._nursery = await task_group.start(self._host_nursery)

    @staticmethod
    async def _host_nursery(*, task_status: Any) -> None:
        import trio

        async with trio.open_nursery() as nursery:
            task_status.started(nursery)
            await trio.sleep_forever()

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None:
        if self._loop is None:
            self._nursery.start_soon(fn, *args)
            return
        task = self._loop.create_task(fn(*args))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("nats: a request task failed", exc_info=task.exception())

    async def join(self) -> None:
        """Wait for the tasks still running (their scopes were cancelled by the caller)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))
