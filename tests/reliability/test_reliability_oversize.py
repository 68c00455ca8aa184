"""Scenario 7: payloads over the limit are refused before sending and on receipt.

The conformance suite checks that a client refuses an oversize request and a server an
oversize response. Here: that "before sending" means nothing was sent; and the receipt side,
where the sender is not our well-behaved client: a raw socket declaring a huge TCP frame,
httpx posting a body over the limit (declared and chunked), our own client configured with a
bigger limit than the server, a server answering more than the client accepts, and on NATS
a raw publish over the server's ``max_payload``, which the nats-server itself refuses (the
NATS transport sends larger messages in parts, up to its own ``max_message_size``).
In every case the handler never runs and the server keeps serving.
"""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest
from reliability_helpers import BOUND, plane

from requestplane_core import Address, PayloadTooLarge, Request

pytestmark = pytest.mark.anyio

LIMIT = 64 * 1024

# requestplane-tcp wire format (plugins/tcp/README.md), written out here on purpose: the test
# speaks the documented protocol, not the plugin's own encoder.
TCP_PREAMBLE = b"\x89RQP\x01\x00\x00\x00"
TCP_HEADER = struct.Struct(">IBI")  # body length, kind, request id
TCP_REQUEST, TCP_RESPONSE, TCP_ERROR = 1, 2, 5


def _tcp_request(rid: int, endpoint: bytes, payload: bytes, declared: int | None = None) -> bytes:
    body = struct.pack(">dHH", float("inf"), len(endpoint), 0) + endpoint + payload
    length = len(body) if declared is None else declared
    return TCP_HEADER.pack(length, TCP_REQUEST, rid) + body


class Counting:
    """An echo endpoint that counts how often it ran."""

    def __init__(self) -> None:
        self.calls = 0

    async def echo(self, request: Request) -> bytes:
        self.calls += 1
        return request.payload

    async def big(self, request: Request) -> bytes:
        self.calls += 1
        return b"r" * (2 * LIMIT)

    async def big_chunks(self, request: Request) -> AsyncIterator[bytes]:
        self.calls += 1
        yield b"small"
        yield b"c" * (2 * LIMIT)


def _limited(mode: str, settings: dict[str, object], limit: int = LIMIT) -> dict[str, object]:
    return {**settings, "max_message_size": limit}


async def test_oversize_request_is_refused_before_anything_is_sent(
    mode: str, settings: dict[str, object]
) -> None:
    counting = Counting()
    async with plane(mode, _limited(mode, settings)) as p:
        server = await p.server()
        echo = await server.register("echo", counting.echo)
        client = p.client()
        limit = LIMIT
        with anyio.fail_after(BOUND):
            with pytest.raises(PayloadTooLarge):
                await client.request(echo, b"x" * (limit + 1))
            with pytest.raises(PayloadTooLarge):
                async with client.stream(echo, b"x" * (limit + 1)) as chunks:
                    async for _ in chunks:
                        pass
        assert client.stats.bytes_sent == 0
        assert counting.calls == 0
        with anyio.fail_after(BOUND):
            assert await client.request(echo, b"fine") == b"fine"


@pytest.mark.parametrize("mode", ["tcp", "http"])
async def test_our_client_with_a_bigger_limit_is_refused_on_receipt(
    mode: str, settings: dict[str, object]
) -> None:
    counting = Counting()
    async with (
        plane(mode, _limited(mode, settings)) as server_side,
        plane(mode, _limited(mode, settings, 4 * LIMIT)) as client_side,
    ):
        server = await server_side.server()
        echo = await server.register("echo", counting.echo)
        client = client_side.client()
        with anyio.fail_after(BOUND):
            with pytest.raises(PayloadTooLarge):
                await client.request(echo, b"x" * (LIMIT + 1))
            assert await client.request(echo, b"still served") == b"still served"
        assert counting.calls == 1


@pytest.mark.parametrize("mode", ["tcp", "http"])
async def test_a_response_over_the_clients_limit_is_refused_on_receipt(
    mode: str, settings: dict[str, object]
) -> None:
    """Bug B4 of /work/brief/bugs.md: the http client calls an oversize stream chunk a
    ProtocolError (unary responses are PayloadTooLarge, as on tcp)."""
    counting = Counting()
    async with (
        plane(mode, _limited(mode, settings, 4 * LIMIT)) as server_side,
        plane(mode, _limited(mode, settings)) as client_side,
    ):
        server = await server_side.server()
        big = await server.register("big", counting.big)
        big_chunks = await server.register("big-chunks", counting.big_chunks)
        echo = await server.register("echo", counting.echo)
        client = client_side.client()
        with anyio.fail_after(BOUND):
            with pytest.raises(PayloadTooLarge):
                await client.request(big, b"")
            seen: list[bytes] = []
            with pytest.raises(PayloadTooLarge):
                async with client.stream(big_chunks, b"") as chunks:
                    async for chunk in chunks:
                        seen.append(chunk)
            assert seen == [b"small"]
            assert await client.request(echo, b"still served") == b"still served"


@pytest.mark.parametrize("mode", ["tcp"])
async def test_raw_tcp_frames_declaring_oversize_bodies(
    mode: str, settings: dict[str, object]
) -> None:
    counting = Counting()
    async with plane(mode, _limited(mode, settings)) as p:
        server = await p.server()
        echo = await server.register("echo", counting.echo)
        assert echo.port is not None
        with anyio.fail_after(BOUND):
            sock = await anyio.connect_tcp(echo.host, echo.port)
            async with sock:
                # 1: over the limit and sent in full; 2: a fine request behind it on the same
                # connection; 3: declares almost 4 GiB and never sends it.
                await sock.send(
                    TCP_PREAMBLE
                    + _tcp_request(1, b"echo", b"x" * (LIMIT + 1))
                    + _tcp_request(2, b"echo", b"after")
                    + _tcp_request(3, b"echo", b"", declared=2**32 - 1)
                )
                frames = await _read_frames(sock, 3)
            assert frames[1][0] == TCP_ERROR and _error_code(frames[1][1]) == "too_large"
            assert frames[2] == (TCP_RESPONSE, b"after")
            assert frames[3][0] == TCP_ERROR and _error_code(frames[3][1]) == "too_large"
            assert await p.client().request(echo, b"others too") == b"others too"
        assert counting.calls == 2


async def _read_frames(sock: anyio.abc.SocketStream, n: int) -> dict[int, tuple[int, bytes]]:
    buf = bytearray()
    while len(buf) < len(TCP_PREAMBLE):
        buf += await sock.receive()
    assert bytes(buf[: len(TCP_PREAMBLE)]) == TCP_PREAMBLE
    del buf[: len(TCP_PREAMBLE)]
    frames: dict[int, tuple[int, bytes]] = {}
    while len(frames) < n:
        while len(buf) < TCP_HEADER.size:
            buf += await sock.receive()
        length, kind, rid = TCP_HEADER.unpack_from(buf)
        while len(buf) < TCP_HEADER.size + length:
            buf += await sock.receive()
        frames[rid] = (kind, bytes(buf[TCP_HEADER.size : TCP_HEADER.size + length]))
        del buf[: TCP_HEADER.size + length]
    return frames


def _error_code(body: bytes) -> str:
    code_size, _ = struct.unpack_from(">BH", body)
    return body[3 : 3 + code_size].decode()


@pytest.mark.parametrize("mode", ["http"])
@pytest.mark.parametrize("http2", [False, True], ids=["http1", "h2c"])
async def test_httpx_bodies_over_the_limit_get_413(
    mode: str, settings: dict[str, object], http2: bool
) -> None:
    counting = Counting()
    async with plane(mode, _limited(mode, settings)) as p:
        server = await p.server()
        echo = str(await server.register("echo", counting.echo))

        async def undeclared() -> AsyncIterator[bytes]:  # chunked: no content-length
            for _ in range(4):
                yield b"y" * (LIMIT // 2)

        async with httpx.AsyncClient(http1=not http2, http2=http2, timeout=BOUND) as http:
            with anyio.fail_after(BOUND):
                declared = await http.post(echo, content=b"x" * (LIMIT + 1))
                streamed = await http.post(echo, content=undeclared())
                after = await http.post(echo, content=b"after")
        for response in (declared, streamed):
            assert response.status_code == 413
            assert json.loads(response.content)["code"] == "too_large"
        assert after.content == b"after"
        assert counting.calls == 1


@pytest.mark.parametrize("mode", ["nats"])
async def test_raw_nats_publish_over_max_payload_never_reaches_the_worker(
    mode: str, settings: dict[str, object]
) -> None:
    counting = Counting()
    async with plane(mode, settings) as p:
        server = await p.server()
        echo = await server.register("echo", counting.echo)
        nats = Address.parse(str(settings["url"]))
        assert nats.port is not None
        with anyio.fail_after(BOUND):
            sock = await anyio.connect_tcp(nats.host, nats.port)
            async with sock:
                info = await sock.receive()
                assert info.startswith(b"INFO ")
                max_payload = json.loads(info[5:].split(b"\r\n", 1)[0])["max_payload"]
                size = max_payload + 1
                await sock.send(
                    b'CONNECT {"verbose":false,"pedantic":false}\r\n'
                    + b"PUB %s _INBOX.raw %d\r\n" % (echo.path.encode(), size)
                    + b"x" * size
                    + b"\r\n"
                )
                answer = b""
                while b"\r\n" not in answer:
                    answer += await sock.receive()
            assert answer.startswith(b"-ERR 'Maximum Payload Violation'"), answer
            assert await p.client().request(echo, b"still served") == b"still served"
        assert counting.calls == 1
