"""A streamed answer over one :class:`~requestplane_core.exchange.Exchange`."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Protocol

import anyio

from .address import Address
from .errors import ConnectionLost, DeadlineExceeded, RequestPlaneError
from .exchange import Exchange, ExchangeEvent
from .transport import ClientStats, ResponseStream

__all__ = ["ExchangeResponseStream", "StreamOwner"]


class StreamOwner(Protocol):
    """What a stream needs of the client that made it (:class:`~.exchange_client.ExchangeClient`
    is one); stated here so that the stream does not import the client that imports it."""

    stats: ClientStats

    @property
    def exchanges_keep_deadline(self) -> bool: ...

    def target(self, address: Address | str) -> Any: ...

    def peer_of(self, target: Any) -> str: ...

    def check_size(self, payload: bytes, size: int | None = None) -> None: ...

    def budget(self, timeout: float | None) -> float | None: ...

    async def open_call(
        self,
        target: Any,
        payload: bytes,
        headers: Mapping[str, str],
        deadline: float | None,
        timeout: float | None,
    ) -> Exchange: ...

    async def release(self, exchange: Exchange) -> None: ...

    def abandon(self, exchange: Exchange) -> None: ...


class ExchangeResponseStream(ResponseStream):
    """Opens its exchange on the first ``__anext__`` (``stream()`` itself is synchronous);
    the timeout bounds everything from there to the last chunk.

    A stream that failed raises its error again (a fresh copy) if iterated again, so a short
    stream is never taken for a complete one; the error is counted once.
    """

    __slots__ = (
        "_address",
        "_client",
        "_deadline",
        "_exchange",
        "_failed",
        "_finished",
        "_headers",
        "_payload",
        "_peer",
        "_started",
        "_target",
        "_timeout",
    )

    def __init__(
        self,
        client: StreamOwner,
        address: Address | str,
        payload: bytes,
        headers: Mapping[str, str] | None,
        timeout: float | None,
    ) -> None:
        self._client = client
        self._address = address
        self._payload = payload
        self._headers = headers
        self._timeout = timeout
        self._deadline: float | None = None
        self._peer = ""
        self._started = False
        self._target: Any = None
        self._exchange: Exchange | None = None
        self._failed: RequestPlaneError | None = None
        self._finished = False

    async def __anext__(self) -> bytes:
        exchange = self._exchange
        if exchange is not None:
            ready = exchange.receive_ready()
            if ready is not None and ready[0] is ExchangeEvent.CHUNK:
                # The common case under load: the chunk is already here.
                self._client.stats.bytes_received += len(ready[1])
                return ready[1]
            if ready is not None:
                return await self._last(ready)
        elif self._failed is not None:
            raise copy.copy(self._failed)
        elif self._finished:
            raise StopAsyncIteration
        try:
            if not self._started:
                self._begin()
            if self._deadline is None or self._client.exchanges_keep_deadline:
                return await self._next()
            with anyio.move_on_at(self._deadline):
                return await self._next()
            await self._release()
            raise DeadlineExceeded(
                f"the stream from {self._peer} did not end within its {self._timeout}s timeout"
            )
        except RequestPlaneError as exc:
            if self._failed is None:
                self._failed = exc
                self._client.stats.errors += 1
            await self._release()
            raise
        except StopAsyncIteration:
            raise
        except Exception:
            # A caller's mistake (a header the transport reserves): counted, not kept.
            if self._failed is None:
                self._client.stats.errors += 1
            await self._release()
            raise
        except BaseException:
            # Cancelled (or worse): close, which cancels the handler on the server.
            if self._started:
                self._failed = ConnectionLost("the stream was cancelled by its caller")
            with anyio.CancelScope(shield=True):
                await self._release()
            raise

    async def _next(self) -> bytes:
        exchange = self._exchange
        if exchange is None:
            exchange = await self._open()
        event = await exchange.receive()
        if event[0] is ExchangeEvent.CHUNK:
            self._client.stats.bytes_received += len(event[1])
            return event[1]
        return await self._last(event)

    async def _last(self, event: tuple[ExchangeEvent, bytes]) -> bytes:
        await self._release()
        if event[0] is ExchangeEvent.RESPONSE:  # a unary endpoint: its response is the chunk
            self._client.stats.bytes_received += len(event[1])
            return event[1]
        raise StopAsyncIteration

    def _begin(self) -> None:
        self._started = True
        client = self._client
        client.stats.streams += 1
        self._target = client.target(self._address)
        self._peer = client.peer_of(self._target)
        client.check_size(self._payload)
        self._timeout = timeout = client.budget(self._timeout)
        if timeout is not None:
            self._deadline = anyio.current_time() + timeout

    async def _open(self) -> Exchange:
        payload, self._payload = self._payload, b""
        exchange = await self._client.open_call(
            self._target, payload, self._headers or {}, self._deadline, self._timeout
        )
        self._exchange = exchange
        return exchange

    async def _release(self) -> None:
        self._finished = True
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            await self._client.release(exchange)

    def __del__(self) -> None:
        # Dropped without aclose(), e.g. by `break` out of `async for` without `async with`:
        # still stop the handler on the server, where the transport can without awaiting.
        exchange = self._exchange
        if exchange is not None:
            try:
                self._client.abandon(exchange)
            except Exception:  # the loop may be gone already (interpreter shutdown)
                pass

    async def aclose(self) -> None:
        await self._release()
