"""A running server: one transport listener, its endpoint table, and its shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import attrs

from .address import Address
from .dispatch import Dispatcher
from .errors import EndpointNotFound
from .observer import Observer
from .publisher import Publisher, PublishSettings
from .request import Handler
from .transport import TransportServer, TransportSpec

__all__ = ["Health", "Server", "serve"]


@attrs.frozen
class Health:
    """A snapshot of a server's state."""

    transport: str
    serving: bool
    draining: bool
    inflight: int
    endpoints: tuple[str, ...]
    details: Mapping[str, Any] = attrs.field(factory=dict)
    #: The instance id this server publishes its endpoints under (None: discovery is off).
    instance: str | None = None


class Server:
    """Serves endpoints over one transport. Obtain it from :meth:`RequestPlane.server`
    (shared by every manager of the mode in this event loop) or from :func:`serve`."""

    def __init__(
        self,
        transport_name: str,
        transport: TransportServer,
        dispatcher: Dispatcher,
        drain_timeout: float,
        publisher: Publisher | None = None,
    ) -> None:
        self.transport = transport_name
        self._transport = transport
        self._dispatcher = dispatcher
        self._drain_timeout = drain_timeout
        self._publisher = publisher
        self._closing = False
        self._closed = anyio.Event()

    async def register(self, name: str, handler: Handler) -> Address:
        """Serve ``handler`` as endpoint ``name`` and return its address.

        With discovery on, the endpoint is also published as an instance of ``name`` (1-3
        segments joined by ``/``; anything else is a :class:`ConfigError`). Registering a
        name that is already served raises ``ValueError``.
        """
        publisher = self._publisher
        if publisher is not None:
            publisher.check(name)
        self._dispatcher.register(name, handler)
        added = False
        try:
            await self._transport.endpoint_added(name)
            added = True
            if publisher is not None:
                await publisher.publish(name, self._transport.instance_address(name))
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._dispatcher.unregister(name, 0)
                if added:
                    await self._transport.endpoint_removed(name)
            raise
        return self._transport.address(name)

    async def unregister(self, name: str) -> None:
        """Stop serving ``name``: withdraw it from discovery, then new requests get
        ``Unavailable`` while in-flight ones finish within the drain timeout; those still
        running then are cancelled."""
        if name not in self._dispatcher.endpoints:
            raise EndpointNotFound(f"endpoint {name!r} is not registered on this server")
        if self._publisher is not None:
            await self._publisher.withdraw(name)
        await self._dispatcher.unregister(name, self._drain_timeout)
        await self._transport.endpoint_removed(name)

    @property
    def instance_id(self) -> str | None:
        """The id this server publishes its endpoints under; None when discovery is off."""
        return None if self._publisher is None else self._publisher.instance_id

    def address(self, name: str) -> Address:
        if name not in self._dispatcher.endpoints:
            raise EndpointNotFound(f"endpoint {name!r} is not registered on this server")
        return self._transport.address(name)

    @property
    def endpoints(self) -> list[str]:
        return self._dispatcher.endpoints

    def health(self) -> Health:
        return Health(
            transport=self.transport,
            serving=not self._closing,
            draining=self._dispatcher.draining,
            inflight=self._dispatcher.inflight,
            endpoints=tuple(self._dispatcher.endpoints),
            details=dict(self._transport.health_details()),
            instance=self.instance_id,
        )

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def _linger(self, grace: float) -> None:
        """Keep the connections open after a withdrawal and the drain while callers may not
        have heard of it: for ``grace`` seconds once any request arrived, and on while
        requests still arrive (at most the drain timeout), answering them ``Unavailable``
        (which a router retries elsewhere). Closed at once instead, a caller that picked
        this instance just before the withdrawal reached it would see ``ConnectionLost``
        (the handler may have run: not retried)."""
        if grace <= 0 or self._dispatcher.arrivals == 0:
            return
        with anyio.move_on_after(self._drain_timeout):
            while True:
                seen = self._dispatcher.arrivals
                await anyio.sleep(grace)
                if self._dispatcher.arrivals == seen:
                    return

    async def aclose(self) -> None:
        """Withdraw every endpoint from discovery, drain (new requests get ``Unavailable``;
        in-flight ones get the drain timeout to finish, then are cancelled), keep refusing
        while callers that have not seen the withdrawal still send (see :meth:`_linger`),
        and close the listener. Safe to call more than once."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        try:
            with anyio.CancelScope(shield=True):
                grace = 0.0
                if self._publisher is not None and self._publisher.published:
                    await self._publisher.withdraw_all()
                    grace = self._publisher.backend.withdraw_grace
                await self._dispatcher.drain(self._drain_timeout)
                await self._linger(grace)
                await self._transport.aclose()
                if self._publisher is not None:
                    await self._publisher.aclose()
        finally:
            self._closed.set()


@asynccontextmanager
async def serve(
    spec: TransportSpec[Any],
    settings: object,
    *,
    drain_timeout: float = 10.0,
    max_inflight: int = 0,
    hooks: Observer | None = None,
    publish: PublishSettings | None = None,
) -> AsyncIterator[Server]:
    """Run one server of ``spec`` for the duration of the ``async with`` block.

    This is the structured way to own a server (tests, embedding); :class:`RequestPlane`
    uses it underneath for the shared per-process server. ``hooks`` (the manager's
    :class:`Observer`) sees the server start and stop and, if a plugin observes requests,
    each request. With ``publish``,
    every endpoint is published into that discovery backend under one instance id.
    """
    observer = hooks if hooks is not None and hooks.requests else None
    dispatcher = Dispatcher(max_inflight=max_inflight, observer=observer, transport=spec.name)
    transport = spec.server(settings)
    start_error: Exception | None = None
    async with anyio.create_task_group() as tg:
        try:
            await transport.start(dispatcher, tg)
        except Exception as exc:
            # Raised in here it would leave the task group wrapped in an ExceptionGroup; a
            # transport's ConfigError (port in use, unusable path) must reach the caller as is.
            start_error = exc
            tg.cancel_scope.cancel()
        else:
            publisher = None if publish is None else publish.publisher(spec.name)
            if publisher is not None:
                publisher.start(tg)
            server = Server(spec.name, transport, dispatcher, drain_timeout, publisher)
            if hooks is not None:
                hooks.server_started(spec.name, dict(transport.health_details()))
            try:
                yield server
            finally:
                await server.aclose()
                tg.cancel_scope.cancel()
                if hooks is not None:
                    hooks.server_stopped(spec.name)
    if start_error is not None:
        raise start_error
