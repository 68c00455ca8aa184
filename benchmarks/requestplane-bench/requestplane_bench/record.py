"""The result of one case as a flat JSON-ready record (``--json`` prints these)."""

from __future__ import annotations

from typing import Any

from .case import Case
from .latency import percentile
from .load import LoadOutcome

__all__ = ["failed_record", "is_clean", "make_record"]


def _base(case: Case) -> dict[str, Any]:
    return {
        "mode": case.mode,
        "backend": case.loop,
        "kind": case.kind,
        "handler": case.handler,
        "payload": case.chunk_size if case.kind == "stream" else case.payload,
        "concurrency": case.concurrency,
        "chunks": case.chunks if case.kind == "stream" else None,
        "direct": case.direct,
        "workers": case.workers or None,  # a fleet's server processes; None: one server
        "route": case.route if case.workers else None,
        "instance_requests": None,  # a fleet's measured requests per instance id
        "spread": None,  # max/min of those (None when one got none)
    }


def make_record(
    case: Case,
    outcome: LoadOutcome,
    *,
    client_rss_kib: int,
    server_rss_kib: int | None,
    cpu_us: tuple[float | None, float | None] = (None, None),
) -> dict[str, Any]:
    seconds = outcome.seconds or 1e-9
    lat = outcome.latencies_ns
    per_s = outcome.completed / seconds
    chunks_per_call = case.chunks if case.kind == "stream" else 1
    bytes_per_chunk = case.chunk_size if case.kind == "stream" else case.payload
    return {
        **_base(case),
        "requests": outcome.completed,
        "errors": outcome.errors + outcome.lost,
        "lost": outcome.lost,
        "seconds": round(outcome.seconds, 4),
        "req_per_s": round(per_s, 1),
        "p50_us": round(percentile(lat, 0.50) / 1000, 1),
        "p99_us": round(percentile(lat, 0.99) / 1000, 1),
        "chunks_per_s": round(per_s * chunks_per_call, 1) if case.kind == "stream" else None,
        "bytes_per_s": round(per_s * chunks_per_call * bytes_per_chunk, 1),
        "client_cpu_us": cpu_us[0],  # CPU per request (or stream), measured phase
        "server_cpu_us": cpu_us[1],
        "client_rss_kib": client_rss_kib,
        "server_rss_kib": server_rss_kib,
        "error_samples": list(outcome.error_samples),
        "failure": None,
    }


def failed_record(case: Case, failure: str) -> dict[str, Any]:
    """A case that could not be measured at all (a worker failed to start or crashed)."""
    return {
        **_base(case),
        "requests": 0,
        "errors": 0,
        "lost": 0,
        "seconds": 0.0,
        "req_per_s": 0.0,
        "p50_us": 0.0,
        "p99_us": 0.0,
        "chunks_per_s": None,
        "bytes_per_s": 0.0,
        "client_cpu_us": None,
        "server_cpu_us": None,
        "client_rss_kib": None,
        "server_rss_kib": None,
        "error_samples": [],
        "failure": failure,
    }


def is_clean(record: dict[str, Any]) -> bool:
    """Measured, and every request got its response."""
    return record["failure"] is None and record["errors"] == 0 and record["requests"] > 0
