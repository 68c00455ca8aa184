"""The ``nats`` transport's entry point: cheap to import; nats-py loads only when used."""

from __future__ import annotations

from requestplane_core import (
    Capabilities,
    ConfigError,
    TransportClient,
    TransportServer,
    TransportSpec,
    hookimpl,
)

from .embedded_broker import requestplane_embedded_broker
from .settings import NatsSettings

__all__ = ["requestplane_embedded_broker", "requestplane_transports"]


def _make_server(settings: NatsSettings) -> TransportServer:
    if settings.embedded and settings.url is not None:
        raise ConfigError(
            "REQUESTPLANE_NATS_EMBEDDED starts a private nats-server, so "
            "REQUESTPLANE_NATS_URL must be unset; choose one of them"
        )
    from .server import NatsTransportServer

    return NatsTransportServer(settings)


def _make_client(settings: NatsSettings) -> TransportClient:
    from .client import NatsTransportClient

    return NatsTransportClient(settings)


@hookimpl
def requestplane_transports() -> list[TransportSpec[NatsSettings]]:
    return [
        TransportSpec(
            name="nats",
            description="requests over a NATS server or cluster (nats-py): queue-group load "
            "balancing, streams on the reply inbox; asyncio and trio",
            settings=NatsSettings,
            server=_make_server,
            client=_make_client,
            capabilities=Capabilities(),
        )
    ]
