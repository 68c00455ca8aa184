"""requestplane-otel: OpenTelemetry tracing for requestplane, on every transport.

Installed, it is loaded by requestplane through the ``requestplane.plugins`` entry point
group; there is nothing to import or call. Spans go to the global tracer provider unless
:func:`use_providers` names others.
"""

from .providers import use_providers

__all__ = ["use_providers"]
