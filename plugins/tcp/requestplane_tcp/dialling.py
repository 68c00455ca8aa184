"""Connections to servers: opened once per target, shared by every call to it, read by a
task of the client until they break."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import TaskGroup

from requestplane_core import (
    ClientStats,
    ConnectionLost,
    DeadlineExceeded,
    ProtocolError,
    RequestPlaneError,
    Unavailable,
)

from .call_errors import ErrorFactory, closed_error, copier, lost
from .client_connection import ClientConnection
from .connection import FrameConnection, close_quietly
from .framing import PREAMBLE, FrameError, TruncatedFrame
from .settings import TcpSettings
from .target import Target
from .tls import tls_failure
from .tls_stream import tls_handshake

__all__ = ["Dialler"]

log = logging.getLogger("requestplane.tcp")

_Key = tuple[str, int | None]


class _Pending:
    """A connection being opened; concurrent callers to the same target share it."""

    __slots__ = ("conn", "error", "event")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.conn: ClientConnection | None = None
        self.error: ErrorFactory | None = None


class Dialler:
    """The client's connections, by (host, port), and the tasks that open and read them."""

    def __init__(
        self,
        settings: TcpSettings,
        ssl_context: ssl.SSLContext | None,
        limits: list[int],
        stats: ClientStats,
        on_first_open: Callable[[], object],
    ) -> None:
        self._settings = settings
        self._ssl = ssl_context
        self._limits = limits
        self._stats = stats
        self._on_first_open: Callable[[], object] | None = on_first_open
        self.task_group: TaskGroup | None = None
        self.conns: dict[_Key, ClientConnection] = {}
        self._pending: dict[_Key, _Pending] = {}
        self._runners: set[anyio.CancelScope] = set()
        self._runners_done: anyio.Event | None = None
        self.closed = False

    async def connect(self, target: Target, deadline: float | None) -> ClientConnection:
        """The connection to ``target``, opened if there is none (by the first caller; the
        others wait for it)."""
        if self.closed:
            raise ConnectionLost("the tcp client is closed")
        if self.task_group is None:
            raise RequestPlaneError(
                "the tcp client is not started: use `async with client:` or client.start(tg)"
            )
        pending = self._pending.get(target.key)
        if pending is None:
            pending = self._pending[target.key] = _Pending()
            # The connection is opened (and then read) by a task of the client, so that a
            # caller who gives up does not abort it for the others waiting on it.
            self.task_group.start_soon(self._open, target, pending)
        if deadline is None:
            await pending.event.wait()
        else:
            with anyio.CancelScope(deadline=deadline):
                await pending.event.wait()
            if not pending.event.is_set():
                raise DeadlineExceeded(f"no connection to {target.peer} before the deadline")
        if pending.error is not None:
            raise pending.error()
        assert pending.conn is not None
        return pending.conn

    async def _open(self, target: Target, pending: _Pending) -> None:
        if self._on_first_open is not None:
            # With the first connection rather than the first deadline: the client's set of
            # background tasks (trio's timer task) is complete once it has connected.
            self._on_first_open()
            self._on_first_open = None
        scope = anyio.CancelScope()
        self._runners.add(scope)
        try:
            with scope:
                try:
                    conn = await self._handshake(target, pending)
                finally:
                    # Settled either way: from now on callers find the connection in conns,
                    # or, once it breaks, open a new one.
                    if self._pending.get(target.key) is pending:
                        del self._pending[target.key]
                    if not pending.event.is_set():
                        pending.error = closed_error
                        pending.event.set()
                if conn is not None:
                    await self._run(conn)
        finally:
            self._runners.discard(scope)
            if self._runners_done is not None and not self._runners:
                self._runners_done.set()

    async def _handshake(self, target: Target, pending: _Pending) -> ClientConnection | None:
        host, port = target.key
        assert port is not None
        settings = self._settings
        fc: FrameConnection | None = None
        error: RequestPlaneError
        try:
            with anyio.fail_after(settings.connect_timeout):
                stream: Any = await anyio.connect_tcp(host, port)
                try:
                    if self._ssl is not None:
                        stream = await tls_handshake(
                            stream,
                            self._ssl,
                            server_side=False,
                            hostname=settings.tls_server_name or host,
                        )
                    fc = FrameConnection(stream, target.peer, self._limits)
                    await stream.send(PREAMBLE)
                    await fc.read_preamble()
                except BaseException:
                    await close_quietly(stream)
                    raise
        # No request was sent on a connection that failed to open, so those failures are
        # Unavailable (retriable: another instance may serve it), unless the peer is
        # misconfigured or speaks something else (ProtocolError: retrying cannot help).
        except TimeoutError:
            error = Unavailable(
                f"could not connect to {target.peer} within {settings.connect_timeout}s"
            )
        except FrameError as exc:
            error = ProtocolError(f"{target.peer} is not a compatible server: {exc}")
        except ssl.SSLError as exc:
            error = tls_failure(target.peer, exc)
        except anyio.BrokenResourceError as exc:
            cause = exc.__cause__
            error = (
                tls_failure(target.peer, cause)
                if isinstance(cause, ssl.SSLError)
                else Unavailable(f"could not connect to {target.peer}: {cause or exc!r}")
            )
        except anyio.EndOfStream:
            error = ProtocolError(
                f"{target.peer} closed the connection during the handshake (is it a "
                "requestplane-tcp server, with the same TLS setting?)"
            )
        except OSError as exc:
            error = Unavailable(f"could not connect to {target.peer}: {exc.strerror or exc}")
        else:
            assert fc is not None
            conn = ClientConnection(self._settings.max_message_size, target.key, fc)
            if self.closed:
                await fc.aclose()
                pending.error = closed_error
                pending.event.set()
                return None
            self.conns[target.key] = conn
            self._stats.open_connections += 1
            pending.conn = conn
            pending.event.set()
            return conn
        pending.error = copier(error)
        pending.event.set()
        return None

    async def _run(self, conn: ClientConnection) -> None:
        fc = conn.fc
        try:
            with conn.scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._write, conn, tg.cancel_scope)
                    try:
                        await fc.run_reader(conn)
                        conn.reason = conn.reason or lost(fc.peer, None)
                    except TruncatedFrame as exc:
                        # The server vanished (killed, say, with its send buffer full):
                        # the connection is lost, like one lost between frames.
                        log.info("tcp connection to %s lost: %s", fc.peer, exc)
                        conn.reason = conn.reason or copier(ConnectionLost(f"{fc.peer}: {exc}"))
                    except FrameError as exc:
                        log.warning("tcp connection to %s closed: %s", fc.peer, exc)
                        conn.reason = copier(ProtocolError(f"{fc.peer} broke the protocol: {exc}"))
                    except ssl.SSLError as exc:
                        conn.reason = copier(tls_failure(fc.peer, exc))
                    except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                        cause = exc.__cause__
                        conn.reason = conn.reason or (
                            copier(tls_failure(fc.peer, cause))
                            if isinstance(cause, ssl.SSLError)
                            else lost(fc.peer, exc)
                        )
                    except Exception as exc:
                        # A bug here must cost this connection only, never the task group
                        # the client was started in.
                        log.exception("tcp connection to %s failed", fc.peer)
                        conn.reason = lost(fc.peer, exc)
                    # Fail the calls now, not after the writer has wound down: they are lost.
                    self._detach(conn)
                    tg.cancel_scope.cancel()
        finally:
            self._detach(conn)
            await fc.aclose()

    @staticmethod
    async def _write(conn: ClientConnection, scope: anyio.CancelScope) -> None:
        try:
            await conn.fc.run_writer()
        except Exception as exc:
            conn.reason = conn.reason or lost(conn.fc.peer, exc)
        finally:
            scope.cancel()

    def _detach(self, conn: ClientConnection) -> None:
        """Take a broken connection out of service and fail what was in flight on it."""
        if self.conns.get(conn.key) is conn:
            del self.conns[conn.key]
            self._stats.open_connections -= 1
        if conn.usable:
            reason = conn.reason or closed_error
            if conn.goodbye is not None:
                # The server said why it closed: that beats "connection closed".
                reason = copier(conn.goodbye)
            conn.fail_all(reason)

    async def aclose(self) -> None:
        """Fail every call in flight and every connection being opened, and stop the tasks
        reading connections (waiting for them a bounded time)."""
        self.closed = True
        for conn in list(self.conns.values()):
            conn.fail_all(closed_error)
        for pending in list(self._pending.values()):
            if not pending.event.is_set():
                pending.error = closed_error
                pending.event.set()
        if self._runners:
            self._runners_done = anyio.Event()
            for scope in list(self._runners):
                scope.cancel()
            with anyio.move_on_after(5):
                await self._runners_done.wait()
