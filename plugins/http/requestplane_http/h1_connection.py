"""A client HTTP/1.1 connection on the sans-IO ``h11`` library, for large request payloads.

hypercorn advertises a fixed 64 KiB HTTP/2 receive window and opens it 32 KiB at a time, so a
large upload over HTTP/2 waits for a window update every 32 KiB; over HTTP/1.1 it is a plain
TCP stream. One exchange at a time per connection, read by the calling task itself (no
background task); idle connections wait in the pool for the next large request.
"""

from __future__ import annotations

import select

import anyio
import h11
from anyio.abc import ByteStream, SocketAttribute

from requestplane_core import ConnectionLost, PayloadTooLarge, ProtocolError

from .errors import PLAINTEXT_TO_TLS, REFUSED_AFTER_HANDSHAKE, describe_io_error
from .exchange import Exchange

__all__ = ["H1Connection"]

READ_SIZE = 256 * 1024
_MAX_HEADERS = 64 * 1024


class H1Connection(Exchange):
    """A connection that is also the exchange running on it (HTTP/1.1 has one at a time)."""

    def __init__(self, stream: ByteStream, origin: str, *, tls: bool = False) -> None:
        self._stream = stream
        self.origin = origin
        self._tls = tls
        self._answered = False  # the server has sent at least one byte on this connection
        self._eof = False
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEADERS)
        self.idle_since: float | None = anyio.current_time()
        self.reusable = False
        self.closed = False
        self.dropped = False  # counted out of the client's open connections
        self._complete = False
        self._pending_data: list[bytes] = []
        self.status = 0
        self.content_type = b""
        self.error_header = False

    def alive(self) -> bool:
        """Whether an idle connection is still usable: the server may have closed it while it
        sat in the pool (restart, idle timeout). An idle HTTP/1.1 connection has nothing to
        read, so a readable socket means end of stream (or junk): not reusable."""
        if self.closed:
            return False
        try:
            raw = self._stream.extra(SocketAttribute.raw_socket)
            poller = select.poll()
            poller.register(raw.fileno(), select.POLLIN | select.POLLPRI)
            return not poller.poll(0)
        except (OSError, ValueError, anyio.TypedAttributeLookupError):
            return False

    async def send(self, target: bytes, headers: list[tuple[bytes, bytes]], payload: bytes) -> None:
        self.idle_since = None
        self._complete = False
        self.status = 0
        self.content_type = b""
        self.error_header = False
        conn = self._h11
        head = conn.send(h11.Request(method=b"POST", target=target, headers=headers)) or b""
        body = conn.send_with_data_passthrough(h11.Data(data=payload)) or []
        tail = conn.send(h11.EndOfMessage()) or b""
        try:
            if len(payload) < 64 * 1024:
                await self._stream.send(head + b"".join(body) + tail)
            else:  # no copy of a large payload
                await self._stream.send(head)
                for piece in body:
                    await self._stream.send(piece)
                if tail:
                    await self._stream.send(tail)
        except Exception as exc:
            await self._abort()
            raise ConnectionLost(describe_io_error(exc, self.origin)) from None

    async def _next_event(self) -> object:
        conn = self._h11
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                await self._abort()
                if self._eof:
                    raise self._closed_early() from None
                raise ProtocolError(f"the server at {self.origin} broke HTTP/1.1: {exc}") from None
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await self._stream.receive(READ_SIZE)
                self._answered = True
            except anyio.EndOfStream:
                data = b""
                self._eof = True
            except Exception as exc:
                await self._abort()
                if self._tls and not self._answered:
                    raise self._closed_early() from None
                raise ConnectionLost(describe_io_error(exc, self.origin)) from None
            conn.receive_data(data)

    async def wait_headers(self) -> None:
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Response):
                self.status = event.status_code
                for name, value in event.headers:
                    if name == b"content-type":
                        self.content_type = value
                    elif name == b"rp-error":
                        self.error_header = True
                return
            if isinstance(event, h11.ConnectionClosed):
                await self._abort()
                raise self._closed_early()
            # InformationalResponse (100 Continue): wait for the real one.

    def _closed_early(self) -> ConnectionLost:
        if not self._answered:
            hint = REFUSED_AFTER_HANDSHAKE if self._tls else PLAINTEXT_TO_TLS
            return ConnectionLost(f"the server at {self.origin} closed the connection" + hint)
        if self.status:
            return ConnectionLost(f"the server at {self.origin} closed the connection mid-response")
        return ConnectionLost(f"the server at {self.origin} closed the connection before answering")

    async def read_some(self) -> bytes:
        if self._complete:
            return b""
        event = await self._next_event()
        if isinstance(event, h11.Data):
            return bytes(event.data)
        if isinstance(event, h11.EndOfMessage):
            self._complete = True
            return b""
        await self._abort()
        raise ConnectionLost(f"the server at {self.origin} closed the connection mid-response")

    async def read_all(self, limit: int) -> bytes:
        parts: list[bytes] = []
        size = 0
        while True:
            data = await self.read_some()
            if not data:
                return b"".join(parts)
            parts.append(data)
            size += len(data)
            if size > limit:
                await self._abort()
                raise PayloadTooLarge(
                    f"the response of more than {limit} bytes exceeds the maximum message size"
                )

    async def close(self) -> None:
        """End the exchange: keep the connection for reuse if it completed cleanly, else close
        it (on HTTP/1.1 closing is the only way to cancel the handler)."""
        conn = self._h11
        if (
            self._complete
            and not self.closed
            and conn.our_state is h11.DONE
            and conn.their_state is h11.DONE
        ):
            conn.start_next_cycle()
            self.idle_since = anyio.current_time()
            self.reusable = True
        else:
            await self._abort()

    async def _abort(self) -> None:
        self.reusable = False
        if not self.closed:
            self.closed = True
            with anyio.CancelScope(shield=True):
                await anyio.aclose_forcefully(self._stream)
