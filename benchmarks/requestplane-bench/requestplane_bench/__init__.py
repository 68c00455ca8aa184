"""Measure the installed transports: req/s, latency and stream throughput on loopback.

``requestplane bench`` runs a server process and a client process per transport and event
loop and prints a table (or ``--json`` lines). See ``docs/benchmarks.md``.
"""

from .command import add_arguments, run

__all__ = ["add_arguments", "run"]
