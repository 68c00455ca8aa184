"""The wire format: a frame is a length-prefixed JSON header followed by a raw payload.

::

    +-------------------+--------------------+-------------+---------------+
    | header length (4) | payload length (4) | JSON header | payload bytes |
    +-------------------+--------------------+-------------+---------------+

Both lengths are unsigned big-endian. The header's ``kind`` says what the frame is:

- ``request``: ``endpoint``, ``headers`` (str -> str) and ``timeout`` (remaining seconds or
  ``null``); the payload is the request body. Always the first and only frame a client sends.
- ``response``: the whole unary response as the payload. Last frame.
- ``chunk``: one chunk of a streamed response.
- ``end``: the stream is complete. Last frame.
- ``error``: ``code``, ``message`` and ``remote_type`` of a typed error. Last frame.

There is no cancel frame: the client cancels by closing the connection.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

import anyio
import attrs
from anyio.streams.buffered import BufferedByteReceiveStream

from requestplane_core import PayloadTooLarge, ProtocolError, RequestPlaneError

__all__ = [
    "CONNECTION_ERRORS",
    "KINDS",
    "MAX_HEADER_SIZE",
    "Frame",
    "FrameTooLarge",
    "discard",
    "encode_error",
    "encode_frame",
    "read_frame",
]

_PREFIX = struct.Struct(">II")
KINDS = frozenset({"request", "response", "chunk", "end", "error"})
#: Headers are small metadata; a bound keeps a bad peer from making us buffer gigabytes.
MAX_HEADER_SIZE = 256 * 1024


class FrameTooLarge(PayloadTooLarge):
    """A frame announced a payload over the limit; ``size`` bytes of it are still unread."""

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


@attrs.frozen
class Frame:
    kind: str
    header: Mapping[str, Any]
    payload: bytes = b""


def encode_frame(kind: str, payload: bytes = b"", **fields: object) -> bytes:
    """One frame as bytes, ready for a single ``send``."""
    header = json.dumps({"kind": kind, **fields}, separators=(",", ":")).encode()
    if len(header) > MAX_HEADER_SIZE:
        raise PayloadTooLarge(
            f"the frame header is {len(header)} bytes; at most {MAX_HEADER_SIZE} are accepted "
            "(are the request headers that large?)"
        )
    return _PREFIX.pack(len(header), len(payload)) + header + payload


def encode_error(error: RequestPlaneError) -> bytes:
    remote_type = getattr(error, "type_name", "")
    message = getattr(error, "remote_message", error.message)
    return encode_frame("error", code=error.code, message=message, remote_type=remote_type)


async def read_frame(reader: BufferedByteReceiveStream, max_payload: int) -> Frame:
    """Read one frame.

    Raises :class:`ProtocolError` for bytes that are not a frame, :class:`FrameTooLarge`
    (a ``PayloadTooLarge``) for a payload over ``max_payload`` whose bytes are left unread,
    and anyio's stream errors (``IncompleteRead``...) when the connection ends.
    """
    header_size, payload_size = _PREFIX.unpack(await reader.receive_exactly(_PREFIX.size))
    if header_size > MAX_HEADER_SIZE:
        raise ProtocolError(f"a frame header of {header_size} bytes is over {MAX_HEADER_SIZE}")
    raw = await reader.receive_exactly(header_size)
    try:
        header = json.loads(raw)
    except ValueError:
        raise ProtocolError("the frame header is not JSON") from None
    if not isinstance(header, dict) or header.get("kind") not in KINDS:
        raise ProtocolError(f"not a frame header: {raw[:80]!r}")
    if payload_size > max_payload:
        raise FrameTooLarge(
            f"a {header['kind']} of {payload_size} bytes is over the limit of {max_payload}",
            payload_size,
        )
    payload = await reader.receive_exactly(payload_size) if payload_size else b""
    return Frame(header["kind"], header, payload)


async def discard(reader: BufferedByteReceiveStream, size: int) -> None:
    """Read and drop ``size`` bytes, without holding them in memory."""
    while size > 0:
        size -= len(await reader.receive(min(size, 65536)))


#: The errors that mean "this connection is gone", whatever the backend.
CONNECTION_ERRORS = (
    anyio.EndOfStream,
    anyio.IncompleteRead,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    OSError,
)
