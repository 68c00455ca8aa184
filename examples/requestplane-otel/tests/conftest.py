"""Fixtures: the OpenTelemetry SDK with in-memory exporters, and the transports to trace."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Mapping

import pytest
import requestplane_otel
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from requestplane_core import RequestPlane, UnknownMode


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def tracer_provider() -> Iterator[TracerProvider]:
    """A tracer provider of this test's own, used by the plugin instead of the global one
    (left alone, so other tests in the same process are not traced)."""
    provider = TracerProvider()
    requestplane_otel.use_providers(tracer_provider=provider)
    try:
        yield provider
    finally:
        requestplane_otel.use_providers()
        provider.shutdown()


@pytest.fixture
def spans(tracer_provider: TracerProvider) -> InMemorySpanExporter:
    """The spans finished during the test."""
    exporter = InMemorySpanExporter()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def metrics_reader() -> Iterator[InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    requestplane_otel.use_providers(meter_provider=provider)
    try:
        yield reader
    finally:
        requestplane_otel.use_providers()
        provider.shutdown()


def _installed(mode: str) -> bool:
    try:
        RequestPlane(mode, environ={})
    except UnknownMode:
        return False
    return True


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    """A real nats-server, through the NATS plugin's public helper."""
    from requestplane_nats import NatsServerProcess, find_nats_server

    if find_nats_server() is None:
        pytest.skip("nats-server is not installed")
    with NatsServerProcess() as server:
        yield server.url


# Every transport installed here: the propagation must work on all of them.
TRANSPORTS = [
    pytest.param(mode, marks=pytest.mark.skipif(not _installed(mode), reason=f"{mode} missing"))
    for mode in ("tcp", "http", "uds", "nats")
]


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> tuple[str, Mapping[str, object]]:
    """A transport name and the settings to run it here."""
    mode = str(request.param)
    if mode == "nats":
        if importlib.util.find_spec("requestplane_nats") is None:
            pytest.skip("requestplane-nats is not installed")
        return mode, {"url": request.getfixturevalue("nats_url")}
    return mode, {}
