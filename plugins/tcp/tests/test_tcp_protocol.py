"""The server against peers that do not follow the protocol: only their connection closes."""

from __future__ import annotations

import logging
import math
import struct

import anyio
import pytest
from requestplane_tcp.framing import (
    CANCEL,
    CHUNK,
    ERROR,
    HEADER,
    MAGIC,
    PREAMBLE,
    REQUEST,
    RESPONSE,
    encode_request_head,
)
from tcp_test_helpers import (
    BOUND,
    RawReader,
    client,
    echo,
    error_code,
    frame,
    parse_frames,
    raw_connect,
    read_to_eof,
    request_frame,
    running,
)

from requestplane_core import PayloadTooLarge, Request

pytestmark = pytest.mark.anyio

_FIXED = struct.Struct(">dHH")


def _request_body(endpoint: bytes, remaining: float = math.inf, count: int = 0) -> bytes:
    return _FIXED.pack(remaining, len(endpoint), count) + endpoint


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "requestplane.tcp" and r.levelno >= logging.WARNING
    ]


@pytest.mark.parametrize(
    ("hello", "reason"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "wrong magic"),
        (MAGIC + bytes((2, 0, 0, 0)), "protocol version 2"),
        (MAGIC + bytes((0, 0, 0, 0)), "protocol version 0"),
        (b"\x00" * 8, "wrong magic"),
    ],
)
async def test_handshake_rejected_while_others_are_served(
    hello: bytes, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="requestplane.tcp")
    async with running({"echo": echo}) as (_server, addresses), client() as good:
        address = addresses["echo"]
        with anyio.fail_after(BOUND):
            assert await good.request(address, b"before") == b"before"
            stranger = await raw_connect(address, preamble=hello)
            answer = await read_to_eof(stranger)  # the server closes the connection
            await stranger.aclose()
            assert await good.request(address, b"after") == b"after"
        # It learns what it reached: our preamble, then why it is being dropped.
        assert answer.startswith(PREAMBLE)
        frames = parse_frames(answer[len(PREAMBLE) :])
        assert [(kind, rid) for kind, rid, _ in frames] == [(ERROR, 0)]
        assert error_code(frames[0][2]) == "protocol"
        assert any(reason in line for line in _warnings(caplog)), _warnings(caplog)
        assert good.stats.open_connections == 1


_BAD_FRAMES = {
    "unknown kind": frame(99, 1),
    "client sends RESPONSE": frame(RESPONSE, 1, b"x"),
    "client sends CHUNK": frame(CHUNK, 1, b"x"),
    "CANCEL with a body": frame(CANCEL, 1, b"x"),
    "request id 0": request_frame(0, "echo", b"x"),
    "endpoint past the frame": frame(REQUEST, 1, _FIXED.pack(math.inf, 50, 0) + b"echo"),
    "endpoint not UTF-8": frame(REQUEST, 1, _request_body(b"\xff\xfe")),
    "NaN deadline": frame(REQUEST, 1, _request_body(b"echo", math.nan)),
    "headers past the frame": frame(REQUEST, 1, _request_body(b"echo", count=3)),
    "oversized CANCEL": HEADER.pack(10_000_000, CANCEL, 1),
    "oversized unknown kind": HEADER.pack(0xFFFFFFFF, 200, 1),
    "duplicate request id": request_frame(5, "block", b"") + request_frame(5, "block", b""),
}


@pytest.mark.parametrize("name", sorted(_BAD_FRAMES))
async def test_malformed_frames_close_only_that_connection(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="requestplane.tcp")
    blocked = anyio.Event()

    async def block(request: Request) -> bytes:
        await blocked.wait()
        return b""

    async with running({"echo": echo, "block": block}) as (_server, addresses), client() as good:
        address = addresses["echo"]
        with anyio.fail_after(BOUND):
            assert await good.request(address, b"before") == b"before"
            bad = await raw_connect(address)
            await bad.send(_BAD_FRAMES[name])
            answer = await read_to_eof(bad)
            await bad.aclose()
            assert await good.request(address, b"after") == b"after"
        assert answer.startswith(PREAMBLE)
        frames = parse_frames(answer[len(PREAMBLE) :])
        assert frames and frames[-1][:2] == (ERROR, 0)
        assert error_code(frames[-1][2]) == "protocol"
        assert _warnings(caplog), "the reason is logged"
        blocked.set()


async def test_truncated_frame_then_close_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="requestplane.tcp")
    async with running({"echo": echo}) as (server, addresses):
        bad = await raw_connect(addresses["echo"])
        with anyio.fail_after(BOUND):
            await bad.send(request_frame(1, "echo", b"x" * 100)[:50])
            await bad.send_eof()
            answer = await read_to_eof(bad)
        await bad.aclose()
        assert answer.startswith(PREAMBLE)
        assert any("middle of a frame" in line for line in _warnings(caplog))
        with anyio.fail_after(BOUND):
            while server.health().details["connections"]:
                await anyio.wait_all_tasks_blocked()


async def test_log_lines_never_carry_payloads_or_headers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "s3cr3t-t0ken"
    async with running({"echo": echo}, max_message_size=1000) as (_server, addresses):
        address = addresses["echo"]
        bad = await raw_connect(address)
        with anyio.fail_after(BOUND):
            reader = RawReader(bad)
            await reader.preamble()
            await bad.send(request_frame(1, "echo", secret.encode() * 200, {"auth": secret}))
            assert (await reader.frame())[:2] == (ERROR, 1)
            await bad.send(request_frame(2, secret, b"", {"auth": secret})[:-1] + b"\xff")
            await bad.send(frame(RESPONSE, 3, secret.encode()))
            await read_to_eof(bad)
        await bad.aclose()
        stranger = await raw_connect(address, preamble=secret.encode())
        with anyio.fail_after(BOUND):
            await read_to_eof(stranger)
        await stranger.aclose()
    assert caplog.records
    assert not [r for r in caplog.records if secret in r.getMessage()]


@pytest.mark.parametrize("payload_size", [5_000, 300_000])
async def test_oversize_request_answered_and_connection_kept(payload_size: int) -> None:
    """Over the server's limit: a PayloadTooLarge answer for that id, the connection stays.

    5 kB stays within the frame limit (payload limit + 64 KiB of metadata), so the server
    parses it and refuses it; 300 kB is over it, so the server skips the body unread.
    """
    async with running({"echo": echo}, max_message_size=1000) as (_server, addresses):
        stream = await raw_connect(addresses["echo"])
        reader = RawReader(stream)
        with anyio.fail_after(BOUND):
            assert await reader.preamble() == PREAMBLE
            await stream.send(request_frame(1, "echo", b"y" * payload_size))
            await stream.send(request_frame(2, "echo", b"small"))
            kind, rid, body = await reader.frame()
            assert (kind, rid, error_code(body)) == (ERROR, 1, PayloadTooLarge.code)
            assert await reader.frame() == (RESPONSE, 2, b"small")
        await stream.aclose()


async def test_oversize_request_from_a_client_with_a_bigger_limit() -> None:
    async with (
        running({"echo": echo}, max_message_size=1000) as (_server, addresses),
        client(max_message_size=10_000_000) as big,
    ):
        address = addresses["echo"]
        with anyio.fail_after(BOUND):
            for size in (1001, 70_000, 2_000_000):
                with pytest.raises(PayloadTooLarge, match="server's limit"):
                    await big.request(address, b"z" * size)
            assert await big.request(address, b"z" * 1000) == b"z" * 1000
        assert big.stats.open_connections == 1
        assert big.stats.errors == 3


async def test_requests_pipelined_before_the_servers_preamble_are_served() -> None:
    async with running({"echo": echo}) as (_server, addresses):
        stream = await raw_connect(
            addresses["echo"], preamble=PREAMBLE + request_frame(9, "echo", b"eager")
        )
        reader = RawReader(stream)
        with anyio.fail_after(BOUND):
            assert await reader.preamble() == PREAMBLE
            assert await reader.frame() == (RESPONSE, 9, b"eager")
        await stream.aclose()


async def test_unanswered_handshake_times_out(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="requestplane.tcp")
    async with running({"echo": echo}, connect_timeout=0.3) as (_server, addresses):
        silent = await raw_connect(addresses["echo"], preamble=MAGIC)  # half a preamble
        with anyio.fail_after(BOUND):
            answer = await read_to_eof(silent)
        await silent.aclose()
        assert answer == PREAMBLE
        assert any("no protocol handshake" in line for line in _warnings(caplog))


async def test_deadline_travels_as_remaining_time() -> None:
    seen: list[float | None] = []

    async def record(request: Request) -> bytes:
        seen.append(None if request.deadline is None else request.deadline - anyio.current_time())
        await anyio.lowlevel.checkpoint()  # where a passed deadline cancels the handler
        return b""

    async with running({"record": record}) as (_server, addresses):
        stream = await raw_connect(addresses["record"])
        reader = RawReader(stream)
        with anyio.fail_after(BOUND):
            await reader.preamble()
            await stream.send(
                encode_request_head(1, b"record", None, 30.0, 0)
                + encode_request_head(2, b"record", None, None, 0)
            )
            answers = {(await reader.frame())[:2], (await reader.frame())[:2]}
            assert answers == {(RESPONSE, 1), (RESPONSE, 2)}  # in either order
            # A deadline already past cancels the handler: the caller gets it typed.
            await stream.send(encode_request_head(3, b"record", None, -1.0, 0))
            kind, rid, body = await reader.frame()
            assert (kind, rid, error_code(body)) == (ERROR, 3, "deadline")
        await stream.aclose()
    assert None in seen[:2]
    (first,) = [remaining for remaining in seen[:2] if remaining is not None]
    assert 0 < first <= 30.0
