"""A client HTTP/2 connection on the sans-IO ``h2`` library: many exchanges, one socket.

The calling task drives its own request: it turns it into frames with ``h2`` (no await) and
writes them in one ``send``. One reader task per connection turns incoming frames into events
on the exchanges. There are no locks: ``h2`` is only touched between awaits, and the task
that finds the socket idle writes everything pending (its own frames and those other tasks
queued meanwhile), so concurrent requests coalesce into few writes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from anyio.abc import ByteStream, TaskGroup

from requestplane_core import (
    ConnectionLost,
    PayloadTooLarge,
    ProtocolError,
    RequestPlaneError,
    Unavailable,
    error_from_wire,
)

from ._compat import h2_connection_class
from .errors import PLAINTEXT_TO_TLS, describe_io_error
from .exchange import Exchange, RetryElsewhere

__all__ = ["H2Connection"]

log = logging.getLogger("requestplane.http")

# Receive windows the client advertises. hypercorn sends DATA as fast as these allow, so
# large responses arrive without waiting for window updates; one slow stream can hold at most
# STREAM_WINDOW of the connection's window.
STREAM_WINDOW = 4 * 1024 * 1024
CONNECTION_WINDOW = 64 * 1024 * 1024
MAX_FRAME_SIZE = 1024 * 1024  # fewer, larger DATA frames from hypercorn
READ_SIZE = 256 * 1024
_DEFAULT_WINDOW = 65535

_CONFIG = h2.config.H2Configuration(
    client_side=True,
    header_encoding=None,
    # The client builds its own headers (lower case, valid values, pseudo headers first);
    # validating them again per request costs more than the rest of the request.
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
    validate_inbound_headers=False,
    normalize_inbound_headers=False,
)
_H2 = h2_connection_class()


class H2Exchange(Exchange):
    __slots__ = (
        "_conn",
        "_ended",
        "_error",
        "_headers_seen",
        "_incremental",
        "_parts",
        "_pending",
        "_released",
        "_size",
        "_unacked",
        "_waiter",
        "content_type",
        "error_header",
        "id",
        "status",
    )

    def __init__(self, conn: H2Connection, stream_id: int, incremental: bool) -> None:
        self._conn = conn
        self.id = stream_id
        self._incremental = incremental
        self.status = 0
        self.content_type = b""
        self.error_header = False
        self._headers_seen = False
        self._parts: list[bytes] = []
        self._size = 0
        self._ended = False
        self._error: BaseException | None = None
        self._waiter: anyio.Event | None = None
        self._pending = memoryview(b"")  # request body still waiting for flow control window
        self._unacked = 0
        self._released = False

    # -- called by the connection's reader -------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()

    def _on_headers(self, headers: list[tuple[bytes, bytes]]) -> None:
        for name, value in headers:
            if name == b":status":
                self.status = int(value)
            elif name == b"content-type":
                self.content_type = value
            elif name == b"rp-error":
                self.error_header = True
        self._headers_seen = True
        self._wake()

    def _on_data(self, data: bytes, flow_controlled: int) -> None:
        self._parts.append(data)
        self._size += len(data)
        self._unacked += flow_controlled
        if not self._incremental:
            self._ack()
        self._wake()

    def _on_end(self) -> None:
        self._ended = True
        self._wake()

    def _on_error(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    def _ack(self) -> None:
        if self._unacked >= STREAM_WINDOW // 2 and not self._ended:
            try:
                self._conn.h2.increment_flow_control_window(self._unacked, self.id)
            except h2.exceptions.ProtocolError:
                pass  # the stream closed meanwhile: nothing to open
            self._unacked = 0

    # -- called by the requesting task -----------------------------------------------------

    async def _wait(self) -> None:
        waiter = self._waiter = anyio.Event()
        await waiter.wait()

    async def wait_headers(self) -> None:
        while not self._headers_seen:
            if self._error is not None:
                raise self._error
            await self._wait()

    async def read_all(self, limit: int) -> bytes:
        while not self._ended:
            if self._error is not None:
                raise self._error
            if self._size > limit:
                raise _too_large(self._size, limit)
            await self._wait()
        if self._size > limit:
            raise _too_large(self._size, limit)
        parts = self._parts
        self._parts = []
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)

    async def read_some(self) -> bytes:
        while not self._parts:
            if self._ended:
                return b""
            if self._error is not None:
                raise self._error
            await self._wait()
        parts = self._parts
        self._parts = []
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        if self._unacked >= STREAM_WINDOW // 2 and not self._ended:
            # Open the window only as the caller consumes: a slow reader slows the server
            # down instead of filling this process's memory.
            self._ack()
            await self._conn.flush()
        return data

    async def close(self) -> None:
        if self._released:
            return
        self._released = True
        if not self._ended and self._error is None:
            await self._conn.cancel(self)


def _too_large(size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the response of more than {limit} bytes ({size} so far) exceeds the maximum message size"
    )


class H2Connection:
    """One HTTP/2 connection to one server."""

    def __init__(
        self,
        stream: ByteStream,
        origin: str,
        on_change: Callable[[H2Connection], None],
        *,
        tls: bool = False,
    ) -> None:
        self._stream = stream
        self._tls = tls
        self.origin = origin
        self.h2 = _H2(config=_CONFIG)
        self._exchanges: dict[int, H2Exchange] = {}
        # Exchanges whose request body waits for flow control window, oldest first: a window
        # update serves these, not a scan of every exchange (thousands at high concurrency).
        self._waiting_window: dict[int, H2Exchange] = {}
        self._on_change = on_change
        self._writing = False
        self._scope = anyio.CancelScope()
        self._finished = anyio.Event()
        self._conn_unacked = 0
        self.error: RequestPlaneError | None = None
        self.draining = False
        self.max_streams = 0  # until the server's SETTINGS say how many
        self._settings_received = anyio.Event()
        self.idle_since: float | None = anyio.current_time()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, task_group: TaskGroup) -> None:
        h2conn = self.h2
        h2conn.initiate_connection()
        # Through a SETTINGS update rather than initial values: h2 applies (frame buffer size,
        # stream windows) only what the server acknowledged.
        h2conn.update_settings(
            {
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                h2.settings.SettingCodes.MAX_FRAME_SIZE: MAX_FRAME_SIZE,
            }
        )
        h2conn.increment_flow_control_window(CONNECTION_WINDOW - _DEFAULT_WINDOW)
        task_group.start_soon(self._read_loop)
        await self.flush()
        # Carry no request before the server's SETTINGS: hypercorn answers a stream above its
        # concurrent stream limit with a connection error, which would fail every request on
        # the connection, and this also proves the peer speaks HTTP/2.
        await self._settings_received.wait()
        if self.error is not None:
            raise error_from_wire(self.error.code, self.error.message)

    @property
    def available(self) -> bool:
        """Whether a new request may go on this connection now."""
        return self.error is None and not self.draining and len(self._exchanges) < self.max_streams

    @property
    def free_streams(self) -> int:
        """How many more requests the server allows on this connection now."""
        return max(0, self.max_streams - len(self._exchanges))

    @property
    def active(self) -> int:
        return len(self._exchanges)

    def close(self, error: RequestPlaneError) -> None:
        """Fail what is in flight with ``error`` and close (the reader closes the socket)."""
        self._fail(error)
        self._scope.cancel()

    async def wait_closed(self) -> None:
        await self._finished.wait()

    # -- requests --------------------------------------------------------------------------

    def open(
        self, headers: list[tuple[bytes, bytes]], payload: bytes, incremental: bool
    ) -> H2Exchange:
        """Queue one request's frames (the caller then flushes) and return its exchange."""
        h2conn = self.h2
        stream_id = h2conn.get_next_available_stream_id()
        exchange = H2Exchange(self, stream_id, incremental)
        self._exchanges[stream_id] = exchange
        self.idle_since = None
        if payload:
            h2conn.send_headers(stream_id, headers)
            exchange._pending = memoryview(payload)
            self._send_pending(exchange)
            if exchange._pending:
                self._waiting_window[stream_id] = exchange
        else:
            h2conn.send_headers(stream_id, headers, end_stream=True)
        return exchange

    def _send_pending(self, exchange: H2Exchange) -> None:
        h2conn = self.h2
        data = exchange._pending
        stream_id = exchange.id
        while data:
            size = min(
                len(data),
                h2conn.local_flow_control_window(stream_id),
                h2conn.max_outbound_frame_size,
            )
            if size <= 0:
                break
            h2conn.send_data(stream_id, data[:size].tobytes(), end_stream=size == len(data))
            data = data[size:]
        exchange._pending = data

    async def cancel(self, exchange: H2Exchange) -> None:
        """Reset an unfinished exchange: the server cancels its handler."""
        if self._exchanges.pop(exchange.id, None) is None:
            return
        self._waiting_window.pop(exchange.id, None)
        try:
            self.h2.reset_stream(exchange.id, h2.errors.ErrorCodes.CANCEL)
        except h2.exceptions.ProtocolError:
            pass  # already closed on the h2 side
        self._released()
        await self.flush()

    async def flush(self) -> None:
        """Write everything queued; if another task is writing, it writes it for us."""
        if self._writing or self.error is not None:
            return
        self._writing = True
        try:
            # Shielded: a write cut short by cancellation would corrupt the connection every
            # other request shares. It can only block while the server does not read.
            with anyio.CancelScope(shield=True):
                while True:
                    data = self.h2.data_to_send()
                    if not data:
                        break
                    await self._stream.send(data)
        except Exception as exc:
            self.close(ConnectionLost(describe_io_error(exc, self.origin)))
        finally:
            self._writing = False

    # -- reading ---------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        error: RequestPlaneError = ConnectionLost("the client closed the connection")
        try:
            with self._scope:
                while True:
                    try:
                        data = await self._stream.receive(READ_SIZE)
                    except anyio.EndOfStream:
                        error = ConnectionLost(
                            f"the server at {self.origin} closed the connection" + self._hint()
                        )
                        break
                    events = self.h2.receive_data(data)
                    if events:
                        self._handle(events)
                    await self.flush()
                    if self.draining and not self._exchanges:
                        break
        except h2.exceptions.ProtocolError as exc:
            error = ProtocolError(f"the server at {self.origin} broke HTTP/2: {exc}")
        except Exception as exc:
            error = ConnectionLost(describe_io_error(exc, self.origin))
            if not isinstance(exc, (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError)):
                log.error("HTTP/2 connection to %s failed: %r", self.origin, exc)
        finally:
            self._fail(error)
            with anyio.CancelScope(shield=True):
                await anyio.aclose_forcefully(self._stream)
            self._finished.set()

    def _hint(self) -> str:
        # An HTTP/2 server speaks first (SETTINGS): one that closed before that never spoke
        # HTTP/2 here, and a TLS server does so to a plaintext client.
        if self._tls or self._settings_received.is_set():
            return ""
        return PLAINTEXT_TO_TLS

    def _handle(self, events: list[h2.events.Event]) -> None:
        exchanges = self._exchanges
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                flow = event.flow_controlled_length or 0
                self._conn_unacked += flow
                exchange = exchanges.get(event.stream_id or 0)
                if exchange is not None:
                    exchange._on_data(event.data or b"", flow)
            elif isinstance(event, h2.events.ResponseReceived):
                exchange = exchanges.get(event.stream_id or 0)
                if exchange is not None:
                    exchange._on_headers(event.headers or [])
            elif isinstance(event, h2.events.StreamEnded):
                exchange = exchanges.pop(event.stream_id or 0, None)
                if exchange is not None:
                    if exchange._pending:
                        # Answered before the whole request went out: stop sending it.
                        self._waiting_window.pop(exchange.id, None)
                        self._reset_quietly(exchange.id, h2.errors.ErrorCodes.NO_ERROR)
                    exchange._on_end()
                    self._released()
            elif isinstance(event, h2.events.StreamReset):
                exchange = exchanges.pop(event.stream_id or 0, None)
                if exchange is not None:
                    self._waiting_window.pop(exchange.id, None)
                    exchange._on_error(_reset_error(exchange, event.error_code))
                    self._released()
            elif isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
                if isinstance(event, h2.events.RemoteSettingsChanged):
                    self.max_streams = self.h2.remote_settings.max_concurrent_streams
                    self._settings_received.set()
                    self._on_change(self)
                self._send_waiting()
            elif isinstance(event, h2.events.ConnectionTerminated):
                self._on_goaway(event)
        if self._conn_unacked >= CONNECTION_WINDOW // 4:
            self.h2.increment_flow_control_window(self._conn_unacked)
            self._conn_unacked = 0

    def _send_waiting(self) -> None:
        waiting = self._waiting_window
        h2conn = self.h2
        for stream_id, exchange in list(waiting.items()):
            if h2conn.outbound_flow_control_window <= 0:
                return  # the rest waits for the next connection window update
            if exchange._pending and stream_id in self._exchanges:
                self._send_pending(exchange)
                if exchange._pending:
                    continue  # its stream's own window is full
            del waiting[stream_id]

    def _on_goaway(self, event: h2.events.ConnectionTerminated) -> None:
        self.draining = True
        last = event.last_stream_id or 0
        graceful = event.error_code == h2.errors.ErrorCodes.NO_ERROR
        for stream_id in [s for s in self._exchanges if s > last or not graceful]:
            exchange = self._exchanges.pop(stream_id)
            self._waiting_window.pop(stream_id, None)
            if stream_id > last:
                # The server says it never saw these: send them again elsewhere.
                exchange._on_error(RetryElsewhere())
            else:
                exchange._on_error(
                    ConnectionLost(
                        f"the server at {self.origin} closed the connection with error "
                        f"{event.error_code!r}"
                    )
                )
        self._on_change(self)

    def _reset_quietly(self, stream_id: int, code: h2.errors.ErrorCodes) -> None:
        try:
            self.h2.reset_stream(stream_id, code)
        except h2.exceptions.ProtocolError:
            pass

    def _released(self) -> None:
        if not self._exchanges:
            self.idle_since = anyio.current_time()
        self._on_change(self)

    def _fail(self, error: RequestPlaneError) -> None:
        if self.error is None:
            self.error = error
        exchanges = list(self._exchanges.values())
        self._exchanges.clear()
        self._waiting_window.clear()
        for exchange in exchanges:
            exchange._on_error(error)
        self._settings_received.set()
        self._on_change(self)


def _reset_error(exchange: H2Exchange, code: Any) -> BaseException:
    if code == h2.errors.ErrorCodes.REFUSED_STREAM:
        return RetryElsewhere()
    if not exchange._headers_seen and code == h2.errors.ErrorCodes.NO_ERROR:
        # hypercorn refuses new streams this way once it is shutting down.
        return Unavailable("the server is shutting down and refused the request")
    return ConnectionLost(f"the server reset the request ({code!r})")
