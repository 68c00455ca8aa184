"""CPU time of a process (user + system), the benchmark's noise-resistant cost measure.

Throughput on a shared 2-core machine swings with whatever else runs; the CPU seconds a
server and a client spend per request barely do. A process reads its own through
:func:`time.process_time`, another's (the server's, from the client) through ``/proc``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

__all__ = ["CpuMeter", "process_cpu_seconds"]

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_seconds(pid: int | None = None) -> float | None:
    """User + system CPU seconds of ``pid`` (default: this process); ``None`` if unknown."""
    if pid is None or pid == os.getpid():
        return time.process_time()
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None  # not Linux, or the process is gone
    # After "pid (comm)": state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / _TICKS


class CpuMeter:
    """Samples this process's and the server's CPU at the measured phase's start and end;
    pass it as ``run_load``'s ``boundary``. A fleet's servers count as one server: their
    CPU adds up."""

    def __init__(self, server_pid: int | Sequence[int] | None) -> None:
        pids = () if server_pid is None else server_pid
        self.server_pids = (pids,) if isinstance(pids, int) else tuple(pids)
        self.samples: dict[str, tuple[float | None, float | None]] = {}

    def _servers(self) -> float | None:
        total = 0.0
        for pid in self.server_pids:
            seconds = process_cpu_seconds(pid)
            if seconds is None:
                return None  # one of them is gone: the sum would be wrong
            total += seconds
        return total if self.server_pids else None

    def __call__(self, edge: str) -> None:
        self.samples[edge] = (process_cpu_seconds(), self._servers())

    def per_request_us(self, requests: int) -> tuple[float | None, float | None]:
        """Client and server CPU microseconds per request over the measured phase."""
        start, end = self.samples.get("start"), self.samples.get("end")
        if start is None or end is None or requests <= 0:
            return None, None

        def us(a: float | None, b: float | None) -> float | None:
            return None if a is None or b is None else round((b - a) * 1e6 / requests, 1)

        return us(start[0], end[0]), us(start[1], end[1])
