"""The endpoints a benchmark server registers."""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator

from requestplane_core import Handler, Request

from .rss import peak_rss_kib

__all__ = ["ENDPOINTS", "STREAM_HEADER", "Mismatch", "stream_request"]

STREAM_HEADER = struct.Struct("!II")  # chunk count, chunk size

_chunks: dict[int, bytes] = {}


class Mismatch(Exception):
    """A response that is not what the endpoint sends: a transport bug, counted as an error."""


def stream_request(chunks: int, chunk_size: int, payload: int) -> bytes:
    """The request of the stream endpoint: header, padded to ``payload`` bytes."""
    header = STREAM_HEADER.pack(chunks, chunk_size)
    return header + bytes(max(0, payload - len(header)))


async def echo(request: Request) -> bytes:
    return request.payload


def echo_sync(request: Request) -> bytes:
    """The same echo as a synchronous handler (``--handler sync``), which transports may
    answer on the spot: the request plane's cost without a task and cancel scope."""
    return request.payload


async def stream(request: Request) -> AsyncIterator[bytes]:
    count, size = STREAM_HEADER.unpack_from(request.payload)
    chunk = _chunks.get(size)
    if chunk is None:
        chunk = _chunks[size] = b"c" * size  # one object: the server measures moving bytes
    for _ in range(count):
        yield chunk


async def fail(request: Request) -> bytes:
    raise RuntimeError("the fail endpoint always fails")


async def stats(request: Request) -> bytes:
    return json.dumps({"rss_kib": peak_rss_kib()}).encode()


ENDPOINTS: dict[str, Handler] = {
    "echo": echo,
    "echo_sync": echo_sync,
    "stream": stream,
    "fail": fail,
    "stats": stats,
}
