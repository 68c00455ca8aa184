"""Entry point module of the ``http`` transport; cheap to import (no hypercorn, no h2)."""

from __future__ import annotations

from requestplane_core import (
    Capabilities,
    TransportClient,
    TransportServer,
    TransportSpec,
    hookimpl,
)

from .log_hygiene import quiet_hpack
from .settings import HttpSettings

__all__ = ["requestplane_transports"]


def _make_server(settings: HttpSettings) -> TransportServer:
    from .server import HttpServer

    quiet_hpack()
    return HttpServer(settings)


def _make_client(settings: HttpSettings) -> TransportClient:
    from .client import HttpClient

    quiet_hpack()
    return HttpClient(settings)


@hookimpl
def requestplane_transports() -> list[TransportSpec[HttpSettings]]:
    return [
        TransportSpec(
            name="http",
            description="HTTP/2 (cleartext or TLS) and HTTP/1.1 via hypercorn; "
            "POST {root_path}/{endpoint}",
            settings=HttpSettings,
            server=_make_server,
            client=_make_client,
            capabilities=Capabilities(),
            # A TLS server publishes https:// addresses; the client takes both. (mypy reads
            # the field's bare ``tuple`` converter as taking an unsolved Iterable[_T_co].)
            schemes=("http", "https"),  # type: ignore[arg-type]
        )
    ]
