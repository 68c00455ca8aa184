"""The ``tcp`` transport's plugin module (entry point ``requestplane.transports: tcp``).

Kept cheap to import: listing transports imports every plugin module, so the server and
client modules load only when a factory is called.
"""

from __future__ import annotations

from requestplane_core import TransportClient, TransportServer, TransportSpec, hookimpl

from .settings import TcpSettings

__all__ = ["requestplane_transports"]


def _make_server(settings: TcpSettings) -> TransportServer:
    from .server import TcpServer

    return TcpServer(settings)


def _make_client(settings: TcpSettings) -> TransportClient:
    from .client import TcpClient

    return TcpClient(settings)


@hookimpl
def requestplane_transports() -> list[TransportSpec[TcpSettings]]:
    return [
        TransportSpec(
            name="tcp",
            description="binary framed, multiplexed requests over TCP (optionally TLS)",
            settings=TcpSettings,
            server=_make_server,
            client=_make_client,
        )
    ]
