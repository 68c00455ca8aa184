"""Where nats-py runs: in the caller's asyncio loop, or in an asyncio loop on its own thread.

nats-py is asyncio-only. On asyncio it runs natively in the running loop (:class:`NativeBridge`:
every operation is a plain call). On trio it runs in a private asyncio loop on a background
thread (:class:`ThreadBridge`), chosen over trio-asyncio by measurement (see the README: about
6x the throughput at 64 concurrent 1 KiB requests, and no process-wide patching of asyncio).

Three operations cross between the caller's side (anyio) and the nats-py loop:

* :meth:`run`: run a nats-py coroutine and await its result (connect, subscribe, flush, close);
* :meth:`send`: queue a nats-py coroutine in order without waiting for it (publish); the
  caller is paced only when the queue is long;
* :meth:`deliver`: from the nats-py loop, run a plain function on the caller's side in order
  (every received message, connection events).

The thread bridge batches both directions: a burst of messages costs one cross-thread wakeup,
not one per message, which is what keeps it near native speed.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import sniffio

__all__ = ["LoopBridge", "NativeBridge", "ThreadBridge", "open_bridge"]

log = logging.getLogger("requestplane.nats")

T = TypeVar("T")
ErrorCallback = Callable[[BaseException], object] | None

# Outbound queue length at which senders wait, and the length at which they may go on.
_HIGH_WATER = 8192
_LOW_WATER = 1024


class LoopBridge(abc.ABC):
    @abc.abstractmethod
    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T: ...

    @abc.abstractmethod
    async def send(
        self, fn: Callable[..., Awaitable[object]], *args: Any, on_error: ErrorCallback = None
    ) -> None: ...

    @abc.abstractmethod
    def deliver(self, fn: Callable[..., object], *args: Any) -> None: ...

    @abc.abstractmethod
    async def barrier(self) -> None:
        """Return once everything :meth:`send` queued before this call has been handed over."""

    @abc.abstractmethod
    async def aclose(self) -> None: ...


def open_bridge() -> LoopBridge:
    """The bridge for the running backend."""
    if sniffio.current_async_library() == "asyncio":
        return NativeBridge()
    return ThreadBridge()


class NativeBridge(LoopBridge):
    """nats-py in the running asyncio loop: no crossing at all."""

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return await fn(*args)

    async def send(
        self, fn: Callable[..., Awaitable[object]], *args: Any, on_error: ErrorCallback = None
    ) -> None:
        try:
            await fn(*args)
        except Exception as exc:
            if on_error is None:
                log.debug("nats: send failed: %r", exc)
            else:
                on_error(exc)

    def deliver(self, fn: Callable[..., object], *args: Any) -> None:
        fn(*args)

    async def barrier(self) -> None:
        pass  # sends are awaited in order already

    async def aclose(self) -> None:
        pass


class ThreadBridge(LoopBridge):
    """nats-py in a private asyncio loop on a daemon thread, for trio callers."""

    def __init__(self) -> None:
        import trio

        self._trio = trio
        self._token = trio.lowlevel.current_trio_token()
        self._loop = asyncio.new_event_loop()
        self._inbound: collections.deque[tuple[Callable[..., object], tuple[Any, ...]]] = (
            collections.deque()
        )
        self._in_scheduled = False
        self._outbound: collections.deque[
            tuple[Callable[..., Awaitable[object]], tuple[Any, ...], ErrorCallback]
        ] = collections.deque()
        self._out_scheduled = False
        self._wake: asyncio.Event | None = None
        self._space: anyio.Event | None = None
        self._blocked = False
        self._closed = False
        # Sends of one trio scheduling round share one cross-thread wakeup: the first send
        # wakes this trio task, which lets the round finish before it pokes the loop.
        self._kick_wanted = trio.Event()
        self._kicker_scope = trio.CancelScope()
        trio.lowlevel.spawn_system_task(self._kicker, name="requestplane-nats-kicker")
        started = threading.Event()
        self._thread = threading.Thread(
            target=self._main, args=(started,), name="requestplane-nats-loop", daemon=True
        )
        self._thread.start()
        started.wait()

    # -- the nats-py thread ----------------------------------------------------------------

    def _main(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._pump(started))
        finally:
            # Let nats-py's own tasks see their cancellation before the loop goes away.
            pending = [t for t in asyncio.all_tasks(self._loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    async def _pump(self, started: threading.Event) -> None:
        wake = self._wake = asyncio.Event()
        started.set()
        queue = self._outbound
        while not self._closed or queue:
            await wake.wait()
            wake.clear()
            while True:
                while queue:
                    fn, args, on_error = queue.popleft()
                    try:
                        await fn(*args)
                    except Exception as exc:
                        if on_error is None:
                            log.debug("nats: send failed: %r", exc)
                        else:
                            self.deliver(on_error, exc)
                    if self._blocked and len(queue) < _LOW_WATER:
                        self._blocked = False
                        self.deliver(self._release)
                # Senders skip the (syscall) wakeup while this flag is up; lower it only now
                # and look once more, so an item queued in between is not left behind.
                self._out_scheduled = False
                if not queue:
                    break
                self._out_scheduled = True

    def _kick(self) -> None:
        assert self._wake is not None
        self._wake.set()

    # -- the trio side ---------------------------------------------------------------------

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        future = asyncio.run_coroutine_threadsafe(_call(fn, args), self._loop)
        done = anyio.Event()
        future.add_done_callback(lambda _: self._to_trio(done.set))
        try:
            await done.wait()
        except BaseException:
            future.cancel()
            raise
        return future.result()

    async def send(
        self, fn: Callable[..., Awaitable[object]], *args: Any, on_error: ErrorCallback = None
    ) -> None:
        if self._closed:
            exc = RuntimeError("the nats connection is closed")
            if on_error is None:
                raise exc
            on_error(exc)
            return
        self.send_nowait(fn, *args, on_error=on_error)
        if len(self._outbound) > _HIGH_WATER:
            if self._space is None:
                self._space = anyio.Event()
            self._blocked = True
            await self._space.wait()

    def send_nowait(
        self, fn: Callable[..., Awaitable[object]], *args: Any, on_error: ErrorCallback = None
    ) -> None:
        """Queue ``fn(*args)`` for the nats-py loop without waiting for the queue to have
        room (the one reply of a message being delivered: the deliveries bound it)."""
        if self._closed:
            return  # the connection is gone: the caller's deadline reports it
        self._outbound.append((fn, args, on_error))
        if not self._out_scheduled:
            self._out_scheduled = True
            self._kick_wanted.set()

    async def barrier(self) -> None:
        passed = anyio.Event()

        async def mark() -> None:
            self.deliver(passed.set)

        await self.send(mark)
        with anyio.CancelScope(shield=True):
            await passed.wait()

    async def _kicker(self) -> None:
        trio = self._trio
        with self._kicker_scope:
            while True:
                await self._kick_wanted.wait()
                self._kick_wanted = trio.Event()
                await trio.lowlevel.checkpoint()  # the rest of this round's sends join in
                try:
                    self._loop.call_soon_threadsafe(self._kick)
                except RuntimeError:
                    return  # the loop is closed

    def _release(self) -> None:
        space, self._space = self._space, None
        if space is not None:
            space.set()

    def deliver(self, fn: Callable[..., object], *args: Any) -> None:
        # Called in the nats-py loop. The wakeup of trio waits for the end of this loop step,
        # so that every message nats-py hands over in it shares one wakeup.
        self._inbound.append((fn, args))
        if not self._in_scheduled:
            self._in_scheduled = True
            self._loop.call_soon(self._to_trio, self._drain_inbound)

    def _to_trio(self, fn: Callable[[], object]) -> None:
        try:
            self._token.run_sync_soon(fn)
        except self._trio.RunFinishedError:
            pass  # trio is gone; nobody is left to receive

    def _drain_inbound(self) -> None:
        queue = self._inbound
        while True:
            while queue:
                fn, args = queue.popleft()
                try:
                    fn(*args)
                except Exception:  # a callback must never take trio's run loop down
                    log.exception("nats: error while handling a message")
            self._in_scheduled = False  # as in _pump: lowered only once the queue is empty
            if not queue:
                return
            self._in_scheduled = True

    async def aclose(self) -> None:
        """Stop the loop after the queued sends went out, and join its thread."""
        if self._closed:
            return
        self._closed = True
        self._kicker_scope.cancel()
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._kick)
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._thread.join)
        self._release()


async def _call(fn: Callable[..., Awaitable[T]], args: tuple[Any, ...]) -> T:
    return await fn(*args)
