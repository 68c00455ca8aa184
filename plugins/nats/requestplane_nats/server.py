"""The serving half: subscriptions per endpoint, one task per request, replies on the inbox.

NATS does not tell a caller that the server its request went to died. So, every
``heartbeat_interval`` seconds, the server sends a heartbeat for each request it is running,
naming a liveness subject it answers on; a caller that stops hearing from the request asks
that subject, and NATS's "no responders" there means the server is gone (the client's
watchdog: client.py). A caller that has heard nothing yet asks the endpoint's servers which
one runs its request (``_on_cancel``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import anyio
from anyio.abc import TaskGroup

from requestplane_core import (
    Address,
    ConnectionLost,
    Dispatch,
    Pending,
    Request,
    TransportServer,
)
from requestplane_core.lowlevel import Spawner, Waiter, cancel_scope_factory, primitives

from . import wire
from .nats_link import Msg, NatsLink, Subscription, safe_url
from .nats_server import NatsServerError, NatsServerProcess
from .request_upload import IDLE, Uploads
from .responder import Responder
from .settings import NatsSettings
from .subjects import (
    cancel_subject_for,
    endpoint_subject,
    instance_subject,
    liveness_subject,
)

__all__ = ["NatsTransportServer"]

log = logging.getLogger("requestplane.nats")


class NatsTransportServer(TransportServer):
    def __init__(self, settings: NatsSettings) -> None:
        self._settings = settings
        self.instance = settings.instance or uuid.uuid4().hex[:16]
        self._link: NatsLink | None = None
        self._dispatcher: Dispatch | None = None
        self._tg: TaskGroup | None = None
        self._spawner: Spawner | None = None
        self._clock: Callable[[], float] = anyio.current_time
        self._new_scope: Callable[[], anyio.CancelScope] = anyio.CancelScope
        self._subs: dict[str, list[Subscription]] = {}
        self._here: dict[str, str] = {}
        self._flows: dict[str, Responder] = {}  # flow-controlled streams, by reply subject
        self._make_event: Callable[[], Waiter] = anyio.Event
        self._uploads = Uploads(settings.max_message_size, anyio.current_time)
        self._inflight: dict[str, anyio.CancelScope] = {}
        self._embedded: NatsServerProcess | None = None
        self._liveness = liveness_subject(settings.subject_prefix, self.instance)
        self._liveness_sub: Subscription | None = None
        self._heartbeat_scope: anyio.CancelScope | None = None
        self._closing = False
        self._host = ""
        self._port: int | None = None

    async def start(self, dispatcher: Dispatch, task_group: TaskGroup) -> None:
        self._dispatcher, self._tg = dispatcher, task_group
        self._spawner = Spawner()
        await self._spawner.start(task_group)
        self._new_scope = cancel_scope_factory()
        prims = primitives()
        self._clock, self._make_event = prims.clock, prims.event
        urls = self._settings.urls()
        if self._settings.embedded:
            # Ctrl-C must reach this process only: it stops the nats-server itself, after
            # closing its connection to it (else the link breaks under the shutdown).
            self._embedded = NatsServerProcess(own_session=True)
            try:
                urls = [await anyio.to_thread.run_sync(self._embedded.start)]
            except NatsServerError as exc:
                from requestplane_core import ConfigError

                raise ConfigError(f"REQUESTPLANE_NATS_EMBEDDED: {exc}") from None
        try:
            self._link = await NatsLink.open(
                self._settings, urls, name=f"requestplane-server-{self.instance}"
            )
        except BaseException:
            await self._stop_embedded()
            raise
        self._link.on_disconnect = self._disconnected
        self._host, self._port = self._link.server_netloc
        interval = self._settings.heartbeat_interval
        if interval > 0:
            self._liveness_sub = await self._link.subscribe(self._liveness, self._on_probe)
        task_group.start_soon(self._rounds, interval)

    def address(self, endpoint: str) -> Address:
        prefix = self._settings.subject_prefix
        if self._settings.address_scope == "instance":
            subject = instance_subject(prefix, endpoint, self.instance)
        else:
            subject = endpoint_subject(prefix, endpoint)
        return Address("nats", self._host, self._port, subject)

    def instance_address(self, endpoint: str) -> Address:
        # Discovery publishes what reaches this server alone: its per-instance subject.
        subject = instance_subject(self._settings.subject_prefix, endpoint, self.instance)
        return Address("nats", self._host, self._port, subject)

    async def endpoint_added(self, endpoint: str) -> None:
        link = self._require_link()
        prefix = self._settings.subject_prefix
        shared = endpoint_subject(prefix, endpoint)
        on_request = partial(self._on_request, endpoint)
        subs = self._subs[endpoint] = []
        try:
            subs.append(await link.subscribe(self._here_for(endpoint), on_request))
            subs.append(await link.subscribe(shared, on_request, queue=self._settings.queue_group))
            subs.append(await link.subscribe(cancel_subject_for(shared), self._on_cancel))
            # Once the server has seen the subscriptions, a request sent right after
            # register() returns cannot meet "no responders".
            await link.flush(self._settings.connect_timeout)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.endpoint_removed(endpoint)
            raise

    async def endpoint_removed(self, endpoint: str) -> None:
        subs = self._subs.pop(endpoint, [])
        if self._link is not None:
            await self._link.unsubscribe(subs)

    def _here_for(self, endpoint: str) -> str:
        """This instance's subject for ``endpoint`` (escaping a name costs: kept)."""
        here = self._here.get(endpoint)
        if here is None:
            prefix = self._settings.subject_prefix
            here = self._here[endpoint] = instance_subject(prefix, endpoint, self.instance)
        return here

    def _require_link(self) -> NatsLink:
        if self._link is None:
            raise ConnectionLost("the NATS transport server is not started")
        return self._link

    # -- requests (called on the anyio side, in order of arrival) ---------------------------

    def _on_request(self, endpoint: str, msg: Msg) -> Awaitable[None] | None:
        reply, link, spawner = msg.reply, self._link, self._spawner
        if not reply or link is None or spawner is None:
            return None  # a plain publish (nobody waits for an answer), or the server is closed
        remaining, window = wire.parse_reply(reply)
        deadline = None if remaining is None else self._clock() + remaining
        headers: dict[str, str] = {}
        if msg.headers:
            grant = msg.headers.get(wire.GRANT)
            if grant is not None:
                self._on_grant(reply, grant)
                return None
            for key, value in msg.headers.items():
                if key == wire.DEADLINE:
                    try:
                        deadline = self._clock() + float(value)
                    except ValueError:
                        log.debug("nats: ignoring a malformed deadline header")
                elif key == wire.WINDOW:
                    window = int(value) if value.isdigit() else 0
                elif key.lower() not in wire.RESERVED:
                    headers[key] = value
        request = Request(endpoint, msg.data, headers, deadline)
        if msg.headers and (wire.LENGTH in msg.headers or wire.PART in msg.headers):
            return self._on_part(request, reply, msg.headers)
        return self._dispatch(request, reply, window)

    def _on_grant(self, reply: str, grant: str) -> None:
        responder = self._flows.get(reply)
        if responder is not None and grant.isdigit():
            responder.grant(int(grant))

    def _on_part(
        self, request: Request, reply: str, headers: dict[str, str]
    ) -> Awaitable[None] | None:
        link = self._link
        assert link is not None
        offset = headers.get(wire.PART)
        if offset is None:  # the first part: tell the caller where to send the rest
            refused = self._uploads.start(reply, request, headers[wire.LENGTH])
            if refused is not None:
                return self._responder(reply).answer_now(refused)
            here = self._here_for(request.endpoint)
            return link.publish_now(reply, b"", headers={wire.UPLOAD: here})
        whole = self._uploads.add(reply, offset, request.payload)
        if whole is None:
            return None
        if isinstance(whole, Request):
            return self._dispatch(whole, reply, wire.parse_reply(reply)[1])
        return self._responder(reply).answer_now(whole)

    def _responder(self, reply: str) -> Responder:
        assert self._link is not None and self._spawner is not None
        return Responder(self._link, reply, self._spawner.spawn, self._settings.max_message_size)

    def _dispatch(self, request: Request, reply: str, window: int = 0) -> Awaitable[None] | None:
        spawner = self._spawner
        assert self._dispatcher is not None and spawner is not None
        outcome = self._dispatcher.answer_now(request)
        responder = self._responder(reply)
        if isinstance(outcome, Pending):
            scope = self._new_scope()
            self._inflight[reply] = scope
            if window:
                responder.control_flow(window, self._here_for(request.endpoint), self._make_event)
                self._flows[reply] = responder
            spawner.spawn(self._serve, request, responder, scope, outcome)
            return None
        # Known at once (a synchronous handler, a refusal): answered without a task, as a
        # plain nats-py responder answers in its callback.
        return responder.answer_now(outcome)

    async def _serve(
        self, request: Request, responder: Responder, scope: anyio.CancelScope, pending: Pending
    ) -> None:
        assert self._dispatcher is not None
        try:
            await self._dispatcher.handle(request, responder, scope, pending)
        finally:
            self._inflight.pop(responder.reply, None)
            self._flows.pop(responder.reply, None)

    def _on_probe(self, msg: Msg) -> Awaitable[None] | None:
        link = self._link
        if not msg.reply or link is None:
            return None
        return link.publish_now(msg.reply, b"")

    async def _rounds(self, interval: float) -> None:
        """A heartbeat per request in flight at each round, so that a caller knows who runs
        its request at most one interval after it started. A request gets one with the
        probability (its duration / interval): short requests, the great majority, almost
        never do, and heartbeats cost (requests in flight / interval) messages a second."""
        alive = {wire.ALIVE: self._liveness}
        with anyio.CancelScope() as self._heartbeat_scope:
            if self._closing:
                return
            while True:
                # Without heartbeats, rounds still time out stopped uploads.
                await anyio.sleep(interval or IDLE)
                self._uploads.sweep()
                link = self._link
                if link is None:
                    return
                if not interval:
                    continue
                for reply in list(self._inflight):
                    sent = link.publish_now(reply, b"", headers=alive)
                    if sent is not None:
                        await sent

    def _on_cancel(self, msg: Msg) -> Awaitable[None] | None:
        reply = msg.data.decode("utf-8", "replace")
        self._uploads.drop(reply)
        if reply.startswith(wire.WHO_RUNS):
            # A caller that has heard nothing for its request asks who runs it; only the
            # instance running it answers (with its liveness subject), the others stay
            # silent. Without heartbeats there is no liveness subject to name.
            link = self._link
            if msg.reply and link is not None and self._liveness_sub is not None:
                if reply[len(wire.WHO_RUNS) :] in self._inflight:
                    return link.publish_now(msg.reply, self._liveness.encode())
            return None
        scope = self._inflight.get(reply)
        if scope is not None:
            scope.cancel()
        return None

    def _disconnected(self) -> None:
        if self._closing:
            return  # the link is being closed: no reconnecting to announce
        # Handlers keep running: nats-py buffers their replies while it reconnects, and in a
        # cluster the caller may still be there to receive them.
        log.warning("nats: server %s lost its NATS connection; reconnecting", self.instance)

    # -- shutdown ------------------------------------------------------------------------------

    async def aclose(self) -> None:
        self._closing = True
        if self._heartbeat_scope is not None:
            self._heartbeat_scope.cancel()
        with anyio.CancelScope(shield=True):
            subs = [sub for endpoint_subs in self._subs.values() for sub in endpoint_subs]
            self._subs.clear()
            if self._liveness_sub is not None:
                subs.append(self._liveness_sub)
                self._liveness_sub = None
            if self._link is not None:
                await self._link.unsubscribe(subs)  # all at once: one linger, not one each
            for scope in list(self._inflight.values()):
                scope.cancel()
            if self._spawner is not None:
                await self._spawner.join()
            link, self._link = self._link, None
            if link is not None:
                await link.aclose()
            await self._stop_embedded()

    async def _stop_embedded(self) -> None:
        embedded, self._embedded = self._embedded, None
        if embedded is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(embedded.close)

    def health_details(self) -> dict[str, Any]:
        link = self._link
        return {
            "nats_url": safe_url(link.url) if link else None,
            "connected": bool(link and link.connected),
            "instance": self.instance,
            "embedded_server": self._embedded is not None,
            "inflight": len(self._inflight),
            "reconnects": link.stats().get("reconnects", 0) if link else 0,
        }
