"""Frames out of a byte stream, fed incrementally and synchronously.

The parser does not read: whoever reads (anyio's ``receive`` in a loop, or a protocol that
the event loop hands the bytes to, ``protocol_reader.py``) feeds it what arrived, and it
calls the handler for every complete frame, without awaiting in between. Bodies are handed
out as memoryviews of its buffer (no copy until the handler makes the payload ``bytes``).

- A frame longer than its kind's limit is reported (``on_oversize``) as soon as its header
  is in; if the handler lets it be skipped, its body is discarded as it arrives, never
  buffered.
- A frame from 256 KiB on that did not arrive whole is gathered piece by piece and joined
  once, into the ``bytes`` its body is a view of (see ``body_bytes``): growing the buffer
  block by block and copying the body out of it again cost a large payload three copies.
- A buffer that views were handed out of is never resized (a handler may keep one alive a
  little longer than its call: trio's Cancelled, for one, can hold the frame that cancelled);
  the partial frame left over goes to a new buffer instead, and it is smaller than one frame.
"""

from __future__ import annotations

from typing import Protocol

from .framing import HEADER, HEADER_SIZE, TruncatedFrame

__all__ = ["GATHER_FROM", "FrameHandler", "FrameParser", "body_bytes"]

# Frames from this size on that do not fit in what was received are gathered and joined once.
GATHER_FROM = 262144


def body_bytes(body: memoryview) -> bytes:
    """``bytes(body)``, without copying a gathered frame's body: it is a ``bytes`` already."""
    whole = body.obj
    if type(whole) is bytes and len(whole) == len(body):
        return whole
    return bytes(body)


class FrameHandler(Protocol):
    def on_frame(self, kind: int, rid: int, body: memoryview) -> None:
        """Handle one complete frame; must copy what it keeps out of ``body``."""

    def on_oversize(self, kind: int, rid: int, length: int) -> None:
        """A frame longer than its kind's limit (or of a kind this side never receives)
        arrives; raise :class:`FrameError` unless its body can be skipped (the parser then
        discards it as it arrives, without buffering it)."""


class FrameParser:
    """Calls ``handler`` for each frame in the bytes fed to it, in order."""

    __slots__ = (
        "_buf",
        "_gathered",
        "_handler",
        "_limits",
        "_missing",
        "_parts",
        "_skip",
        "_span",
    )

    def __init__(self, handler: FrameHandler, limits: list[int], buf: bytearray) -> None:
        """``limits[kind]`` is the longest body accepted for a frame kind (-1: none);
        ``buf`` holds what arrived before (it is parsed by the first :meth:`feed`)."""
        self._handler = handler
        self._limits = limits
        self._buf = buf
        self._skip = 0  # bytes of an oversized body still to discard
        # Header and body size of the frame being skipped or gathered (for partial()).
        self._span = 0
        # A large frame being gathered: its pieces, how much is missing, (kind, rid).
        self._parts: list[bytes | memoryview] | None = None
        self._missing = 0
        self._gathered = (0, 0)

    def feed(self, data: bytes) -> None:
        """Take ``data`` (may be empty) and hand over every frame it completes."""
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                return
            self._buf += memoryview(data)[self._skip :]
            self._skip = 0
        elif self._parts is not None:
            if not self._gather(data):
                return
        else:
            self._buf += data
        buf = self._buf
        n = len(buf)
        if n < HEADER_SIZE:
            return
        unpack_from = HEADER.unpack_from
        handler = self._handler
        on_frame = handler.on_frame
        limits = self._limits
        pos = 0
        with memoryview(buf) as view:
            while n - pos >= HEADER_SIZE:
                length, kind, rid = unpack_from(buf, pos)
                end = pos + HEADER_SIZE + length
                if length > limits[kind]:
                    handler.on_oversize(kind, rid, length)
                    if end > n:
                        self._skip = end - n
                        self._span = HEADER_SIZE + length
                        pos = n
                        break
                    pos = end
                    continue
                if end > n:
                    if length >= GATHER_FROM:
                        self._start_gather(memoryview(buf)[pos:], kind, rid, length)
                        return
                    break
                on_frame(kind, rid, view[pos + HEADER_SIZE : end])
                pos = end
        if pos:
            self._buf = buf[pos:]

    def at_eof(self) -> None:
        """The peer closed: raise :class:`TruncatedFrame` if it did so in the middle of a
        frame."""
        if self._buf or self._skip or self._parts is not None:
            raise TruncatedFrame("the peer closed the connection in the middle of a frame")

    def partial(self) -> int:
        """How many bytes of an incomplete frame have arrived (0: between frames). Read by
        the server's periodic check of stalled frames, never per frame."""
        if self._skip:
            return self._span - self._skip
        if self._parts is not None:
            return self._span - self._missing
        return len(self._buf)

    def _start_gather(self, head: memoryview, kind: int, rid: int, length: int) -> None:
        # The old buffer stays as it is (a view of it is the first piece); a new one takes
        # whatever arrives after the frame.
        self._parts = [head[HEADER_SIZE:]]
        self._span = HEADER_SIZE + length
        self._missing = self._span - len(head)
        self._gathered = (kind, rid)
        self._buf = bytearray()

    def _gather(self, data: bytes) -> bool:
        """Add ``data`` to the frame being gathered; hand it over once it is whole and
        return True if bytes after it are left to parse (they are in the buffer)."""
        parts = self._parts
        assert parts is not None
        missing = self._missing
        if len(data) < missing:
            parts.append(data)
            self._missing = missing - len(data)
            return False
        view = memoryview(data)
        parts.append(view[:missing])
        body = b"".join(parts)
        self._parts = None
        self._missing = 0
        kind, rid = self._gathered
        self._buf = bytearray(view[missing:])
        self._handler.on_frame(kind, rid, memoryview(body))
        return True
