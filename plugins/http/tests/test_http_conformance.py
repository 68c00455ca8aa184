"""The core's conformance suite against the HTTP transport, on asyncio and trio."""

from requestplane_core.testing import TransportConformance


class TestHttpConformance(TransportConformance):
    mode = "http"
    settings: dict[str, object] = {}  # noqa: RUF012 (the suite's own annotation)
