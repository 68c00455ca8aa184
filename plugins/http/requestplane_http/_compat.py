"""Every reach into the private parts of the HTTP transport's dependencies, in one place.

Each reach is guarded: should an installed version lack what it builds on, it is skipped
with a warning (or h2's own public class is used instead), and the transport works as it
would without it, with the problem it repairs back. Each dependency is pinned in
pyproject.toml to the series tested here; :func:`missing_private_reaches` lists what the
installed versions lack, and ``tests/test_http_compat.py`` fails on any of it, so that an
upgrade fails loudly in the tests rather than silently bringing a bug back.

What is reached, with the versions it was tested with:

- hypercorn 0.18.0, ``hypercorn.protocol.h2.H2Protocol``: ``__init__``, ``handle`` and
  ``_close_stream`` replaced; ``_handle_events``, ``_flush`` and the instance attributes
  ``priority``, ``stream_buffers``, ``has_data``, ``task_group``, ``context``, ``closed``,
  ``connection``, ``config`` used. [1]
- hypercorn 0.18.0, ``hypercorn.protocol.h11.H11Protocol._send_h11_event``: wrapped. [2]
- hypercorn 0.18.0, ``TCPServer._read_data`` of ``hypercorn.asyncio.tcp_server`` and
  ``hypercorn.trio.tcp_server``: wrapped; the server's ``writer`` (asyncio), ``stream``
  (trio) and ``protocol`` used. [4]
- h2 4.4.1, ``h2.connection.H2Connection``: ``_local_settings_acked`` and
  ``_receive_goaway_frame`` overridden, ``open_outbound_streams`` shadowed, its frame
  buffer's ``incoming_buffer.max_frame_size`` set. [3]
- priority 2.0.0: the exceptions of ``priority.priority``, which the tree that
  ``stream_scheduler.py`` stands in for raises and hypercorn catches. [1]

[1] Repairs to hypercorn's HTTP/2 stream bookkeeping (:func:`apply_hypercorn_fixes`),
applied to hypercorn's class before the server serves, so process-wide.

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

[2] HTTP/1.1 status lines with their reason phrase (``HTTP/1.1 200 OK``,
:func:`apply_reason_phrases`). hypercorn hands ``h11`` its responses without a reason, and
``h11`` writes the status line as ``HTTP/1.1 200 `` (the phrase is optional in RFC 9112, but
clients such as h2load count every such response as failed). The standard phrase is filled
in as the response goes to ``h11``; a status without one keeps the empty reason. Applied to
hypercorn's HTTP/1.1 protocol class, process-wide.

[3] The client's ``h2`` connection class (:func:`h2_connection_class`), with three changes:

* ``h2`` treats every GOAWAY as the end of the connection and then refuses the frames of
  streams the server is still answering. A graceful GOAWAY (NO_ERROR) only means "no new
  streams": keep the connection open for the streams at or below its last stream id.
* ``h2`` recounts every stream it knows on each new stream, to enforce the server's
  concurrent stream limit; with many requests in flight that was the client's largest
  single cost. ``H2Connection`` (h2_connection.py) enforces the limit itself
  (``available``), so only every ``_RECOUNT``-th new stream pays for the recount, which is
  also when ``h2`` drops its closed streams.
* A raised MAX_FRAME_SIZE applies from the frame right after the server's ACK, not from
  the next read (see ``_local_settings_acked``).

[4] A cancelled read closes the connection (:func:`apply_cancelled_read_fix`). When
hypercorn stops (its graceful close timed out), it cancels every connection's task. The
reader (``TCPServer._read_data``) tells the protocol that the connection is gone only when a
read ends normally; cancelled, it leaves the protocol thinking the peer is still there. A
handler's last write (shielded, see :class:`~.asgi_app._Responder`) that waits for flow
control from a caller who stopped reading then waits for ever, the connection's task group
never exits, and neither does the server (seen on trio: a caller holding an unread stream
kept the server's process alive indefinitely). The repair: whatever ends the reader
abnormally, close the socket and hand the protocol ``Closed`` (which wakes every writer),
shielded and bounded, then let the cancellation go on. Applied to the class of each
hypercorn backend present.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    import h2.connection

__all__ = [
    "RESETS_PER_SECOND",
    "apply_cancelled_read_fix",
    "apply_hypercorn_fixes",
    "apply_reason_phrases",
    "h2_connection_class",
    "missing_private_reaches",
]

log = logging.getLogger("requestplane.http")

_TRACKED_PER_ALLOWED = 4
_PARSE_SLICE = 8192
_GOAWAY_LINGER = 1.0  # seconds a connection told to go away stays open, as Go's server does
# The attribute of hypercorn's Config that carries max_resets_per_second to its connections.
RESETS_PER_SECOND = "requestplane_max_resets_per_second"
_applied = False
_PHRASES = {status.value: status.phrase.encode("ascii") for status in HTTPStatus}
_phrases_applied = False
_CLOSE_BOUND = 2.0  # seconds; closing a socket and a protocol takes microseconds when healthy
_TCP_SERVER_MODULES = ("hypercorn.asyncio.tcp_server", "hypercorn.trio.tcp_server")
_read_fix_applied = False


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

    # What the reaches replace stays reachable, for missing_private_reaches() to inspect.
    __init__.__wrapped__ = original_init  # type: ignore[attr-defined]
    H2Protocol.__init__ = __init__  # type: ignore[method-assign]
    H2Protocol.handle = handle  # type: ignore[method-assign]
    H2Protocol._close_stream = _close_stream  # type: ignore[method-assign]


def apply_reason_phrases() -> None:
    global _phrases_applied
    if _phrases_applied:
        return
    _phrases_applied = True
    import h11
    from hypercorn.protocol.h11 import H11Protocol

    original_send = getattr(H11Protocol, "_send_h11_event", None)
    if original_send is None:
        log.warning("hypercorn %s: HTTP/1.1 reason phrases not added", _version())
        return

    async def _send_h11_event(self: Any, event: Any) -> None:
        if isinstance(event, (h11.Response, h11.InformationalResponse)) and not event.reason:
            phrase = _PHRASES.get(event.status_code)
            if phrase:
                event = type(event)(
                    headers=event.headers, status_code=event.status_code, reason=phrase
                )
        await original_send(self, event)

    H11Protocol._send_h11_event = _send_h11_event  # type: ignore[method-assign]


def apply_cancelled_read_fix() -> None:
    global _read_fix_applied
    if _read_fix_applied:
        return
    _read_fix_applied = True
    from hypercorn.events import Closed

    for name in _TCP_SERVER_MODULES:
        try:
            server_class = importlib.import_module(name).TCPServer
        except (ImportError, AttributeError):
            continue  # the trio half needs trio, which is optional
        original = getattr(server_class, "_read_data", None)
        if original is None:
            log.warning("hypercorn %s: %s has no _read_data; not repaired", _version(), name)
            continue
        server_class._read_data = _closing_on_exit(original, Closed)


def _closing_on_exit(
    original: Callable[[Any], Awaitable[None]], closed: type
) -> Callable[[Any], Awaitable[None]]:
    async def _read_data(self: Any) -> None:
        try:
            await original(self)
        except BaseException:
            with anyio.CancelScope(shield=True) as scope:
                scope.deadline = anyio.current_time() + _CLOSE_BOUND
                await _close_socket(self)
                await self.protocol.handle(closed())
            raise

    return _read_data


async def _close_socket(server: Any) -> None:
    writer = getattr(server, "writer", None)  # asyncio's TCPServer
    try:
        if writer is not None:
            writer.close()
        else:
            await server.stream.aclose()  # trio's
    except Exception:  # already closed or broken: what we wanted
        pass


@functools.cache
def h2_connection_class() -> type[h2.connection.H2Connection]:
    """The client's ``h2`` connection class: h2's own, changed as [3] of the module's
    docstring says when this h2 has what the changes override."""
    import h2.connection
    import h2.errors
    import h2.events
    import h2.settings

    if _missing_in_h2():
        log.warning("h2 %s: graceful GOAWAY and cheap stream counting not applied", _h2_version())
        return h2.connection.H2Connection

    class GracefulH2Connection(h2.connection.H2Connection):
        _RECOUNT = 64
        _opened = 0

        @property
        def open_outbound_streams(self) -> int:
            self._opened += 1
            if self._opened >= self._RECOUNT:
                self._opened = 0
                return int(super().open_outbound_streams)
            return 0

        def _local_settings_acked(
            self,
        ) -> dict[h2.settings.SettingCodes | int, h2.settings.ChangedSetting]:
            changes: dict[h2.settings.SettingCodes | int, h2.settings.ChangedSetting] = (
                super()._local_settings_acked()
            )
            # h2 copies the frame size limit into its frame buffer once per receive_data()
            # call, so the frames that arrive in the same read as the ACK were still held to
            # the old 16 KiB limit although the server, having acknowledged MAX_FRAME_SIZE,
            # may (and hypercorn does) send larger ones right behind it: "Received overlong
            # frame" killed every stream on the connection. The new limit applies from the
            # frame after the ACK.
            self.incoming_buffer.max_frame_size = self.max_inbound_frame_size
            return changes

        def _receive_goaway_frame(self, frame: Any) -> tuple[list[Any], list[h2.events.Event]]:
            if frame.error_code != 0:
                result: tuple[list[Any], list[h2.events.Event]] = super()._receive_goaway_frame(
                    frame
                )
                return result
            event = h2.events.ConnectionTerminated()
            event.error_code = h2.errors.ErrorCodes.NO_ERROR
            event.last_stream_id = frame.last_stream_id
            event.additional_data = frame.additional_data or None
            return [], [event]

    return GracefulH2Connection


def missing_private_reaches() -> list[str]:
    """What the reaches of this module look for and the installed versions lack (empty
    when every repair applies)."""
    from hypercorn.protocol.h2 import H2Protocol
    from hypercorn.protocol.h11 import H11Protocol

    missing = [
        f"hypercorn H2Protocol.{name}"
        for name in ("__init__", "handle", "_close_stream", "_handle_events", "_flush")
        if not hasattr(H2Protocol, name)
    ]
    # Instance attributes: set in __init__, so looked for in its (unpatched) source.
    init = _source(inspect.unwrap(H2Protocol.__init__))
    missing += [
        f"hypercorn H2Protocol().{name}"
        for name in (
            "priority",
            "stream_buffers",
            "has_data",
            "task_group",
            "context",
            "closed",
            "connection",
            "config",
        )
        if f"self.{name}" not in init
    ]
    if not hasattr(H11Protocol, "_send_h11_event"):
        missing.append("hypercorn H11Protocol._send_h11_event")
    for name in _TCP_SERVER_MODULES:
        try:
            server_class = importlib.import_module(name).TCPServer
        except (ImportError, AttributeError):
            missing.append(f"{name}.TCPServer")
            continue
        if not hasattr(server_class, "_read_data"):
            missing.append(f"{name}.TCPServer._read_data")
            continue
        init = _source(server_class.__init__)
        wanted = ("writer", "protocol") if ".asyncio." in name else ("stream", "protocol")
        missing += [f"{name}.TCPServer().{attr}" for attr in wanted if f"self.{attr}" not in init]
    missing += _missing_in_h2()
    import priority.priority

    missing += [
        f"priority.priority.{name}"
        for name in (
            "DeadlockError",
            "DuplicateStreamError",
            "MissingStreamError",
            "PriorityError",
            "PriorityLoop",
            "PseudoStreamError",
            "TooManyStreamsError",
        )
        if not hasattr(priority.priority, name)
    ]
    return missing


def _missing_in_h2() -> list[str]:
    import h2.connection
    import h2.frame_buffer

    conn = h2.connection.H2Connection
    missing = [
        f"h2 H2Connection.{name}"
        for name in ("_local_settings_acked", "_receive_goaway_frame", "open_outbound_streams")
        if not hasattr(conn, name)
    ]
    if "self.incoming_buffer" not in _source(conn.__init__):
        missing.append("h2 H2Connection().incoming_buffer")
    if "max_frame_size" not in _source(h2.frame_buffer.FrameBuffer.__init__):
        missing.append("h2 FrameBuffer().max_frame_size")
    return missing


def _source(fn: Any) -> str:
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        return ""


def _version() -> str:
    return _distribution_version("hypercorn")


def _h2_version() -> str:
    return _distribution_version("h2")


def _distribution_version(name: str) -> str:
    from importlib.metadata import version

    try:
        return version(name)
    except Exception:
        return "?"
