"""The client: multiplexing, reconnecting, cancelling, limits, typed failures, stats."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from anyio.abc import SocketAttribute, SocketStream
from requestplane_tcp.framing import (
    CANCEL,
    CHUNK,
    MAGIC,
    PREAMBLE,
    REQUEST,
    RESPONSE,
)
from tcp_test_helpers import (
    BOUND,
    RawReader,
    client,
    echo,
    frame,
    running,
)

from requestplane_core import (
    Address,
    ConfigError,
    ConnectionLost,
    DeadlineExceeded,
    PayloadTooLarge,
    ProtocolError,
    Request,
    RequestPlaneError,
    Unavailable,
)

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def fake_server(
    handle: Callable[[SocketStream], Awaitable[None]],
) -> AsyncIterator[Callable[[str], Address]]:
    """A raw listener on 127.0.0.1 running ``handle`` per connection (a misbehaving peer)."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(SocketAttribute.local_port)

    async def serve_one(stream: SocketStream) -> None:
        async with stream:
            try:
                await handle(stream)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass

    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve_one)
        yield lambda endpoint: Address("tcp", "127.0.0.1", port, endpoint)
        tg.cancel_scope.cancel()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- multiplexing --------------------------------------------------------------------------


async def test_requests_complete_out_of_order_on_one_connection() -> None:
    gates = {b"slow": anyio.Event(), b"fast": anyio.Event()}
    started = {name: anyio.Event() for name in gates}
    order: list[bytes] = []

    async def gated(request: Request) -> bytes:
        started[request.payload].set()
        await gates[request.payload].wait()
        return request.payload

    async with running({"gated": gated}) as (_server, addresses), client() as c:
        address = addresses["gated"]

        async def call(payload: bytes) -> None:
            order.append(await c.request(address, payload))

        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, b"slow")
                await started[b"slow"].wait()
                tg.start_soon(call, b"fast")
                await started[b"fast"].wait()
                gates[b"fast"].set()
                while not order:
                    await wait_all_tasks_blocked()
                gates[b"slow"].set()
        assert order == [b"fast", b"slow"]
        assert c.stats.open_connections == 1


async def test_unary_and_streams_interleave_on_one_connection() -> None:
    async def count(request: Request) -> AsyncIterator[bytes]:
        for i in range(int(request.payload)):
            yield b"%d," % i
            await anyio.lowlevel.checkpoint()

    async with running({"echo": echo, "count": count}) as (_server, addresses), client() as c:
        results: dict[str, object] = {}

        async def unary(i: int) -> None:
            results[f"u{i}"] = await c.request(addresses["echo"], b"%d" % i)

        async def stream(i: int) -> None:
            async with c.stream(addresses["count"], b"%d" % i) as chunks:
                results[f"s{i}"] = [chunk async for chunk in chunks]

        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:
                for i in range(40):
                    tg.start_soon(unary, i)
                    tg.start_soon(stream, i)
        assert results == {
            **{f"u{i}": b"%d" % i for i in range(40)},
            **{f"s{i}": [b"%d," % j for j in range(i)] for i in range(40)},
        }
        assert c.stats.open_connections == 1
        assert (c.stats.requests, c.stats.streams, c.stats.errors) == (40, 40, 0)


async def test_big_stream_through_a_congested_queue() -> None:
    """Chunks queue faster than the socket drains: the handler waits, nothing is lost."""
    chunk = bytes(range(256)) * 256  # 64 KiB

    async def flood(request: Request) -> AsyncIterator[bytes]:
        for _ in range(200):
            yield chunk

    async with running({"flood": flood}) as (_server, addresses), client() as c:
        with anyio.fail_after(BOUND * 2):
            total = 0
            async for piece in c.stream(addresses["flood"], b""):
                assert piece == chunk
                total += len(piece)
        assert total == 200 * len(chunk)
        assert c.stats.bytes_received == total


async def test_many_large_requests_through_a_congested_queue() -> None:
    """Callers queue more than the high-water mark at once: they wait, nothing is lost."""
    results: dict[int, bool] = {}
    async with running({"echo": echo}) as (_server, addresses), client() as c:

        async def call(i: int) -> None:
            payload = bytes([i]) * 300_000
            results[i] = await c.request(addresses["echo"], payload) == payload

        with anyio.fail_after(BOUND * 2):
            async with anyio.create_task_group() as tg:
                for i in range(40):
                    tg.start_soon(call, i)
    assert results == {i: True for i in range(40)}


async def test_tcp_nodelay_on_both_ends() -> None:
    async with running({"echo": echo}) as (server, addresses), client() as c:
        with anyio.fail_after(BOUND):
            await c.request(addresses["echo"], b"x")
        (conn,) = c._conns.values()  # type: ignore[attr-defined]
        (served,) = server._transport._connections  # type: ignore[attr-defined]
        for stream in (conn.fc.stream, served.fc.stream):
            sock = stream.extra(SocketAttribute.raw_socket)
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
async def test_ipv6() -> None:
    async with running({"echo": echo}, host="::1") as (_server, addresses), client() as c:
        address = addresses["echo"]
        assert address.host == "::1"
        assert str(address).startswith("tcp://[::1]:")
        with anyio.fail_after(BOUND):
            assert await c.request(str(address), b"six") == b"six"


# -- connections come and go ---------------------------------------------------------------


async def test_reconnects_after_the_server_restarts_on_the_same_port() -> None:
    async with client() as c:
        async with running({"echo": echo}) as (_server, addresses):
            address = addresses["echo"]
            with anyio.fail_after(BOUND):
                assert await c.request(address, b"one") == b"one"
        with anyio.fail_after(BOUND):
            while c.stats.open_connections:  # the client notices the close by itself
                await wait_all_tasks_blocked()
            with pytest.raises(Unavailable, match="could not connect"):
                await c.request(address, b"nobody home")
        async with running({"echo": echo}, port=address.port) as (_server, again):
            assert again["echo"] == address
            with anyio.fail_after(BOUND):
                assert await c.request(address, b"two") == b"two"
        assert c.stats.open_connections == 0 or c.stats.open_connections == 1


async def test_connection_loss_fails_every_inflight_call_promptly() -> None:
    requests_seen = anyio.Event()

    async def handshake_then_vanish(stream: SocketStream) -> None:
        await stream.send(PREAMBLE)
        reader = RawReader(stream)
        assert await reader.preamble() == PREAMBLE
        for _ in range(3):
            assert (await reader.frame())[0] == REQUEST
        requests_seen.set()
        # leaving closes the socket with all three requests unanswered

    async with fake_server(handshake_then_vanish) as addr, client() as c:
        outcomes: list[BaseException] = []

        async def call() -> None:
            with pytest.raises(ConnectionLost) as info:
                await c.request(addr("x"), b"")
            outcomes.append(info.value)

        async def stream() -> None:
            with pytest.raises(ConnectionLost) as info:
                async for _ in c.stream(addr("y"), b""):
                    pass
            outcomes.append(info.value)

        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                tg.start_soon(call)
                tg.start_soon(stream)
        assert requests_seen.is_set()
        assert len(outcomes) == 3
        assert c.stats.open_connections == 0
        assert c.stats.errors == 3


@pytest.mark.parametrize(
    ("promised", "sent"),
    [(100, 5), (100, 40), (1 << 20, 300_000)],
    ids=["in-the-header", "in-the-body", "in-a-gathered-body"],
)
async def test_a_server_vanishing_mid_frame_is_connection_lost(promised: int, sent: int) -> None:
    """Truncation is the connection breaking, not the server speaking something else: the
    same ConnectionLost as a server vanishing between frames (ProtocolError, a subclass,
    is for bytes that are wrong)."""

    async def vanish_mid_frame(stream: SocketStream) -> None:
        await stream.send(PREAMBLE)
        reader = RawReader(stream)
        await reader.preamble()
        _kind, rid, _body = await reader.frame()
        await stream.send(frame(RESPONSE, rid, b"r" * promised)[:sent])
        # leaving closes the socket in the middle of that frame

    async with fake_server(vanish_mid_frame) as addr, client() as c:
        for call in ("request", "stream"):
            with anyio.fail_after(BOUND), pytest.raises(ConnectionLost) as info:
                if call == "request":
                    await c.request(addr("x"), b"")
                else:
                    async for _ in c.stream(addr("x"), b""):
                        pass
            assert not isinstance(info.value, ProtocolError), call
            assert "middle of a frame" in str(info.value)


async def test_connect_refused_is_unavailable() -> None:
    """Nothing was sent, so the failure is the retriable one: another instance may serve."""
    async with client() as c:
        with anyio.fail_after(BOUND), pytest.raises(Unavailable, match="could not connect") as info:
            await c.request(f"tcp://127.0.0.1:{_free_port()}/echo", b"")
        assert info.value.retriable
        with anyio.fail_after(BOUND), pytest.raises(Unavailable, match="could not connect"):
            async for _ in c.stream(f"tcp://127.0.0.1:{_free_port()}/echo", b""):
                pass


async def test_a_server_that_speaks_something_else_is_a_protocol_error() -> None:
    async def http(stream: SocketStream) -> None:
        await stream.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    async with fake_server(http) as addr, client() as c:
        with anyio.fail_after(BOUND), pytest.raises(ProtocolError, match="wrong magic"):
            await c.request(addr("echo"), b"")


async def test_a_server_of_another_protocol_version_is_a_protocol_error() -> None:
    async def future(stream: SocketStream) -> None:
        await stream.send(MAGIC + bytes((9, 0, 0, 0)))
        await stream.receive()

    async with fake_server(future) as addr, client() as c:
        with anyio.fail_after(BOUND), pytest.raises(ProtocolError, match="version 9"):
            await c.request(addr("echo"), b"")


async def test_a_silent_server_times_out_the_connect() -> None:
    async def silent(stream: SocketStream) -> None:
        await anyio.sleep_forever()

    async with fake_server(silent) as addr, client(connect_timeout=0.2) as c:
        with anyio.fail_after(BOUND), pytest.raises(Unavailable, match=r"within 0\.2s"):
            await c.request(addr("echo"), b"")


async def test_a_server_breaking_the_protocol_fails_calls_with_protocol_error() -> None:
    async def rogue(stream: SocketStream) -> None:
        await stream.send(PREAMBLE)
        reader = RawReader(stream)
        await reader.preamble()
        await reader.frame()
        await stream.send(frame(CANCEL, 1))  # servers never send CANCEL
        await stream.receive()

    async with fake_server(rogue) as addr, client() as c:
        with anyio.fail_after(BOUND), pytest.raises(ProtocolError, match="CANCEL"):
            await c.request(addr("echo"), b"")


async def test_late_frames_for_forgotten_requests_are_dropped() -> None:
    """After a cancel, the server may still answer; the client ignores it and carries on."""
    cancelled = anyio.Event()

    async def late(stream: SocketStream) -> None:
        await stream.send(PREAMBLE)
        reader = RawReader(stream)
        await reader.preamble()
        kind, rid, _ = await reader.frame()
        assert kind == REQUEST
        assert await reader.frame() == (CANCEL, rid, b"")
        cancelled.set()
        await stream.send(frame(RESPONSE, rid, b"too late") + frame(CHUNK, rid, b"and more"))
        kind, second, _ = await reader.frame()
        assert kind == REQUEST and second != rid
        await stream.send(frame(RESPONSE, second, b"fresh"))
        await stream.receive()

    async with fake_server(late) as addr, client() as c:
        with anyio.fail_after(BOUND):
            with anyio.move_on_after(0.2):
                await c.request(addr("x"), b"")
            await cancelled.wait()
            assert await c.request(addr("x"), b"") == b"fresh"


# -- cancellation and deadlines ------------------------------------------------------------


class _Blocker:
    def __init__(self) -> None:
        self.started = anyio.Event()
        self.cancelled = anyio.Event()

    async def __call__(self, request: Request) -> bytes:
        self.started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            self.cancelled.set()
            raise
        return b""


async def test_cancelling_the_caller_cancels_the_handler() -> None:
    block = _Blocker()
    async with running({"block": block, "echo": echo}) as (_s, addresses), client() as c:
        with anyio.fail_after(BOUND):
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(c.request, addresses["block"], b"")
                    await block.started.wait()
                    scope.cancel()
            await block.cancelled.wait()
            assert await c.request(addresses["echo"], b"next") == b"next"
        assert c.stats.open_connections == 1


async def test_timeout_is_deadline_exceeded_and_cancels_the_handler() -> None:
    block = _Blocker()
    async with running({"block": block, "echo": echo}) as (_s, addresses), client() as c:
        with anyio.fail_after(BOUND):
            # Connected beforehand: on a busy machine, connecting alone can take the whole
            # timeout, and a request whose deadline passed is never sent (or never started).
            await c.request(addresses["echo"], b"")
            with pytest.raises(DeadlineExceeded):
                await c.request(addresses["block"], b"", timeout=0.5)
            await block.cancelled.wait()


async def test_request_timeout_setting_applies_when_no_timeout_is_given() -> None:
    block = _Blocker()
    handlers = {"block": block, "echo": echo}
    async with running(handlers) as (_s, addresses), client(request_timeout=0.5) as c:
        with anyio.fail_after(BOUND):
            await c.request(addresses["echo"], b"")  # connected beforehand, as above
            with pytest.raises(DeadlineExceeded):
                await c.request(addresses["block"], b"")
            await block.cancelled.wait()


async def test_cancelling_a_stream_consumer_cancels_the_handler() -> None:
    started = anyio.Event()
    stopped = anyio.Event()

    async def ticks(request: Request) -> AsyncIterator[bytes]:
        started.set()
        try:
            while True:
                yield b"tick"
                await anyio.sleep(0.01)
        finally:
            stopped.set()

    async with running({"ticks": ticks}) as (_s, addresses), client() as c:
        stream = c.stream(addresses["ticks"], b"")
        with anyio.fail_after(BOUND):
            with anyio.CancelScope() as scope:
                async for _chunk in stream:
                    scope.cancel()
            await stopped.wait()
            with pytest.raises(ConnectionLost, match="cancelled"):
                await stream.__anext__()  # broken, not silently short


async def test_a_generator_that_never_awaits_can_still_be_cancelled() -> None:
    stopped = anyio.Event()

    async def busy(request: Request) -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"spin"  # never awaits anything itself
        finally:
            stopped.set()

    async with running({"busy": busy, "echo": echo}) as (_s, addresses), client() as c:
        with anyio.fail_after(BOUND):
            async with c.stream(addresses["busy"], b"") as chunks:
                seen = 0
                async for _chunk in chunks:
                    seen += 1
                    if seen == 3:
                        break
            await stopped.wait()
            assert await c.request(addresses["echo"], b"next") == b"next"


async def test_a_stream_dropped_without_closing_cancels_the_handler() -> None:
    stopped = anyio.Event()

    async def ticks(request: Request) -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"tick"
                await anyio.sleep(0.01)
        finally:
            stopped.set()

    async with running({"ticks": ticks, "echo": echo}) as (_s, addresses), client() as c:
        with anyio.fail_after(BOUND):
            async for _chunk in c.stream(addresses["ticks"], b""):
                break  # no `async with`, no aclose(): the dropped stream still cancels
            await stopped.wait()
            assert await c.request(addresses["echo"], b"next") == b"next"
        assert not c._conns[(addresses["echo"].host, addresses["echo"].port)].calls  # type: ignore[attr-defined]


async def test_stream_timeout_is_deadline_exceeded() -> None:
    async def slow(request: Request) -> AsyncIterator[bytes]:
        yield b"first"
        await anyio.sleep_forever()

    async with running({"slow": slow}) as (_s, addresses), client() as c:
        seen = []
        with anyio.fail_after(BOUND), pytest.raises(DeadlineExceeded):
            async for chunk in c.stream(addresses["slow"], b"", timeout=0.3):
                seen.append(chunk)
        assert seen == [b"first"]


# -- limits --------------------------------------------------------------------------------


async def test_oversize_refused_before_sending_anything() -> None:
    async with running({"echo": echo}) as (server, addresses), client(max_message_size=1000) as c:
        with anyio.fail_after(BOUND):
            with pytest.raises(PayloadTooLarge, match="not sent"):
                await c.request(addresses["echo"], b"x" * 1001)
            with pytest.raises(PayloadTooLarge, match="not sent"):
                async for _ in c.stream(addresses["echo"], b"x" * 1001):
                    pass
        assert c.stats.open_connections == 0  # never even connected
        assert c.stats.bytes_sent == 0
        assert server.health().details["connections"] == 0
        with anyio.fail_after(BOUND):
            assert await c.request(addresses["echo"], b"x" * 1000) == b"x" * 1000


@pytest.mark.parametrize("size", [1001, 200_000])
async def test_response_over_the_clients_limit(size: int) -> None:
    async def big(request: Request) -> bytes:
        return b"r" * size

    async def big_chunks(request: Request) -> AsyncIterator[bytes]:
        yield b"ok"
        yield b"r" * size
        await anyio.sleep_forever()

    handlers = {"big": big, "chunks": big_chunks, "echo": echo}
    async with running(handlers) as (_s, addresses), client(max_message_size=1000) as c:
        with anyio.fail_after(BOUND):
            with pytest.raises(PayloadTooLarge, match="client's limit"):
                await c.request(addresses["big"], b"")
            seen = []
            with pytest.raises(PayloadTooLarge):
                async for chunk in c.stream(addresses["chunks"], b""):
                    seen.append(chunk)
            assert seen == [b"ok"]
            assert await c.request(addresses["echo"], b"still") == b"still"
        assert c.stats.open_connections == 1


async def test_joined_stream_over_the_limit_is_refused() -> None:
    async def many(request: Request) -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 400

    async with running({"many": many}) as (_s, addresses), client(max_message_size=1000) as c:
        with anyio.fail_after(BOUND), pytest.raises(PayloadTooLarge, match="joined"):
            await c.request(addresses["many"], b"")


# -- usage errors and stats -----------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    ["http://127.0.0.1:80/echo", "tcp://127.0.0.1/echo", "tcp://127.0.0.1:80/", "nonsense"],
)
async def test_bad_addresses_are_config_errors(address: str) -> None:
    async with client() as c:
        with pytest.raises(ConfigError):
            await c.request(address, b"")


async def test_an_unstarted_client_says_so() -> None:
    from tcp_test_helpers import make_settings, spec

    c = spec().client(make_settings())
    with pytest.raises(RequestPlaneError, match="not started"):
        await c.request(f"tcp://127.0.0.1:{_free_port()}/echo", b"")


async def test_stats_count_requests_streams_errors_and_bytes() -> None:
    async def fail(request: Request) -> bytes:
        raise ValueError("no")

    async with running({"echo": echo, "fail": fail}) as (_s, addresses), client() as c:
        with anyio.fail_after(BOUND):
            await c.request(addresses["echo"], b"12345")
            async for _ in c.stream(addresses["echo"], b"678"):
                pass
            with pytest.raises(RequestPlaneError):
                await c.request(addresses["fail"], b"9")
        assert c.stats.snapshot() == {
            "requests": 2,
            "streams": 1,
            "errors": 1,
            "bytes_sent": 9,
            "bytes_received": 8,
            "open_connections": 1,
        }
    assert c.stats.open_connections == 0
