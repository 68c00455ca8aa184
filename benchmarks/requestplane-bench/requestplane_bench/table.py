"""The human-readable summary: one row per case, then what failed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["format_fleets", "format_table", "human_bytes"]

_COLUMNS = (
    "mode",
    "backend",
    "kind",
    "payload",
    "conc",
    "requests",
    "req/s",
    "p50 ms",
    "p99 ms",
    "chunks/s",
    "MiB/s",
    "cpu us",
    "fleet",
    "spread",
    "errors",
)
_TEXT = frozenset(("mode", "backend", "kind", "fleet"))
_RIGHT = frozenset(_COLUMNS) - _TEXT  # the numbers, right-aligned


def human_bytes(n: int) -> str:
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} B"


def _cpu(record: dict[str, Any]) -> str:
    """Client + server CPU microseconds per request: what a request costs, whatever the load
    on the machine."""
    client, server = record.get("client_cpu_us"), record.get("server_cpu_us")
    if client is None or server is None:
        return "-"
    return f"{client + server:,.0f}"


def _kind(record: dict[str, Any]) -> str:
    if record["kind"] == "stream":
        return f"stream x{record['chunks']}"
    return "unary sync" if record.get("handler") == "sync" else "unary"


def _fleet(record: dict[str, Any]) -> str:
    workers = record.get("workers")
    return f"{workers} {record['route']}" if workers else "-"


def _spread(record: dict[str, Any]) -> str:
    """Max/min requests per instance of a fleet; "inf" when an instance got none."""
    if not record.get("workers") or record.get("failure") is not None:
        return "-"
    value = record.get("spread")
    return "inf" if value is None else f"{value:.2f}"


def _row(record: dict[str, Any]) -> list[str]:
    backend = str(record["backend"]) + (" direct" if record.get("direct") else "")
    if record.get("failure") is not None:
        # Blank cells by name: a row one cell short of the header breaks the whole table.
        cells = dict.fromkeys(_COLUMNS, "")
        cells.update(
            mode=record["mode"],
            backend=backend,
            kind=record["kind"],
            payload=human_bytes(record["payload"]),
            conc=str(record["concurrency"]),
            requests="FAILED",
            fleet=_fleet(record),
        )
        return [cells[name] for name in _COLUMNS]
    chunks = record.get("chunks_per_s")
    errors = str(record["errors"]) + (f" ({record['lost']} lost)" if record.get("lost") else "")
    return [
        record["mode"],
        backend,
        _kind(record),
        human_bytes(record["payload"]),
        str(record["concurrency"]),
        f"{record['requests']:,}",
        f"{record['req_per_s']:,.0f}",
        f"{record['p50_us'] / 1000:.2f}",
        f"{record['p99_us'] / 1000:.2f}",
        "-" if chunks is None else f"{chunks:,.0f}",
        f"{record['bytes_per_s'] / (1 << 20):,.1f}",
        _cpu(record),
        _fleet(record),
        _spread(record),
        errors,
    ]


def format_table(records: Sequence[dict[str, Any]]) -> str:
    rows = [list(_COLUMNS), *(_row(r) for r in records)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(w) if name in _RIGHT else cell.ljust(w)
            for cell, w, name in zip(row, widths, _COLUMNS, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def format_fleets(records: Sequence[dict[str, Any]]) -> str:
    """One line per measured fleet case: the requests each instance got."""
    lines = []
    for record in records:
        counts = record.get("instance_requests")
        if not record.get("workers") or not counts:
            continue
        each = " / ".join(f"{n:,}" for n in counts.values())
        lines.append(
            f"{record['mode']}/{record['backend']} {_fleet(record)}: requests per instance "
            f"{each} (max/min {_spread(record)})"
        )
    return "\n".join(lines)
