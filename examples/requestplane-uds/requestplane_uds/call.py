"""One call on the client side (the transport's Exchange): its own connection, its request
frame, its answer frames."""

from __future__ import annotations

from collections.abc import Mapping

import anyio
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from requestplane_core import (
    ClientStats,
    ConnectionLost,
    ProtocolError,
    Unavailable,
    error_from_wire,
)
from requestplane_core.plugin_api import Exchange, ExchangeEvent

from .addressing import Target
from .frames import CONNECTION_ERRORS, encode_frame, read_frame

__all__ = ["Call"]


_EVENTS = {
    "response": ExchangeEvent.RESPONSE,
    "chunk": ExchangeEvent.CHUNK,
    "end": ExchangeEvent.END,
}


class Call(Exchange):
    """A request sent on a fresh connection, and the frames that answer it.

    Closing the connection is how a client cancels: the server sees the end of the stream
    and cancels the handler.
    """

    def __init__(self, stream: SocketStream, stats: ClientStats, max_message_size: int) -> None:
        self._stream = stream
        self._reader = BufferedByteReceiveStream(stream)
        self._stats = stats
        self._max = max_message_size
        self._closed = False

    @classmethod
    async def open(
        cls,
        target: Target,
        payload: bytes,
        headers: Mapping[str, str],
        deadline: float | None,
        *,
        stats: ClientStats,
        max_message_size: int,
    ) -> Call:
        try:
            stream = await anyio.connect_unix(target.socket_path)
        except OSError as exc:
            # Nothing was sent, so the handler certainly did not run: retrying (here or at
            # another instance) is safe, which is what Unavailable tells the caller.
            raise Unavailable(
                f"cannot connect to {target.socket_path}: {exc.strerror or exc}"
            ) from None
        stats.open_connections += 1
        call = cls(stream, stats, max_message_size)
        try:
            # The remaining time is measured after connecting, so the server's deadline
            # is never later than ours.
            timeout = None if deadline is None else max(deadline - anyio.current_time(), 0.0)
            frame = encode_frame(
                "request", payload, endpoint=target.endpoint, headers=dict(headers), timeout=timeout
            )
            await stream.send(frame)
        except CONNECTION_ERRORS:
            # The server may have answered before reading it all (it refused the request);
            # the next receive() reads that answer, or reports the lost connection.
            pass
        except BaseException:
            await call.aclose()
            raise
        return call

    async def receive(self) -> tuple[ExchangeEvent, bytes]:
        """The next ``response``, ``chunk`` or ``end`` frame; an ``error`` frame is raised as
        its typed error."""
        try:
            frame = await read_frame(self._reader, self._max)
        except CONNECTION_ERRORS as exc:
            raise ConnectionLost("the connection closed before the answer was complete") from exc
        if frame.kind == "error":
            header = frame.header
            raise error_from_wire(
                str(header.get("code", "")),
                str(header.get("message", "")),
                str(header.get("remote_type", "")),
            )
        if frame.kind == "request":
            raise ProtocolError("the server sent a request frame")
        return _EVENTS[frame.kind], frame.payload

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._stats.open_connections -= 1
            await anyio.aclose_forcefully(self._stream)
