"""The manager: the one place that reads the environment and picks the transport."""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from .config import (
    ENV_PREFIX,
    CoreSettings,
    discovery_env_prefix,
    parse_labels,
    transport_env_prefix,
)
from .discovery import DiscoveryBackend
from .errors import ConfigError, RequestPlaneError
from .instrumentation import InstrumentedClient
from .observer import Observer
from .plugins import DISCOVERY_OFF, LoadedDiscovery, LoadedTransport, PluginRegistry, load_plugins
from .publisher import PublishSettings
from .router import Router
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
    then ``REQUESTPLANE_<MODE>_<SETTING>`` for the transport's own settings and
    ``REQUESTPLANE_DISCOVERY_<BACKEND>_<SETTING>`` for the discovery backend's
    (``REQUESTPLANE_DISCOVERY``, default ``file``). Arguments win over the environment. Every
    malformed value raises :class:`ConfigError` at construction.
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
        discovery: str | None = None,
        discovery_settings: Mapping[str, object] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self._env = env
        self.core = read_core_settings(
            env,
            mode=mode,
            drain_timeout=drain_timeout,
            max_inflight=max_inflight,
            discovery=discovery,
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
        #: The observing hooks, decided once: handed to the server and to every client.
        self.hooks = Observer(plugins.manager.hook)
        self.discovery_backend: LoadedDiscovery | None = None
        self.discovery_settings: Any = None
        self._publish: PublishSettings | None = None
        if self.core.discovery != DISCOVERY_OFF:
            self.discovery_backend = plugins.discovery_backend(self.core.discovery)
            self.discovery_settings = load_settings(
                self.discovery_backend.spec.settings,
                prefix=discovery_env_prefix(self.core.discovery),
                environ=env,
                overrides=discovery_settings,
            )
            published = parse_labels(self.core.labels)
            published.update(labels or {})
            self._publish = PublishSettings(
                self.discovery_backend.spec, self.discovery_settings, published
            )
        self._discovery: DiscoveryBackend | None = None
        self._other_transports: dict[str, tuple[LoadedTransport, Any]] = {}
        self._server: Server | None = None
        self._server_lock: anyio.Lock | None = None
        self._clients: list[TransportClient] = []
        self._routers: list[Router] = []
        self._scheme_clients: dict[str, TransportClient] = {}
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
                    hooks=self.hooks,
                    publish=self._publish,
                )
        return self._server

    def _task_group(self) -> TaskGroup:
        if self._tg is None:
            raise RequestPlaneError("use the manager as `async with RequestPlane() as plane:`")
        return self._tg

    def client(self, mode: str | None = None) -> TransportClient:
        """A new client of the mode (or of another installed transport, configured from its
        own variables), closed with the manager. Use it inside ``async with``."""
        tg = self._task_group()
        if mode is None or mode == self.mode:
            loaded, settings = self.transport, self.settings
        else:
            loaded, settings = self._transport_named(mode)
        client = loaded.spec.client(settings)
        if self.hooks.requests:
            client = InstrumentedClient(client, loaded.spec.name, self.hooks)
        client.start(tg)
        self._clients.append(client)
        return client

    def _transport_named(self, mode: str) -> tuple[LoadedTransport, Any]:
        found = self._other_transports.get(mode)
        if found is None:
            registry = load_plugins(
                only=mode,
                allow=self.core.plugins,
                deny=self.core.disable_plugins,
                strict=self.core.strict_plugins,
            )
            loaded = registry.transport(mode)
            settings = load_settings(
                loaded.spec.settings, prefix=transport_env_prefix(mode), environ=self._env
            )
            found = self._other_transports[mode] = (loaded, settings)
        return found

    def mode_for_scheme(self, scheme: str) -> str:
        """The transport whose client speaks addresses of ``scheme`` (``https`` -> http)."""
        if scheme in self.transport.spec.address_schemes:
            return self.mode
        registry = load_plugins(
            allow=self.core.plugins, deny=self.core.disable_plugins, strict=False
        )
        for name, loaded in registry.transports.items():
            if scheme in loaded.spec.address_schemes:
                return name
        return scheme

    def router(
        self,
        name: str,
        *,
        route: str | None = None,
        labels: Mapping[str, str] | None = None,
        retries: int | None = None,
        inhibit: float | None = None,
    ) -> Router:
        """Calls to the endpoint ``name`` across its live instances, found through discovery
        and kept current by a watch; closed with the manager.

        ``route`` (default ``REQUESTPLANE_ROUTE``) picks the instance per call; ``labels``
        keeps only instances whose metadata has those values; ``retries`` and ``inhibit``
        default to ``REQUESTPLANE_ROUTE_RETRIES`` and ``REQUESTPLANE_ROUTE_INHIBIT``.
        """
        router = Router(
            name,
            self.discovery(),
            self._client_for_scheme,
            self._task_group(),
            route=self.core.route if route is None else route,
            labels=labels,
            retries=self.core.route_retries if retries is None else retries,
            inhibit=self.core.route_inhibit if inhibit is None else inhibit,
            observed=self.hooks.requests,
        )
        self._routers.append(router)
        return router

    def _client_for_scheme(self, scheme: str) -> TransportClient:
        # One client per transport for every router of this manager: connections are shared.
        client = self._scheme_clients.get(scheme)
        if client is None:
            client = self._scheme_clients[scheme] = self.client(self.mode_for_scheme(scheme))
        return client

    def discovery(self) -> DiscoveryBackend:
        """This manager's discovery backend, for listing and watching (a server publishes
        through a backend of its own). ConfigError when discovery is off."""
        tg = self._task_group()
        if self._discovery is None:
            if self.discovery_backend is None:
                raise ConfigError(
                    "discovery is off (REQUESTPLANE_DISCOVERY=none): set REQUESTPLANE_DISCOVERY"
                    " to a discovery backend to find instances by name"
                )
            backend = self.discovery_backend.spec.backend(self.discovery_settings)
            backend.start(tg)
            self._discovery = backend
        return self._discovery

    async def aclose(self) -> None:
        """Close this manager's clients and release its server (the last user drains it)."""
        routers, self._routers = self._routers, []
        for router in routers:
            await router.aclose()
        clients, self._clients = self._clients, []
        self._scheme_clients.clear()
        for client in clients:
            await client.aclose()
        discovery, self._discovery = self._discovery, None
        if discovery is not None:
            await discovery.aclose()
        server, self._server = self._server, None
        if server is not None:
            await release_shared_server(server)
