"""Reading a plain TCP connection on asyncio (and uvloop) through a protocol of our own.

anyio's ``SocketStream.receive()`` on asyncio keeps the transport's reading paused between
calls: every wait resumes reading and pauses it again (on the selector loop, registering
and unregistering the socket: an ``epoll_ctl`` pair), plus anyio's event and bookkeeping
and a checkpoint. With one request in flight that is paid on every request, on both sides.
Here the transport keeps reading and hands what arrives to :class:`FeedProtocol`, which
queues it and wakes the reader task (a bare future); the task feeds the frame parser.

The parsing stays in the reader task on purpose: ``data_received`` is an event-loop
callback, outside any task, where sniffio cannot tell the loop, so a synchronous handler
answered while parsing (and the dispatcher's ``anyio.current_time()``) would fail there.

anyio's stream stays in charge of writing and closing: the protocol passes the write-side
callbacks and ``connection_lost`` on to anyio's protocol, so ``send()`` keeps its
backpressure and its errors, and anyio's protocol is put back when the reader ends. The
switch relies on private attributes of anyio's asyncio ``SocketStream``, all reached through
``_compat.py``; anything unexpected (TLS, another stream class, a transport that is already
closing, a future anyio without these) gets ``None``, and the connection is read with
``receive()`` as on trio: slower, never wrong. Tests notice if that starts happening.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.abc import ByteStream

from ._compat import (
    asyncio_stream_parts,
    closed_by_anyio,
    protocol_error,
    unread_from_protocol,
    unread_to_protocol,
)

__all__ = ["FeedProtocol", "ProtocolSource", "protocol_source", "read_through_protocol"]


class FeedProtocol(asyncio.Protocol):
    """Queues what the transport reads and wakes the one task that consumes it."""

    __slots__ = ("_original", "eof", "lost", "queue", "wakeup")

    def __init__(self, original: Any) -> None:
        self._original = original
        self.queue: deque[bytes] = deque()
        self.eof = False
        self.lost = False
        self.wakeup: asyncio.Future[None] | None = None

    def _wake(self) -> None:
        wakeup = self.wakeup
        if wakeup is not None:
            self.wakeup = None
            if not wakeup.done():  # cancelled along with its waiter
                wakeup.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.queue.append(data)
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._original.eof_received()
        self._wake()
        return True  # like anyio's: keep the transport open for writing (half-close)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._original.connection_lost(exc)
        self._wake()

    def pause_writing(self) -> None:
        self._original.pause_writing()

    def resume_writing(self) -> None:
        self._original.resume_writing()


class ProtocolSource:
    """A plain asyncio TCP stream of anyio's whose transport can be read through a
    :class:`FeedProtocol`."""

    __slots__ = ("original", "stream", "transport")

    def __init__(self, stream: ByteStream, transport: Any, original: Any) -> None:
        self.stream = stream
        self.transport = transport
        self.original = original


def protocol_source(stream: ByteStream) -> ProtocolSource | None:
    """A :class:`ProtocolSource` if ``stream`` is anyio's plain, open asyncio TCP stream."""
    parts = asyncio_stream_parts(stream)
    if parts is None:
        return None
    return ProtocolSource(stream, parts.transport, parts.protocol)


async def read_through_protocol(
    source: ProtocolSource,
    feed: Callable[[bytes], None],
    congested: Callable[[], bool] | None,
    wait_drained: Callable[[], Awaitable[None]],
) -> None:
    """Feed everything the connection receives to ``feed``, in order, from this task.

    Returns at the peer's end of stream; raises like anyio's ``receive()`` would when the
    connection breaks (``BrokenResourceError``) or is closed here (``ClosedResourceError``).
    While ``congested()`` is true (if given), reading is paused until ``wait_drained()``.
    """
    transport = source.transport
    original = source.original
    protocol = FeedProtocol(original)
    queue = protocol.queue
    # What anyio read and did not hand out comes first.
    queue.extend(unread_from_protocol(original))
    transport.set_protocol(protocol)
    try:
        transport.resume_reading()
        create_future = asyncio.get_running_loop().create_future
        popleft = queue.popleft
        while True:
            while queue:
                feed(popleft())
            if protocol.eof or protocol.lost:
                break
            if congested is not None and congested():
                transport.pause_reading()
                try:
                    await wait_drained()
                finally:
                    if not transport.is_closing():
                        transport.resume_reading()
                continue
            protocol.wakeup = wakeup = create_future()
            await wakeup
    finally:
        protocol.wakeup = None
        transport.set_protocol(original)
        if queue:  # only when feeding failed: the connection is being dropped anyway
            unread_to_protocol(original, queue)
        if not transport.is_closing():
            transport.pause_reading()
    if closed_by_anyio(source.stream):
        raise anyio.ClosedResourceError
    error = protocol_error(original)
    if error is not None:
        raise anyio.BrokenResourceError from error
