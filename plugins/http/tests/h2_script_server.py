"""A scripted HTTP/2 server (the sans-IO h2 library on real sockets) for client tests.

It does what hypercorn does not let a test do on purpose: send a graceful GOAWAY and still
answer the streams below it, refuse a stream, cut a body short. A test passes a policy that
is called with every complete request and decides what the server does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import h2.config
import h2.connection
import h2.errors
import h2.events
from anyio.abc import SocketStream
from hyperframe.frame import GoAwayFrame


class Conn:
    """One accepted connection, as the policy sees it."""

    def __init__(self, index: int, stream: SocketStream) -> None:
        self.index = index
        self.stream = stream
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding=None)
        )
        self.bodies: dict[int, bytearray] = {}
        self.pending: list[int] = []  # complete requests not answered yet
        self.raw_out = b""
        self.closed = False

    def answer(
        self,
        stream_id: int,
        body: bytes,
        *,
        content_type: bytes = b"application/octet-stream",
        end: bool = True,
    ) -> None:
        self.h2.send_headers(stream_id, [(b":status", b"200"), (b"content-type", content_type)])
        self.h2.send_data(stream_id, body, end_stream=end)
        if stream_id in self.pending:
            self.pending.remove(stream_id)

    def reset(self, stream_id: int, code: h2.errors.ErrorCodes) -> None:
        self.h2.reset_stream(stream_id, code)
        if stream_id in self.pending:
            self.pending.remove(stream_id)

    def graceful_goaway(self, last_stream_id: int) -> None:
        """A GOAWAY(NO_ERROR) written around h2, which would refuse to answer afterwards."""
        self.raw_out += self.h2.data_to_send()
        frame = GoAwayFrame(stream_id=0, last_stream_id=last_stream_id, error_code=0)
        self.raw_out += frame.serialize()

    def close(self) -> None:
        self.closed = True

    def body(self, stream_id: int) -> bytes:
        return bytes(self.bodies.get(stream_id, b""))


Policy = Callable[[Conn, int], None]


def echo_policy(conn: Conn, stream_id: int) -> None:
    conn.answer(stream_id, conn.body(stream_id))


@asynccontextmanager
async def scripted_h2_server(policy: Policy) -> AsyncIterator[tuple[str, list[Conn]]]:
    """Yields (``http://127.0.0.1:port/v1/rpc/echo``, the connections accepted so far)."""
    conns: list[Conn] = []
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def serve_one(stream: SocketStream) -> None:
        conn = Conn(len(conns), stream)
        conns.append(conn)
        conn.h2.initiate_connection()
        try:
            await stream.send(conn.h2.data_to_send())
            while not conn.closed:
                try:
                    data = await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return
                for event in conn.h2.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        conn.bodies[event.stream_id] = bytearray()
                    elif isinstance(event, h2.events.DataReceived):
                        conn.bodies[event.stream_id] += event.data
                        conn.h2.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
                    elif isinstance(event, h2.events.StreamEnded):
                        conn.pending.append(event.stream_id)
                        policy(conn, event.stream_id)
                out = conn.raw_out + conn.h2.data_to_send()
                conn.raw_out = b""
                if out:
                    await stream.send(out)
        finally:
            await stream.aclose()

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve_one)
        try:
            yield f"http://127.0.0.1:{port}/v1/rpc/echo", conns
        finally:
            tg.cancel_scope.cancel()
