"""Raw anyio TCP, on asyncio or trio: the same multiplexed echo as raw_asyncio.py.

The floor for a transport written on anyio, two ways:

- plain (the default): BufferedByteReceiveStream.receive_exactly for header and body, one
  lock around sends (a ``send`` each), an Event per request: what anyio's API invites;
- ``--batched``: what a careful author writes: large blocks received and every frame in
  them parsed without awaiting, frames queued and sent by one writer task per connection,
  all that is queued in one ``send`` (the byte path requestplane-tcp itself uses).

``--inline`` answers in the server's read loop; without it each request runs in its own
task (anyio's ``start_soon``).

    python benchmarks/raw_anyio.py [--backend asyncio|trio] [--inline] [--batched]
                                   [--kind stream] [--table]
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
from _frames import CHUNK, HEAD, RESPONSE, STREAM, STREAM_REQUEST, UNARY
from _harness import peer_main
from anyio.abc import SocketAttribute, SocketStream, TaskGroup
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.memory import MemoryObjectSendStream
from requestplane_bench.load import Call


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inline", action="store_true", help="answer in the read loop")
    parser.add_argument(
        "--batched", action="store_true", help="block reads and one coalescing writer task"
    )


class _Batched:
    """One connection's frames: queued by anyone, sent by one writer task, received in
    large blocks and handed to ``on_frame`` one by one."""

    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self.out: list[bytes] = []
        self.wake = anyio.Event()

    def send(self, frame: bytes) -> None:
        self.out.append(frame)
        self.wake.set()

    async def run_writer(self) -> None:
        while True:
            if not self.out:
                self.wake = anyio.Event()
                await self.wake.wait()
                continue
            out, self.out = self.out, []
            await self.stream.send(out[0] if len(out) == 1 else b"".join(out))

    async def run_reader(self, on_frame: Callable[[int, int, bytes], None]) -> None:
        buf = b""
        size = HEAD.size
        while True:
            try:
                data = await self.stream.receive(262144)
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return
            buf = buf + data if buf else data
            pos, n = 0, len(buf)
            while n - pos >= size:
                length, rid, kind = HEAD.unpack_from(buf, pos)
                end = pos + size + length
                if end > n:
                    break
                on_frame(kind, rid, buf[pos + size : end])
                pos = end
            buf = buf[pos:]


async def _handle_batched(stream: SocketStream, inline: bool) -> None:
    conn = _Batched(stream)

    def respond(rid: int, body: bytes) -> None:
        conn.send(HEAD.pack(len(body), rid, RESPONSE) + body)

    async def respond_in_task(rid: int, body: bytes) -> None:
        respond(rid, body)

    async def chunks(rid: int, body: bytes) -> None:
        count, size = STREAM_REQUEST.unpack_from(body)
        frame = HEAD.pack(size, rid, CHUNK) + b"c" * size
        for i in range(count):
            conn.send(frame)
            if i % 16 == 15:
                await anyio.lowlevel.checkpoint()  # let the writer and reader run
        conn.send(HEAD.pack(0, rid, 4))

    async with stream, anyio.create_task_group() as tg:

        def on_frame(kind: int, rid: int, body: bytes) -> None:
            if kind == UNARY and inline:
                respond(rid, body)
            elif kind == UNARY:
                tg.start_soon(respond_in_task, rid, body)
            else:
                tg.start_soon(chunks, rid, body)

        tg.start_soon(conn.run_writer)
        await conn.run_reader(on_frame)
        tg.cancel_scope.cancel()


async def _handle(stream: SocketStream, inline: bool) -> None:
    reader = BufferedByteReceiveStream(stream)
    lock = anyio.Lock()

    async def respond(rid: int, body: bytes) -> None:
        async with lock:
            await stream.send(HEAD.pack(len(body), rid, RESPONSE) + body)

    async def chunks(rid: int, body: bytes) -> None:
        count, size = STREAM_REQUEST.unpack_from(body)
        frame = HEAD.pack(size, rid, CHUNK) + b"c" * size
        for _ in range(count):
            async with lock:
                await stream.send(frame)
        async with lock:
            await stream.send(HEAD.pack(0, rid, 4))

    async with stream, anyio.create_task_group() as tg:
        try:
            while True:
                length, rid, kind = HEAD.unpack(await reader.receive_exactly(HEAD.size))
                body = await reader.receive_exactly(length) if length else b""
                if kind == UNARY and inline:
                    await respond(rid, body)
                elif kind == UNARY:
                    tg.start_soon(respond, rid, body)
                else:
                    tg.start_soon(chunks, rid, body)
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
            tg.cancel_scope.cancel()


@asynccontextmanager
async def serve(args: argparse.Namespace) -> AsyncIterator[str]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        handle = _handle_batched if args.batched else _handle
        tg.start_soon(listener.serve, lambda s: handle(s, args.inline))
        yield f"127.0.0.1:{port}"
        tg.cancel_scope.cancel()


async def _read(
    reader: BufferedByteReceiveStream, on_frame: Callable[[int, int, bytes], None]
) -> None:
    while True:
        length, rid, kind = HEAD.unpack(await reader.receive_exactly(HEAD.size))
        on_frame(kind, rid, await reader.receive_exactly(length) if length else b"")


@asynccontextmanager
async def connect(args: argparse.Namespace, address: str) -> AsyncIterator[Call]:
    host, port = address.rsplit(":", 1)
    stream = await anyio.connect_tcp(host, int(port))
    waiters: dict[int, tuple[anyio.Event, list[bytes]]] = {}
    streams: dict[int, MemoryObjectSendStream[bytes | None]] = {}
    ids = itertools.count()
    payload = bytes(args.payload)
    request = STREAM_REQUEST.pack(args.chunks, args.chunk_size)

    def on_frame(kind: int, rid: int, body: bytes) -> None:
        if kind == RESPONSE:
            event, slot = waiters.pop(rid)
            slot.append(body)
            event.set()
        elif kind == CHUNK:
            streams[rid].send_nowait(body)
        else:
            streams.pop(rid).send_nowait(None)

    # Batched: frames are queued synchronously for the writer task. Plain: each is sent
    # with its own send, under a lock (concurrent sends on one stream are not allowed).
    conn = _Batched(stream) if args.batched else None
    lock = anyio.Lock()

    async def send(frame: bytes) -> None:
        if conn is not None:
            conn.send(frame)
            return
        async with lock:
            await stream.send(frame)

    async def unary() -> None:
        rid = next(ids)
        event, slot = waiters[rid] = (anyio.Event(), [])
        await send(HEAD.pack(len(payload), rid, UNARY) + payload)
        await event.wait()
        if slot[0] != payload:
            raise ValueError("echo mismatch")

    async def chunked() -> None:
        rid = next(ids)
        send_chunk, receive = anyio.create_memory_object_stream[bytes | None](math.inf)
        streams[rid] = send_chunk
        await send(HEAD.pack(len(request), rid, STREAM) + request)
        count = 0
        async for chunk in receive:
            if chunk is None:
                break
            count += 1
        if count != args.chunks:
            raise ValueError("short stream")

    tg: TaskGroup
    async with stream, anyio.create_task_group() as tg:
        if conn is not None:
            tg.start_soon(conn.run_writer)
            tg.start_soon(conn.run_reader, on_frame)
        else:
            tg.start_soon(_read, BufferedByteReceiveStream(stream), on_frame)
        yield unary if args.kind == "unary" else chunked
        tg.cancel_scope.cancel()


if __name__ == "__main__":
    sys.exit(peer_main("raw-anyio", serve, connect, doc=__doc__, options=_options))
