"""Bad input at the server: malformed HTTP/1.1 and HTTP/2 from raw sockets. Each gets the right
status (or its connection closed), and the server keeps serving everyone else."""

from __future__ import annotations

import logging
from http import HTTPStatus

import anyio
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest
from http_test_helpers import BOUND, Served, served

pytestmark = pytest.mark.anyio

CLOSE = b"Connection: close\r\n\r\n"


async def _raw(s: Served, data: bytes, *, read: bool = True) -> bytes:
    """Send ``data`` on a fresh connection; return all the server answers until it closes."""
    address = s.addr("echo")
    assert address.port is not None
    answer = b""
    async with await anyio.connect_tcp(address.host, address.port) as stream:
        await stream.send(data)
        if not read:
            return b""
        with anyio.move_on_after(BOUND):
            try:
                while True:
                    answer += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
    return answer


async def _still_serving(s: Served, caplog: pytest.LogCaptureFixture) -> None:
    with anyio.fail_after(BOUND):
        assert await s.client.request(s.addr("echo"), b"alive") == b"alive"
    crashes = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not crashes, [r.getMessage() for r in crashes]


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"\x00\xffgarbage\r\n\r\n", 400),
        (b"POST /v1/rpc/echo HTTP/1.1\r\nHost: x\r\nContent-Length: lots\r\n\r\n", 400),
        (b"POST /v1/rpc/echo HTTP/1.1\r\nContent-Length: 1\r\n\r\nx", 400),  # no Host
        (b"POST /v1/rpc/echo HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400),
        # A head that is still incomplete past hypercorn's 16 KiB limit.
        (b"POST /v1/rpc/echo HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20000, 431),
        # Well-formed but refused; Connection: close so that the test sees the end.
        (b"DELETE /v1/rpc/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n" + CLOSE, 405),
        (b"POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n" + CLOSE + b"hi", 404),
        (b"POST /v1/rpc/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n" + CLOSE, 404),
        (b"POST /v1/rpc/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n", 413),
    ],
)
async def test_malformed_http1(
    request_bytes: bytes, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    async with served({"max_message_size": 1 << 20}) as s:
        # (A body declared far too large is refused at once, with Connection: close.)
        answer = await _raw(s, request_bytes + (b"x" * 1000 if status == 413 else b""))
        assert _status(answer) == status, answer[:200]
        # With its reason phrase (h2load counts a response without one as failed).
        phrase = HTTPStatus(status).phrase.encode()
        assert answer.split(b"\r\n", 1)[0] == b"HTTP/1.1 %d %s" % (status, phrase)
        await _still_serving(s, caplog)


async def test_connections_dropped_mid_request(caplog: pytest.LogCaptureFixture) -> None:
    async with served() as s:
        head = b"POST /v1/rpc/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part"
        for _ in range(20):
            await _raw(s, head, read=False)
            await _raw(s, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00", read=False)
        await _still_serving(s, caplog)


async def test_http2_garbage_after_preface(caplog: pytest.LogCaptureFixture) -> None:
    async with served() as s:
        stream, conn = await _h2_session(s)
        async with stream:
            # A SETTINGS frame on a stream: a connection error (GOAWAY, then close).
            await stream.send(b"\x00\x00\x00\x04\x00\x00\x00\x00\x01")
            assert await _until_connection_error(stream, conn)
        await _still_serving(s, caplog)


async def _until_connection_error(
    stream: anyio.abc.SocketStream, conn: h2.connection.H2Connection, *, ping: bool = False
) -> bool:
    """Read until the server ends the connection or resets a stream (or acks a ping)."""
    with anyio.fail_after(BOUND):
        while True:
            try:
                data = await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return True
            try:
                events = conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                return True
            for event in events:
                if isinstance(event, (h2.events.ConnectionTerminated, h2.events.StreamReset)):
                    return True
                if ping and isinstance(event, h2.events.PingAckReceived):
                    return True


async def _h2_session(s: Served) -> tuple[anyio.abc.SocketStream, h2.connection.H2Connection]:
    address = s.addr("echo")
    assert address.port is not None
    stream = await anyio.connect_tcp(address.host, address.port)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    await stream.send(conn.data_to_send())
    return stream, conn


async def test_http2_more_streams_than_allowed(caplog: pytest.LogCaptureFixture) -> None:
    async with served({"max_concurrent_streams": 4}) as s:
        stream, conn = await _h2_session(s)
        async with stream:
            headers = [
                (":method", "POST"),
                (":scheme", "http"),
                (":authority", "x"),
                (":path", "/v1/rpc/block"),
            ]
            # Ignore the server's limit (h2 would enforce it on our side too).
            conn.update_settings({})
            for _ in range(6):
                stream_id = conn.get_next_available_stream_id()
                conn.local_settings.max_concurrent_streams = 100
                conn.remote_settings.max_concurrent_streams = 100
                conn.send_headers(stream_id, headers, end_stream=True)
            await stream.send(conn.data_to_send())
            assert await _until_connection_error(stream, conn)
        s.probe.release.set()
        await _still_serving(s, caplog)


async def test_http2_oversize_body_then_data_on_the_closed_stream(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The server reads the whole refused body before answering 413 (answering earlier would
    # let the remaining DATA frames hit a KeyError in hypercorn that ends a trio server);
    # DATA sent after that closes only this connection.
    async with served({"max_message_size": 1000}) as s:
        stream, conn = await _h2_session(s)
        async with stream:
            headers = [
                (":method", "POST"),
                (":scheme", "http"),
                (":authority", "x"),
                (":path", "/v1/rpc/echo"),
                ("content-length", "5000"),
            ]
            conn.send_headers(1, headers)
            body = b"x" * 5000
            status = None
            with anyio.fail_after(BOUND):
                while status is None:
                    window = min(conn.local_flow_control_window(1), len(body))
                    if body and window > 0:
                        conn.send_data(1, body[:window], end_stream=window == len(body))
                        body = body[window:]
                    await stream.send(conn.data_to_send())
                    for event in conn.receive_data(await stream.receive()):
                        if isinstance(event, h2.events.ResponseReceived):
                            status = dict(event.headers)[b":status"]
            assert status == b"413"
            # Now a DATA frame on the closed stream, written around h2. Whether hypercorn
            # ignores it, resets the stream or closes the connection, a PING settles it.
            await stream.send(b"\x00\x00\x01\x00\x00\x00\x00\x00\x01z")
            conn.ping(b"settled?")
            await stream.send(conn.data_to_send())
            await _until_connection_error(stream, conn, ping=True)
        await _still_serving(s, caplog)
