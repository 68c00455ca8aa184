"""The manager: the one place that reads the environment and picks the transport."""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from .config import ENV_PREFIX, CoreSettings, transport_env_prefix
from .errors import RequestPlaneError
from .instrumentation import InstrumentedClient, Observer
from .plugins import LoadedTransport, PluginRegistry, load_plugins
from .server import Server
from .settings import load_settings
from .shared_server import acquire_shared_server, release_shared_server
from .transport import TransportClient

if TYPE_CHECKING:
    from typing import Self

__all__ = ["RequestPlane", "installed_transports", "read_core_settings"]


def read_core_settings(
    environ: Mapping[str, str] | None = None, **overrides: object
) -> CoreSettings:
    """The core settings from ``environ`` (default: the process environment) and overrides."""
    env = os.environ if environ is None else environ
    given = {k: v for k, v in overrides.items() if v is not None}
    return load_settings(CoreSettings, prefix=ENV_PREFIX, environ=env, overrides=given)


def installed_transports(environ: Mapping[str, str] | None = None) -> PluginRegistry:
    """Every transport plugin (imported, for listing), honouring the plugin controls."""
    core = read_core_settings(environ)
    return load_plugins(allow=core.plugins, deny=core.disable_plugins, strict=core.strict_plugins)


class RequestPlane:
    """Servers and clients for the transport chosen by configuration.

    ::

        async with RequestPlane() as plane:          # REQUESTPLANE_MODE, default tcp
            server = await plane.server()
            address = await server.register("echo", echo)
            reply = await plane.client().request(address, b"hi")

    Configuration is read here and nowhere else: ``REQUESTPLANE_MODE`` and the core settings,
    then ``REQUESTPLANE_<MODE>_<SETTING>`` for the transport's own settings. Arguments win
    over the environment. Every malformed value raises :class:`ConfigError` at construction.
    """

    def __init__(
        self,
        mode: str | None = None,
        *,
        settings: Mapping[str, object] | None = None,
        drain_timeout: float | None = None,
        max_inflight: int | None = None,
        environ: Mapping[str, str] | None = None,
        plugins: PluginRegistry | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.core = read_core_settings(
            env, mode=mode, drain_timeout=drain_timeout, max_inflight=max_inflight
        )
        self.mode = self.core.mode
        if plugins is None:
            plugins = load_plugins(
                only=self.mode,
                allow=self.core.plugins,
                deny=self.core.disable_plugins,
                strict=self.core.strict_plugins,
            )
        self.plugins = plugins
        self.transport: LoadedTransport = plugins.transport(self.mode)
        self.settings: Any = load_settings(
            self.transport.spec.settings,
            prefix=transport_env_prefix(self.mode),
            environ=env,
            overrides=settings,
        )
        self._observer = Observer.create(plugins.manager)
        self._server: Server | None = None
        self._server_lock: anyio.Lock | None = None
        self._clients: list[TransportClient] = []
        self._tg: TaskGroup | None = None

    async def __aenter__(self) -> Self:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None
        try:
            with anyio.CancelScope(shield=True):
                await self.aclose()
        finally:
            self._tg.cancel_scope.cancel()
            tg, self._tg = self._tg, None
            # The body's exception is not the task group's: handed to it, it would come out
            # wrapped in an ExceptionGroup. Returning None re-raises it as it is.
            await tg.__aexit__(None, None, None)
        return None

    async def server(self) -> Server:
        """This event loop's server for the mode, started on first use and shared by every
        manager of the same mode (all endpoints of a process on one listener)."""
        if self._server is not None and not self._server.closed:
            return self._server
        if self._server_lock is None:
            self._server_lock = anyio.Lock()
        async with self._server_lock:
            if self._server is None or self._server.closed:
                self._server = await acquire_shared_server(
                    self.transport.spec,
                    self.settings,
                    drain_timeout=self.core.drain_timeout,
                    max_inflight=self.core.max_inflight,
                    hooks=self.plugins.manager.hook,
                )
        return self._server

    def client(self) -> TransportClient:
        """A new client of the mode, closed with the manager. Use it inside ``async with``."""
        if self._tg is None:
            raise RequestPlaneError("use the manager as `async with RequestPlane() as plane:`")
        client = self.transport.spec.client(self.settings)
        if self._observer is not None:
            client = InstrumentedClient(client, self.mode, self._observer)
        client.start(self._tg)
        self._clients.append(client)
        return client

    async def aclose(self) -> None:
        """Close this manager's clients and release its server (the last user drains it)."""
        clients, self._clients = self._clients, []
        for client in clients:
            await client.aclose()
        server, self._server = self._server, None
        if server is not None:
            await release_shared_server(server)
