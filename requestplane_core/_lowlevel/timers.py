"""The clock and one-shot timers of the running event loop, for per-call deadlines.

A call with a timeout used to wait inside ``anyio.CancelScope(deadline=...)``: creating,
entering and leaving a scope (and arming its deadline) cost more than the rest of the call.
A timer that fails the call when it fires costs a heap push and, if the answer comes first,
a cancel:

- asyncio: ``loop.call_at`` (``loop.time`` is ``anyio.current_time``'s clock there).
- trio: it has no timers, so one task per client sleeps until the earliest deadline and runs
  what is due. Timers live in a heap; a cancelled one stays there, disarmed, until the heap
  is rebuilt without them (when they make up most of it), as asyncio does with its own.

``call_at(when, fn)`` returns a handle with ``cancel()``; ``fn`` runs at most once, in the
loop's own task (asyncio) or the timer task (trio), and must not raise.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
from collections.abc import Callable
from typing import Any, Protocol

import anyio
import sniffio
from anyio.abc import TaskGroup

from ..clock import loop_clock

__all__ = ["LoopTimers", "TimerHandle", "loop_timers"]

log = logging.getLogger("requestplane.lowlevel")


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class LoopTimers:
    """``clock()`` and ``call_at(when, fn)`` of the running loop; :meth:`close` stops the
    trio timer task (asyncio has nothing to stop)."""

    clock: Callable[[], float]
    call_at: Callable[[float, Callable[[], object]], TimerHandle]

    def close(self) -> None:
        """Stop firing timers (those not yet due never run)."""


def loop_timers(task_group: TaskGroup) -> LoopTimers:
    """Timers of the running event loop; on trio, their task runs in ``task_group``."""
    if sniffio.current_async_library() == "trio":
        return _TrioTimers(task_group)
    return _AsyncioTimers(asyncio.get_running_loop())


class _AsyncioTimers(LoopTimers):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.clock = loop_clock()
        self.call_at = loop.call_at


class _TrioTimer:
    __slots__ = ("fn", "owner")

    def __init__(self, fn: Callable[[], object], owner: _TrioTimers) -> None:
        self.fn: Callable[[], object] | None = fn
        self.owner = owner

    def cancel(self) -> None:
        if self.fn is not None:
            self.fn = None
            self.owner.disarmed += 1


_REBUILD_FROM = 64  # a heap smaller than this is never worth rebuilding


class _TrioTimers(LoopTimers):
    def __init__(self, task_group: TaskGroup) -> None:
        import trio

        self._trio = trio
        self.clock = loop_clock()
        self.call_at = self._call_at
        self._heap: list[tuple[float, int, _TrioTimer]] = []
        self._seq = 0
        self.disarmed = 0
        self._sleep: Any = None  # the timer task's scope while it sleeps: its deadline
        self._scope = anyio.CancelScope()
        task_group.start_soon(self._run, name="requestplane timers")

    def _call_at(self, when: float, fn: Callable[[], object]) -> _TrioTimer:
        timer = _TrioTimer(fn, self)
        heap = self._heap
        if self.disarmed > len(heap) // 2 and len(heap) >= _REBUILD_FROM:
            # Mostly cancelled timers (answers came first, as they usually do): drop them.
            heap[:] = [entry for entry in heap if entry[2].fn is not None]
            heapq.heapify(heap)
            self.disarmed = 0
        self._seq += 1
        heapq.heappush(heap, (when, self._seq, timer))
        sleep = self._sleep
        if sleep is not None and when < sleep.deadline:
            sleep.deadline = when  # wake up earlier than planned
        return timer

    async def _run(self) -> None:
        trio = self._trio
        heap = self._heap
        with self._scope:
            while True:
                now = trio.current_time()
                while heap and heap[0][0] <= now:
                    timer = heapq.heappop(heap)[2]
                    fn = timer.fn
                    if fn is None:
                        self.disarmed -= 1
                    else:
                        timer.fn = None
                        try:
                            fn()
                        except Exception:  # a bug; it must not stop every other timer
                            log.exception("requestplane: a timer callback failed")
                with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as sleep:
                    self._sleep = sleep
                    await trio.sleep_forever()
                self._sleep = None

    def close(self) -> None:
        self._scope.cancel()
