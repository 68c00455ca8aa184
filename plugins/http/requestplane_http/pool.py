"""The client's connections to one server: HTTP/2 ones shared by all requests, and idle
HTTP/1.1 ones kept for the next large request."""

from __future__ import annotations

import ssl
from collections.abc import Callable

import anyio
from anyio.abc import ByteStream, TaskGroup
from anyio.streams.tls import TLSAttribute

from requestplane_core import (
    ClientStats,
    ConnectionLost,
    ProtocolError,
    RequestPlaneError,
    Unavailable,
    error_from_wire,
)

from .capacity import Capacity
from .errors import REFUSED_AFTER_HANDSHAKE, describe_io_error
from .h1_connection import H1Connection
from .h2_connection import H2Connection

__all__ = ["OriginPool"]


class _Attempt:
    """One connection attempt that every request waiting for a connection shares, so that
    64 requests arriving at once open one connection, and all learn why if it fails."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.error: RequestPlaneError | None = None


class OriginPool:
    def __init__(
        self,
        origin: str,
        host: str,
        port: int,
        *,
        connect_timeout: float,
        idle_timeout: float,
        max_connections: int,
        http1_pool_size: int,
        tls: Callable[[str], ssl.SSLContext] | None,
        stats: ClientStats,
        task_group: Callable[[], TaskGroup],
    ) -> None:
        self.origin = origin
        self._host = host
        self._port = port
        self._connect_timeout = connect_timeout
        self._idle_timeout = idle_timeout
        self._max_connections = max_connections
        self._h1_pool_size = http1_pool_size
        self._tls = tls
        self._stats = stats
        self._task_group = task_group
        self._h2: list[H2Connection] = []
        self._connecting: _Attempt | None = None
        self._capacity = Capacity()
        self._h1_idle: list[H1Connection] = []
        self._h1_active: set[H1Connection] = set()
        self._closed: RequestPlaneError | None = None

    # -- HTTP/2 ----------------------------------------------------------------------------

    async def h2(self) -> H2Connection:
        """A connection with room for one more request, opening one if needed."""
        waited = False
        while True:
            if self._closed is not None:
                raise error_from_wire(self._closed.code, self._closed.message)
            for conn in self._h2:
                if conn.available:
                    idle_since = conn.idle_since
                    if (
                        idle_since is not None
                        and anyio.current_time() - idle_since > self._idle_timeout
                    ):
                        # Close it before the server's keep-alive timeout does, so no request
                        # is ever sent on a connection the server is closing.
                        conn.close(ConnectionLost("idle connection closed"))
                        break
                    return conn
            else:
                attempt = self._connecting
                if attempt is not None:
                    await attempt.done.wait()
                    if attempt.error is not None:
                        raise error_from_wire(attempt.error.code, attempt.error.message)
                elif sum(not c.draining for c in self._h2) < self._max_connections:
                    await self._connect_h2()
                else:
                    await self._capacity.wait(again=waited)
                    waited = True

    async def _connect_h2(self) -> None:
        attempt = self._connecting = _Attempt()
        try:
            stream = await self._open("h2")
            conn = H2Connection(stream, self.origin, self._changed, tls=self._tls is not None)
            self._stats.open_connections += 1
            try:
                with anyio.fail_after(self._connect_timeout):
                    await conn.start(self._task_group())
            except BaseException as exc:
                conn.close(ConnectionLost(f"{self.origin} did not start HTTP/2"))
                self._stats.open_connections -= 1
                if isinstance(exc, TimeoutError):
                    raise ConnectionLost(
                        f"{self.origin} sent no HTTP/2 settings within "
                        f"{self._connect_timeout} s: is it an HTTP/2 server?"
                    ) from None
                if self._tls is not None and type(exc) is ConnectionLost:
                    raise ConnectionLost(exc.message + REFUSED_AFTER_HANDSHAKE) from None
                raise
            self._h2.append(conn)
        except RequestPlaneError as exc:
            attempt.error = exc
            raise
        finally:
            self._connecting = None
            attempt.done.set()

    def _changed(self, conn: H2Connection) -> None:
        if conn.error is not None and conn in self._h2:
            self._h2.remove(conn)
            self._stats.open_connections -= 1
        if conn.error is not None or conn.draining:
            self._capacity.wake_all()  # to connect again, or to learn why they cannot
        elif conn.available:
            self._capacity.wake(conn.free_streams)

    # -- HTTP/1.1 --------------------------------------------------------------------------

    async def h1(self) -> H1Connection:
        if self._closed is not None:
            raise error_from_wire(self._closed.code, self._closed.message)
        now = anyio.current_time()
        while self._h1_idle:
            conn = self._h1_idle.pop()
            if conn.alive() and now - (conn.idle_since or now) <= self._idle_timeout:
                self._h1_active.add(conn)
                return conn
            await self._drop_h1(conn)
        stream = await self._open("http/1.1")
        conn = H1Connection(stream, self.origin, tls=self._tls is not None)
        self._stats.open_connections += 1
        self._h1_active.add(conn)
        return conn

    async def release_h1(self, conn: H1Connection) -> None:
        await conn.close()
        self._h1_active.discard(conn)
        if conn.reusable and self._closed is None and len(self._h1_idle) < self._h1_pool_size:
            self._h1_idle.append(conn)
        else:
            await self._drop_h1(conn)

    async def _drop_h1(self, conn: H1Connection) -> None:
        await conn._abort()
        if not conn.dropped:
            conn.dropped = True
            self._stats.open_connections -= 1

    # -- both ------------------------------------------------------------------------------

    async def _open(self, alpn: str) -> ByteStream:
        context = self._tls(alpn) if self._tls is not None else None
        try:
            with anyio.fail_after(self._connect_timeout):
                if context is None:
                    stream: ByteStream = await anyio.connect_tcp(self._host, self._port)
                else:
                    stream = await anyio.connect_tcp(
                        self._host,
                        self._port,
                        ssl_context=context,
                        tls_hostname=self._host,
                        tls_standard_compatible=False,
                    )
        except TimeoutError:
            # Nothing was sent: retrying (here or on another instance) is safe.
            raise Unavailable(
                f"connecting to {self.origin} timed out after {self._connect_timeout} s"
            ) from None
        except (ssl.SSLError, anyio.BrokenResourceError) as exc:
            # A TLS refusal is a configuration problem: retrying will not help.
            raise ConnectionLost(describe_io_error(exc, self.origin, connecting=True)) from None
        except OSError as exc:
            raise Unavailable(describe_io_error(exc, self.origin, connecting=True)) from None
        if context is not None:
            agreed = stream.extra(TLSAttribute.alpn_protocol, None)
            if agreed not in (alpn, None) or (alpn == "h2" and agreed != "h2"):
                await anyio.aclose_forcefully(stream)
                raise ProtocolError(
                    f"the server at {self.origin} does not speak {alpn} over TLS (ALPN {agreed!r})"
                )
        return stream

    async def aclose(self, error: RequestPlaneError) -> None:
        self._closed = error
        conns = list(self._h2)
        for conn in conns:
            conn.close(error)
        for h1 in [*self._h1_idle, *self._h1_active]:
            await self._drop_h1(h1)
        self._h1_idle.clear()
        self._h1_active.clear()
        with anyio.move_on_after(5, shield=True):
            for conn in conns:
                await conn.wait_closed()
        self._capacity.wake_all()
