"""The client against a scripted HTTP/2 server: graceful GOAWAY, refused streams, bodies cut
short, error statuses from something that is not a requestplane server."""

from __future__ import annotations

import anyio
import h2.errors
import pytest
from h2_script_server import Conn, echo_policy, scripted_h2_server
from http_test_helpers import BOUND, http_settings
from requestplane_http import wire
from requestplane_http.client import HttpClient

from requestplane_core import (
    ConnectionLost,
    EndpointNotFound,
    RemoteError,
    Unavailable,
)

pytestmark = pytest.mark.anyio


async def test_graceful_goaway_finishes_old_streams_and_retries_new_ones() -> None:
    def policy(conn: Conn, stream_id: int) -> None:
        if conn.index > 0:
            return echo_policy(conn, stream_id)
        if len(conn.pending) == 6:
            # "I processed up to the third; send the rest elsewhere", then answer those three.
            first = sorted(conn.pending)[:3]
            conn.graceful_goaway(first[-1])
            for sid in first:
                conn.answer(sid, conn.body(sid))

    async with scripted_h2_server(policy) as (url, conns), HttpClient(http_settings()) as client:
        results: dict[int, bytes] = {}

        async def call(i: int) -> None:
            results[i] = await client.request(url, b"%d" % i)

        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:
                for i in range(6):
                    tg.start_soon(call, i)
        assert results == {i: b"%d" % i for i in range(6)}
        assert len(conns) == 2
        assert client.stats.errors == 0


async def test_refused_stream_is_sent_again() -> None:
    refused: list[int] = []

    def policy(conn: Conn, stream_id: int) -> None:
        if not refused:
            refused.append(stream_id)
            conn.reset(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
        else:
            echo_policy(conn, stream_id)

    async with scripted_h2_server(policy) as (url, _), HttpClient(http_settings()) as client:
        with anyio.fail_after(BOUND):
            assert await client.request(url, b"again") == b"again"
    assert len(refused) == 1


async def test_reset_without_answer_is_connection_lost() -> None:
    def policy(conn: Conn, stream_id: int) -> None:
        conn.reset(stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)

    async with scripted_h2_server(policy) as (url, _), HttpClient(http_settings()) as client:
        with anyio.fail_after(BOUND), pytest.raises(ConnectionLost):
            await client.request(url, b"x")


async def test_stream_without_end_marker_is_connection_lost_not_short() -> None:
    def policy(conn: Conn, stream_id: int) -> None:
        body = wire.encode_frame(wire.FRAME_DATA, b"a") + wire.encode_frame(wire.FRAME_DATA, b"b")
        conn.answer(stream_id, body, content_type=wire.CONTENT_TYPE_STREAM)

    async with scripted_h2_server(policy) as (url, _), HttpClient(http_settings()) as client:
        seen: list[bytes] = []
        with anyio.fail_after(BOUND), pytest.raises(ConnectionLost, match="cut off"):
            async with client.stream(url, b"") as chunks:
                async for chunk in chunks:
                    seen.append(chunk)
        assert seen == [b"a", b"b"]
        with anyio.fail_after(BOUND), pytest.raises(ConnectionLost, match="cut off"):
            await client.request(url, b"")


async def test_stream_cut_inside_a_frame_is_connection_lost() -> None:
    def policy(conn: Conn, stream_id: int) -> None:
        body = (
            wire.encode_frame(wire.FRAME_DATA, b"complete")
            + wire.encode_frame(wire.FRAME_DATA, b"truncated")[:-3]
        )
        conn.answer(stream_id, body, content_type=wire.CONTENT_TYPE_STREAM)

    async with scripted_h2_server(policy) as (url, _), HttpClient(http_settings()) as client:
        seen: list[bytes] = []
        with anyio.fail_after(BOUND), pytest.raises(ConnectionLost):
            async for chunk in client.stream(url, b""):
                seen.append(chunk)
        assert seen == [b"complete"]


async def test_connection_closed_mid_stream_is_connection_lost() -> None:
    def policy(conn: Conn, stream_id: int) -> None:
        conn.answer(
            stream_id,
            wire.encode_frame(wire.FRAME_DATA, b"first"),
            content_type=wire.CONTENT_TYPE_STREAM,
            end=False,
        )
        conn.close()

    async with scripted_h2_server(policy) as (url, _), HttpClient(http_settings()) as client:
        seen: list[bytes] = []
        with anyio.fail_after(BOUND), pytest.raises(ConnectionLost):
            async for chunk in client.stream(url, b""):
                seen.append(chunk)
        assert seen == [b"first"]
        assert client.stats.open_connections == 0


async def test_error_frame_mid_stream_is_typed() -> None:
    def policy(conn: Conn, stream_id: int) -> None:
        body = wire.encode_frame(wire.FRAME_DATA, b"1") + wire.encode_frame(
            wire.FRAME_ERROR, wire.encode_error(RemoteError("ZeroDivisionError", "oops"))
        )
        conn.answer(stream_id, body, content_type=wire.CONTENT_TYPE_STREAM)

    async with scripted_h2_server(policy) as (url, _), HttpClient(http_settings()) as client:
        with anyio.fail_after(BOUND), pytest.raises(RemoteError) as info:
            await client.request(url, b"")
        assert (info.value.type_name, info.value.remote_message) == ("ZeroDivisionError", "oops")


@pytest.mark.parametrize(
    ("status", "error"), [(404, EndpointNotFound), (503, Unavailable), (502, Unavailable)]
)
async def test_foreign_error_status_maps_to_the_typed_error(
    status: int, error: type[Exception]
) -> None:
    def policy(conn: Conn, stream_id: int) -> None:
        conn.h2.send_headers(
            stream_id, [(b":status", b"%d" % status), (b"content-type", b"text/html")]
        )
        conn.h2.send_data(stream_id, b"<html>nope</html>", end_stream=True)
        conn.pending.remove(stream_id)

    async with scripted_h2_server(policy) as (url, _), HttpClient(http_settings()) as client:
        with anyio.fail_after(BOUND), pytest.raises(error):
            await client.request(url, b"")


async def test_server_gone_then_back_reconnects() -> None:
    def policy(conn: Conn, stream_id: int) -> None:
        echo_policy(conn, stream_id)
        if conn.index == 0:
            conn.close()  # answer once, then drop the connection

    async with scripted_h2_server(policy) as (url, conns), HttpClient(http_settings()) as client:
        with anyio.fail_after(BOUND):
            assert await client.request(url, b"one") == b"one"
            # The drop may or may not have been seen yet; the next call must work either way.
            while True:
                try:
                    assert await client.request(url, b"two") == b"two"
                    break
                except ConnectionLost:
                    continue
        assert len(conns) == 2
