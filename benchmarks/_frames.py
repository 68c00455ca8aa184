"""The raw peers' wire format: a 9-byte header (body length, request id, kind), then the body.

Many requests share one connection; the id pairs each response (or stream chunk) with its
request, in any order.
"""

from __future__ import annotations

import struct

HEAD = struct.Struct(">IIB")
UNARY, STREAM, RESPONSE, CHUNK, END = range(5)
STREAM_REQUEST = struct.Struct(">II")  # chunk count, chunk size
