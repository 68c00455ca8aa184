"""The calling half: requests and streams over pooled HTTP/2 (and HTTP/1.1) connections.

``stream()``, the counters, the size check and the closed state come from the core's
ExchangeClient; ``request()`` keeps a path of its own (``unary``).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping

import anyio
from anyio.abc import TaskGroup
from hpack import NeverIndexedHeaderTuple

from requestplane_core import (
    Address,
    ConnectionLost,
    DeadlineExceeded,
    RequestPlaneError,
    Unavailable,
)
from requestplane_core.plugin_api import ExchangeClient

from . import wire
from .exchange import Exchange, RetryElsewhere
from .h1_connection import H1Connection
from .pool import OriginPool
from .response import MAX_ATTEMPTS, ResponseExchange, read_unary
from .settings import HttpSettings
from .target import Target

__all__ = ["HttpClient"]


class HttpClient(ExchangeClient[Target]):
    def __init__(self, settings: HttpSettings) -> None:
        super().__init__(
            name="http",
            max_message_size=settings.max_message_size,
            request_timeout=settings.request_timeout,
        )
        self._settings = settings
        self._pools: dict[tuple[str, str, int], OriginPool] = {}
        self._tls_contexts: dict[str, ssl.SSLContext] = {}

    def _group(self) -> TaskGroup:
        if self.task_group is None:
            raise RequestPlaneError(
                "the HTTP client is not started: use `async with client:` or client.start(tg)"
            )
        return self.task_group

    def parse_target(self, address: Address | str) -> Target:
        return Target(address)

    def peer_of(self, target: Target) -> str:
        return target.text

    async def unary(
        self,
        target: Target,
        payload: bytes,
        headers: Mapping[str, str] | None,
        timeout: float | None,
    ) -> bytes:
        # Its own path: the body is read whole (no incremental delivery), and a request the
        # server provably did not process is sent again on another connection.
        self.stats.bytes_sent += len(payload)
        if timeout is None:
            result = await self._unary(target, payload, headers, None)
        else:
            deadline = anyio.current_time() + timeout
            answer: bytes | None = None
            with anyio.CancelScope(deadline=deadline):
                answer = await self._unary(target, payload, headers, deadline)
            if answer is None:
                raise DeadlineExceeded(f"{target.text} did not answer within {timeout} s")
            result = answer
        self.stats.bytes_received += len(result)
        return result

    async def open_exchange(
        self,
        target: Target,
        payload: bytes,
        headers: Mapping[str, str],
        deadline: float | None,
        timeout: float | None,
    ) -> ResponseExchange:
        async def send() -> Exchange:
            return await self._open(target, payload, headers, deadline, incremental=True)

        return await ResponseExchange.open(send, self.max_message_size)

    async def close_transport(self) -> None:
        pools = list(self._pools.values())
        self._pools.clear()
        error = ConnectionLost("the client was closed")
        for pool in pools:
            await pool.aclose(error)

    def _pool(self, target: Target) -> OriginPool:
        pool = self._pools.get(target.pool_key)
        if pool is None:
            if self.closed:
                raise ConnectionLost("the client is closed")
            settings = self._settings
            pool = self._pools[target.pool_key] = OriginPool(
                target.origin,
                target.pool_key[1],
                target.pool_key[2],
                connect_timeout=settings.connect_timeout,
                idle_timeout=settings.idle_timeout,
                max_connections=settings.max_connections,
                http1_pool_size=settings.http1_pool_size,
                tls=self._tls_context if target.pool_key[0] == "https" else None,
                stats=self.stats,
                task_group=self._group,
            )
        return pool

    def _tls_context(self, alpn: str) -> ssl.SSLContext:
        context = self._tls_contexts.get(alpn)
        if context is None:
            from .tls import client_context

            context = self._tls_contexts[alpn] = client_context(self._settings, alpn)
        return context

    async def _unary(
        self,
        target: Target,
        payload: bytes,
        headers: Mapping[str, str] | None,
        deadline: float | None,
    ) -> bytes:
        for _ in range(MAX_ATTEMPTS):
            exchange = await self._open(target, payload, headers, deadline, incremental=False)
            try:
                return await read_unary(exchange, self.max_message_size)
            except RetryElsewhere:
                continue
            finally:
                await exchange.close()
        raise Unavailable("the server refused the request on every connection tried")

    async def _open(
        self,
        target: Target,
        payload: bytes,
        headers: Mapping[str, str] | None,
        deadline: float | None,
        *,
        incremental: bool,
    ) -> Exchange:
        """Send the request; return the exchange its response arrives on."""
        # Values that change from request to request are sent without HPACK indexing: indexing
        # them would only churn the compression table.
        extra: list[tuple[bytes, bytes]] = [
            NeverIndexedHeaderTuple(b"content-length", b"%d" % len(payload))
        ]
        if deadline is not None:
            timeout = wire.format_timeout(deadline - anyio.current_time())
            extra.append(NeverIndexedHeaderTuple(wire.HEADER_TIMEOUT, timeout))
        if headers:
            extra.extend(wire.encode_meta(headers))
        pool = self._pool(target)
        if len(payload) >= self._settings.http1_threshold:
            return await self._open_h1(pool, target, extra, payload)
        conn = await pool.h2()
        exchange = conn.open(target.h2_headers + extra, payload, incremental)
        await conn.flush()
        return exchange

    async def _open_h1(
        self,
        pool: OriginPool,
        target: Target,
        extra: list[tuple[bytes, bytes]],
        payload: bytes,
    ) -> Exchange:
        conn = await pool.h1()
        try:
            await conn.send(target.path, [(b"host", target.authority), *extra], payload)
        except BaseException:
            await pool.release_h1(conn)
            raise
        return _PooledH1(conn, pool)


class _PooledH1(Exchange):
    """An HTTP/1.1 exchange that gives its connection back to the pool when closed."""

    __slots__ = ("_conn", "_pool", "_released", "content_type", "error_header", "status")

    def __init__(self, conn: H1Connection, pool: OriginPool) -> None:
        self.status = 0
        self.content_type = b""
        self.error_header = False
        self._conn = conn
        self._pool = pool
        self._released = False

    async def wait_headers(self) -> None:
        conn = self._conn
        await conn.wait_headers()
        self.status = conn.status
        self.content_type = conn.content_type
        self.error_header = conn.error_header

    async def read_all(self, limit: int) -> bytes:
        return await self._conn.read_all(limit)

    async def read_some(self) -> bytes:
        return await self._conn.read_some()

    async def close(self) -> None:
        if not self._released:
            self._released = True
            with anyio.CancelScope(shield=True):
                await self._pool.release_h1(self._conn)
