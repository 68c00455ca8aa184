"""The requestplane-tcp wire format (protocol version 1); README.md has the full spec.

Every connection starts with an 8-byte preamble from each side, then carries frames::

    preamble: magic b"\\x89RQP" | version u8 | 3 reserved bytes (zero)
    frame:    length u32 | kind u8 | request id u32 | body (length bytes)

All integers are big-endian. Frames of many requests interleave freely on one connection;
the request id ties them together. Request id 0 is the connection itself: an ERROR frame with
id 0 says why the sender is about to close the connection.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping

from requestplane_core import RequestPlaneError

__all__ = [
    "CANCEL",
    "CHUNK",
    "END",
    "ERROR",
    "HEADER",
    "HEADER_SIZE",
    "METADATA_LIMIT",
    "PREAMBLE",
    "PREAMBLE_SIZE",
    "REQUEST",
    "RESPONSE",
    "VERSION",
    "FrameError",
    "TruncatedFrame",
    "check_preamble",
    "decode_error",
    "decode_request",
    "encode_error",
    "encode_request_head",
    "frame_limits",
    "request_body_limit",
    "tls_hint",
]

MAGIC = b"\x89RQP"
VERSION = 1
PREAMBLE = MAGIC + bytes((VERSION, 0, 0, 0))
PREAMBLE_SIZE = len(PREAMBLE)

HEADER = struct.Struct(">IBI")
HEADER_SIZE = HEADER.size

REQUEST = 1  # client -> server: a new request
RESPONSE = 2  # server -> client: the whole response of a unary request
CHUNK = 3  # server -> client: one chunk of a streamed response
END = 4  # server -> client: the stream ended normally
ERROR = 5  # server -> client: the request failed (id 0: the connection is being closed)
CANCEL = 6  # client -> server: the caller gave up; the server says nothing more for this id

KIND_NAMES = {1: "REQUEST", 2: "RESPONSE", 3: "CHUNK", 4: "END", 5: "ERROR", 6: "CANCEL"}

# Endpoint, headers and error descriptions travel in the same frame as the payload; their
# size is bounded separately so that the payload limit means exactly what it says.
METADATA_LIMIT = 65536
MAX_ERROR_MESSAGE = 16384

_REQUEST_HEAD = struct.Struct(">IBIdHH")  # frame header + remaining seconds, endpoint, n headers
_REQUEST_FIXED = struct.Struct(">dHH")
_HEADER_ENTRY = struct.Struct(">HI")
_ERROR_FIXED = struct.Struct(">BH")


def frame_limits(allowed: dict[int, int]) -> list[int]:
    """Per-kind body limits for the reader, indexed by kind: -1 for kinds not received."""
    limits = [-1] * 256
    for kind, limit in allowed.items():
        limits[kind] = limit
    return limits


def request_body_limit(max_message_size: int) -> int:
    """The longest REQUEST body carrying a payload of at most ``max_message_size``."""
    return max_message_size + _REQUEST_FIXED.size + METADATA_LIMIT


class FrameError(Exception):
    """The peer broke the protocol; the connection must close. The message is safe to log:
    it describes the violation, never the bytes themselves."""


class TruncatedFrame(FrameError):
    """The peer closed the connection in the middle of a frame. Nothing it sent was wrong:
    it vanished (killed, or its host or network went away while its send buffer was full),
    so a caller sees the connection lost rather than a protocol error."""


def check_preamble(data: bytes | bytearray | memoryview) -> None:
    """Raise :class:`FrameError` unless ``data`` (8 bytes) is our preamble in our version."""
    if bytes(data[:4]) != MAGIC:
        raise FrameError(f"the peer does not speak requestplane-tcp (wrong magic){tls_hint(data)}")
    version = data[4]
    if version != VERSION:
        raise FrameError(
            f"the peer speaks requestplane-tcp protocol version {version}; "
            f"this side speaks version {VERSION}"
        )


def tls_hint(data: bytes | bytearray | memoryview) -> str:
    """Why bytes that are not our preamble may have arrived: TLS on one side only."""
    if len(data) >= 2 and data[1] == 3:
        if data[0] == 0x16:
            return "; it speaks TLS: turn REQUESTPLANE_TCP_TLS on here too, or off there"
        if data[0] == 0x15:
            return "; it answered with a TLS alert: it expects TLS (REQUESTPLANE_TCP_TLS)"
    return ""


def encode_request_head(
    rid: int,
    endpoint: bytes,
    headers: Mapping[str, str] | None,
    remaining: float | None,
    payload_size: int,
) -> bytes:
    """Everything of a REQUEST frame but its payload, which the caller sends right after."""
    if headers:
        parts = [endpoint]
        for key, value in headers.items():
            k, v = key.encode(), value.encode()
            parts.append(_HEADER_ENTRY.pack(len(k), len(v)))
            parts.append(k)
            parts.append(v)
        meta = b"".join(parts)
        count = len(headers)
    else:
        meta = endpoint
        count = 0
    if len(meta) > METADATA_LIMIT or count > 0xFFFF:
        from requestplane_core import PayloadTooLarge

        raise PayloadTooLarge(
            f"the endpoint name and headers take {len(meta)} bytes in {count} header(s); "
            f"the limit is {METADATA_LIMIT} bytes and 65535 headers"
        )
    deadline = math.inf if remaining is None else remaining
    size = _REQUEST_FIXED.size + len(meta) + payload_size
    return _REQUEST_HEAD.pack(size, REQUEST, rid, deadline, len(endpoint), count) + meta


def decode_request(
    body: memoryview,
) -> tuple[str, dict[str, str], float | None, bytes]:
    """``(endpoint, headers, remaining seconds or None, payload)`` of a REQUEST body."""
    size = len(body)
    if size < 12:
        raise FrameError("a REQUEST frame is shorter than its fixed fields")
    remaining, endpoint_size, count = _REQUEST_FIXED.unpack_from(body)
    pos = 12 + endpoint_size
    if pos > size:
        raise FrameError("a REQUEST frame's endpoint runs past the frame")
    try:
        endpoint = str(body[12:pos], "utf-8")
    except UnicodeDecodeError:
        raise FrameError("a REQUEST frame's endpoint is not UTF-8") from None
    headers: dict[str, str] = {}
    if count:
        pos = _decode_headers(body, pos, count, headers)
    if remaining != remaining:
        raise FrameError("a REQUEST frame's deadline is NaN")
    return endpoint, headers, (None if remaining == math.inf else remaining), bytes(body[pos:])


def _decode_headers(body: memoryview, pos: int, count: int, headers: dict[str, str]) -> int:
    size = len(body)
    unpack_from = _HEADER_ENTRY.unpack_from
    try:
        for _ in range(count):
            if pos + 6 > size:
                raise FrameError("a REQUEST frame's headers run past the frame")
            key_size, value_size = unpack_from(body, pos)
            pos += 6
            mid = pos + key_size
            end = mid + value_size
            if end > size:
                raise FrameError("a REQUEST frame's headers run past the frame")
            headers[str(body[pos:mid], "utf-8")] = str(body[mid:end], "utf-8")
            pos = end
    except UnicodeDecodeError:
        raise FrameError("a REQUEST frame's headers are not UTF-8") from None
    if pos > METADATA_LIMIT + 12:
        raise FrameError("a REQUEST frame's endpoint and headers exceed 64 KiB")
    return pos


def encode_error(rid: int, error: RequestPlaneError) -> bytes:
    """An ERROR frame carrying ``error`` as (code, remote type, message)."""
    code = error.code.encode()[:255]
    remote_type = getattr(error, "type_name", "").encode()[:1024]
    message = getattr(error, "remote_message", None)
    if message is None:
        message = error.message
    text = message.encode("utf-8", "replace")[:MAX_ERROR_MESSAGE]
    size = _ERROR_FIXED.size + len(code) + len(remote_type) + len(text)
    return b"".join(
        (
            HEADER.pack(size, ERROR, rid),
            _ERROR_FIXED.pack(len(code), len(remote_type)),
            code,
            remote_type,
            text,
        )
    )


def decode_error(body: memoryview) -> tuple[str, str, str]:
    """``(code, message, remote type)`` of an ERROR body, for ``error_from_wire``."""
    if len(body) < _ERROR_FIXED.size:
        raise FrameError("an ERROR frame is shorter than its fixed fields")
    code_size, type_size = _ERROR_FIXED.unpack_from(body)
    pos = _ERROR_FIXED.size
    mid = pos + code_size
    end = mid + type_size
    if end > len(body) or len(body) > METADATA_LIMIT:
        raise FrameError("an ERROR frame's fields do not fit the frame")
    # A message cut at the sender's length limit may end inside a character.
    code = str(body[pos:mid], "utf-8", "replace")
    remote_type = str(body[mid:end], "utf-8", "replace")
    return code, str(body[end:], "utf-8", "replace"), remote_type
