"""HTTP/2 "rapid reset" (CVE-2023-44487): a client opening and resetting streams in a loop gets
GOAWAY (ENHANCE_YOUR_CALM) once it has reset more than its budget, without a traceback, and
other connections keep being served (see requestplane_http/reset_budget.py)."""

from __future__ import annotations

import logging

import anyio
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import pytest
from http_test_helpers import BOUND, Served, served
from hyperframe.frame import PriorityFrame

pytestmark = pytest.mark.anyio


def _pairs(s: Served, count: int) -> tuple[h2.connection.H2Connection, bytes]:
    """A client connection's preface, ``count`` HEADERS+RST_STREAM pairs, then a PING."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    address = s.addr("block")
    headers = [
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", f"{address.host}:{address.port}"),
        (":path", "/" + address.path),
    ]
    for _ in range(count):
        stream_id = conn.get_next_available_stream_id()
        conn.send_headers(stream_id, headers, end_stream=True)
        conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
    conn.ping(b"all sent")
    return conn, conn.data_to_send()


async def _flood(s: Served, count: int, *, split: bool) -> list[h2.events.Event]:
    """Send the pairs (``split``: a frame or two per write, so that the server often reads
    a HEADERS without its RST_STREAM: a started stream, reset later). Returns the server's
    events up to its GOAWAY or the end of the connection; or, if it acknowledges the PING
    and then a second one, everything up to there (it read all and goes on serving)."""
    conn, data = _pairs(s, count)
    address = s.addr("block")
    assert address.port is not None
    seen: list[h2.events.Event] = []
    async with await anyio.connect_tcp(address.host, address.port) as stream:
        try:
            if split:
                step = len(data) // (2 * count)
                for start in range(0, len(data), step):
                    await stream.send(data[start : start + step])
            else:
                await stream.send(data)
        except (anyio.BrokenResourceError, OSError):
            pass  # closed while we were still writing: read what it said
        while True:
            try:
                received = await stream.receive()
                events = conn.receive_data(received)
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                return seen
            except h2.exceptions.ProtocolError:
                return seen
            seen += events
            if _goaway(events) is not None:
                return seen
            for event in events:
                if isinstance(event, h2.events.PingAckReceived):
                    if event.ping_data == b"go on...":
                        return seen
                    # (h2 acknowledges a PING as it parses it, so a GOAWAY may still follow
                    # this ACK: it is the second PING's that shows the connection goes on.)
                    conn.ping(b"go on...")
                    await stream.send(conn.data_to_send())


def _goaway(events: list[h2.events.Event]) -> h2.events.ConnectionTerminated | None:
    ends = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    return ends[0] if ends else None


@pytest.mark.parametrize("split", [False, True], ids=["one-write", "pair-by-pair"])
async def test_rapid_reset_is_told_to_calm_down(
    split: bool, caplog: pytest.LogCaptureFixture
) -> None:
    settings = {"max_concurrent_streams": 100, "max_resets_per_second": 10}
    async with served(settings) as s:
        with anyio.fail_after(BOUND * 2):
            async with anyio.create_task_group() as tg:
                # Another client's call, in flight on its own connection all along.
                result: list[bytes] = []

                async def bystander() -> None:
                    result.append(await s.client.request(s.addr("block"), b""))

                tg.start_soon(bystander)
                await s.probe.started.wait()
                goaway = _goaway(await _flood(s, 2000, split=split))
                assert goaway is not None, "no GOAWAY"
                assert goaway.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
                assert await s.client.request(s.addr("echo"), b"meanwhile") == b"meanwhile"
                s.probe.release.set()
            assert result == [b"released"]
    problems = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not problems, [r.getMessage() for r in problems]


@pytest.mark.parametrize(("per_second", "pairs"), [(10, 100), (float("inf"), 2000)])
async def test_resets_within_the_budget_are_served(per_second: float, pairs: int) -> None:
    # A client cancelling every call it may have in flight is normal: no GOAWAY. And an
    # infinite rate is no limit at all.
    async with served({"max_concurrent_streams": 100, "max_resets_per_second": per_second}) as s:
        with anyio.fail_after(BOUND):
            events = await _flood(s, pairs, split=False)
        assert _goaway(events) is None
        assert [e.ping_data for e in events if isinstance(e, h2.events.PingAckReceived)] == [
            b"all sent",
            b"go on...",
        ]


async def test_more_streams_than_the_scheduler_tracks_is_told_to_calm_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # PRIORITY frames for streams never opened: hypercorn puts each into its stream scheduler,
    # which refuses more than it tracks (1000 here). That TooManyStreamsError escaped from
    # the connection's reader (a traceback, the connection dropped without GOAWAY).
    async with served({"max_concurrent_streams": 100}) as s:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        data = conn.data_to_send()
        for stream_id in range(1, 2 * 1100, 2):
            data += PriorityFrame(stream_id, depends_on=0, stream_weight=15).serialize()
        address = s.addr("echo")
        assert address.port is not None
        with anyio.fail_after(BOUND):
            async with await anyio.connect_tcp(address.host, address.port) as stream:
                await stream.send(data)
                events: list[h2.events.Event] = []
                while _goaway(events) is None:
                    try:
                        events += conn.receive_data(await stream.receive())
                    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                        break
            goaway = _goaway(events)
            assert goaway is not None, "no GOAWAY"
            assert goaway.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
            assert await s.client.request(s.addr("echo"), b"still") == b"still"
    problems = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not problems, [r.getMessage() for r in problems]
