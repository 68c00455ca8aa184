"""The two endpoints ``requestplane serve`` runs: the smallest useful unary and stream."""

from __future__ import annotations

from collections.abc import AsyncIterator

from .request import Handler, Request

__all__ = ["DEMO_ENDPOINTS", "echo", "stream"]

MAX_DEMO_CHUNKS = 10_000_000


async def echo(request: Request) -> bytes:
    """Return the payload unchanged."""
    return request.payload


async def stream(request: Request) -> AsyncIterator[bytes]:
    """Read the payload as a decimal count N and stream N chunks, chunk i being ``f"{i}\\n"``."""
    text = request.payload.decode("ascii", errors="replace").strip() or "0"
    if not text.isdigit() or int(text) > MAX_DEMO_CHUNKS:
        raise ValueError(f"expected a decimal count 0..{MAX_DEMO_CHUNKS}, got {text!r}")
    for i in range(int(text)):
        yield f"{i}\n".encode()


DEMO_ENDPOINTS: dict[str, Handler] = {"echo": echo, "stream": stream}
