"""A free TCP port on loopback, for the services a benchmark starts."""

from __future__ import annotations

import socket

__all__ = ["free_port"]


def free_port() -> int:
    """A port nothing listens on right now (the caller binds it soon after: a race the
    benchmarks accept, as they start their own services on a quiet loopback)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
