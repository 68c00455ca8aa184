"""Raw anyio TCP, on asyncio or trio: the same multiplexed echo as raw_asyncio.py.

The floor for a transport written on anyio: BufferedByteReceiveStream.receive_exactly for
header and body, one lock around sends, an Event per request. ``--inline`` answers in the
server's read loop; without it each request runs in its own task.

    python benchmarks/raw_anyio.py [--backend asyncio|trio] [--inline] [--kind stream] [--table]
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from _frames import CHUNK, HEAD, RESPONSE, STREAM, STREAM_REQUEST, UNARY
from _harness import peer_main
from anyio.abc import SocketAttribute, SocketStream, TaskGroup
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.memory import MemoryObjectSendStream

from requestplane_core.bench.load import Call


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inline", action="store_true", help="answer in the read loop")


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
        tg.start_soon(listener.serve, lambda s: _handle(s, args.inline))
        yield f"127.0.0.1:{port}"
        tg.cancel_scope.cancel()


async def _read(
    reader: BufferedByteReceiveStream,
    waiters: dict[int, tuple[anyio.Event, list[bytes]]],
    streams: dict[int, MemoryObjectSendStream[bytes | None]],
) -> None:
    while True:
        length, rid, kind = HEAD.unpack(await reader.receive_exactly(HEAD.size))
        body = await reader.receive_exactly(length) if length else b""
        if kind == RESPONSE:
            event, slot = waiters.pop(rid)
            slot.append(body)
            event.set()
        elif kind == CHUNK:
            streams[rid].send_nowait(body)
        else:
            streams.pop(rid).send_nowait(None)


@asynccontextmanager
async def connect(args: argparse.Namespace, address: str) -> AsyncIterator[Call]:
    host, port = address.rsplit(":", 1)
    stream = await anyio.connect_tcp(host, int(port))
    lock = anyio.Lock()
    waiters: dict[int, tuple[anyio.Event, list[bytes]]] = {}
    streams: dict[int, MemoryObjectSendStream[bytes | None]] = {}
    ids = itertools.count()
    payload = bytes(args.payload)

    async def unary() -> None:
        rid = next(ids)
        event, slot = waiters[rid] = (anyio.Event(), [])
        async with lock:
            await stream.send(HEAD.pack(len(payload), rid, UNARY) + payload)
        await event.wait()
        if slot[0] != payload:
            raise ValueError("echo mismatch")

    request = STREAM_REQUEST.pack(args.chunks, args.chunk_size)

    async def chunked() -> None:
        rid = next(ids)
        send, receive = anyio.create_memory_object_stream[bytes | None](math.inf)
        streams[rid] = send
        async with lock:
            await stream.send(HEAD.pack(len(request), rid, STREAM) + request)
        count = 0
        async for chunk in receive:
            if chunk is None:
                break
            count += 1
        if count != args.chunks:
            raise ValueError("short stream")

    tg: TaskGroup
    async with stream, anyio.create_task_group() as tg:
        tg.start_soon(_read, BufferedByteReceiveStream(stream), waiters, streams)
        yield unary if args.kind == "unary" else chunked
        tg.cancel_scope.cancel()


if __name__ == "__main__":
    sys.exit(peer_main("raw-anyio", serve, connect, doc=__doc__, options=_options))
