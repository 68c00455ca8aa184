"""One client connection's reply inbox: every reply, chunk and marker, sorted to its call.

The client subscribes once to ``<inbox_prefix>.<id>.*``; each call gets its own last token, so
a single subscription serves every request and stream in flight (as nats-py's own
request/reply does). The token also carries the caller's remaining time (see :mod:`.wire`).
"""

from __future__ import annotations

import collections
import uuid
from collections.abc import Callable
from typing import Any

from requestplane_core import (
    ConnectionLost,
    DeadlineExceeded,
    EndpointNotFound,
    PayloadTooLarge,
    ProtocolError,
    RequestPlaneError,
)
from requestplane_core.lowlevel import Waiter

from . import wire
from .nats_link import Msg, NatsLink

__all__ = ["Call", "ReplyInbox"]

_NO_RESPONDERS = "503"


class Call:
    """What has arrived for one request: chunks in order, then done (with or without error)."""

    __slots__ = (
        "_make_event",
        "_waiter",
        "chunks",
        "consumed",
        "done",
        "error",
        "expired",
        "heard",
        "liveness",
        "next_seq",
        "part_size",
        "parts",
        "probing",
        "reply",
        "subject",
        "timer",
        "token",
        "upload_from",
        "upload_to",
    )

    def __init__(
        self, token: str, reply: str, subject: str, make_event: Callable[[], Waiter]
    ) -> None:
        self.token = token
        self.reply = reply
        self.subject = subject
        self.chunks: collections.deque[bytes] = collections.deque()
        self.done = False
        self.error: RequestPlaneError | None = None
        self.next_seq = 0
        self.expired = False
        self.timer: Any = None
        # For the client's watchdog: the inbox round in which anything last arrived for this
        # call, and the subject that answers for the server running it (from its heartbeats).
        self.heard = 0
        self.liveness: str | None = None
        self.probing = False
        # A response or chunk arriving in parts, and where the server wants the rest of a
        # request sent in parts.
        self.parts: list[bytes] = []
        self.part_size = 0
        self.upload_to: str | None = None
        self.upload_from = 0  # a request sent in parts: the offset of its second part
        self.consumed = 0  # stream bytes (+ CHUNK_COST each) taken but not granted yet
        self._make_event = make_event
        self._waiter: Waiter | None = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()

    def unary(self, data: bytes) -> None:
        if self.next_seq:
            self.fail(ProtocolError("a whole response arrived in the middle of a stream"))
            return
        self.chunks.append(data)
        self._finish()

    def chunk(self, seq: int, data: bytes) -> None:
        if seq != self.next_seq:
            self.fail(
                ConnectionLost(
                    f"the stream from {self.subject!r} lost chunks: chunk {seq} arrived "
                    f"where {self.next_seq} was due"
                )
            )
            return
        self.next_seq += 1
        self.chunks.append(data)
        self._wake()

    def chunks_from(self, seq: int, chunks: list[bytes]) -> None:
        if seq != self.next_seq:
            self.chunk(seq, b"")  # reports the gap
            return
        self.next_seq += len(chunks)
        self.chunks.extend(chunks)
        self._wake()

    def part(self, total: int, offset: int, data: bytes, limit: int) -> bytes | None:
        """A part of a response or chunk: the whole once complete; None while parts are
        missing (or the call failed: they did not add up)."""
        if offset != self.part_size or total > limit or self.part_size + len(data) > total:
            self.fail(
                ConnectionLost(f"the parts of a large reply from {self.subject!r} do not add up")
                if total <= limit
                else PayloadTooLarge(
                    f"a reply of {total} bytes exceeds the NATS transport's max_message_size "
                    f"of {limit}"
                )
            )
            return None
        self.parts.append(data)
        self.part_size += len(data)
        if self.part_size < total:
            return None
        parts, self.parts, self.part_size = self.parts, [], 0
        return b"".join(parts)

    def upload_ready(self, subject: str) -> None:
        self.upload_to = subject
        self._wake()

    def end(self, count: int) -> None:
        if count != self.next_seq:
            self.fail(
                ConnectionLost(
                    f"the stream from {self.subject!r} sent {count} chunks but "
                    f"{self.next_seq} arrived"
                )
            )
            return
        self._finish()

    def expire(self) -> None:
        """The deadline passed: fail the call (the caller then cancels it on the server)."""
        if not self.done:
            self.expired = True
            self.timer = None
            self.fail(DeadlineExceeded(f"no response from {self.subject!r} in time"))

    def send_failed(self, exc: BaseException) -> None:
        self.fail(ConnectionLost(f"could not send the request to NATS: {exc!r}"))

    def fail(self, error: RequestPlaneError) -> None:
        if not self.done:
            self.error = error
            self._finish()

    def _finish(self) -> None:
        self.done = True
        timer, self.timer = self.timer, None
        if timer is not None:
            timer.cancel()
        self._wake()

    async def wait(self) -> None:
        """Until the next chunk or the end arrives (at once if the call is done)."""
        if not self.done:
            waiter = self._waiter = self._make_event()
            try:
                await waiter.wait()
            finally:
                self._waiter = None


class ReplyInbox:
    """The calls in flight on one connection, keyed by the last token of their reply subject."""

    def __init__(
        self,
        link: NatsLink,
        prefix: str,
        make_event: Callable[[], Waiter],
        max_size: int = 32 * 1024 * 1024,
    ) -> None:
        self.link = link
        self._max_size = max_size
        self._make_event = make_event
        self._prefix = f"{prefix}.{uuid.uuid4().hex}."
        self._skip = len(self._prefix)
        self._calls: dict[str, Call] = {}
        self._counter = 0
        self.round = 0  # advanced by the client's watchdog, once per heartbeat interval
        self.orphans: list[Call] = []
        self.reconnected_at: float | None = None  # the clock at the last reconnect
        link.on_disconnect = self._disconnected

    async def start(self) -> None:
        await self.link.subscribe(self._prefix + "*", self._on_msg)

    def new_call(self, subject: str, remaining: float, window: int = 0) -> Call:
        self._counter += 1
        token = wire.reply_token(self._counter, remaining, window)
        call = self._calls[token] = Call(token, self._prefix + token, subject, self._make_event)
        call.heard = self.round
        return call

    def forget(self, call: Call) -> None:
        self._calls.pop(call.token, None)

    def _on_msg(self, msg: Msg) -> None:
        call = self._calls.get(msg.subject[self._skip :])
        if call is None:
            return  # the caller gave up on it already
        call.heard = self.round
        headers = msg.headers
        if not headers:
            call.unary(msg.data)
        elif wire.ALIVE in headers:
            call.liveness = headers[wire.ALIVE]  # a heartbeat: the call is still running
            return
        elif wire.LENGTH in headers:
            try:
                total, offset = int(headers[wire.LENGTH]), int(headers.get(wire.PART, "0"))
                chunk_seq = int(headers[wire.SEQ]) if wire.SEQ in headers else None
            except ValueError:
                call.fail(ProtocolError("a part of a large reply carries malformed headers"))
            else:
                if wire.UPLOAD in headers:  # a flow-controlled stream's first chunk
                    call.upload_to = headers[wire.UPLOAD]
                whole = call.part(total, offset, msg.data, self._max_size)
                if whole is None and not call.done:
                    return
                if whole is not None:
                    if chunk_seq is not None:
                        call.chunk(chunk_seq, whole)
                        return
                    call.unary(whole)
        elif wire.SEQ in headers:
            try:
                seq = int(headers[wire.SEQ])
                count = int(headers.get(wire.COUNT, "1"))
            except ValueError:
                call.fail(ProtocolError("a stream chunk carries a malformed sequence number"))
                return
            if wire.UPLOAD in headers:  # a flow-controlled stream's first chunk: grants go here
                call.upload_to = headers[wire.UPLOAD]
            if count == 1 and wire.COUNT not in headers:
                call.chunk(seq, msg.data)
                return
            chunks = wire.unpack_chunks(msg.data, count) if count > 0 else None
            if chunks is None:
                call.fail(ProtocolError("a batch of stream chunks is malformed"))
            else:
                call.chunks_from(seq, chunks)
            return
        elif wire.UPLOAD in headers:
            call.upload_ready(headers[wire.UPLOAD])
            return
        elif wire.END in headers:
            try:
                count = int(headers[wire.END])
            except ValueError:
                call.fail(ProtocolError("a stream end marker carries a malformed count"))
            else:
                call.end(count)
        elif wire.ERROR in headers:
            call.fail(wire.read_error(headers, msg.data))
        elif headers.get("Status") == _NO_RESPONDERS:
            call.fail(EndpointNotFound(f"no server serves the subject {call.subject!r}"))
        else:
            call.fail(ProtocolError("a reply that is not requestplane's NATS protocol"))
        self._calls.pop(call.token, None)

    def silent_calls(self, rounds: int) -> tuple[dict[str, list[Call]], list[Call]]:
        """Start a new round; return the calls not heard from for ``rounds`` rounds: those
        whose server is known (it sent a heartbeat), by the liveness subject of that server,
        and those whose server is not known yet."""
        self.round += 1
        known: dict[str, list[Call]] = {}
        unknown: list[Call] = []
        for call in self._calls.values():
            if not call.probing and not call.done and self.round - call.heard >= rounds:
                if call.liveness is None:
                    unknown.append(call)
                else:
                    known.setdefault(call.liveness, []).append(call)
        return known, unknown

    def fail_all(self, error: RequestPlaneError) -> list[Call]:
        """Fail every call in flight; return them (their servers may need a cancel)."""
        calls, self._calls = self._calls, {}
        for call in calls.values():
            call.fail(error)
        return list(calls.values())

    def _disconnected(self) -> None:
        failed = self.fail_all(ConnectionLost("lost the connection to the NATS server"))
        # Their handlers may still run; they get a cancel once the connection is back.
        self.orphans.extend(failed)

    def take_orphans(self) -> list[Call]:
        orphans, self.orphans = self.orphans, []
        return orphans
