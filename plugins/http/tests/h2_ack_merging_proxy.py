"""A TCP proxy that delivers the server's SETTINGS acknowledgement in the same read as the
first DATA frame larger than HTTP/2's default maximum frame size.

Between processes on a busy machine this happens by itself: hypercorn writes its SETTINGS
at once, the client starts its requests on them, and its reader then finds the ACK of its
own SETTINGS (which raised its frame size limit) and the first large answers in one
``recv``. Within one test process the ACK usually arrives on its own; this proxy makes the
interleaving certain. It forwards every byte unchanged and in order, it only holds the
server's bytes from that ACK until a large DATA frame has followed, then writes them at once.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.abc import ByteStream, SocketStream

DEFAULT_MAX_FRAME_SIZE = 16384
_HEADER = struct.Struct(">HBBBL")  # 24-bit length as 16 + 8 bits, type, flags, stream id
_DATA, _SETTINGS, _ACK = 0x0, 0x4, 0x1
_HOLD_LIMIT = 512 * 1024  # give up waiting for a large frame (the test then says so)


class AckMergingProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        # Connections on which the ACK went out in one write with a large DATA frame.
        self.merged = 0

    async def _serve(self, client: SocketStream) -> None:
        async with client:
            try:
                upstream = await anyio.connect_tcp("127.0.0.1", self.upstream_port)
            except OSError:
                return
            async with upstream, anyio.create_task_group() as tg:
                tg.start_soon(self._pump, client, upstream, tg.cancel_scope)
                await self._pump_answers(upstream, client)
                tg.cancel_scope.cancel()

    async def _pump(self, source: ByteStream, sink: ByteStream, scope: anyio.CancelScope) -> None:
        try:
            async for data in source:
                await sink.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        scope.cancel()

    async def _pump_answers(self, upstream: ByteStream, client: ByteStream) -> None:
        buffer = bytearray()
        held: bytearray | None = None  # from the ACK on, until a large DATA frame followed
        released = False
        try:
            async for data in upstream:
                if released:
                    await client.send(data)
                    continue
                buffer += data
                while len(buffer) >= _HEADER.size:
                    high, low, kind, flags, _ = _HEADER.unpack_from(buffer)
                    length = (high << 8) | low
                    end = _HEADER.size + length
                    if len(buffer) < end:
                        break
                    frame = bytes(buffer[:end])
                    del buffer[:end]
                    if held is None:
                        if kind == _SETTINGS and flags & _ACK:
                            held = bytearray(frame)
                        else:
                            await client.send(frame)
                        continue
                    held += frame
                    large = kind == _DATA and length > DEFAULT_MAX_FRAME_SIZE
                    if large or len(held) > _HOLD_LIMIT:
                        self.merged += large
                        await client.send(bytes(held + buffer))
                        buffer.clear()
                        released = True
                        break
            if held is not None and not released:
                await client.send(bytes(held + buffer))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass


@asynccontextmanager
async def ack_merging_proxy(upstream_port: int) -> AsyncIterator[AckMergingProxy]:
    proxy = AckMergingProxy(upstream_port)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    proxy.port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, proxy._serve)
        yield proxy
        tg.cancel_scope.cancel()
