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

from collections.abc import Iterable

import pluggy

from .transport import TransportSpec

__all__ = ["PROJECT", "hookimpl", "hookspec", "requestplane_transports"]

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
