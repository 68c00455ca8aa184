"""The HTTP mapping of requestplane: header names, status codes, error bodies, stream framing.

Both halves import this module, so the protocol is defined once. See the README for the
protocol as a foreign client sees it.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Mapping
from urllib.parse import quote, unquote

from requestplane_core import (
    PayloadTooLarge,
    ProtocolError,
    RemoteError,
    RequestPlaneError,
    error_from_wire,
)

__all__ = [
    "CONTENT_TYPE_ERROR",
    "CONTENT_TYPE_STREAM",
    "CONTENT_TYPE_UNARY",
    "FRAME_DATA",
    "FRAME_END",
    "FRAME_ERROR",
    "FRAME_HEADER",
    "HEADER_ERROR",
    "HEADER_TIMEOUT",
    "META_PREFIX",
    "StreamDecoder",
    "decode_error",
    "decode_meta_name",
    "decode_meta_value",
    "encode_error",
    "encode_frame",
    "encode_meta",
    "error_from_response",
    "format_timeout",
    "status_for",
]

# User headers travel as ``rp-meta-<name>``; the transport's own headers are ``rp-<word>``
# with a word that is never ``meta``, so neither can shadow the other, and no user header can
# collide with HTTP's own (content-length, host, te, ...).
META_PREFIX = b"rp-meta-"
HEADER_TIMEOUT = b"rp-timeout"  # remaining seconds (decimal) the caller will wait
HEADER_ERROR = b"rp-error"  # on error responses: the error's wire code

CONTENT_TYPE_UNARY = b"application/octet-stream"
CONTENT_TYPE_STREAM = b"application/x-requestplane-stream"
CONTENT_TYPE_ERROR = b"application/json"

# A streamed body is a sequence of frames: kind (1 byte), length (4 bytes, big endian), data.
# A stream is complete only when it ends with an END or ERROR frame; a body that stops
# anywhere else was cut off, and the client says so instead of returning a short stream.
FRAME_HEADER = struct.Struct(">cI")
FRAME_DATA = b"D"
FRAME_END = b"E"
FRAME_ERROR = b"X"

_STATUS_BY_CODE = {
    "not_found": 404,
    "overloaded": 429,
    "unavailable": 503,
    "deadline": 504,
    "too_large": 413,
    "remote": 500,
    "protocol": 400,
}
# For error responses without our error body (hypercorn's own, or anything in between).
_CODE_BY_STATUS = {
    400: "protocol",
    404: "not_found",
    405: "protocol",
    408: "deadline",
    413: "too_large",
    429: "overloaded",
    502: "unavailable",
    503: "unavailable",
    504: "deadline",
}


def status_for(error: RequestPlaneError) -> int:
    return _STATUS_BY_CODE.get(error.code, 500)


def encode_error(error: RequestPlaneError) -> bytes:
    if isinstance(error, RemoteError):
        message, remote_type = error.remote_message, error.type_name
    else:
        message, remote_type = error.message, ""
    return json.dumps(
        {"code": error.code, "message": message, "type": remote_type}, ensure_ascii=False
    ).encode()


def decode_error(body: bytes) -> RequestPlaneError:
    try:
        doc = json.loads(body)
        code, message, remote_type = doc["code"], doc.get("message", ""), doc.get("type", "")
        if not all(isinstance(v, str) for v in (code, message, remote_type)):
            raise TypeError(doc)
    except (ValueError, TypeError, KeyError):
        return ProtocolError(f"the server sent a malformed error body ({len(body)} bytes)")
    return error_from_wire(code, message, remote_type)


def error_from_response(status: int, has_error_header: bool, body: bytes) -> RequestPlaneError:
    """The typed error an HTTP error response stands for."""
    if has_error_header:
        return decode_error(body)
    code = _CODE_BY_STATUS.get(status, "internal")
    return error_from_wire(code, f"the server answered HTTP {status}")


def encode_frame(kind: bytes, payload: bytes = b"") -> bytes:
    return FRAME_HEADER.pack(kind, len(payload)) + payload


class StreamDecoder:
    """Splits a framed body, fed in arbitrary pieces, back into frames.

    A chunk over ``max_chunk`` bytes (this client's max message size) is
    ``PayloadTooLarge``: the server may allow larger messages, that does not break the
    protocol. An unknown kind or an END/ERROR frame over its bound is ``ProtocolError``.
    The frames before a bad one are still returned; :attr:`error` then holds the error and
    the next :meth:`feed` raises it, so a caller hands out every good chunk first.
    """

    def __init__(self, max_chunk: int) -> None:
        self._buffer = bytearray()
        self._max_chunk = max_chunk
        # An error body is JSON of a code, a message and a type name: bounded by the same
        # limit as a chunk, plus room for the JSON around a message of that size.
        self._max_control = max_chunk + 1024
        self.error: RequestPlaneError | None = None

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        if self.error is not None:
            raise self.error
        buffer = self._buffer
        buffer += data
        frames: list[tuple[bytes, bytes]] = []
        offset = 0
        size = FRAME_HEADER.size
        while len(buffer) - offset >= size:
            kind, length = FRAME_HEADER.unpack_from(buffer, offset)
            error = self._check(kind, length)
            if error is not None:
                self.error = error
                break
            if len(buffer) - offset - size < length:
                break
            start = offset + size
            frames.append((kind, bytes(buffer[start : start + length])))
            offset = start + length
        if self.error is not None:
            buffer.clear()
        elif offset:
            del buffer[:offset]
        return frames

    def _check(self, kind: bytes, length: int) -> RequestPlaneError | None:
        if kind == FRAME_DATA:
            if length > self._max_chunk:
                return PayloadTooLarge(
                    f"a stream chunk of {length} bytes exceeds this client's max_message_size "
                    f"of {self._max_chunk} bytes"
                )
        elif kind not in (FRAME_END, FRAME_ERROR):
            return ProtocolError(f"unknown stream frame kind {kind!r}")
        elif length > self._max_control:
            return ProtocolError(
                f"a stream frame of {length} bytes exceeds the maximum of {self._max_control}"
            )
        return None

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._buffer)


# ``tchar`` (RFC 9110) without upper case letters and ``%``: header names are case-insensitive
# (HTTP/2 requires lower case), so upper case letters and every other byte are %-escaped, and
# any name survives the trip exactly.
_NAME_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789-_.!#$&'*+^`|~")
# Visible ASCII and space, without ``%``: values cannot carry CR, LF, NUL or non-ASCII.
_VALUE_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if c != 0x25 and not chr(c).isalnum())


def _encode_name(name: str) -> bytes:
    raw = name.encode()
    if all(b in _NAME_SAFE for b in raw):
        return META_PREFIX + raw
    return META_PREFIX + b"".join(
        # Lower case hex: HTTP/2 rejects any upper case letter in a header name.
        bytes((b,)) if b in _NAME_SAFE else b"%%%02x" % b
        for b in raw
    )


def _encode_value(value: str) -> bytes:
    text = quote(value, safe=_VALUE_SAFE)
    # HTTP strips leading and trailing whitespace from field values.
    if text.startswith(" "):
        text = "%20" + text[1:]
    if text.endswith(" "):
        text = text[:-1] + "%20"
    return text.encode("ascii")


def encode_meta(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    return [(_encode_name(k), _encode_value(v)) for k, v in headers.items()]


def decode_meta_name(raw_name: bytes) -> str:
    """``raw_name`` without :data:`META_PREFIX`, lower case as HTTP delivers it."""
    text = raw_name.decode("latin-1")
    return unquote(text) if "%" in text else text


def decode_meta_value(raw_value: bytes) -> str:
    text = raw_value.decode("latin-1")
    return unquote(text) if "%" in text else text


def format_timeout(seconds: float) -> bytes:
    return b"%.6f" % max(seconds, 0.0)


def iter_meta(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    prefix_len = len(META_PREFIX)
    return {
        decode_meta_name(name[prefix_len:]): decode_meta_value(value)
        for name, value in headers
        if name.startswith(META_PREFIX)
    }
