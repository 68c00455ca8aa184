"""Reading a response: a plain body, a framed stream, or an error, as the caller's result."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

import anyio

from requestplane_core import ConnectionLost, RequestPlaneError, Unavailable
from requestplane_core.plugin_api import Exchange as CoreExchange
from requestplane_core.plugin_api import ExchangeEvent

from . import wire
from .exchange import Exchange, RetryElsewhere

__all__ = ["MAX_ATTEMPTS", "ResponseExchange", "read_unary"]

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


class ResponseExchange(CoreExchange):
    """A streamed call as the core's Exchange: opened (and retried elsewhere while the
    server provably did not process it) until its headers are in, then read frame by frame.
    A plain body (a unary endpoint) is the RESPONSE event."""

    __slots__ = ("_complete", "_decoder", "_exchange", "_framed", "_frames", "_max_size")

    def __init__(self, exchange: Exchange, max_size: int) -> None:
        self._exchange: Exchange | None = exchange
        self._max_size = max_size
        self._framed = exchange.content_type == wire.CONTENT_TYPE_STREAM
        self._decoder = wire.StreamDecoder(max_size)
        self._frames: deque[tuple[bytes, bytes]] = deque()
        self._complete = False  # the response's last frame arrived

    @classmethod
    async def open(
        cls, open_exchange: Callable[[], Awaitable[Exchange]], max_size: int
    ) -> ResponseExchange:
        for _ in range(MAX_ATTEMPTS):
            exchange = await open_exchange()
            try:
                await exchange.wait_headers()
                if exchange.status != 200:
                    await _raise_error_response(exchange, max_size)
            except RetryElsewhere:
                await exchange.close()
                continue
            except BaseException:
                await exchange.close()
                raise
            return cls(exchange, max_size)
        raise Unavailable("the server refused the request on every connection tried")

    async def receive(self) -> tuple[ExchangeEvent, bytes]:
        exchange = self._exchange
        if exchange is None:
            raise ConnectionLost("the exchange was closed")
        if not self._framed:
            body = await exchange.read_all(self._max_size)
            self._complete = True
            return ExchangeEvent.RESPONSE, body  # a unary response is a stream of one chunk
        while True:
            while self._frames:
                kind, data = self._frames.popleft()
                if kind == wire.FRAME_DATA:
                    return ExchangeEvent.CHUNK, data
                self._complete = True
                if kind == wire.FRAME_END:
                    return ExchangeEvent.END, b""
                raise wire.decode_error(data)
            if self._decoder.error is not None:
                raise self._decoder.error  # after the chunks that came before it
            data = await exchange.read_some()
            if not data:
                raise _cut_off()
            self._frames.extend(self._decoder.feed(data))

    async def aclose(self) -> None:
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
