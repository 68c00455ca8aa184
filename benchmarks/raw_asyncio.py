"""Raw asyncio streams: a length-prefixed, multiplexed echo over one connection.

The pure-Python floor a transport is measured against: StreamReader.readexactly for each
header and body, StreamWriter.write per frame, request ids pairing responses with futures.
``--inline`` answers in the server's read loop (the cheapest possible server); without it the
server runs each request in its own task, as a server with real handlers must. ``--uvloop``
runs both processes on uvloop. ``--kind stream`` answers each request with N chunk frames.

    python benchmarks/raw_asyncio.py [--inline] [--uvloop] [--kind stream] [--table]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from _frames import CHUNK, END, HEAD, RESPONSE, STREAM, STREAM_REQUEST, UNARY
from _harness import peer_main
from requestplane_bench.load import Call

_tasks: set[asyncio.Task[None]] = set()


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inline", action="store_true", help="answer in the read loop")


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, inline: bool) -> None:
    async def respond(rid: int, body: bytes) -> None:
        writer.write(HEAD.pack(len(body), rid, RESPONSE) + body)
        await writer.drain()

    async def stream(rid: int, body: bytes) -> None:
        count, size = STREAM_REQUEST.unpack_from(body)
        frame = HEAD.pack(size, rid, CHUNK) + b"c" * size
        for _ in range(count):
            writer.write(frame)
            await writer.drain()
        writer.write(HEAD.pack(0, rid, END))

    try:
        while True:
            length, rid, kind = HEAD.unpack(await reader.readexactly(HEAD.size))
            body = await reader.readexactly(length)
            if kind == UNARY and inline:
                writer.write(HEAD.pack(len(body), rid, RESPONSE) + body)
                await writer.drain()
                continue
            task = asyncio.create_task(respond(rid, body) if kind == UNARY else stream(rid, body))
            _tasks.add(task)
            task.add_done_callback(_tasks.discard)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


@asynccontextmanager
async def serve(args: argparse.Namespace) -> AsyncIterator[str]:
    server = await asyncio.start_server(lambda r, w: _handle(r, w, args.inline), "127.0.0.1", 0)
    async with server:
        host, port = server.sockets[0].getsockname()[:2]
        yield f"{host}:{port}"


@asynccontextmanager
async def connect(args: argparse.Namespace, address: str) -> AsyncIterator[Call]:
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    loop = asyncio.get_running_loop()
    waiters: dict[int, asyncio.Future[bytes]] = {}
    streams: dict[int, asyncio.Queue[bytes | None]] = {}
    ids = itertools.count()

    async def read() -> None:
        while True:
            length, rid, kind = HEAD.unpack(await reader.readexactly(HEAD.size))
            body = await reader.readexactly(length)
            if kind == RESPONSE:
                waiters.pop(rid).set_result(body)
            elif kind == CHUNK:
                streams[rid].put_nowait(body)
            else:
                streams.pop(rid).put_nowait(None)

    payload = bytes(args.payload)

    async def unary() -> None:
        rid = next(ids)
        waiters[rid] = future = loop.create_future()
        writer.write(HEAD.pack(len(payload), rid, UNARY) + payload)
        await writer.drain()
        if await future != payload:
            raise ValueError("echo mismatch")

    request = STREAM_REQUEST.pack(args.chunks, args.chunk_size)

    async def stream() -> None:
        rid = next(ids)
        streams[rid] = queue = asyncio.Queue()
        writer.write(HEAD.pack(len(request), rid, STREAM) + request)
        await writer.drain()
        count = 0
        while await queue.get() is not None:
            count += 1
        if count != args.chunks:
            raise ValueError("short stream")

    reader_task = asyncio.create_task(read())
    try:
        yield unary if args.kind == "unary" else stream
    finally:
        reader_task.cancel()
        writer.close()


if __name__ == "__main__":
    sys.exit(peer_main("raw-asyncio", serve, connect, doc=__doc__, options=_options))
