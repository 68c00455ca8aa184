"""A span per request on each side, linked through the ``traceparent`` request header.

The client span is a child of whatever span is current in the caller and its context is
injected into the request's headers; the server extracts it, so the server span is the
client span's child in the same trace. The server span is also made current while the
handler runs, so spans the handler starts nest under it. (The client span is not made
current: for a stream, the caller runs arbitrary code between start and finish.)
"""

from __future__ import annotations

from opentelemetry import context, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .event import ObservedRequest
from .providers import current

__all__ = ["finish_span", "start_span"]

_SPAN = "otel.span"
_TOKEN = "otel.token"


def start_span(event: ObservedRequest) -> None:
    instruments = current()
    attributes = {
        "rpc.system": "requestplane",
        "rpc.method": event.endpoint,
        "requestplane.endpoint": event.endpoint,
        "requestplane.transport": event.transport,
        "requestplane.side": event.side,
    }
    if event.address is not None:
        attributes["requestplane.address"] = event.address
    name = f"requestplane/{event.endpoint}"
    if event.side == "client":
        span = instruments.tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
        if span.get_span_context().is_valid:  # without an SDK and a trace: nothing to send
            instruments.inject(event.headers, trace.set_span_in_context(span))
    else:
        parent = instruments.extract(event.headers)
        span = instruments.tracer.start_span(
            name, context=parent, kind=SpanKind.SERVER, attributes=attributes
        )
        if span.get_span_context().is_valid:
            event.scratch[_TOKEN] = context.attach(trace.set_span_in_context(span, parent))
    event.scratch[_SPAN] = span


def finish_span(event: ObservedRequest) -> None:
    token = event.scratch.pop(_TOKEN, None)
    if token is not None:
        context.detach(token)
    span = event.scratch.pop(_SPAN, None)
    if span is None or not span.is_recording():
        return
    span.set_attributes(
        {
            "requestplane.outcome": event.outcome,
            "requestplane.stream": event.stream,
            "requestplane.bytes_in": event.bytes_in,
            "requestplane.bytes_out": event.bytes_out,
            "requestplane.chunks": event.chunks,
        }
    )
    if event.outcome not in ("ok", "cancelled"):
        span.set_status(Status(StatusCode.ERROR, event.outcome))
    span.end()
