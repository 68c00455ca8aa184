"""The entry point module: requestplane's observing hooks, implemented with OpenTelemetry.

requestplane calls these on the request path, synchronously; they only create and end
spans (the exporting happens in the application's span processors).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from requestplane_core import hookimpl

from .event import ObservedRequest
from .servers import server_started, server_stopped
from .spans import finish_span, start_span

__all__ = [
    "requestplane_request_finished",
    "requestplane_request_started",
    "requestplane_server_started",
    "requestplane_server_stopped",
]


@hookimpl
def requestplane_request_started(event: ObservedRequest) -> None:
    start_span(event)


@hookimpl
def requestplane_request_finished(event: ObservedRequest) -> None:
    finish_span(event)


@hookimpl
def requestplane_server_started(transport: str, details: Mapping[str, Any]) -> None:
    server_started(transport, details)


@hookimpl
def requestplane_server_stopped(transport: str) -> None:
    server_stopped(transport)
