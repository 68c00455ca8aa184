"""On asyncio (and uvloop) a plain connection is read through a protocol of our own
(``protocol_reader.py``) instead of anyio's ``receive()``: nothing anyio received before the
switch may be lost or reordered, an end mid-frame is still an error, a congested server
still stops reading, and everything else (trio, TLS) keeps the receive loop."""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
import sniffio
from anyio.abc import SocketStream
from requestplane_tcp.connection import HIGH_WATER, FrameConnection
from requestplane_tcp.framing import PREAMBLE, REQUEST, FrameError, frame_limits
from requestplane_tcp.protocol_reader import FeedProtocol, protocol_source
from requestplane_tcp.tls_stream import TlsStream
from tcp_test_helpers import BOUND, client, echo, frame, running

from requestplane_core import Request

pytestmark = pytest.mark.anyio

LIMITS = frame_limits({REQUEST: 1 << 20})


def on_asyncio() -> bool:
    return sniffio.current_async_library() == "asyncio"


@asynccontextmanager
async def stream_pair() -> AsyncIterator[tuple[SocketStream, SocketStream]]:
    """(ours, peer): two ends of a real TCP connection on 127.0.0.1."""
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        peer = await anyio.connect_tcp("127.0.0.1", port)
        ours = await listener.listeners[0].accept()  # type: ignore[attr-defined]
        async with ours, peer:
            yield ours, peer


class Recorder:
    def __init__(self, expect: int = 0) -> None:
        self.frames: list[tuple[int, int, bytes]] = []
        self.expect = expect
        self.all_in = anyio.Event()
        self.tasks: list[int] = []

    def on_frame(self, kind: int, rid: int, body: memoryview) -> None:
        self.frames.append((kind, rid, bytes(body)))
        self.tasks.append(anyio.get_current_task().id)  # in a task, not a loop callback
        if len(self.frames) == self.expect:
            self.all_in.set()

    def on_oversize(self, kind: int, rid: int, length: int) -> None:
        raise FrameError("oversize")


def frames(*rids: int) -> list[tuple[int, int, bytes]]:
    return [(REQUEST, rid, b"body %d" % rid) for rid in rids]


def wire(*rids: int) -> bytes:
    return b"".join(frame(*f) for f in frames(*rids))


async def test_plain_asyncio_tcp_streams_are_read_through_a_protocol() -> None:
    # If anyio's internals change, the protocol path quietly turns off (slower, still
    # correct): this test is how we would notice.
    async with stream_pair() as (ours, _peer):
        source = protocol_source(ours)
        if on_asyncio():
            assert source is not None
        else:
            assert source is None  # trio: the receive loop


async def test_the_reader_runs_through_the_protocol_and_hands_frames_over_in_its_task() -> None:
    async with stream_pair() as (ours, peer):
        fc = FrameConnection(ours, "peer", LIMITS)
        recorder = Recorder(expect=3)
        async with anyio.create_task_group() as tg:
            tg.start_soon(fc.run_reader, recorder)
            with anyio.fail_after(BOUND):
                await peer.send(wire(1, 2, 3))
                await recorder.all_in.wait()
            if on_asyncio():
                transport = ours._transport  # type: ignore[attr-defined]
                assert isinstance(transport.get_protocol(), FeedProtocol)
            await peer.aclose()
        assert recorder.frames == frames(1, 2, 3)
        assert fc.bytes_received == len(wire(1, 2, 3))
        assert len(set(recorder.tasks)) == 1
        if on_asyncio():  # anyio's protocol is back, and its stream still works
            assert ours._transport.get_protocol() is ours._protocol  # type: ignore[attr-defined]
            with pytest.raises(anyio.EndOfStream):
                await ours.receive()


async def test_bytes_anyio_received_before_the_switch_come_first_in_order() -> None:
    async with stream_pair() as (ours, peer):
        fc = FrameConnection(ours, "peer", LIMITS)
        first = wire(1, 2)
        with anyio.fail_after(BOUND):
            await peer.send(PREAMBLE + first[:13])
            await fc.read_preamble()  # may leave part of a frame in the connection's buffer
            await peer.send(first[13:])
            if on_asyncio():
                # Let anyio's protocol take the next bytes into its queue, as it does when
                # data arrives while its receive() is resuming.
                protocol = ours._protocol  # type: ignore[attr-defined]
                ours._transport.resume_reading()  # type: ignore[attr-defined]
                while not protocol.read_queue:
                    await protocol.read_event.wait()
                ours._transport.pause_reading()  # type: ignore[attr-defined]
            await peer.send(wire(3))
            recorder = Recorder(expect=3)
            async with anyio.create_task_group() as tg:
                tg.start_soon(fc.run_reader, recorder)
                await recorder.all_in.wait()
                await peer.aclose()
        assert recorder.frames == frames(1, 2, 3)
        assert fc.bytes_received == len(PREAMBLE) + len(wire(1, 2, 3))


async def test_a_frame_split_across_many_arrivals() -> None:
    data = wire(1) + frame(REQUEST, 2, bytes(range(256)) * 40) + wire(3)
    async with stream_pair() as (ours, peer):
        fc = FrameConnection(ours, "peer", LIMITS)
        recorder = Recorder(expect=3)
        async with anyio.create_task_group() as tg:
            tg.start_soon(fc.run_reader, recorder)
            with anyio.fail_after(BOUND):
                if on_asyncio():
                    await anyio.wait_all_tasks_blocked()
                    # One data_received per byte, the way a trickling peer could deliver it.
                    protocol = ours._transport.get_protocol()  # type: ignore[attr-defined]
                    assert isinstance(protocol, FeedProtocol)
                    for i in range(len(data)):
                        protocol.data_received(data[i : i + 1])
                        if i % 97 == 0:
                            await anyio.lowlevel.checkpoint()
                else:
                    for pos in range(0, len(data), 1000):
                        await peer.send(data[pos : pos + 1000])
                await recorder.all_in.wait()
            await peer.aclose()
        assert recorder.frames[0] == frames(1)[0]
        assert recorder.frames[1] == (REQUEST, 2, bytes(range(256)) * 40)
        assert recorder.frames[2] == frames(3)[0]


async def test_the_peer_closing_mid_frame_is_a_frame_error() -> None:
    async with stream_pair() as (ours, peer):
        fc = FrameConnection(ours, "peer", LIMITS)
        recorder = Recorder()
        with anyio.fail_after(BOUND):
            await peer.send(wire(1) + wire(2)[:-3])
            await peer.send_eof()
            with pytest.raises(FrameError, match="middle of a frame"):
                await fc.run_reader(recorder)
        assert recorder.frames == frames(1)


async def test_the_peer_closing_between_frames_ends_the_reader() -> None:
    async with stream_pair() as (ours, peer):
        fc = FrameConnection(ours, "peer", LIMITS)
        recorder = Recorder()
        with anyio.fail_after(BOUND):
            await peer.send(wire(1, 2))
            await peer.aclose()
            await fc.run_reader(recorder)
        assert recorder.frames == frames(1, 2)


async def test_a_reset_connection_is_a_broken_resource() -> None:
    async with stream_pair() as (ours, peer):
        fc = FrameConnection(ours, "peer", LIMITS)
        raw = peer.extra(anyio.abc.SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with anyio.fail_after(BOUND):
            await peer.send(wire(1))
            await peer.aclose()  # with linger 0: a reset
            with pytest.raises((anyio.BrokenResourceError, OSError)):
                await fc.run_reader(Recorder())
            # anyio's stream learnt it too (the protocol passed connection_lost on)
            with pytest.raises((anyio.BrokenResourceError, OSError)):
                await ours.send(b"x")


async def test_sending_with_backpressure_works_while_the_protocol_reads() -> None:
    async with stream_pair() as (ours, peer):
        fc = FrameConnection(ours, "peer", LIMITS)
        recorder = Recorder(expect=1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(fc.run_reader, recorder)
            with anyio.fail_after(BOUND):
                big = b"w" * (4 << 20)  # far more than the socket buffers: send must wait
                sent = anyio.Event()

                async def send_big() -> None:
                    await ours.send(big)
                    sent.set()

                tg.start_soon(send_big)
                await peer.send(wire(1))
                await recorder.all_in.wait()
                received = 0
                while received < len(big):
                    received += len(await peer.receive(1 << 20))
                await sent.wait()
                await peer.aclose()


async def test_a_congested_connection_is_not_read_until_it_drains() -> None:
    async with stream_pair() as (ours, peer):
        fc = FrameConnection(ours, "peer", LIMITS)
        # Nothing writes it yet (large pieces go through the writer task): congested.
        fc.send2(b"", b"q" * (HIGH_WATER + 1))
        recorder = Recorder(expect=1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(fc.run_reader, recorder, True)
            with anyio.fail_after(BOUND):
                await anyio.wait_all_tasks_blocked()  # the reader waits for the queue to drain
                await peer.send(wire(1))
                await anyio.wait_all_tasks_blocked()
                assert recorder.frames == []
                if on_asyncio():
                    assert not ours._transport.is_reading()  # type: ignore[attr-defined]
                tg.start_soon(fc.run_writer)
                received = 0
                while received < HIGH_WATER + 1:
                    received += len(await peer.receive(1 << 20))
                await recorder.all_in.wait()
                if on_asyncio():
                    assert ours._transport.is_reading()  # type: ignore[attr-defined]
            fc.close()
            await peer.aclose()
        assert recorder.frames == frames(1)


async def test_tls_streams_use_the_receive_loop() -> None:
    async with stream_pair() as (ours, _peer):
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        context = ssl.create_default_context()
        tls = TlsStream(
            ours, context.wrap_bio(incoming, outgoing, server_hostname="x"), incoming, outgoing
        )
        assert protocol_source(tls) is None


async def test_a_closing_transport_uses_the_receive_loop() -> None:
    async with stream_pair() as (ours, peer):
        await peer.aclose()
        if on_asyncio():
            ours._transport.close()  # type: ignore[attr-defined]
        assert protocol_source(ours) is None or not on_asyncio()


async def test_synchronous_handlers_run_in_a_task_end_to_end() -> None:
    # The reason the protocol only queues: a handler answered while parsing must be in a
    # task (sniffio, anyio.current_time() in the dispatcher, the handler's own anyio calls).
    def who(request: Request) -> bytes:
        return b"%d" % anyio.get_current_task().id

    async with running({"who": who, "echo": echo}) as (_s, addresses), client() as c:
        with anyio.fail_after(BOUND):
            for _ in range(3):
                assert int(await c.request(addresses["who"], b""))
            assert await c.request(addresses["echo"], b"x" * 300_000) == b"x" * 300_000
        if on_asyncio():
            (conn,) = c._conns.values()  # type: ignore[attr-defined]
            transport = conn.fc.stream._transport
            assert isinstance(transport.get_protocol(), FeedProtocol)
