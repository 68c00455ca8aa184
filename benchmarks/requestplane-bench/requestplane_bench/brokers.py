"""The brokers the measured transports need, offered by their plugins.

A transport that needs a service of its own to serve on its defaults implements the core's
``requestplane_embedded_broker`` hook; the bench starts what is offered for the length of
the run and hands the environment it yields to every server and client process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

from requestplane_core import ConfigError
from requestplane_core.plugin_api import PluginRegistry

__all__ = ["broker_for", "embedded_brokers"]

Broker = AbstractAsyncContextManager[Mapping[str, str]]


def broker_for(registry: PluginRegistry, mode: str, environ: Mapping[str, str]) -> Broker | None:
    """The broker ``mode`` needs under ``environ``, not started yet; ``None`` when it needs
    none. :class:`ConfigError` when it needs one that cannot be started (the message says
    how to get one)."""
    offers: list[Broker] = registry.manager.hook.requestplane_embedded_broker(
        transport=mode, environ=dict(environ)
    )
    if len(offers) > 1:
        raise ConfigError(f"{mode}: more than one plugin offers to start its broker")
    return offers[0] if offers else None


@asynccontextmanager
async def embedded_brokers(
    registry: PluginRegistry,
    modes: Iterable[str],
    environ: Mapping[str, str],
    on_note: Callable[[str], None],
) -> AsyncIterator[dict[str, str]]:
    """Start the brokers ``modes`` need; yields ``environ`` with what points at them."""
    env = dict(environ)
    async with AsyncExitStack() as stack:
        for mode in dict.fromkeys(modes):
            broker = broker_for(registry, mode, env)
            if broker is None:
                continue
            added = dict(await stack.enter_async_context(broker))
            env.update(added)
            where = ", ".join(f"{name}={value}" for name, value in added.items())
            on_note(
                f"{mode}: started its embedded broker, {where} "
                f"(set {' / '.join(added)} to use another)"
            )
        yield env
