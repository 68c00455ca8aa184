"""The listening half: hypercorn serving :class:`RpcApp` on the running backend."""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Mapping
from typing import Any

import anyio
import sniffio
from anyio.abc import TaskGroup

from requestplane_core import Address, ConfigError, Dispatch, TransportServer

from ._compat import (
    RESETS_PER_SECOND,
    apply_cancelled_read_fix,
    apply_hypercorn_fixes,
    apply_reason_phrases,
)
from .asgi_app import RpcApp
from .settings import HttpSettings

__all__ = ["HttpServer"]

log = logging.getLogger("requestplane.http")

# hypercorn logs through this logger (never payloads: its access log stays off); quiet unless
# something is wrong.
_hypercorn_log = logging.getLogger("requestplane.http.hypercorn")
_hypercorn_log.setLevel(logging.WARNING)

# hypercorn closes a connection after this many requests by default (1000), and its HTTP/2
# graceful close drops the answers to requests already in flight on that connection (its h2
# state machine refuses to send after its own GOAWAY). Connections therefore live as long as
# their clients keep them.
_UNLIMITED_REQUESTS = 2**62
_BACKLOG = 1024
_GRACEFUL_TIMEOUT = 5.0  # after the dispatcher drained there is only flushing left
# How long past hypercorn's own graceful close aclose() waits before cancelling the serve task:
# a backstop, should a hypercorn connection never finish (aclose must return).
_STOP_BACKSTOP = _GRACEFUL_TIMEOUT + 5.0


class HttpServer(TransportServer):
    def __init__(self, settings: HttpSettings) -> None:
        self._settings = settings
        self._socket: socket.socket | None = None
        self._port = 0
        self._stop = anyio.Event()
        self._stopped = anyio.Event()
        self._serving = anyio.CancelScope()
        self._started = False
        self._advertise = settings.advertise_host or _advertised_host(settings.host)

    async def start(self, dispatcher: Dispatch, task_group: TaskGroup) -> None:
        settings = self._settings
        config = _hypercorn_config(settings)  # first: it checks the TLS files
        apply_hypercorn_fixes()
        apply_cancelled_read_fix()
        apply_reason_phrases()
        app = RpcApp(dispatcher, settings.root_path, settings.max_message_size)
        sock = _bind(settings.host, settings.port)
        self._socket = sock
        self._port = sock.getsockname()[1]
        self._started = True
        task_group.start_soon(self._serve, app, config, sock)

    async def _serve(self, app: RpcApp, config: Any, sock: socket.socket) -> None:
        from hypercorn.app_wrappers import ASGIWrapper
        from hypercorn.config import Sockets

        # hypercorn is handed the bound socket (rather than a bind string) so that the port is
        # known before serving starts and so that this server, not hypercorn, closes it.
        sockets = Sockets([sock], [], []) if self._settings.tls else Sockets([], [sock], [])
        wrapped = ASGIWrapper(app)  # type: ignore[arg-type]
        try:
            with self._serving:
                # hypercorn can die of an error in one connection (on trio it takes the whole
                # server down); serve again on the same socket rather than stay silently dead.
                while not self._stop.is_set() and sock.fileno() != -1:
                    try:
                        await _worker_serve(wrapped, config, sockets, self._stop.wait)
                    except Exception:
                        log.exception(
                            "the HTTP server on port %d failed; serving again", self._port
                        )
        finally:
            sock.close()
            self._stopped.set()

    def address(self, endpoint: str) -> Address:
        root = self._settings.root_path.strip("/")
        path = f"{root}/{endpoint}" if root else endpoint
        scheme = "https" if self._settings.tls else "http"
        return Address(scheme, self._advertise, self._port, path)

    async def aclose(self) -> None:
        if not self._started:
            return
        self._stop.set()
        with anyio.move_on_after(_STOP_BACKSTOP):
            await self._stopped.wait()
            return
        log.warning(
            "the HTTP server on port %d did not stop within %.0f s; cancelling its connections",
            self._port,
            _STOP_BACKSTOP,
        )
        self._serving.cancel()
        await self._stopped.wait()

    def health_details(self) -> Mapping[str, Any]:
        return {
            "bound": f"{self._settings.host}:{self._port}",
            "scheme": "https" if self._settings.tls else "http",
            "protocols": ["h2", "http/1.1"],
            "root_path": self._settings.root_path,
        }


async def _worker_serve(app: Any, config: Any, sockets: Any, stop: Any) -> None:
    if sniffio.current_async_library() == "trio":
        from hypercorn.trio.run import worker_serve as trio_serve

        await trio_serve(app, config, sockets=sockets, shutdown_trigger=stop)
    else:
        from hypercorn.asyncio.run import worker_serve as asyncio_serve

        await asyncio_serve(app, config, sockets=sockets, shutdown_trigger=stop)


def _advertised_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return socket.gethostname()
    return host


def _bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"REQUESTPLANE_HTTP_HOST={host!r} does not resolve: {exc}") from None
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and host == "::":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(sockaddr)
        sock.listen(_BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        reason = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound: {exc}"
        raise ConfigError(f"the HTTP server address {host}:{port} {reason}") from None
    return sock


def _hypercorn_config(settings: HttpSettings) -> Any:
    from hypercorn.config import Config

    config = Config()
    config.bind = []  # the socket is handed over ready-bound
    config.errorlog = _hypercorn_log
    config.accesslog = None
    config.keep_alive_max_requests = _UNLIMITED_REQUESTS
    config.keep_alive_timeout = settings.keep_alive_timeout
    config.h2_max_concurrent_streams = settings.max_concurrent_streams
    setattr(config, RESETS_PER_SECOND, settings.max_resets_per_second)
    config.graceful_timeout = _GRACEFUL_TIMEOUT
    config.backlog = _BACKLOG
    config.include_server_header = False
    if settings.tls:
        from .tls import server_config

        server_config(config, settings)
    return config
