"""The entry point module: cheap to import, because ``requestplane transports`` imports
every plugin just to list it. The server and client modules load on first use."""

from __future__ import annotations

from requestplane_core import (
    Capabilities,
    TransportClient,
    TransportServer,
    TransportSpec,
    hookimpl,
)

from .settings import UdsSettings

__all__ = ["requestplane_transports"]


def _server(settings: UdsSettings) -> TransportServer:
    from .server import UdsServer

    return UdsServer(settings)


def _client(settings: UdsSettings) -> TransportClient:
    from .client import UdsClient

    return UdsClient(settings)


@hookimpl
def requestplane_transports() -> list[TransportSpec[UdsSettings]]:
    return [
        TransportSpec(
            name="uds",
            description="Unix domain sockets on this host, one connection per request",
            settings=UdsSettings,
            server=_server,
            client=_client,
            # Everything the kit checks; ``backends`` keeps its default, asyncio and trio.
            capabilities=Capabilities(streaming=True, cancellation=True, deadlines=True),
        )
    ]
