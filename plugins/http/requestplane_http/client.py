"""The calling half: requests and streams over pooled HTTP/2 (and HTTP/1.1) connections."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from urllib.parse import quote

import anyio
from anyio.abc import TaskGroup
from hpack import NeverIndexedHeaderTuple

from requestplane_core import (
    Address,
    ClientStats,
    ConfigError,
    ConnectionLost,
    DeadlineExceeded,
    PayloadTooLarge,
    RequestPlaneError,
    ResponseStream,
    TransportClient,
    Unavailable,
)

from . import wire
from .exchange import Exchange, RetryElsewhere
from .h1_connection import H1Connection
from .pool import OriginPool
from .response import MAX_ATTEMPTS, HttpResponseStream, read_unary
from .settings import HttpSettings

__all__ = ["HttpClient"]

_TARGET_CACHE_SIZE = 1024


class _Target:
    """A parsed address: which pool, and the request line/pseudo headers for it."""

    __slots__ = ("authority", "h2_headers", "origin", "path", "pool_key", "text")

    def __init__(self, address: Address | str) -> None:
        parsed = Address.parse(address)
        if parsed.scheme not in ("http", "https"):
            raise ConfigError(
                f"{address!s} is not an HTTP transport address (http://host:port/path)"
            )
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
        self.text = str(parsed)
        self.pool_key = (parsed.scheme, parsed.host, port)
        self.origin = f"{host}:{port}"
        self.authority = self.origin.encode("ascii")
        self.path = ("/" + quote(parsed.path, safe="/")).encode("ascii")
        self.h2_headers: list[tuple[bytes, bytes]] = [
            (b":method", b"POST"),
            (b":scheme", parsed.scheme.encode()),
            (b":authority", self.authority),
            (b":path", self.path),
        ]


class HttpClient(TransportClient):
    def __init__(self, settings: HttpSettings) -> None:
        self._settings = settings
        self.stats = ClientStats()
        self._task_group: TaskGroup | None = None
        self._pools: dict[tuple[str, str, int], OriginPool] = {}
        self._targets: dict[Address | str, _Target] = {}
        self._tls_contexts: dict[str, ssl.SSLContext] = {}
        self._closed = False

    def start(self, task_group: TaskGroup) -> None:
        self._task_group = task_group

    def _group(self) -> TaskGroup:
        if self._task_group is None:
            raise RequestPlaneError(
                "the HTTP client is not started: use `async with client:` or client.start(tg)"
            )
        return self._task_group

    # -- public API ------------------------------------------------------------------------

    async def request(
        self,
        address: Address | str,
        payload: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> bytes:
        self.stats.requests += 1
        try:
            target = self._target(address)
            self._check_size(payload)
            self.stats.bytes_sent += len(payload)
            if timeout is None:
                timeout = self._settings.request_timeout
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
        except RequestPlaneError:
            self.stats.errors += 1
            raise
        self.stats.bytes_received += len(result)
        return result

    def stream(
        self,
        address: Address | str,
        payload: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> ResponseStream:
        self.stats.streams += 1
        try:
            target = self._target(address)
            self._check_size(payload)
        except RequestPlaneError:
            self.stats.errors += 1
            raise
        if timeout is None:
            timeout = self._settings.request_timeout
        deadline = None if timeout is None else anyio.current_time() + timeout

        async def open_exchange(deadline: float | None) -> Exchange:
            return await self._open(target, payload, headers, deadline, incremental=True)

        return HttpResponseStream(
            open_exchange,
            deadline=deadline,
            timeout=timeout,
            max_size=self._settings.max_message_size,
            stats=self.stats,
            payload_size=len(payload),
        )

    async def aclose(self) -> None:
        self._closed = True
        pools = list(self._pools.values())
        self._pools.clear()
        error = ConnectionLost("the client was closed")
        for pool in pools:
            await pool.aclose(error)

    # -- internals -------------------------------------------------------------------------

    def _target(self, address: Address | str) -> _Target:
        target = self._targets.get(address)
        if target is None:
            target = _Target(address)
            if len(self._targets) >= _TARGET_CACHE_SIZE:
                self._targets.clear()
            self._targets[address] = target
        return target

    def _check_size(self, payload: bytes) -> None:
        limit = self._settings.max_message_size
        if len(payload) > limit:
            raise PayloadTooLarge(
                f"the request payload of {len(payload)} bytes exceeds the maximum message size "
                f"of {limit} bytes (REQUESTPLANE_HTTP_MAX_MESSAGE_SIZE); it was not sent"
            )

    def _pool(self, target: _Target) -> OriginPool:
        pool = self._pools.get(target.pool_key)
        if pool is None:
            if self._closed:
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
        target: _Target,
        payload: bytes,
        headers: Mapping[str, str] | None,
        deadline: float | None,
    ) -> bytes:
        for _ in range(MAX_ATTEMPTS):
            exchange = await self._open(target, payload, headers, deadline, incremental=False)
            try:
                return await read_unary(exchange, self._settings.max_message_size)
            except RetryElsewhere:
                continue
            finally:
                await exchange.close()
        raise Unavailable("the server refused the request on every connection tried")

    async def _open(
        self,
        target: _Target,
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
        target: _Target,
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
