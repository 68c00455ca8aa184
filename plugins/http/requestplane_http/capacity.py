"""Requests waiting for room on a pool's full HTTP/2 connections, woken as room appears."""

from __future__ import annotations

from collections import deque

import anyio

__all__ = ["Capacity"]


class Capacity:
    """A queue of waiters, woken one per freed stream, in arrival order.

    One event for all of them woke every waiter on every freed stream: with thousands
    waiting on a connection at its limit, each response cost a pass over all of them
    (quadratic; the 3,000-call stream-limit test took 21-26 s on trio). A waiter woken for
    room that someone else took first waits again at the front. A waiter cancelled after
    being woken hands its wake to the next, so no room goes unused.
    """

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: deque[anyio.Event] = deque()

    async def wait(self, *, again: bool = False) -> None:
        event = anyio.Event()
        if again:
            self._waiters.appendleft(event)
        else:
            self._waiters.append(event)
        try:
            await event.wait()
        except BaseException:
            if event.is_set():
                self.wake(1)
            else:
                self._waiters.remove(event)
            raise

    def wake(self, count: int) -> None:
        waiters = self._waiters
        while count > 0 and waiters:
            waiters.popleft().set()
            count -= 1

    def wake_all(self) -> None:
        self.wake(len(self._waiters))
