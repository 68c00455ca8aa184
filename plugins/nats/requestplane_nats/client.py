"""The calling half: requests and streams over one NATS connection per target server.

``stream()`` (over :class:`~requestplane_nats.reply_stream.ReplyStream`), the counters, the
size check and the closed state come from the core's ExchangeClient; ``request()`` keeps a
path of its own (``unary``) that waits for the whole answer.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from functools import partial
from typing import ClassVar

import anyio

from requestplane_core import (
    Address,
    ConfigError,
    ConnectionLost,
    DeadlineExceeded,
    EndpointNotFound,
    PayloadTooLarge,
    Unavailable,
)
from requestplane_core.lowlevel import Primitives, primitives
from requestplane_core.plugin_api import ExchangeClient

from . import wire
from .nats_link import NatsLink
from .reply_inbox import Call, ReplyInbox
from .reply_stream import ReplyStream
from .settings import NatsSettings
from .subjects import cancel_subject_for, endpoint_from_subject, valid_subject

__all__ = ["NatsTransportClient"]

log = logging.getLogger("requestplane.nats")

# A call not heard from for this many heartbeat intervals gets its server asked whether it is
# still there. Heartbeats come once an interval, so a live server is never this late unless
# its event loop is stuck, and then it is only asked (and "no answer" changes nothing).
_SILENT_ROUNDS = 3
# After this client reconnected to NATS, "no responders" may only mean that the workers have
# not reconnected and resubscribed yet (each on its own reconnect schedule, reconnect_wait
# apart plus jitter): for this many seconds, or this many reconnect waits if longer, such a
# request is sent again (nothing received it) until its deadline.
_RESUBSCRIBE_GRACE = 2.0
_RESUBSCRIBE_WAITS = 4
_RESEND_PAUSE = 0.02
_CHUNK_COST = wire.CHUNK_COST
_RESEND_PAUSE_MAX = 0.25


class _Target:
    """A parsed address: the subject to publish to and the connection that carries it."""

    __slots__ = ("link_key", "subject")

    def __init__(self, subject: str, link_key: str) -> None:
        self.subject = subject
        self.link_key = link_key


class NatsTransportClient(ExchangeClient[_Target]):
    # A call's deadline is its own: a timer on asyncio, a cancel scope around each wait on
    # trio (Primitives), kept by wait_for_reply.
    exchanges_keep_deadline: ClassVar[bool] = True

    def __init__(self, settings: NatsSettings) -> None:
        super().__init__(
            name="nats",
            max_message_size=settings.max_message_size,
            request_timeout=settings.request_timeout,
        )
        self._settings = settings
        self._inboxes: dict[str, ReplyInbox] = {}
        self._lock: anyio.Lock | None = None
        self._primitives: Primitives | None = None
        self._watch_scope: anyio.CancelScope | None = None
        self._watching = False

    # -- targets and connections --------------------------------------------------------------

    def parse_target(self, address: Address | str) -> _Target:
        parsed = Address.parse(address)
        if parsed.scheme != "nats":
            raise ConfigError(f"{str(address)!r} is not a NATS address (nats://host:port/subject)")
        if not valid_subject(parsed.path):
            raise ConfigError(f"{str(address)!r} does not name a NATS subject without wildcards")
        if self._settings.url is not None or not parsed.host:
            key = ""
        else:
            # No URL configured: reach the NATS server the address names, like a TCP client
            # reaches the host in a tcp:// address.
            host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
            key = f"nats://{host}:{parsed.port or 4222}"
        return _Target(parsed.path, key)

    def peer_of(self, target: _Target) -> str:
        return repr(target.subject)

    async def _inbox(self, target: _Target) -> ReplyInbox:
        inbox = self._inboxes.get(target.link_key)
        if inbox is not None and not inbox.link.closed:
            return inbox
        if self.closed:
            raise ConnectionLost("the client is closed")
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            inbox = self._inboxes.get(target.link_key)
            if inbox is not None and not inbox.link.closed:
                return inbox
            urls = [target.link_key] if target.link_key else self._settings.urls()
            link = await NatsLink.open(self._settings, urls, name="requestplane-client")
            inbox = ReplyInbox(
                link,
                self._settings.inbox_prefix,
                self._prims().event,
                self._settings.max_message_size,
            )
            link.on_reconnect = partial(self._reconnected, inbox)
            try:
                await inbox.start()
            except BaseException:
                await link.aclose()
                raise
            if self.closed:
                await link.aclose()
                raise ConnectionLost("the client is closed")
            old = self._inboxes.get(target.link_key)
            self._inboxes[target.link_key] = inbox
            self.stats.open_connections = len(self._inboxes)
            interval = self._settings.heartbeat_interval
            if interval > 0 and not self._watching and self.task_group is not None:
                self._watching = True
                self.task_group.start_soon(self._watchdog, interval)
            if old is not None:
                await old.link.aclose()
            return inbox

    # -- sending -------------------------------------------------------------------------------

    def _prims(self) -> Primitives:
        prims = self._primitives
        if prims is None:
            prims = self._primitives = primitives()
        return prims

    async def _send(
        self,
        target: _Target,
        payload: bytes,
        headers: Mapping[str, str] | None,
        deadline: float,
        window: int = 0,
    ) -> tuple[ReplyInbox, Call]:
        prims = self._prims()
        inbox = self._inboxes.get(target.link_key)
        if inbox is None or inbox.link.closed:
            remaining = deadline - prims.clock()
            if remaining <= 0:
                raise DeadlineExceeded("the timeout passed before the request was sent")
            with anyio.fail_after(remaining):
                inbox = await self._inbox(target)
        link = inbox.link
        remaining = deadline - prims.clock()
        if remaining <= 0:
            raise DeadlineExceeded("the timeout passed before the request was sent")
        out: dict[str, str] | None = None
        if headers:
            for key in headers:
                if key.lower() in wire.RESERVED:
                    raise ValueError(f"header {key!r} is reserved by the NATS transport")
            out = dict(headers)
        size = len(payload) + wire.header_size(out)
        self.check_size(payload, size)  # the headers count too
        head = payload
        if size > link.max_payload:  # in parts: this one, then the rest where the server says
            out = {**(out or {}), wire.LENGTH: str(len(payload))}
            room = link.max_payload - wire.header_size(out)
            if room <= 0:
                raise PayloadTooLarge(
                    "the request's headers alone exceed the NATS server's max_payload of "
                    f"{link.max_payload}"
                )
            head = payload[:room]
        if not link.connected:
            # not sent, so safe to retry (calls in flight at the disconnect: ConnectionLost)
            raise Unavailable("not connected to the NATS server (reconnecting)")
        call = inbox.new_call(target.subject, remaining, window)
        if head is not payload:
            call.upload_from = len(head)
        if prims.call_at is not None and deadline != math.inf:
            call.timer = prims.call_at(deadline, call.expire)
        await link.publish(target.subject, head, call.reply, out, on_error=call.send_failed)
        return inbox, call

    async def _upload(self, link: NatsLink, call: Call, payload: bytes, deadline: float) -> None:
        """The rest of a request sent in parts, once its server said where (``Rp-U``)."""
        move_on_at = self._prims().move_on_at
        if move_on_at is None:  # the call's timer expires it
            while not call.done and call.upload_to is None:
                await call.wait()
        else:
            with move_on_at(deadline):
                while not call.done and call.upload_to is None:
                    await call.wait()
        subject = call.upload_to
        if call.done or subject is None:
            if not call.done:
                call.expire()
            return
        step = link.max_payload - wire.PART_HEADER_ROOM
        view = memoryview(payload)
        for at in range(call.upload_from, len(payload), step):
            if call.done:  # failed or expired meanwhile: the rest is not wanted
                return
            part = bytes(view[at : at + step])
            headers = {wire.PART: str(at)}
            await link.publish(subject, part, call.reply, headers, on_error=call.send_failed)

    async def _call(
        self,
        target: _Target,
        payload: bytes,
        headers: Mapping[str, str] | None,
        deadline: float,
        *,
        whole: bool,
        window: int = 0,
    ) -> tuple[ReplyInbox, Call]:
        """Send the request and wait for its first answer (``whole``: all of it); "no
        responders" soon after a reconnect is waited out (see ``_RESUBSCRIBE_GRACE``)."""
        pause = _RESEND_PAUSE
        while True:
            inbox, call = await self._send(target, payload, headers, deadline, window)
            try:
                if call.upload_from:
                    await self._upload(inbox.link, call, payload, deadline)
                await self.wait_for_reply(call, deadline, whole=whole)
            except BaseException:
                await self.finish(inbox, call)
                raise
            if not isinstance(call.error, EndpointNotFound) or not self._resubscribing(inbox):
                return inbox, call
            await self.finish(inbox, call)
            if deadline - self._prims().clock() <= pause:
                raise Unavailable(
                    f"no server serves the subject {target.subject!r} yet since the reconnect "
                    "to NATS (its workers may still be reconnecting); retry"
                )
            await anyio.sleep(pause)  # paces the resends while the workers resubscribe
            pause = min(2 * pause, _RESEND_PAUSE_MAX)

    def _resubscribing(self, inbox: ReplyInbox) -> bool:
        since = inbox.reconnected_at
        if since is None:
            return False
        grace = max(_RESUBSCRIBE_GRACE, _RESUBSCRIBE_WAITS * self._settings.reconnect_wait)
        return self._prims().clock() - since < grace

    async def wait_for_reply(self, call: Call, deadline: float, *, whole: bool) -> None:
        """Until the call is done (``whole``) or has a chunk, or its deadline passes."""
        move_on_at = self._prims().move_on_at
        if move_on_at is None:  # the call's timer expires it
            while not call.done and (whole or not call.chunks):
                await call.wait()
            return
        with move_on_at(deadline):
            while not call.done and (whole or not call.chunks):
                await call.wait()
        if not call.done and (whole or not call.chunks):
            call.expire()

    async def finish(self, inbox: ReplyInbox, call: Call) -> None:
        """Forget the call; if it did not end on its own, cancel it on the server."""
        inbox.forget(call)
        timer, call.timer = call.timer, None
        if timer is not None:
            timer.cancel()
        if (call.done and not call.expired) or inbox.link.closed:
            return
        with anyio.CancelScope(shield=True):
            await inbox.link.publish(cancel_subject_for(call.subject), call.reply.encode())

    async def _watchdog(self, interval: float) -> None:
        """Fail the calls whose server is gone (server.py says how heartbeats work): once a
        round, the calls silent for ``_SILENT_ROUNDS`` rounds have their server's liveness
        subject asked, and NATS's "no responders" there fails them with ConnectionLost."""
        with anyio.CancelScope() as self._watch_scope:
            if self.closed:
                return
            own = self._settings.subject_prefix + "."
            async with anyio.create_task_group() as probes:
                while True:
                    await anyio.sleep(interval)
                    for inbox in list(self._inboxes.values()):
                        known, unknown = inbox.silent_calls(_SILENT_ROUNDS)
                        for subject, calls in known.items():
                            for call in calls:
                                call.probing = True
                            probes.start_soon(self._probe, inbox, subject, calls, interval)
                        for call in unknown:
                            # Only requestplane servers listen on an endpoint's cancel
                            # subject: for a foreign NATS responder, nobody there proves
                            # nothing, so only our own prefix's endpoints are asked.
                            if call.subject.startswith(own):
                                call.probing = True
                                probes.start_soon(self._locate, inbox, call, interval)

    @staticmethod
    async def _probe(inbox: ReplyInbox, subject: str, calls: list[Call], interval: float) -> None:
        try:
            gone = await inbox.link.probe(subject, max(2 * interval, 1.0)) is False
        except Exception as exc:  # the connection closing under the probe: cannot tell
            log.debug("nats: a liveness probe failed: %r", exc)
            gone = False
        for call in calls:
            call.probing = False
            if gone:
                call.fail(
                    ConnectionLost(
                        f"the server running the request to {call.subject!r} is gone: its "
                        "heartbeats stopped and nothing answers for it on NATS any more"
                    )
                )

    @staticmethod
    async def _locate(inbox: ReplyInbox, call: Call, interval: float) -> None:
        """Ask the servers of a call that has heard nothing since it was sent (its server
        died before its first heartbeat, or is slow to start it) which one runs it. The one
        that does names its liveness subject, which the watchdog then watches; NATS's "no
        responders" means no server of that endpoint is left, so the one that took the
        request is gone. No answer (the request is still queued, or several servers serve
        the endpoint and the one that took it died) leaves the call to its deadline."""
        question = (wire.WHO_RUNS + call.reply).encode()
        try:
            answer = await inbox.link.ask(
                cancel_subject_for(call.subject), question, max(2 * interval, 1.0)
            )
        except Exception as exc:  # the connection closing under the question: cannot tell
            log.debug("nats: asking who runs a request failed: %r", exc)
            answer = None
        call.probing = False
        if answer is False:
            call.fail(
                ConnectionLost(
                    f"the server that took the request to {call.subject!r} is gone: no "
                    "server of that endpoint is left on NATS"
                )
            )
        elif answer:
            call.liveness = answer.decode("utf-8", "replace")
            call.heard = inbox.round

    def _reconnected(self, inbox: ReplyInbox) -> None:
        inbox.reconnected_at = self._prims().clock()
        orphans = inbox.take_orphans()
        if orphans and self.task_group is not None and not self.closed:
            self.task_group.start_soon(self._cancel_orphans, inbox, orphans)

    async def _cancel_orphans(self, inbox: ReplyInbox, orphans: list[Call]) -> None:
        for call in orphans:
            if inbox.link.closed:
                return
            await inbox.link.publish(cancel_subject_for(call.subject), call.reply.encode())

    # -- the API -------------------------------------------------------------------------------

    async def unary(
        self,
        target: _Target,
        payload: bytes,
        headers: Mapping[str, str] | None,
        timeout: float | None,
    ) -> bytes:
        deadline = self._prims().clock() + (math.inf if timeout is None else timeout)
        try:
            inbox, call = await self._call(target, payload, headers, deadline, whole=True)
        except TimeoutError:
            raise DeadlineExceeded("connecting to NATS took longer than the timeout") from None
        self.stats.bytes_sent += len(payload)
        await self.finish(inbox, call)
        if call.error is not None:
            raise call.error
        chunks = call.chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.stats.bytes_received += len(data)
        return data

    async def open_exchange(
        self,
        target: _Target,
        payload: bytes,
        headers: Mapping[str, str],
        deadline: float | None,
        timeout: float | None,
    ) -> ReplyStream:
        deadline = math.inf if deadline is None else deadline
        window = self._settings.stream_window
        try:
            inbox, call = await self._call(
                target, payload, headers, deadline, whole=False, window=window
            )
        except TimeoutError:
            raise DeadlineExceeded("connecting to NATS took longer than the timeout") from None
        return ReplyStream(self, inbox, call, deadline, window)

    def endpoint_of(self, address: Address) -> str:
        return endpoint_from_subject(self._settings.subject_prefix, address.path)

    async def close_transport(self) -> None:
        if self._watch_scope is not None:
            self._watch_scope.cancel()
        inboxes, self._inboxes = self._inboxes, {}
        self.stats.open_connections = 0
        with anyio.CancelScope(shield=True):
            for inbox in inboxes.values():
                calls = inbox.fail_all(ConnectionLost("the client was closed"))
                # NATS does not tell a server that a caller went away: say it.
                for call in calls:
                    if inbox.link.connected:
                        await inbox.link.publish(
                            cancel_subject_for(call.subject), call.reply.encode()
                        )
                await inbox.link.aclose()
