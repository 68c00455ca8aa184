"""Reading a response: a plain body, a framed stream, or an error, as the caller's result."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

import anyio

from requestplane_core import (
    ClientStats,
    ConnectionLost,
    DeadlineExceeded,
    RequestPlaneError,
    ResponseStream,
    Unavailable,
)

from . import wire
from .exchange import Exchange, RetryElsewhere

__all__ = ["MAX_ATTEMPTS", "HttpResponseStream", "read_unary"]

MAX_ATTEMPTS = 3


def _cut_off() -> ConnectionLost:
    return ConnectionLost("the response stream ended without its end marker: it was cut off")


async def _raise_error_response(exchange: Exchange, max_size: int) -> None:
    body = await exchange.read_all(max_size)
    raise wire.error_from_response(exchange.status, exchange.error_header, body)


async def read_unary(exchange: Exchange, max_size: int) -> bytes:
    """The whole response; a streamed one joined; an error response raised as its type."""
    await exchange.wait_headers()
    if exchange.status != 200:
        await _raise_error_response(exchange, max_size)
    if exchange.content_type != wire.CONTENT_TYPE_STREAM:
        return await exchange.read_all(max_size)
    # Each chunk is limited to the max message size, their sum is not. Decoded as it arrives,
    # so that a chunk over this client's limit is refused on receipt, not after the whole body.
    decoder = wire.StreamDecoder(max_size)
    chunks: list[bytes] = []
    joined: bytes | None = None
    while True:
        data = await exchange.read_some()
        if not data:
            if joined is None:
                raise _cut_off()
            return joined
        if joined is not None:
            continue  # only the end of the body follows the end frame
        for kind, payload in decoder.feed(data):
            if kind == wire.FRAME_DATA:
                chunks.append(payload)
            elif kind == wire.FRAME_END:
                joined = b"".join(chunks)
                break
            else:
                raise wire.decode_error(payload)
        if decoder.error is not None and joined is None:
            raise decoder.error


class HttpResponseStream(ResponseStream):
    """Sends its request on first iteration; then yields chunks as frames arrive."""

    def __init__(
        self,
        open_exchange: Callable[[float | None], Awaitable[Exchange]],
        *,
        deadline: float | None,
        timeout: float | None,
        max_size: int,
        stats: ClientStats,
        payload_size: int,
    ) -> None:
        self._open_exchange = open_exchange
        self._deadline = deadline
        self._timeout = timeout
        self._max_size = max_size
        self._stats = stats
        self._payload_size = payload_size
        self._exchange: Exchange | None = None
        self._framed = False
        self._decoder = wire.StreamDecoder(max_size)
        self._frames: deque[tuple[bytes, bytes]] = deque()
        self._finished = False
        self._complete = False  # the response's last frame arrived

    async def __anext__(self) -> bytes:
        if self._finished:
            raise StopAsyncIteration
        try:
            with anyio.CancelScope(deadline=self._deadline or float("inf")):
                return await self._next()
            raise DeadlineExceeded(f"the stream did not complete within {self._timeout} s")
        except StopAsyncIteration:
            await self._end()
            raise
        except BaseException as exc:
            # Cancelled, timed out or broken: the server must stop the handler.
            if isinstance(exc, RequestPlaneError):
                self._stats.errors += 1
            await self._end()
            raise

    async def _next(self) -> bytes:
        exchange = self._exchange
        if exchange is None:
            exchange = await self._open()
            if not self._framed:
                body = await exchange.read_all(self._max_size)
                self._stats.bytes_received += len(body)
                self._complete = True
                await self._end()
                return body  # a unary response is a stream of one chunk
        elif not self._framed:
            raise StopAsyncIteration
        while True:
            while self._frames:
                kind, data = self._frames.popleft()
                if kind == wire.FRAME_DATA:
                    self._stats.bytes_received += len(data)
                    return data
                self._complete = True
                if kind == wire.FRAME_END:
                    raise StopAsyncIteration
                raise wire.decode_error(data)
            if self._decoder.error is not None:
                raise self._decoder.error  # after the chunks that came before it
            data = await exchange.read_some()
            if not data:
                raise _cut_off()
            self._frames.extend(self._decoder.feed(data))

    async def _open(self) -> Exchange:
        for _ in range(MAX_ATTEMPTS):
            exchange = await self._open_exchange(self._deadline)
            self._exchange = exchange
            try:
                await exchange.wait_headers()
                if exchange.status != 200:
                    await _raise_error_response(exchange, self._max_size)
            except RetryElsewhere:
                await exchange.close()
                self._exchange = None
                continue
            self._stats.bytes_sent += self._payload_size
            self._framed = exchange.content_type == wire.CONTENT_TYPE_STREAM
            return exchange
        raise Unavailable("the server refused the request on every connection tried")

    async def _end(self) -> None:
        self._finished = True
        exchange, self._exchange = self._exchange, None
        if exchange is None:
            return
        with anyio.CancelScope(shield=True):
            if self._complete:
                # The end of the HTTP body follows the last frame at once; reading up to it
                # keeps the connection reusable instead of aborting a finished exchange.
                with anyio.move_on_after(1):
                    try:
                        while await exchange.read_some():
                            pass
                    except RequestPlaneError:
                        pass
            await exchange.close()

    async def aclose(self) -> None:
        await self._end()
