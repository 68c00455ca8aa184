"""The tasks of a server's requests, spawned natively and structured by hand.

Every request runs in its own task (a handler that awaits must not hold up the reader that
got it, nor the other requests). Spawning through anyio's ``TaskGroup.start_soon`` costs
about 20 µs per task (a TaskHandle with its own cancel scope and event, a wrapper coroutine,
bookkeeping for every scope), more than a whole raw echo; the event loop's own spawn costs
5-6 µs on either backend. So the tasks are spawned natively, and nothing outlives its owner.
Two owners, for two shapes of server:

:func:`request_tasks` is a block, for the requests of one connection (tcp):

- asyncio: ``loop.create_task`` (anyio cancel scopes work in plain asyncio tasks); the
  tasks are kept in a set, and on leaving the block those still running are cancelled and
  awaited (shielded, as a task group waits for its children). A task leaves the set by
  calling ``done(handle)`` as it ends, which is cheaper than a done callback (the loop
  schedules every callback as one more handle to run).
- trio: ``nursery.start_soon`` on a nursery of our own; leaving the block cancels it.

The block never wraps the exception of its body (trio's nursery would put it in an
ExceptionGroup): the connection's reader sees its own errors as they are.

:class:`Spawner` lives as long as a server (nats: requests arrive on subscriptions, not on a
connection a block could wrap): ``await start(task_group)``, ``spawn(fn, *args)``, and at
close ``await join()`` waits for the tasks still running. On asyncio the tasks are tracked
in a set (a done callback removes them and logs a task that failed); on trio they go to a
nursery hosted in a task of ``task_group``.

Per-request cancellation goes through neither: the dispatcher's cancel scope (cancelled by a
cancel message, the connection closing, the deadline or a drain) stops a handler.
Cancelling the tasks here is the backstop that keeps the block structured.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any

import anyio
import sniffio
from anyio.abc import TaskGroup

__all__ = ["RequestTasks", "Spawn", "Spawner", "request_tasks"]

log = logging.getLogger("requestplane.lowlevel")

Spawn = Callable[..., object]
_NAME = "requestplane request"  # named up front: deriving a name costs per task


class RequestTasks:
    """``async with request_tasks() as tasks:`` then ``handle = tasks.spawn(fn, *args)``;
    the coroutine of ``fn`` calls ``tasks.done(handle)`` last thing (in a ``finally``)."""

    spawn: Spawn

    def done(self, handle: object) -> None:
        """The task of ``handle`` is ending."""

    async def __aenter__(self) -> RequestTasks:
        raise NotImplementedError

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        raise NotImplementedError


def request_tasks() -> RequestTasks:
    """A scope for request tasks on the running event loop's own primitives."""
    if sniffio.current_async_library() == "trio":
        return _TrioRequestTasks()
    return _AsyncioRequestTasks()


class _AsyncioRequestTasks(RequestTasks):
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> RequestTasks:
        create_task = asyncio.get_running_loop().create_task
        add = self._tasks.add

        def spawn(fn: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> object:
            task = create_task(fn(*args), name=_NAME)
            add(task)  # also the strong reference: the loop keeps only weak ones
            return task

        self.spawn = spawn
        return self

    def done(self, handle: object) -> None:
        self._tasks.discard(handle)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.spawn = _closed
        tasks = self._tasks
        if not tasks:
            return
        for task in tasks:
            task.cancel()
        with anyio.CancelScope(shield=True):
            # No task can be added any more; one cancelled before it started never ran its
            # done(), so the set is cleared here rather than waited empty.
            await asyncio.wait(tasks)
        tasks.clear()


class _TrioRequestTasks(RequestTasks):
    def __init__(self) -> None:
        import trio

        self._manager = trio.open_nursery()

    async def __aenter__(self) -> RequestTasks:
        nursery = await self._manager.__aenter__()
        self._cancel = nursery.cancel_scope.cancel
        start_soon = nursery.start_soon

        def spawn(fn: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> object:
            start_soon(fn, *args, name=_NAME)
            return None  # the nursery keeps track of its tasks

        self.spawn = spawn
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.spawn = _closed
        self._cancel()
        # The nursery is told the body ended cleanly, so that it does not wrap the body's
        # exception in an ExceptionGroup: after its children are done, that exception
        # (a cancellation too) carries on as it is. The children's own exceptions, which
        # can only be BaseExceptions the server does not handle, still come out.
        await self._manager.__aexit__(None, None, None)


def _closed(fn: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> object:
    raise RuntimeError("the request tasks are closed")


class Spawner:
    """Starts one task per request for as long as a server runs, and waits for the
    stragglers at close (see the module's docstring)."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nursery: Any = None

    async def start(self, task_group: TaskGroup) -> None:
        """Resolve the running loop's spawn; on trio, host the nursery in ``task_group``."""
        if sniffio.current_async_library() == "trio":
            self._nursery = await task_group.start(self._host_nursery)
        else:
            self._loop = asyncio.get_running_loop()

    @staticmethod
    async def _host_nursery(*, task_status: Any) -> None:
        import trio

        async with trio.open_nursery() as nursery:
            task_status.started(nursery)
            await trio.sleep_forever()

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None:
        if self._loop is None:
            self._nursery.start_soon(fn, *args, name=_NAME)
            return
        task = self._loop.create_task(fn(*args), name=_NAME)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("requestplane: a request task failed", exc_info=task.exception())

    async def join(self) -> None:
        """Wait for the tasks still running (their scopes were cancelled by the caller)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))
