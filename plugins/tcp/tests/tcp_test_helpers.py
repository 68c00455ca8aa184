"""Shared pieces of the tcp transport's tests: servers, clients and raw protocol bytes."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.abc import SocketStream
from requestplane_tcp.framing import (
    HEADER,
    HEADER_SIZE,
    PREAMBLE,
    PREAMBLE_SIZE,
    encode_request_head,
)
from requestplane_tcp.plugin import requestplane_transports
from requestplane_tcp.settings import TcpSettings

from requestplane_core import (
    Address,
    Handler,
    Server,
    TransportClient,
    TransportSpec,
    load_settings,
    serve,
)

BOUND = 15.0  # seconds; only turns a hang into a failure on a loaded machine


def spec() -> TransportSpec[TcpSettings]:
    return requestplane_transports()[0]


def make_settings(**overrides: object) -> TcpSettings:
    return load_settings(TcpSettings, prefix="REQUESTPLANE_TCP_", environ={}, overrides=overrides)


@asynccontextmanager
async def running(
    handlers: Mapping[str, Handler], **overrides: object
) -> AsyncIterator[tuple[Server, dict[str, Address]]]:
    """A tcp server serving ``handlers`` for the duration of the block."""
    async with serve(spec(), make_settings(**overrides), drain_timeout=1.0) as server:
        addresses = {name: await server.register(name, h) for name, h in handlers.items()}
        yield server, addresses


@asynccontextmanager
async def client(**overrides: object) -> AsyncIterator[TransportClient]:
    async with spec().client(make_settings(**overrides)) as c:
        yield c


async def echo(request: Any) -> bytes:
    return bytes(request.payload)


# -- raw protocol ----------------------------------------------------------------------------


def frame(kind: int, rid: int, body: bytes = b"") -> bytes:
    return HEADER.pack(len(body), kind, rid) + body


def request_frame(
    rid: int,
    endpoint: str,
    payload: bytes,
    headers: Mapping[str, str] | None = None,
    remaining: float | None = None,
) -> bytes:
    return encode_request_head(rid, endpoint.encode(), headers, remaining, len(payload)) + payload


async def raw_connect(address: Address, *, preamble: bytes | None = PREAMBLE) -> SocketStream:
    assert address.port is not None
    stream = await anyio.connect_tcp(address.host, address.port)
    if preamble:
        await stream.send(preamble)
    return stream


async def read_to_eof(stream: SocketStream) -> bytes:
    """Everything the peer sends until it closes (raises on a hang via the caller's bound)."""
    data = bytearray()
    while True:
        try:
            data += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
            return bytes(data)


class RawReader:
    """Reads the server's preamble and then whole frames from a raw connection."""

    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self.buf = bytearray()

    async def _fill(self, size: int) -> None:
        while len(self.buf) < size:
            self.buf += await self.stream.receive()

    async def preamble(self) -> bytes:
        await self._fill(PREAMBLE_SIZE)
        data = bytes(self.buf[:PREAMBLE_SIZE])
        del self.buf[:PREAMBLE_SIZE]
        return data

    async def frame(self) -> tuple[int, int, bytes]:
        await self._fill(HEADER_SIZE)
        length, kind, rid = HEADER.unpack_from(self.buf)
        await self._fill(HEADER_SIZE + length)
        body = bytes(self.buf[HEADER_SIZE : HEADER_SIZE + length])
        del self.buf[: HEADER_SIZE + length]
        return kind, rid, body


def parse_frames(data: bytes) -> list[tuple[int, int, bytes]]:
    """Split bytes (after the preamble) into frames; a trailing partial frame is an error."""
    frames = []
    pos = 0
    while pos < len(data):
        length, kind, rid = HEADER.unpack_from(data, pos)
        body = data[pos + HEADER_SIZE : pos + HEADER_SIZE + length]
        assert len(body) == length, "a partial frame"
        frames.append((kind, rid, body))
        pos += HEADER_SIZE + length
    return frames


def error_code(body: bytes) -> str:
    code_size, _type_size = struct.unpack_from(">BH", body)
    return body[3 : 3 + code_size].decode()
