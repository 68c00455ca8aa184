"""A one-shot wakeup for one waiting task, on the event loop's own primitives.

Every call waits once for its answer (tcp's calls, nats's replies and stream credit), so the
waiter is on the per-request path. anyio's
``Event`` wraps the backend's event, which keeps a list of waiters and builds a future (or
parks in a parking lot) per wait; one known waiter needs none of that. ``wait()`` is
cancellable like any await (the canceller's scope wins); ``set()`` is synchronous, may come
before the wait, and is harmless after a cancelled wait or a second time.

- asyncio: a bare future (``wait()`` hands it out to be awaited: no coroutine frame).
- trio: the task parks itself with ``wait_task_rescheduled`` and ``set()`` reschedules it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import sniffio

__all__ = ["Waiter", "waiter_factory"]


class Waiter(Protocol):
    def set(self) -> None: ...

    def wait(self) -> Awaitable[Any]: ...


def waiter_factory() -> Callable[[], Waiter]:
    """The waiter class of the running event loop (call it for each wait)."""
    if sniffio.current_async_library() == "trio":
        _load_trio()
        return _TrioWaiter
    loop = asyncio.get_running_loop()
    create_future = loop.create_future

    def new_waiter() -> Waiter:
        return _AsyncioWaiter(create_future())

    return new_waiter


class _AsyncioWaiter:
    __slots__ = ("_future",)

    def __init__(self, future: asyncio.Future[None]) -> None:
        self._future = future

    def set(self) -> None:
        future = self._future
        if not future.done():  # cancelled along with its waiter, or set already
            future.set_result(None)

    def wait(self) -> Awaitable[None]:
        return self._future


class _TrioWaiter:
    __slots__ = ("_set", "_task")

    def __init__(self) -> None:
        self._set = False
        self._task: Any = None

    def set(self) -> None:
        self._set = True
        task = self._task
        if task is not None:
            self._task = None
            _reschedule(task)

    async def wait(self) -> None:
        if self._set:
            return
        self._task = _current_task()
        await _wait_task_rescheduled(self._abort)

    def _abort(self, raise_cancel: object) -> Any:
        # Cancelled while parked: forget the task so that a late set() does not wake it.
        self._task = None
        return _ABORT_SUCCEEDED


_current_task: Callable[[], Any]
_reschedule: Callable[[Any], None]
_wait_task_rescheduled: Callable[[Callable[[Any], Any]], Awaitable[Any]]
_ABORT_SUCCEEDED: Any


def _load_trio() -> None:
    # trio is imported only by the process that runs on it.
    global _current_task, _reschedule, _wait_task_rescheduled, _ABORT_SUCCEEDED
    import trio

    _current_task = trio.lowlevel.current_task
    _reschedule = trio.lowlevel.reschedule
    _wait_task_rescheduled = trio.lowlevel.wait_task_rescheduled
    _ABORT_SUCCEEDED = trio.lowlevel.Abort.SUCCEEDED
