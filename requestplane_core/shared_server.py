"""One server per transport per event loop, shared by every manager in it.

All workers of a process must publish addresses of the same listener, so the first manager
that asks for a mode's server starts it and later ones get the same one. The server lives in a
loop-owned task and is closed by the last manager that releases it; when its event loop ends,
it ends with it, and a later loop gets a fresh one.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import attrs
from anyio.lowlevel import RunVar

from ._loop_task import spawn_loop_task
from .errors import ConfigError
from .observer import Observer
from .publisher import PublishSettings
from .server import Server, serve
from .transport import TransportSpec

__all__ = ["acquire_shared_server", "release_shared_server"]

log = logging.getLogger("requestplane")


@attrs.define(eq=False)
class _Entry:
    settings: object
    publish: PublishSettings | None = None
    ready: anyio.Event = attrs.field(factory=anyio.Event)
    done: anyio.Event = attrs.field(factory=anyio.Event)
    server: Server | None = None
    error: BaseException | None = None
    users: int = 0


_servers: RunVar[dict[str, _Entry]] = RunVar("requestplane_shared_servers")


def _table() -> dict[str, _Entry]:
    try:
        return _servers.get()
    except LookupError:
        table: dict[str, _Entry] = {}
        _servers.set(table)
        return table


async def acquire_shared_server(
    spec: TransportSpec[Any],
    settings: object,
    *,
    drain_timeout: float,
    max_inflight: int,
    hooks: Observer | None = None,
    publish: PublishSettings | None = None,
) -> Server:
    """Return this event loop's server for ``spec``, starting it on first use."""
    table = _table()
    entry = table.get(spec.name)
    if entry is not None and entry.server is not None and entry.server.closed:
        entry = None
    if entry is None:
        entry = table[spec.name] = _Entry(settings, publish)
        spawn_loop_task(lambda: _host(table, spec, entry, drain_timeout, max_inflight, hooks))
    elif entry.settings != settings:
        raise ConfigError(
            f"a {spec.name} server with other settings ({_differing(entry.settings, settings)})"
            " already runs in this event loop; every manager of one mode shares one server"
        )
    elif entry.publish != publish:
        raise ConfigError(
            f"a {spec.name} server publishing with other discovery settings already runs in "
            "this event loop; every manager of one mode shares one server"
        )
    entry.users += 1
    await entry.ready.wait()
    if entry.server is None:
        entry.users -= 1
        assert entry.error is not None
        raise entry.error
    return entry.server


def _differing(one: object, other: object) -> str:
    """The names (never the values: some are secrets) of the settings that differ."""
    cls = type(one)
    if attrs.has(cls) and cls is type(other):
        fields: tuple[attrs.Attribute[Any], ...] = attrs.fields(cls)
        return ", ".join(f.name for f in fields if getattr(one, f.name) != getattr(other, f.name))
    return "a different settings object"


async def release_shared_server(server: Server) -> None:
    """Give back a server from :func:`acquire_shared_server`; the last user closes it."""
    entry = _table().get(server.transport)
    if entry is None or entry.server is not server:
        return  # already closed and replaced
    entry.users -= 1
    if entry.users <= 0:
        await server.aclose()
        # The host task finishes stopping (transport task group, server_stopped hook) after
        # the server reports closed; the last manager returns only once that is done.
        await entry.done.wait()


async def _host(
    table: dict[str, _Entry],
    spec: TransportSpec[Any],
    entry: _Entry,
    drain_timeout: float,
    max_inflight: int,
    hooks: Observer | None,
) -> None:
    try:
        async with serve(
            spec,
            entry.settings,
            drain_timeout=drain_timeout,
            max_inflight=max_inflight,
            hooks=hooks,
            publish=entry.publish,
        ) as server:
            entry.server = server
            entry.ready.set()
            await server.wait_closed()
    except Exception as exc:  # a loop-owned task must not raise: hand the error to the waiters
        if entry.server is None:
            entry.error = exc
        else:
            # With its traceback: this log line is all anyone sees of the crash (the
            # server's calls only fail with ConnectionLost).
            log.error("the shared %s server failed: %r", spec.name, exc, exc_info=exc)
    finally:
        entry.ready.set()
        if table.get(spec.name) is entry:
            del table[spec.name]
        entry.done.set()
