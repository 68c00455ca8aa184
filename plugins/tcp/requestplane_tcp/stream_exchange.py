"""One stream() call on a shared connection, as the core's Exchange.

The connection's reader queues chunks on the call's :class:`StreamState`; taking one that is
already there needs no await. Leaving early queues a CANCEL frame (synchronously, so that it
works while cancelled and from ``__del__``) and forgets the request id, so late frames for
it are dropped.
"""

from __future__ import annotations

from requestplane_core.plugin_api import Exchange, ExchangeEvent

from .call_states import StreamState
from .client_connection import ClientConnection

__all__ = ["StreamExchange"]

_CHUNK = ExchangeEvent.CHUNK
_END = (ExchangeEvent.END, b"")


class StreamExchange(Exchange):
    __slots__ = ("_conn", "_rid", "_state")

    def __init__(self, conn: ClientConnection, rid: int, state: StreamState) -> None:
        self._conn = conn
        self._rid = rid
        self._state = state

    def receive_ready(self) -> tuple[ExchangeEvent, bytes] | None:
        chunks = self._state.chunks
        return (_CHUNK, chunks.popleft()) if chunks else None

    async def receive(self) -> tuple[ExchangeEvent, bytes]:
        state = self._state
        while True:
            if state.chunks:
                return _CHUNK, state.chunks.popleft()
            if state.error is not None:
                raise state.error()
            if state.done:
                return _END
            # The deadline's timer fails the stream and wakes us; a unary answer comes as
            # one chunk followed by the end.
            waiter = state.waiter = state.new_waiter()
            state.waiting = True
            await waiter.wait()

    def abandon(self) -> None:
        state = self._state
        state.chunks.clear()
        if state.done:
            return
        state.waiting = False
        state.settle()
        self._conn.cancel(self._rid)

    async def aclose(self) -> None:
        self.abandon()
