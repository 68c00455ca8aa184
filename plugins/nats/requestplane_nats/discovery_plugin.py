"""The ``nats`` discovery backend's entry point: cheap to import (every discovery plugin is
imported when plugins load); nats-py loads only when the backend is built."""

from __future__ import annotations

from requestplane_core.plugin_api import DiscoveryBackend, DiscoverySpec, hookimpl

from .discovery_settings import NatsDiscoverySettings

__all__ = ["requestplane_discovery_backends"]


def _make_backend(settings: NatsDiscoverySettings) -> DiscoveryBackend:
    from .discovery_backend import NatsDiscovery

    return NatsDiscovery(settings)


@hookimpl
def requestplane_discovery_backends() -> list[DiscoverySpec[NatsDiscoverySettings]]:
    return [
        DiscoverySpec(
            name="nats",
            description="instances in a NATS JetStream key-value bucket (nats-server -js, "
            "2.11+): across machines, per-record TTL, watched live",
            settings=NatsDiscoverySettings,
            backend=_make_backend,
        )
    ]
