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

from . import wire
from .nats_link import NatsLink

__all__ = ["Responder"]

_BATCH_BYTES = 64 * 1024
# Room for the batch headers (sequence number and count).
_HEADER_ROOM = 64

Spawn = Callable[[Callable[[], Coroutine[Any, Any, None]]], None]


class Responder:
    """Cancel-safe: each method queues whole messages before it can be interrupted."""

    __slots__ = (
        "_batch",
        "_batch_bytes",
        "_flush_pending",
        "_link",
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
        if size + _HEADER_ROOM > limit:  # a chunk of its own, in parts
            await self._flush()
            seq, self._seq = self._seq, self._seq + 1
            await self._send_parts(payload, {wire.SEQ: str(seq)})
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
            await self._link.publish(self.reply, batch[0], headers={wire.SEQ: str(first)})
        else:
            await self._link.publish(
                self.reply,
                wire.pack_chunks(batch),
                headers={wire.SEQ: str(first), wire.COUNT: str(len(batch))},
            )

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
