"""Shared pieces of the tcp transport's tests: servers, clients and raw protocol bytes."""

from __future__ import annotations

import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import ByteStream, Process, SocketStream
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


# -- a server in a process of its own ----------------------------------------------------------

SERVER_SCRIPT = Path(__file__).with_name("tcp_server_process.py")
SERVER_ENDPOINTS = 4


@asynccontextmanager
async def server_process(
    port: int, backend: str, *options: str, capture_stderr: bool = False
) -> AsyncIterator[tuple[Process, dict[str, Address]]]:
    """``tcp_server_process.py`` serving its endpoints; ``options`` are its ``NAME=VALUE``
    arguments. Killed on leaving, if it still runs."""
    process = await anyio.open_process(
        [sys.executable, str(SERVER_SCRIPT), str(port), backend, *options],
        stderr=subprocess.PIPE if capture_stderr else None,
    )
    try:
        assert process.stdout is not None
        lines = b""
        with anyio.fail_after(BOUND * 2):
            while lines.count(b"\n") < SERVER_ENDPOINTS:
                lines += await process.stdout.receive()
        addresses = {a.endpoint: a for a in map(Address.parse, lines.decode().split())}
        yield process, addresses
    finally:
        if process.returncode is None:
            process.kill()
        with anyio.CancelScope(shield=True):
            await process.wait()
            await process.aclose()


class LogLines:
    """The lines a server process writes to its stderr, read as they come."""

    def __init__(self, process: Process) -> None:
        assert process.stderr is not None
        self._stderr = process.stderr
        self._partial = b""
        self.lines: list[str] = []

    async def wait_for(self, text: str) -> None:
        """Read until a line containing ``text`` has come (bound it with fail_after)."""
        while not any(text in line for line in self.lines):
            data = self._partial + await self._stderr.receive()
            *complete, self._partial = data.split(b"\n")
            self.lines += [line.decode(errors="replace") for line in complete]

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)


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


async def read_to_eof(stream: ByteStream) -> bytes:
    """Everything the peer sends until it closes (raises on a hang via the caller's bound)."""
    data = bytearray()
    while True:
        try:
            data += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
            return bytes(data)


class RawReader:
    """Reads the server's preamble and then whole frames from a raw connection."""

    def __init__(self, stream: ByteStream) -> None:
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
