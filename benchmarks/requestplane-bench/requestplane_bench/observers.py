"""Which installed plugins observe every request: their hooks are part of what is measured."""

from __future__ import annotations

from requestplane_core.plugin_api import PluginRegistry

__all__ = ["observing_plugins"]

_REQUEST_HOOKS = ("requestplane_request_started", "requestplane_request_finished")


def observing_plugins(registry: PluginRegistry) -> list[str]:
    """Names of the plugins that implement a per-request hook."""
    names: set[str] = set()
    for hook_name in _REQUEST_HOOKS:
        caller = getattr(registry.manager.hook, hook_name, None)
        if caller is not None:
            names.update(impl.plugin_name for impl in caller.get_hookimpls())
    return sorted(names)
