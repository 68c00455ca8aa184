"""Which tracer, meter and propagator the plugin uses.

By default OpenTelemetry's globals, configured by the application (or by
``opentelemetry-instrument``); :func:`use_providers` overrides them, the way OpenTelemetry's
own instrumentations take a ``tracer_provider=``. That keeps tests (and applications with
several pipelines) from having to replace process-wide globals.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import attrs
from opentelemetry import metrics, propagate, trace
from opentelemetry.context import Context
from opentelemetry.metrics import MeterProvider, UpDownCounter
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Tracer, TracerProvider

__all__ = ["Instruments", "current", "use_providers"]

SCOPE = "requestplane_otel"
try:
    _VERSION: str | None = version("requestplane-otel")
except PackageNotFoundError:  # running from a source tree
    _VERSION = None


@attrs.frozen
class Instruments:
    tracer: Tracer
    servers: UpDownCounter
    propagator: TextMapPropagator | None  # None: the global one, looked up on each use

    def inject(self, carrier: dict[str, str], context: Context) -> None:
        (self.propagator or propagate.get_global_textmap()).inject(carrier, context)

    def extract(self, carrier: dict[str, str]) -> Context:
        return (self.propagator or propagate.get_global_textmap()).extract(carrier)


def _make(
    tracer_provider: TracerProvider | None,
    meter_provider: MeterProvider | None,
    propagator: TextMapPropagator | None,
) -> Instruments:
    # Without explicit providers these come from OpenTelemetry's proxies: they follow the
    # global providers even when the application sets them after this module is imported.
    meter = metrics.get_meter(SCOPE, _VERSION or "", meter_provider=meter_provider)
    return Instruments(
        tracer=trace.get_tracer(SCOPE, _VERSION, tracer_provider=tracer_provider),
        servers=meter.create_up_down_counter(
            "requestplane.servers", unit="{server}", description="requestplane servers listening"
        ),
        propagator=propagator,
    )


_current = _make(None, None, None)


def current() -> Instruments:
    return _current


def use_providers(
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    propagator: TextMapPropagator | None = None,
) -> None:
    """Send spans and metrics to these providers, and propagate with this propagator,
    instead of the global ones. Call it without arguments to go back to the globals."""
    global _current
    _current = _make(tracer_provider, meter_provider, propagator)
