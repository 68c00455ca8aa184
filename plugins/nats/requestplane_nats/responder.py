"""Replies for one request on its reply inbox, with stream chunks coalesced per loop turn.

Every NATS message costs the same fixed work in nats-py and nats-server whatever its size, and
that work, not the bytes, bounds a stream of small chunks. So chunks that a handler yields in
one go travel as one message (a batch): the first chunk of a batch schedules a flush one loop
turn later, and the chunks that arrive before then join it. A handler that yields slowly sees
each chunk leave after one loop turn; a fast one fills batches up to ``_BATCH_BYTES``, and a
batch that is full goes out at once, so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from anyio.lowlevel import checkpoint

from requestplane_core import ConnectionLost, PayloadTooLarge, RequestPlaneError
from requestplane_core.lowlevel import Waiter

from . import wire
from .nats_link import NatsLink

__all__ = ["Responder"]

_BATCH_BYTES = 64 * 1024
# Room for the batch headers (sequence number and count).
_HEADER_ROOM = 64

_CHUNK_COST = wire.CHUNK_COST

Spawn = Callable[[Callable[[], Coroutine[Any, Any, None]]], None]


class Responder:
    """Cancel-safe: each method queues whole messages before it can be interrupted."""

    __slots__ = (
        "_announce",
        "_batch",
        "_batch_bytes",
        "_credit",
        "_credit_waiter",
        "_flush_pending",
        "_link",
        "_make_event",
        "_max_size",
        "_seq",
        "_spawn",
        "reply",
    )

    def __init__(self, link: NatsLink, reply: str, spawn: Spawn, max_size: int) -> None:
        self._link = link
        self.reply = reply
        self._spawn = spawn
        self._max_size = max_size
        self._seq = 0
        self._batch: list[bytes] = []
        self._batch_bytes = 0
        self._flush_pending = False
        # Flow control (wire.WINDOW): None when the caller grants no credit.
        self._credit: int | None = None
        self._credit_waiter: Waiter | None = None
        self._announce: str | None = None
        self._make_event: Callable[[], Waiter] | None = None

    def control_flow(self, window: int, here: str, make_event: Callable[[], Waiter]) -> None:
        """Send stream chunks only while the caller has granted credit: ``window`` bytes to
        start with; the first chunk message names ``here``, where the grants go."""
        self._credit = window
        self._announce = here
        self._make_event = make_event

    def grant(self, amount: int) -> None:
        if self._credit is None:
            return
        self._credit += amount
        waiter, self._credit_waiter = self._credit_waiter, None
        if waiter is not None:
            waiter.set()

    async def _wait_for_credit(self) -> None:
        """Until the caller grants credit (the handler waits with it)."""
        assert self._credit is not None and self._make_event is not None
        while self._credit <= 0:
            await self._flush()  # the chunks already paid for go out before the wait
            waiter = self._credit_waiter = self._make_event()
            await waiter.wait()

    def _chunk_headers(self, headers: dict[str, str]) -> dict[str, str]:
        if self._announce is not None:
            headers[wire.UPLOAD] = self._announce
            self._announce = None
        return headers

    def _check(self, size: int) -> int:
        """The broker's max_payload, once ``size`` is known to be within the transport's
        limit (larger messages than max_payload travel in parts)."""
        if self._link.closed:
            raise ConnectionLost("the server's NATS connection is closed")
        if size > self._max_size:
            raise PayloadTooLarge(
                f"response of {size} bytes exceeds the NATS transport's max_message_size of "
                f"{self._max_size}"
            )
        return self._link.max_payload

    def answer_now(self, outcome: bytes | RequestPlaneError) -> Awaitable[None] | None:
        """The whole answer at once, without a task (see ``NatsLink.publish_now``): what to
        await, if anything. Nothing is sent once the connection is closed: the caller's
        deadline reports that."""
        if self._link.closed:
            return None
        if isinstance(outcome, bytes):
            try:
                limit = self._check(len(outcome))
            except PayloadTooLarge as exc:
                outcome = exc
            else:
                if len(outcome) <= limit:
                    return self._link.publish_now(self.reply, outcome)
                data = outcome  # in parts: rare enough for a task of its own
                self._spawn(lambda: self._send_parts(data, {}))
                return None
        payload, headers = _error_message(outcome, self._link.max_payload)
        return self._link.publish_now(self.reply, payload, headers=headers)

    async def send_response(self, payload: bytes) -> None:
        if len(payload) <= self._check(len(payload)):
            await self._link.publish(self.reply, payload)
        else:
            await self._send_parts(payload, {})

    async def _send_parts(self, data: bytes, headers: dict[str, str]) -> None:
        """``data`` as parts that fit the broker's max_payload, in order (NATS keeps the
        order of one connection's messages to one subscriber)."""
        step = self._link.max_payload - wire.PART_HEADER_ROOM
        total = str(len(data))
        view = memoryview(data)
        for at in range(0, len(data), step):
            part = {**headers, wire.LENGTH: total, wire.PART: str(at)}
            await self._link.publish(self.reply, bytes(view[at : at + step]), headers=part)

    async def send_chunk(self, payload: bytes) -> None:
        size = len(payload) + wire.FRAME_OVERHEAD
        limit = self._check(len(payload))
        credit = self._credit
        if credit is not None:  # inline: a coroutine per chunk costs ~0.5 us (measured)
            if credit <= 0:
                await self._wait_for_credit()
                credit = self._credit or 0
            self._credit = credit - len(payload) - _CHUNK_COST
        if size + _HEADER_ROOM > limit:  # a chunk of its own, in parts
            await self._flush()
            seq, self._seq = self._seq, self._seq + 1
            await self._send_parts(payload, self._chunk_headers({wire.SEQ: str(seq)}))
            return
        batch_limit = min(_BATCH_BYTES, limit - _HEADER_ROOM)
        if self._batch and self._batch_bytes + size > batch_limit:
            await self._flush()
        self._batch.append(payload)
        self._batch_bytes += size
        if self._batch_bytes >= batch_limit:
            await self._flush()
        elif not self._flush_pending:
            self._flush_pending = True
            self._spawn(self._flush_soon)

    async def _flush_soon(self) -> None:
        await checkpoint()  # one loop turn: what the handler yields meanwhile joins the batch
        self._flush_pending = False
        await self._flush()

    async def _flush(self) -> None:
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        if not batch:
            return
        first, self._seq = self._seq, self._seq + len(batch)
        if len(batch) == 1:
            headers = self._chunk_headers({wire.SEQ: str(first)})
            await self._link.publish(self.reply, batch[0], headers=headers)
        else:
            headers = self._chunk_headers({wire.SEQ: str(first), wire.COUNT: str(len(batch))})
            await self._link.publish(self.reply, wire.pack_chunks(batch), headers=headers)

    async def send_end(self) -> None:
        self._check(0)
        await self._flush()
        await self._link.publish(self.reply, b"", headers={wire.END: str(self._seq)})

    async def send_error(self, error: RequestPlaneError) -> None:
        limit = self._check(0)
        if not self._link.closed:
            await self._flush()  # the chunks before the error arrive before it
        payload, headers = _error_message(error, limit)
        await self._link.publish(self.reply, payload, headers=headers)


def _error_message(error: RequestPlaneError, limit: int) -> tuple[bytes, dict[str, str]]:
    """The payload and headers of an error reply, its message cut to fit ``limit``."""
    headers = wire.error_headers(error)
    room = limit - wire.header_size(headers)
    return wire.error_payload(error, max(room, 0)), headers
