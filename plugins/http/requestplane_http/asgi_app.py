"""The ASGI application hypercorn serves: HTTP requests in, dispatcher outcomes out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio
import anyio.lowlevel
import sniffio

from requestplane_core import (
    ConnectionLost,
    Dispatch,
    EndpointNotFound,
    PayloadTooLarge,
    ProtocolError,
    Request,
    RequestPlaneError,
)

from . import wire

__all__ = ["RpcApp"]

log = logging.getLogger("requestplane.http")

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


_YIELD_EVERY = 32  # chunks between two guaranteed scheduling points of a streaming handler


class _Responder:
    """Writes one request's outcome as an HTTP response.

    Every write to hypercorn is shielded: hypercorn turns it into protocol state (HPACK, h11)
    before its first await, and a write cancelled half way would corrupt the connection that
    other requests share. A write can still block on flow control, which ends when the client
    reads or goes away.
    """

    __slots__ = ("_chunks", "_finished", "_max_size", "_send", "_streaming", "lost")

    def __init__(self, send: Send, max_size: int) -> None:
        self._send = send
        self._max_size = max_size
        self._streaming = False
        self._finished = False
        self._chunks = 0
        self.lost = False

    def _check(self) -> None:
        if self.lost or self._finished:
            raise ConnectionLost("the caller is gone")

    async def _write(self, *messages: Message) -> None:
        with anyio.CancelScope(shield=True):
            for message in messages:
                await self._send(message)

    async def send_response(self, payload: bytes) -> None:
        self._check()
        if len(payload) > self._max_size:
            raise PayloadTooLarge(
                f"the response of {len(payload)} bytes exceeds the maximum message size of "
                f"{self._max_size} bytes"
            )
        self._finished = True
        await self._write(
            _start(200, wire.CONTENT_TYPE_UNARY, len(payload)),
            {"type": "http.response.body", "body": payload, "more_body": False},
        )

    async def send_chunk(self, payload: bytes) -> None:
        self._check()
        if len(payload) > self._max_size:
            raise PayloadTooLarge(
                f"a streamed chunk of {len(payload)} bytes exceeds the maximum message size of "
                f"{self._max_size} bytes"
            )
        body = {
            "type": "http.response.body",
            "body": wire.encode_frame(wire.FRAME_DATA, payload),
            "more_body": True,
        }
        if self._streaming:
            await self._write(body)
        else:
            self._streaming = True
            await self._write(_start(200, wire.CONTENT_TYPE_STREAM), body)
        self._chunks += 1
        if not self._chunks % _YIELD_EVERY:
            # Once the client is gone hypercorn drops body writes without ever waiting, so a
            # handler that yields chunks without awaiting anything would never let the task
            # that hears the disconnect run: it would spin for ever. Let it run now and then.
            await anyio.lowlevel.checkpoint()

    async def send_end(self) -> None:
        self._check()
        self._finished = True
        end = {
            "type": "http.response.body",
            "body": wire.encode_frame(wire.FRAME_END),
            "more_body": False,
        }
        if self._streaming:
            await self._write(end)
        else:  # an empty stream
            await self._write(_start(200, wire.CONTENT_TYPE_STREAM), end)

    async def send_error(self, error: RequestPlaneError) -> None:
        self._check()
        self._finished = True
        body = wire.encode_error(error)
        if self._streaming:
            await self._write(
                {
                    "type": "http.response.body",
                    "body": wire.encode_frame(wire.FRAME_ERROR, body),
                    "more_body": False,
                }
            )
        else:
            await self._write(*_error_response(error, body))


def _start(status: int, content_type: bytes, length: int | None = None) -> Message:
    headers = [(b"content-type", content_type)]
    if length is not None:
        headers.append((b"content-length", b"%d" % length))
    return {"type": "http.response.start", "status": status, "headers": headers}


def _error_response(
    error: RequestPlaneError,
    body: bytes | None = None,
    status: int | None = None,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> tuple[Message, Message]:
    if body is None:
        body = wire.encode_error(error)
    headers = [
        (b"content-type", wire.CONTENT_TYPE_ERROR),
        (b"content-length", b"%d" % len(body)),
        (wire.HEADER_ERROR, error.code.encode()),
    ]
    if error.code == "overloaded":
        headers.append((b"retry-after", b"1"))
    if extra:
        headers.extend(extra)
    return (
        {
            "type": "http.response.start",
            "status": status or wire.status_for(error),
            "headers": headers,
        },
        {"type": "http.response.body", "body": body, "more_body": False},
    )


class _Oversize:
    __slots__ = ("drained", "size")

    def __init__(self, size: int, drained: bool) -> None:
        self.size = size
        self.drained = drained


class RpcApp:
    """``POST {root}/{endpoint}`` -> :meth:`Dispatch.handle`; everything else is refused."""

    def __init__(self, dispatcher: Dispatch, root_path: str, max_message_size: int) -> None:
        self._dispatcher = dispatcher
        self._prefix = root_path.rstrip("/") + "/"
        self._max_size = max_message_size
        # How much of a refused HTTP/1.1 body is read (and dropped) to answer it cleanly.
        self._discard_limit = max(max_message_size, 1 << 20)
        self._asyncio = sniffio.current_async_library() == "asyncio"

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await _lifespan(receive, send)
        # Anything else (websocket) is refused by returning without accepting it.

    async def _http(self, scope: Message, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        endpoint = path[len(self._prefix) :] if path.startswith(self._prefix) else ""
        if not endpoint:
            return await self._refuse(
                scope,
                receive,
                send,
                EndpointNotFound(f"no endpoint at {path!r}: POST {self._prefix}<endpoint>"),
            )
        if scope["method"] != "POST":
            return await self._refuse(
                scope,
                receive,
                send,
                ProtocolError(f"method {scope['method']} is not allowed: use POST"),
                status=405,
                extra=[(b"allow", b"POST")],
            )

        meta: dict[str, str] = {}
        deadline: float | None = None
        length = -1
        for name, value in scope["headers"]:
            if name.startswith(b"rp-"):
                if name.startswith(wire.META_PREFIX):
                    meta[wire.decode_meta_name(name[len(wire.META_PREFIX) :])] = (
                        wire.decode_meta_value(value)
                    )
                elif name == wire.HEADER_TIMEOUT:
                    try:
                        remaining = float(value)
                        if remaining != remaining:  # NaN
                            raise ValueError(value)
                    except ValueError:
                        return await self._refuse(
                            scope,
                            receive,
                            send,
                            ProtocolError(
                                f"header {wire.HEADER_TIMEOUT.decode()} must be a number of seconds"
                            ),
                        )
                    deadline = anyio.current_time() + remaining
            elif name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = -1
        if length > self._max_size:
            return await self._refuse(
                scope, receive, send, self._too_large(length), declared=length
            )

        payload = await self._read_body(scope, receive)
        if payload is None:
            return  # the client left before sending its request
        if isinstance(payload, _Oversize):
            return await self._refuse(
                scope,
                receive,
                send,
                self._too_large(payload.size),
                drained=True,
                extra=None if payload.drained else [(b"connection", b"close")],
            )

        request = Request(endpoint, payload, meta, deadline)
        responder = _Responder(send, self._max_size)
        cancel = anyio.CancelScope()
        # The handler runs here while a second task waits for the client to go away. That
        # task is the largest cost the app adds to a request, so it is the backend's own
        # (an anyio task group costs 1.5x a trio nursery and 6x an asyncio task).
        if self._asyncio:
            watcher = asyncio.get_running_loop().create_task(
                _watch_disconnect(receive, cancel, responder)
            )
            try:
                await self._dispatcher.handle(request, responder, cancel)
            finally:
                watcher.cancel()
        else:
            import trio

            stop = trio.CancelScope()
            trio.lowlevel.spawn_system_task(_watch_on_trio, receive, cancel, responder, stop)
            try:
                await self._dispatcher.handle(request, responder, cancel)
            finally:
                stop.cancel()

    def _too_large(self, size: int) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"the request body of {size} bytes exceeds the maximum message size of "
            f"{self._max_size} bytes"
        )

    async def _read_body(self, scope: Message, receive: Receive) -> bytes | _Oversize | None:
        """The whole body; or, once it is too large, how much was seen (the rest is read and
        dropped, within bounds); or ``None`` if the client disconnected."""
        message = await receive()
        if message["type"] != "http.request":
            return None
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            return body if len(body) <= self._max_size else _Oversize(len(body), True)
        parts = [body]
        size = len(body)
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk: bytes = message.get("body", b"")
            parts.append(chunk)
            size += len(chunk)
            if size > self._max_size:
                parts.clear()
                drained = True
                if message.get("more_body", False):
                    http2 = scope.get("http_version") == "2"
                    drained = await _discard_body(receive, None if http2 else self._discard_limit)
                return _Oversize(size, drained)
            if not message.get("more_body", False):
                return b"".join(parts)

    async def _refuse(
        self,
        scope: Message,
        receive: Receive,
        send: Send,
        error: RequestPlaneError,
        *,
        status: int | None = None,
        extra: list[tuple[bytes, bytes]] | None = None,
        drained: bool = False,
        declared: int = -1,
    ) -> None:
        """Answer with ``error``, after reading what the client still sends of its body.

        Answering first breaks both protocols in hypercorn: it closes an HTTP/1.1 connection
        whose response ends before its request (the client, still sending, then sees a reset
        instead of the answer), and on HTTP/2 a DATA frame arriving after the answer raises
        KeyError inside hypercorn, which on trio takes the whole server down. So HTTP/2 bodies
        are always read to their end; HTTP/1.1 ones up to a bound, beyond which the answer
        goes out at once with ``Connection: close`` (no one should wait for gigabytes).
        """
        headers = list(extra or [])
        if not drained:
            if scope.get("http_version") == "2":
                await _discard_body(receive, None)
            elif declared > self._discard_limit or not await _discard_body(
                receive, self._discard_limit
            ):
                headers.append((b"connection", b"close"))
        for message in _error_response(error, status=status, extra=headers):
            await send(message)


async def _discard_body(receive: Receive, limit: int | None) -> bool:
    """Read and drop the rest of the request body; ``False`` if it went past ``limit``
    bytes (and was left unread)."""
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return True
        size += len(message.get("body", b""))
        if limit is not None and size > limit:
            return False


async def _watch_disconnect(
    receive: Receive, cancel: anyio.CancelScope, responder: _Responder
) -> None:
    """Cancel the handler when the client resets the stream or closes the connection."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            responder.lost = True
            cancel.cancel()
            return


async def _watch_on_trio(
    receive: Receive, cancel: anyio.CancelScope, responder: _Responder, stop: Any
) -> None:
    # A system task (no nursery to join) that must never raise: it would end the trio run.
    with stop:
        try:
            await _watch_disconnect(receive, cancel, responder)
        except Exception:
            log.exception("watching an HTTP request for disconnection failed")


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
