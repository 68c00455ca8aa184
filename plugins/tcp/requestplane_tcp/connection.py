"""One framed connection: a coalescing writer and a buffered frame reader.

Senders never await the socket. :meth:`FrameConnection.send` appends a whole frame to the
outgoing list synchronously (so it is atomic and cancellation cannot tear a frame), and one
writer task per connection sends everything queued since its last write as ONE ``send``.
Under load many frames share a system call, and no sender ever waits behind another
sender's ``send`` (a lock around ``send`` convoys: each sender yields while holding it).

The reader feeds what arrives to a frame parser (``frame_parser.py``), which hands every
complete frame to the handler without awaiting in between, each body a memoryview (no copy).
On asyncio and uvloop a plain TCP connection's bytes come from a protocol of our own that
the transport keeps feeding (``protocol_reader.py``); anywhere else (trio, TLS) from
``receive()`` in a loop. Either way the parsing, and so every handler call, happens in the
reader task.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
from anyio.abc import ByteStream

from requestplane_core import ConnectionLost

from .frame_parser import FrameHandler, FrameParser, body_bytes
from .framing import PREAMBLE_SIZE, FrameError, check_preamble, tls_hint
from .protocol_reader import protocol_source, read_through_protocol
from .socket_writer import socket_writer

__all__ = ["FrameConnection", "FrameHandler", "body_bytes", "close_quietly"]

RECEIVE_SIZE = 262144
# Senders wait (after queueing their frame) while more than this is queued, so a peer that
# reads slowly slows its producers down instead of growing our memory without bound.
HIGH_WATER = 1 << 20
# Payloads from this size on are sent as they are rather than joined with the frames around
# them: a large payload is not copied once more just to be glued to a header.
_JOIN_LIMIT = 65536
# Once this much is queued, the task queueing hands it to the socket at once instead of
# leaving it for the writer task (socket_writer.py). Measured: 8, 16 and 32 KiB all overlap
# the two ends; 32 KiB costs the fewest system calls.
_WRITE_THROUGH_AT = 32768

_EventFactory = Callable[[], anyio.Event]


class FrameConnection:
    """The byte-level half of a connection, shared by client and server."""

    def __init__(self, stream: ByteStream, peer: str, limits: list[int]) -> None:
        """``limits[kind]`` is the longest body accepted for a frame kind (-1: none)."""
        self.stream = stream
        self.peer = peer
        self.limits = limits
        # anyio.Event() looks its backend up on each call; instantiating the backend's
        # class directly keeps per-request events cheap.
        self.new_event: _EventFactory = type(anyio.Event())
        self.closed = False  # no more frames may be queued
        self.bytes_sent = 0
        self.bytes_received = 0
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._out_big = False  # a piece worth sending without copying it is queued
        self._wake = self.new_event()
        self._writer_idle = False
        self._drained: anyio.Event | None = None
        self._buf = bytearray()
        self._write_now = socket_writer(stream)
        self._sending = False  # the writer task holds frames it has not handed over yet
        self.parser: FrameParser | None = None  # while reading frames

    # -- writing ---------------------------------------------------------------------------

    def send(self, frame: bytes) -> None:
        """Queue one whole frame (synchronously, so it can never be torn by cancellation)."""
        if self.closed:
            raise ConnectionLost(f"the connection to {self.peer} is closed")
        self._out.append(frame)
        self._out_bytes += len(frame)
        if self._writer_idle:
            self._writer_idle = False
            self._wake.set()
        if self._out_bytes >= _WRITE_THROUGH_AT and self._write_now is not None:
            self._write_through()

    def send2(self, head: bytes, body: bytes) -> None:
        """Queue a frame given as head and body (saves concatenating a large payload)."""
        if self.closed:
            raise ConnectionLost(f"the connection to {self.peer} is closed")
        out = self._out
        out.append(head)
        out.append(body)
        size = len(body)
        self._out_bytes += len(head) + size
        if size >= _JOIN_LIMIT:
            self._out_big = True
        if self._writer_idle:
            self._writer_idle = False
            self._wake.set()
        if self._out_bytes >= _WRITE_THROUGH_AT and self._write_now is not None:
            self._write_through()

    def _write_through(self) -> None:
        """Hand the queue to the socket now rather than at the end of the burst (see
        socket_writer.py), unless the writer task is in the middle of a send."""
        if self._sending or self._out_big or self.closed:
            return  # large pieces go through the writer, uncopied
        assert self._write_now is not None
        data = b"".join(self._out)
        taken = self._write_now(data)
        if not taken:
            return
        self.bytes_sent += taken
        if taken == len(data):
            self._out = []  # a new list: the writer may be about to take the old one
            self._out_bytes = 0
        else:
            self._out = [data[taken:]]
            self._out_bytes = len(data) - taken
        if self._drained is not None and self._out_bytes <= HIGH_WATER:
            self._release_drain_waiters()

    @property
    def congested(self) -> bool:
        return self._out_bytes > HIGH_WATER

    @property
    def sending(self) -> bool:
        """Frames are queued, or being written: the peer has something still to receive."""
        return bool(self._out) or self._sending

    async def wait_drained(self) -> None:
        """Wait until the queue is below the high-water mark (call when :attr:`congested`)."""
        while self._out_bytes > HIGH_WATER and not self.closed:
            if self._drained is None:
                self._drained = self.new_event()
            await self._drained.wait()

    def close(self) -> None:
        """Accept no more frames; the writer flushes what is queued, then stops."""
        self.closed = True
        if self._writer_idle:
            self._writer_idle = False
            self._wake.set()
        self._release_drain_waiters()

    def abandon(self) -> None:
        """Accept no more frames and drop the queue's waiters: the connection is lost."""
        self.closed = True
        self._release_drain_waiters()

    def _release_drain_waiters(self) -> None:
        if self._drained is not None:
            self._drained.set()
            self._drained = None

    async def run_writer(self) -> None:
        send = self.stream.send
        while True:
            out = self._out
            if not out:
                if self.closed:
                    return
                self._wake = self.new_event()
                self._writer_idle = True
                await self._wake.wait()
                continue
            size = self._out_bytes
            big = self._out_big
            self._out = []
            self._out_bytes = 0
            self._out_big = False
            self._sending = True  # until sent, nothing may overtake what was taken here
            try:
                if len(out) == 1:
                    await send(out[0])
                elif not big:
                    await send(b"".join(out))
                else:
                    for block in _blocks(out):
                        await send(block)
            finally:
                self._sending = False
            self.bytes_sent += size
            if self._drained is not None and self._out_bytes <= HIGH_WATER:
                self._release_drain_waiters()

    # -- reading ---------------------------------------------------------------------------

    async def read_preamble(self) -> None:
        """Receive and check the peer's preamble; raise :class:`FrameError` if it is not."""
        buf = self._buf
        while len(buf) < PREAMBLE_SIZE:
            try:
                data = await self.stream.receive(RECEIVE_SIZE)
            except anyio.EndOfStream:
                if buf:
                    raise FrameError(
                        "the peer closed the connection in the middle of its preamble"
                        + tls_hint(buf)
                    ) from None
                raise
            self.bytes_received += len(data)
            buf += data
        check_preamble(buf)
        del buf[:PREAMBLE_SIZE]

    async def run_reader(self, handler: FrameHandler, pause_when_congested: bool = False) -> None:
        """Parse frames until the peer closes (returns) or breaks the protocol (raises).

        With ``pause_when_congested`` (the server's side) nothing more is read while more
        than the high-water mark waits to be sent: answers given on the spot, and refusals,
        would otherwise pile up without bound for a peer that sends and never reads. Only
        one side may pause, or two peers each waiting for the other to read would stall.
        """
        parser = self.parser = FrameParser(handler, self.limits, self._buf)
        self._buf = bytearray()
        parser.feed(b"")  # what arrived behind the preamble
        source = protocol_source(self.stream)
        if source is not None:
            congested = self._is_congested if pause_when_congested else None
            await read_through_protocol(source, self._feeder(parser), congested, self.wait_drained)
            parser.at_eof()
            return
        receive = self.stream.receive
        feed = parser.feed
        while True:
            if pause_when_congested and self._out_bytes > HIGH_WATER:
                await self.wait_drained()
            try:
                data = await receive(RECEIVE_SIZE)
            except anyio.EndOfStream:
                parser.at_eof()
                return
            self.bytes_received += len(data)
            feed(data)

    def _feeder(self, parser: FrameParser) -> Callable[[bytes], None]:
        feed = parser.feed

        def count_and_feed(data: bytes) -> None:
            self.bytes_received += len(data)
            feed(data)

        return count_and_feed

    def _is_congested(self) -> bool:
        return self._out_bytes > HIGH_WATER

    async def aclose(self) -> None:
        """Close the socket now (whatever is still queued is dropped)."""
        self.closed = True
        self._release_drain_waiters()
        await close_quietly(self.stream)


async def close_quietly(stream: ByteStream) -> None:
    """Close a stream that is being dropped, even from a cancelled scope; an error closing
    it changes nothing (every call on it has its outcome already)."""
    with anyio.CancelScope(shield=True):
        try:
            await stream.aclose()
        except Exception:
            pass


def _blocks(out: list[bytes]) -> list[bytes]:
    """Group queued frames into few sends, leaving large pieces uncopied."""
    blocks: list[bytes] = []
    small: list[bytes] = []
    small_size = 0
    for item in out:
        if len(item) >= _JOIN_LIMIT:
            if small:
                blocks.append(b"".join(small))
                small = []
                small_size = 0
            blocks.append(item)
        else:
            small.append(item)
            small_size += len(item)
            if small_size >= _JOIN_LIMIT:
                blocks.append(b"".join(small))
                small = []
                small_size = 0
    if small:
        blocks.append(b"".join(small))
    return blocks
