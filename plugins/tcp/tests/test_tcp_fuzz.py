"""Property-based fuzzing of the framing against a live server (hypothesis).

Random, truncated, oversized, wrong-version and garbage byte sequences each arrive on a
fresh connection, which is then half-closed. Whatever the bytes, the server must close that
connection (logging why when the bytes broke the protocol) and keep serving another client.

A small sample runs by default; set ``REQUESTPLANE_FUZZ_EXAMPLES`` (e.g. 10000) for a
dedicated run.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import struct
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import anyio
import attrs
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from requestplane_tcp.framing import (
    CANCEL,
    CHUNK,
    END,
    ERROR,
    HEADER,
    MAGIC,
    PREAMBLE,
    REQUEST,
    RESPONSE,
    VERSION,
)
from tcp_test_helpers import BOUND, client, echo, request_frame, running

from requestplane_core import Address, TransportClient

EXAMPLES = int(os.environ.get("REQUESTPLANE_FUZZ_EXAMPLES", "50"))
LIMIT = 4096  # the server's max_message_size, small so oversize cases are cheap


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelno, record.getMessage()))


@attrs.define
class Live:
    portal: BlockingPortal
    address: Address
    client: TransportClient
    log: _Recorder


@asynccontextmanager
async def _serve() -> AsyncIterator[tuple[Address, TransportClient]]:
    async with running({"echo": echo}, max_message_size=LIMIT) as (srv, addresses), client() as c:
        yield addresses["echo"], c
        # No connection leaked: only the probing client's is left once the dust settles.
        with anyio.fail_after(BOUND):
            while srv.health().details["connections"] > 1:
                await anyio.wait_all_tasks_blocked()


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def live(request: pytest.FixtureRequest) -> Iterator[Live]:
    recorder = _Recorder()
    logger = logging.getLogger("requestplane.tcp")
    logger.addHandler(recorder)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        with (
            start_blocking_portal(request.param) as portal,
            portal.wrap_async_context_manager(_serve()) as (address, c),
        ):
            yield Live(portal, address, c, recorder)
    finally:
        logger.removeHandler(recorder)
        logger.setLevel(old_level)


# -- what to send ----------------------------------------------------------------------------

_ids = st.integers(0, 2**32 - 1)
_kinds = st.sampled_from([REQUEST, RESPONSE, CHUNK, END, ERROR, CANCEL, 0, 7, 255])
_text = st.text(max_size=20)

_requests = st.builds(
    lambda rid, endpoint, headers, remaining, payload: request_frame(
        rid, endpoint, payload, headers, remaining
    ),
    st.integers(0, 50),
    st.one_of(st.just("echo"), _text),
    st.dictionaries(_text, _text, max_size=3),
    st.one_of(st.none(), st.floats(-1, 5), st.just(math.inf)),
    st.binary(max_size=2 * LIMIT),
)
_raw_frames = st.builds(
    lambda length, kind, rid, body: HEADER.pack(length, kind, rid) + body,
    st.one_of(st.integers(0, 64), st.integers(0, 2**32 - 1)),
    _kinds,
    _ids,
    st.binary(max_size=64),
)
_oversized = st.builds(
    lambda length, kind, rid, body: HEADER.pack(length, kind, rid) + body,
    st.integers(LIMIT + 70_000, 2**32 - 1),
    _kinds,
    _ids,
    st.binary(max_size=256),
)
_sessions = st.builds(
    lambda frames: PREAMBLE + b"".join(frames),
    st.lists(st.one_of(_requests, _raw_frames, _oversized), max_size=6),
)
_truncated = st.builds(
    lambda frames, fraction: (lambda data: data[: int(len(data) * fraction)])(
        PREAMBLE + b"".join(frames)
    ),
    st.lists(_requests, min_size=1, max_size=3),
    st.floats(0, 1, exclude_max=True),
)
_wrong_version = st.builds(
    lambda version, rest: MAGIC + bytes((version, 0, 0, 0)) + rest,
    st.integers(0, 255).filter(lambda v: v != VERSION),
    st.binary(max_size=64),
)
_garbage = st.binary(max_size=512)

FUZZ_INPUT = st.one_of(_sessions, _truncated, _wrong_version, _garbage, _raw_frames)


def _send_and_drain(address: Address, data: bytes) -> tuple[int, bytes]:
    """Send ``data`` on a new connection, half-close it, read until the server closes."""
    assert address.port is not None
    with socket.create_connection((address.host, address.port), timeout=BOUND) as sock:
        port = sock.getsockname()[1]
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server already gave up on us: fine, as long as it closed
        received = bytearray()
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    return port, bytes(received)


def _goodbye(answer: bytes) -> bool:
    """Did the server's answer end with a connection-level (id 0) ERROR frame?"""
    pos = len(PREAMBLE) if answer.startswith(PREAMBLE) else len(answer)
    last = None
    while pos + 9 <= len(answer):
        length, kind, rid = struct.unpack_from(">IBI", answer, pos)
        last = (kind, rid)
        pos += 9 + length
    return last == (ERROR, 0)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=FUZZ_INPUT)
def test_any_bytes_close_only_their_connection(live: Live, data: bytes) -> None:
    port, answer = _send_and_drain(live.address, data)
    # The server answered with its preamble first (unless it could not even send that).
    assert answer[: len(PREAMBLE)] in (PREAMBLE, PREAMBLE[: len(answer)])
    peer = f"127.0.0.1:{port}"
    warned = [
        message for level, message in live.log.lines if level >= logging.WARNING and peer in message
    ]
    if data and not data.startswith(PREAMBLE):
        assert warned, f"no reason logged for a bad preamble {data[:8]!r}"
    if _goodbye(answer):
        assert warned, "a protocol violation was not logged"
    # ... and everybody else is still served.
    assert live.portal.call(live.client.request, live.address, b"still here") == b"still here"
    live.log.lines.clear()
