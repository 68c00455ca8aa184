"""Traces across real transports: the server span is the client span's child, same trace."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import anyio
import pytest
import requestplane_otel
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from requestplane_core import Handler, RemoteError, Request, RequestPlane

pytestmark = pytest.mark.anyio

BOUND = 15.0


async def echo(request: Request) -> bytes:
    return request.payload


async def count(request: Request) -> AsyncIterator[bytes]:
    for i in range(int(request.payload)):
        yield b"%d" % i


async def fail(request: Request) -> bytes:
    raise ValueError("nope")


def nested(tracer: trace.Tracer) -> Handler:
    async def handler(request: Request) -> bytes:
        # A span the handler starts: it must land under the server span.
        with tracer.start_as_current_span("inside the handler"):
            return b"ok"

    return handler


def by_kind(spans: tuple[ReadableSpan, ...]) -> dict[SpanKind, ReadableSpan]:
    """The one request's client and server spans (each test makes one request)."""
    ours = [s for s in spans if s.name.startswith("requestplane/")]
    found = {s.kind: s for s in ours}
    assert len(ours) == 2 and set(found) == {SpanKind.CLIENT, SpanKind.SERVER}, ours
    return found


def assert_parent_child(client: ReadableSpan, server: ReadableSpan) -> None:
    assert client.context is not None and server.context is not None
    assert server.parent is not None, "the server span has no parent: traceparent was lost"
    assert server.context.trace_id == client.context.trace_id
    assert server.parent.span_id == client.context.span_id
    assert server.parent.is_remote


async def test_server_span_is_a_child_of_the_client_span(
    transport: tuple[str, Mapping[str, object]],
    spans: InMemorySpanExporter,
    tracer_provider: TracerProvider,
) -> None:
    mode, settings = transport
    tracer = tracer_provider.get_tracer("test")
    async with RequestPlane(mode, settings=settings, environ={}) as plane:
        server = await plane.server()
        address = await server.register("echo", echo)
        with anyio.fail_after(BOUND):
            with tracer.start_as_current_span("caller") as caller:
                assert await plane.client().request(address, b"hello") == b"hello"
    found = by_kind(spans.get_finished_spans())
    client, server_span = found[SpanKind.CLIENT], found[SpanKind.SERVER]
    assert_parent_child(client, server_span)
    # The client span continues the caller's trace.
    assert client.parent is not None and client.parent.span_id == caller.get_span_context().span_id
    assert server_span.name == "requestplane/echo"
    assert (server_span.attributes or {})["requestplane.endpoint"] == "echo"
    for span, side in ((client, "client"), (server_span, "server")):
        attributes = span.attributes or {}
        assert attributes["requestplane.transport"] == mode
        assert attributes["requestplane.side"] == side
        assert attributes["requestplane.outcome"] == "ok"
        assert span.status.status_code is StatusCode.UNSET
    assert (client.attributes or {})["requestplane.bytes_out"] == 5
    assert (server_span.attributes or {})["requestplane.bytes_in"] == 5
    assert (server_span.attributes or {})["requestplane.bytes_out"] == 5


async def test_client_span_names_the_endpoint(
    transport: tuple[str, Mapping[str, object]], spans: InMemorySpanExporter
) -> None:
    mode, settings = transport
    async with RequestPlane(mode, settings=settings, environ={}) as plane:
        address = await (await plane.server()).register("echo", echo)
        with anyio.fail_after(BOUND):
            await plane.client().request(address, b"")
    client = by_kind(spans.get_finished_spans())[SpanKind.CLIENT]
    assert client.name == "requestplane/echo"
    assert (client.attributes or {})["requestplane.endpoint"] == "echo"
    assert (client.attributes or {})["requestplane.address"] == str(address)


async def test_streams_count_chunks_on_both_sides(
    transport: tuple[str, Mapping[str, object]], spans: InMemorySpanExporter
) -> None:
    mode, settings = transport
    async with RequestPlane(mode, settings=settings, environ={}) as plane:
        address = await (await plane.server()).register("count", count)
        with anyio.fail_after(BOUND):
            async with plane.client().stream(address, b"4") as chunks:
                assert [c async for c in chunks] == [b"0", b"1", b"2", b"3"]
    found = by_kind(spans.get_finished_spans())
    assert_parent_child(found[SpanKind.CLIENT], found[SpanKind.SERVER])
    for span in found.values():
        attributes = span.attributes or {}
        assert attributes["requestplane.chunks"] == 4
        assert attributes["requestplane.stream"] is True
        assert attributes["requestplane.outcome"] == "ok"


async def test_errors_mark_both_spans(
    transport: tuple[str, Mapping[str, object]], spans: InMemorySpanExporter
) -> None:
    mode, settings = transport
    async with RequestPlane(mode, settings=settings, environ={}) as plane:
        address = await (await plane.server()).register("fail", fail)
        with anyio.fail_after(BOUND), pytest.raises(RemoteError):
            await plane.client().request(address, b"")
    found = by_kind(spans.get_finished_spans())
    assert_parent_child(found[SpanKind.CLIENT], found[SpanKind.SERVER])
    for span in found.values():
        assert (span.attributes or {})["requestplane.outcome"] == "RemoteError"
        assert span.status.status_code is StatusCode.ERROR


async def test_handler_spans_nest_under_the_server_span(
    transport: tuple[str, Mapping[str, object]],
    spans: InMemorySpanExporter,
    tracer_provider: TracerProvider,
) -> None:
    mode, settings = transport
    handler = nested(tracer_provider.get_tracer("handler"))
    async with RequestPlane(mode, settings=settings, environ={}) as plane:
        address = await (await plane.server()).register("nested", handler)
        with anyio.fail_after(BOUND):
            await plane.client().request(address, b"")
    finished = spans.get_finished_spans()
    server_span = by_kind(finished)[SpanKind.SERVER]
    (inner,) = [s for s in finished if s.name == "inside the handler"]
    assert inner.parent is not None and server_span.context is not None
    assert inner.parent.span_id == server_span.context.span_id


async def test_without_a_tracer_nothing_is_injected(anyio_backend: str) -> None:
    async def headers(request: Request) -> bytes:
        return ",".join(sorted(request.headers)).encode()

    requestplane_otel.use_providers(tracer_provider=trace.NoOpTracerProvider())
    try:
        async with RequestPlane("uds", environ={}) as plane:
            address = await (await plane.server()).register("headers", headers)
            with anyio.fail_after(BOUND):
                assert await plane.client().request(address, b"", headers={"a": "1"}) == b"a"
    finally:
        requestplane_otel.use_providers()


async def test_server_start_and_stop_move_the_servers_counter(
    metrics_reader: InMemoryMetricReader,
) -> None:
    async with RequestPlane("uds", environ={}) as plane:
        await plane.server()
        assert _servers(metrics_reader) == 1
    # The shared server finishes stopping in its own task, after the manager has let go.
    await anyio.wait_all_tasks_blocked()
    assert _servers(metrics_reader) == 0


def _servers(reader: InMemoryMetricReader) -> int:
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "requestplane.servers":
                    points = [p for p in metric.data.data_points if hasattr(p, "value")]
                    return sum(int(p.value) for p in points)
    return 0
