"""What the connection's reader resolves: the state of one call in flight.

The reader calls ``on_response``, ``on_chunk``, ``on_end`` or ``fail`` as frames arrive; the
calling task waits on the state's waiter. A deadline is a timer that calls ``expire``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Protocol

from requestplane_core import DeadlineExceeded
from requestplane_core.lowlevel import TimerHandle, Waiter

from .call_errors import ErrorFactory, response_too_large

__all__ = ["CallState", "Canceller", "StreamState", "UnaryState"]


class Canceller(Protocol):
    """What an expiring call needs of its connection (a ``ClientConnection``)."""

    def cancel(self, rid: int) -> None:
        """Tell the server to stop request ``rid``."""


# (connection, request id, peer, timeout) of a call with a deadline, for expire().
_Expiry = tuple[Canceller, int, str, float | None]


class UnaryState:
    """A request() in flight: its waiter and its outcome."""

    __slots__ = ("chunks", "done", "error", "expiry", "size", "value", "waiter")

    def __init__(self, waiter: Waiter) -> None:
        self.waiter = waiter
        self.done = False
        self.value: bytes = b""
        self.error: ErrorFactory | None = None
        self.chunks: list[bytes] | None = None
        self.size = 0
        self.expiry: _Expiry | None = None

    def expire(self) -> None:
        """The call's deadline passed: tell the server to stop, and fail the call."""
        if self.done or self.expiry is None:
            return
        conn, rid, peer, timeout = self.expiry
        conn.cancel(rid)
        self.fail(lambda: DeadlineExceeded(f"no answer from {peer} within the {timeout}s timeout"))

    def on_response(self, payload: bytes) -> None:
        self.value = payload
        self.done = True
        self.waiter.set()

    def on_chunk(self, payload: bytes, limit: int) -> bool:
        """Collect a chunk of a streamed response; False if the joined response is too big."""
        if self.chunks is None:
            self.chunks = []
        self.size += len(payload)
        if self.size > limit:
            self.fail(lambda: response_too_large(self.size, limit, "joined streamed response"))
            return False
        self.chunks.append(payload)
        return True

    def on_end(self) -> None:
        self.value = b"".join(self.chunks) if self.chunks else b""
        self.done = True
        self.waiter.set()

    def fail(self, error: ErrorFactory) -> None:
        self.error = error
        self.done = True
        self.waiter.set()


class StreamState:
    """A stream() in flight: chunks the reader delivered and the consumer has not taken."""

    __slots__ = ("chunks", "done", "error", "expiry", "new_waiter", "timer", "waiter", "waiting")

    def __init__(self, new_waiter: Callable[[], Waiter]) -> None:
        self.chunks: deque[bytes] = deque()
        self.done = False
        self.error: ErrorFactory | None = None
        self.new_waiter = new_waiter
        self.waiter: Waiter | None = None
        self.waiting = False
        # The deadline's timer, and what expire() needs. Kept here, not on the stream object:
        # a stream dropped without aclose() must stay collectable, so that its __del__ stops
        # the handler.
        self.timer: TimerHandle | None = None
        self.expiry: _Expiry | None = None

    def _wake(self) -> None:
        if self.waiting and self.waiter is not None:
            self.waiting = False
            self.waiter.set()

    def settle(self) -> None:
        """Done: the deadline no longer matters."""
        self.done = True
        timer = self.timer
        if timer is not None:
            self.timer = None
            timer.cancel()

    def on_response(self, payload: bytes) -> None:
        self.chunks.append(payload)
        self.settle()
        self._wake()

    def on_chunk(self, payload: bytes, limit: int) -> bool:
        self.chunks.append(payload)
        if self.waiting:
            self._wake()
        return True

    def on_end(self) -> None:
        self.settle()
        self._wake()

    def fail(self, error: ErrorFactory) -> None:
        if not self.done:
            self.error = error
            self.settle()
        self._wake()

    def expire(self) -> None:
        """The stream's deadline passed: tell the server to stop, and fail the stream (after
        the chunks already here)."""
        self.timer = None
        if self.done or self.expiry is None:
            return
        conn, rid, peer, timeout = self.expiry
        conn.cancel(rid)
        self.fail(
            lambda: DeadlineExceeded(
                f"the stream from {peer} did not end within its {timeout}s timeout"
            )
        )


CallState = UnaryState | StreamState
