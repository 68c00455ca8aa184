"""Repairs to hypercorn's HTTP/2 stream bookkeeping, applied before the server serves.

hypercorn keeps every HTTP/2 stream in a priority tree (for its send task) and a send buffer
besides ``h2``'s own state. Three things go wrong with them:

* **A stream the client resets** stays in the tree, blocked, until something unblocks every
  stream (a connection-level WINDOW_UPDATE). The tree refuses its 1001st stream with
  ``TooManyStreamsError``, raised in the connection's reader: after about a thousand
  cancelled calls the connection dies with every request on it (and on trio the whole
  server). A stream that ended normally also stays there while its end is flushed, so a
  client at the advertised limit of 1000 streams hit it too (10,000 calls in flight hung).
* **A connection that closes** stops hypercorn's send task but leaves the send buffers as
  they were: a handler writing to a full buffer (a stream the client stopped reading) waits
  for ever and its task never ends, though the client is gone.
* **The tree's costs grow with the streams on the connection** (see
  :mod:`.stream_scheduler`): at hundreds of requests in flight per connection it was most
  of the server's CPU.
* **A client that opens and resets streams in a loop** ("rapid reset") makes the server start
  handlers without bound (see :mod:`.reset_budget`); once more of them are unwinding than
  the scheduler tracks, ``TooManyStreamsError`` escaped from the connection's reader: a
  traceback, and the connection dropped without a GOAWAY.

The repairs: when hypercorn closes a stream that ``h2`` already considers closed (reset by
the client) or whose connection is gone, close its send buffer (waking any writer) and
unblock it, so that the send task drops it at once, as it does for any stream it finds
closed. And each connection schedules its sends with a :class:`RoundRobinScheduler` (constant
cost per stream) that tracks up to four times the advertised concurrent stream limit, room
for the streams not dropped yet. A connection whose client resets more streams than its
:class:`ResetBudget` allows, or opens more than the scheduler tracks, is ended with GOAWAY
(ENHANCE_YOUR_CALM) and closed a second later, its remaining input unparsed; and a stream
opened and reset within one read is never started (:mod:`.stillborn_streams`).

Applied to hypercorn's class, so every hypercorn server in the process gets them. Should a
hypercorn version lack what they build on, they are skipped with a warning (the transport
then works as before, with the problems above).
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["RESETS_PER_SECOND", "apply_hypercorn_fixes"]

log = logging.getLogger("requestplane.http")

_TRACKED_PER_ALLOWED = 4
_PARSE_SLICE = 8192
_GOAWAY_LINGER = 1.0  # seconds a connection told to go away stays open, as Go's server does
# The attribute of hypercorn's Config that carries max_resets_per_second to its connections.
RESETS_PER_SECOND = "requestplane_max_resets_per_second"
_applied = False


def apply_hypercorn_fixes() -> None:
    global _applied
    if _applied:
        return
    _applied = True
    import h2.errors
    import h2.exceptions
    from hypercorn.events import Closed, RawData
    from hypercorn.protocol.h2 import H2Protocol
    from priority.priority import PriorityError, TooManyStreamsError

    from .reset_budget import ResetBudget
    from .stillborn_streams import drop_stillborn_streams
    from .stream_scheduler import RoundRobinScheduler

    original_init = H2Protocol.__init__
    original_handle = H2Protocol.handle
    original_close_stream = getattr(H2Protocol, "_close_stream", None)
    if original_close_stream is None or not hasattr(H2Protocol, "_handle_events"):
        log.warning("hypercorn %s: HTTP/2 stream clean-up fixes not applied", _version())
        return

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        if not hasattr(self, "priority") or not hasattr(self, "config"):
            return
        limit = max(1000, _TRACKED_PER_ALLOWED * int(self.config.h2_max_concurrent_streams))
        self.priority = RoundRobinScheduler(limit)
        per_second = getattr(self.config, RESETS_PER_SECOND, float("inf"))
        self.requestplane_resets = ResetBudget(
            per_second, int(self.config.h2_max_concurrent_streams)
        )
        self.requestplane_calm = False

    async def handle(self: Any, event: Any) -> None:
        budget = getattr(self, "requestplane_resets", None)
        if not isinstance(event, RawData) or budget is None:
            await original_handle(self, event)
            return
        if self.requestplane_calm:
            return  # told to go away: the rest of its input is not worth parsing
        data = event.data
        exhausted = False
        start = 0
        while start < len(data) and not exhausted:
            # The first slice, and more while they hold resets, parsed on their own: a flood
            # stops being parsed soon after the budget runs out, not at the end of a 64 KiB
            # read (thousands of frames); other input is parsed in one go after the first.
            end = start + _PARSE_SLICE if start == 0 or budget.resets else len(data)
            try:
                events = self.connection.receive_data(data[start:end])
            except h2.exceptions.ProtocolError:
                await self._flush()  # h2's GOAWAY, as hypercorn does
                await self.send(Closed())
                return
            start = end
            events, exhausted = budget.admit(events)
            events, unread = drop_stillborn_streams(events)
            for received in unread:
                self.connection.acknowledge_received_data(
                    received.flow_controlled_length, received.stream_id
                )
            try:
                await self._handle_events(events)
            except TooManyStreamsError:
                exhausted = True
        if exhausted:
            self.requestplane_calm = True
            self.connection.close_connection(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
            await self._flush()
            await original_handle(self, Closed())  # ends its streams; the socket stays open
            self.task_group.spawn(_close_soon, self)

    async def _close_soon(self: Any) -> None:
        # Closing a socket with unread input sends a TCP reset, which can destroy the GOAWAY
        # before the client reads it; so the client gets a moment to read it and leave, while
        # its input is discarded unparsed.
        await self.context.sleep(_GOAWAY_LINGER)
        await self.send(Closed())

    async def _close_stream(self: Any, stream_id: int) -> None:
        await original_close_stream(self, stream_id)
        buffer = getattr(self, "stream_buffers", {}).get(stream_id)
        if buffer is None:
            return  # hypercorn's send task already dropped it
        if not self.closed:
            try:
                self.connection.local_flow_control_window(stream_id)
            except h2.exceptions.ProtocolError:
                pass  # h2 closed it: reset by the client
            else:
                return  # still open: the send task ends it as usual
        await buffer.close()
        try:
            self.priority.unblock(stream_id)
        except PriorityError:
            pass
        await self.has_data.set()

    H2Protocol.__init__ = __init__  # type: ignore[method-assign]
    H2Protocol.handle = handle  # type: ignore[method-assign]
    H2Protocol._close_stream = _close_stream  # type: ignore[method-assign]


def _version() -> str:
    from importlib.metadata import version

    try:
        return version("hypercorn")
    except Exception:
        return "?"
