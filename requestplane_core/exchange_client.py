"""``request()`` and ``stream()`` written once, over :class:`~requestplane_core.exchange.Exchange`.

What every transport's client used to repeat lives here: the counters, the configured
timeout turned into a deadline, the request size check, the cache of parsed addresses, the
error accounting and the closed state. A transport implements :meth:`ExchangeClient.parse_target`
and :meth:`ExchangeClient.open_exchange`, the part that moves bytes; it may override
:meth:`ExchangeClient.unary` with a faster path of its own and
:meth:`ExchangeClient.close_transport` to close its connections.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import ClassVar, Generic, TypeVar

import anyio
from anyio.abc import TaskGroup

from .address import Address
from .errors import ConnectionLost, DeadlineExceeded, PayloadTooLarge
from .exchange import Exchange, ExchangeEvent
from .exchange_stream import ExchangeResponseStream
from .transport import ClientStats, ResponseStream, TransportClient

__all__ = ["ExchangeClient", "collect"]

T = TypeVar("T")

# Addresses are few (one per endpoint and instance) but a caller could pass ever new ones;
# the cache starts over rather than grow without bound.
_TARGET_CACHE_SIZE = 1024


class ExchangeClient(TransportClient, Generic[T]):
    """A :class:`TransportClient` built on one primitive: :meth:`open_exchange`.

    ``T`` is the transport's parsed address (its "target"), cached per address so that a
    hot caller parses each address once.
    """

    #: The exchanges fail with DeadlineExceeded themselves once the deadline passes (a
    #: transport with its own timers); otherwise the client bounds each wait with a cancel
    #: scope and cancels the exchange.
    exchanges_keep_deadline: ClassVar[bool] = False
    #: ``request()`` of a streaming endpoint refuses the joined chunks once they outgrow
    #: ``max_message_size`` (each chunk is within it); otherwise only memory bounds them.
    limits_joined_responses: ClassVar[bool] = False

    def __init__(self, *, name: str, max_message_size: int, request_timeout: float | None) -> None:
        self.stats = ClientStats()
        self.transport_name = name
        self.max_message_size = max_message_size
        self.request_timeout = request_timeout
        self.task_group: TaskGroup | None = None
        self.closed = False
        self._targets: dict[Address | str, T] = {}
        self._exchanges: set[Exchange] = set()

    # -- what a transport implements -------------------------------------------------------

    @abc.abstractmethod
    def parse_target(self, address: Address | str) -> T:
        """Parse ``address`` (raising :class:`~requestplane_core.errors.ConfigError` for one
        this transport cannot call); the result is cached per address."""

    @abc.abstractmethod
    async def open_exchange(
        self,
        target: T,
        payload: bytes,
        headers: Mapping[str, str],
        deadline: float | None,
        timeout: float | None,
    ) -> Exchange:
        """Send the request and return its exchange. ``deadline`` is on the loop's clock
        (:func:`anyio.current_time`); what remains of it travels to the server as the
        handler's deadline. ``timeout`` is the budget it was computed from, for messages.
        The client has checked the payload's size and that it is not closed."""

    async def close_transport(self) -> None:
        """Close the transport's own resources (connections, background tasks); called
        once by :meth:`aclose`, after no new call can start."""

    def peer_of(self, target: T) -> str:
        """How messages name the callee of ``target``."""
        return str(target)

    # -- shared ----------------------------------------------------------------------------

    def start(self, task_group: TaskGroup) -> None:
        self.task_group = task_group

    def target(self, address: Address | str) -> T:
        target = self._targets.get(address)
        if target is None:
            target = self.parse_target(address)
            if len(self._targets) >= _TARGET_CACHE_SIZE:
                self._targets.clear()
            self._targets[address] = target
        return target

    def check_size(self, payload: bytes, size: int | None = None) -> None:
        """Refuse a request over the limit before anything is sent. ``size``: what counts
        against the limit, if more than the payload (a transport whose headers count)."""
        size = len(payload) if size is None else size
        if size > self.max_message_size:
            raise PayloadTooLarge(
                f"the request of {size} bytes is over the limit of "
                f"{self.max_message_size} bytes "
                f"(REQUESTPLANE_{self.transport_name.upper()}_MAX_MESSAGE_SIZE); not sent"
            )

    def check_open(self) -> None:
        if self.closed:
            raise ConnectionLost(f"the {self.transport_name} client is closed")

    def budget(self, timeout: float | None) -> float | None:
        """The seconds a call may take: the caller's, else the configured default."""
        return self.request_timeout if timeout is None else timeout

    async def request(
        self,
        address: Address | str,
        payload: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> bytes:
        stats = self.stats
        stats.requests += 1
        try:
            target = self._targets.get(address)
            if target is None:
                target = self.target(address)
            if len(payload) > self.max_message_size:
                self.check_size(payload)
            return await self.unary(
                target, payload, headers, self.request_timeout if timeout is None else timeout
            )
        except Exception:
            # Typed errors, and a caller's mistakes (a header the transport reserves).
            stats.errors += 1
            raise

    async def unary(
        self,
        target: T,
        payload: bytes,
        headers: Mapping[str, str] | None,
        timeout: float | None,
    ) -> bytes:
        """One unary call (a streamed answer joined), ``timeout`` already resolved. Errors are
        counted by :meth:`request`; a transport with a faster path overrides this."""
        deadline = None if timeout is None else anyio.current_time() + timeout
        if self.exchanges_keep_deadline or deadline is None:
            return await self._unary_over_exchange(
                target, payload, headers or {}, deadline, timeout
            )
        with anyio.move_on_at(deadline):
            return await self._unary_over_exchange(
                target, payload, headers or {}, deadline, timeout
            )
        raise DeadlineExceeded(
            f"no answer from {self.peer_of(target)} within the {timeout}s timeout"
        )

    async def _unary_over_exchange(
        self,
        target: T,
        payload: bytes,
        headers: Mapping[str, str],
        deadline: float | None,
        timeout: float | None,
    ) -> bytes:
        exchange = await self.open_call(target, payload, headers, deadline, timeout)
        try:
            limit = self.max_message_size if self.limits_joined_responses else None
            value = await collect(exchange, limit)
        finally:
            await self.release(exchange)
        self.stats.bytes_received += len(value)
        return value

    def stream(
        self,
        address: Address | str,
        payload: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> ResponseStream:
        return ExchangeResponseStream(self, address, payload, headers, timeout)

    async def open_call(
        self,
        target: T,
        payload: bytes,
        headers: Mapping[str, str],
        deadline: float | None,
        timeout: float | None,
    ) -> Exchange:
        """:meth:`open_exchange`, for a call the client tracks until :meth:`release`."""
        self.check_open()
        exchange = await self.open_exchange(target, payload, headers, deadline, timeout)
        if self.closed:  # closed while the exchange was being opened
            await exchange.aclose()
            self.check_open()
        self.stats.bytes_sent += len(payload)
        self._exchanges.add(exchange)
        return exchange

    async def release(self, exchange: Exchange) -> None:
        self._exchanges.discard(exchange)
        await exchange.aclose()

    def abandon(self, exchange: Exchange) -> None:
        """:meth:`release` where awaiting is impossible (a stream collected unclosed)."""
        self._exchanges.discard(exchange)
        exchange.abandon()

    async def aclose(self) -> None:
        self.closed = True
        await self.close_transport()
        exchanges, self._exchanges = self._exchanges, set()
        for exchange in exchanges:
            await exchange.aclose()  # a receive() in flight gets ConnectionLost


async def collect(exchange: Exchange, limit: int | None) -> bytes:
    """A unary answer, or a streamed one joined (refused once it outgrows ``limit``)."""
    kind, payload = await exchange.receive()
    if kind is ExchangeEvent.RESPONSE:
        return payload
    chunks: list[bytes] = []
    size = 0
    while kind is ExchangeEvent.CHUNK:
        size += len(payload)
        if limit is not None and size > limit:
            raise PayloadTooLarge(
                f"the joined streamed response of {size} bytes is over this client's limit "
                f"of {limit}"
            )
        chunks.append(payload)
        kind, payload = await exchange.receive()
    return b"".join(chunks)
