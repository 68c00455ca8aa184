"""The hooks through which plugins extend requestplane.

Hooks are synchronous and only *provide* things; all I/O lives in the objects they return.
A plugin module implements them with :data:`hookimpl` and registers itself through the
``requestplane.transports`` entry point group::

    # pyproject.toml
    [project.entry-points."requestplane.transports"]
    uds = "requestplane_uds.plugin"

    # requestplane_uds/plugin.py
    from requestplane_core import TransportSpec, hookimpl

    @hookimpl
    def requestplane_transports():
        return [TransportSpec(name="uds", ...)]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import pluggy

from .discovery import DiscoverySpec
from .transport import TransportSpec

if TYPE_CHECKING:
    from .instrumentation import RequestEvent

__all__ = [
    "PROJECT",
    "hookimpl",
    "hookspec",
    "requestplane_discovery_backends",
    "requestplane_embedded_broker",
    "requestplane_request_finished",
    "requestplane_request_started",
    "requestplane_server_started",
    "requestplane_server_stopped",
    "requestplane_transports",
]

PROJECT = "requestplane"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def requestplane_transports() -> Iterable[TransportSpec[object]]:
    """Return the transports this plugin provides.

    Called once when plugins load, on every plugin (not ``firstresult``): each returns the
    :class:`~requestplane_core.TransportSpec` records it provides, usually one. A transport
    name provided twice, by this or another plugin, is a :class:`ConfigError` naming both
    providers. The spec's factories must not do I/O or import heavy dependencies until
    called: listing transports imports every plugin module.
    """
    raise NotImplementedError


@hookspec
def requestplane_discovery_backends() -> Iterable[DiscoverySpec[object]]:
    """Return the discovery backends this plugin provides.

    Called once when plugins load, on every plugin, like :func:`requestplane_transports`:
    each returns :class:`~requestplane_core.discovery.DiscoverySpec` records. A backend name
    provided twice is a :class:`ConfigError` naming both providers. Register the plugin
    module under the ``requestplane.discovery`` entry point group (or the transports' group,
    when one module provides both). The spec's factory must not do I/O.
    """
    raise NotImplementedError


@hookspec
def requestplane_embedded_broker(
    transport: str, environ: Mapping[str, str]
) -> AbstractAsyncContextManager[Mapping[str, str]] | None:
    """Offer to start the broker ``transport`` needs to serve on its defaults, for a run.

    A transport that needs a service of its own to carry requests (NATS needs a nats-server)
    offers one here, for tools that run it on loopback with no configuration: ``requestplane
    bench`` (requestplane-bench) enters the returned async context manager for the length of
    the run; it starts the broker, yields the environment variables that point servers and
    clients of ``transport`` at it (``{"REQUESTPLANE_NATS_URL": "nats://127.0.0.1:4321"}``),
    and stops the broker on exit.

    Called on every plugin, with the transport's name and the environment the run would use:
    return ``None`` for a transport this plugin does not provide, or when ``environ`` already
    points it at a broker. Raise :class:`ConfigError` saying how to get one when a broker is
    needed and cannot be started (a tool skips the transport with that message). Like the
    other hooks it must not do I/O itself, beyond looking for a binary: the context manager
    does the starting.
    """
    raise NotImplementedError


# -- observing hooks ------------------------------------------------------------------------
# Instrumentation plugins (metrics, tracing) implement these. They are called on the request
# path, so they must be quick and must not block; an exception in one is logged and ignored.
# When no plugin implements the request hooks, requestplane skips them entirely.


@hookspec
def requestplane_request_started(event: RequestEvent) -> None:
    """A request starts, on the client (``event.side == "client"``) or the server side.

    On the client side ``event.headers`` may be extended (e.g. with ``traceparent``) and the
    additions are sent with the request; on the server side it holds the received headers.
    Keep per-request state in ``event.scratch``.
    """


@hookspec
def requestplane_request_finished(event: RequestEvent) -> None:
    """The request started with the same ``event`` has ended.

    ``event.outcome`` is ``"ok"``, ``"cancelled"`` or the error's class name;
    ``event.duration`` (seconds), ``bytes_in``, ``bytes_out`` and ``chunks`` are filled in.
    """


@hookspec
def requestplane_server_started(transport: str, details: Mapping[str, Any]) -> None:
    """A server of ``transport`` is listening; ``details`` are its health details."""


@hookspec
def requestplane_server_stopped(transport: str) -> None:
    """The server of ``transport`` has drained and closed."""
