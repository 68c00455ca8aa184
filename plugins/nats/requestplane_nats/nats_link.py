"""One nats-py connection, seen from the anyio side through a :class:`LoopBridge`.

This is the only module that touches nats-py's API (its private parts through
``_compat.py``); the server and the client speak to a :class:`NatsLink` and never see a
nats object (nor does anything outside this package).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

import anyio
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import AuthorizationError, NoRespondersError
from nats.errors import Error as NatsError

from requestplane_core import (
    ConfigError,
    ConnectionLost,
    ProtocolError,
    RequestPlaneError,
    Unavailable,
)

from ._compat import retire_subscription, server_uses_tls
from .loop_bridge import LoopBridge, NativeBridge, ThreadBridge, open_bridge
from .settings import NatsSettings

# What a request to a subject came back with: the answer's payload; False for NATS's "no
# responders" (nothing subscribes to it); None for no answer in time.
Answer = bytes | Literal[False] | None

__all__ = ["Msg", "NatsLink", "Subscription", "safe_url"]

log = logging.getLogger("requestplane.nats")

_DRAIN_TIMEOUT = 5.0
_LINGER = 0.05


def safe_url(url: str) -> str:
    """``url`` without user info: URLs may carry credentials and must not reach a log."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def _ssl_context(settings: NatsSettings) -> ssl.SSLContext | None:
    if not settings.tls:
        return None
    try:
        context = ssl.create_default_context(
            cafile=str(settings.tls_ca) if settings.tls_ca else None
        )
        if settings.tls_cert:
            context.load_cert_chain(
                str(settings.tls_cert), str(settings.tls_key) if settings.tls_key else None
            )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"NATS TLS settings cannot be used: {exc}") from None
    return context


class NatsLink:
    """A connected nats-py client plus the bridge to the loop it runs in."""

    def __init__(self, bridge: LoopBridge, nc: Client, url: str) -> None:
        self._bridge = bridge
        self._native = isinstance(bridge, NativeBridge)
        self._threaded = bridge if isinstance(bridge, ThreadBridge) else None
        self._nc = nc
        self.url = url
        self.on_disconnect: Callable[[], object] | None = None
        self.on_reconnect: Callable[[], object] | None = None
        self.closed = False
        self._shut = False
        self.last_error: BaseException | None = None

    @classmethod
    async def open(cls, settings: NatsSettings, urls: list[str], *, name: str) -> NatsLink:
        """Connect to the first of ``urls`` that answers; reconnects may use all of them.

        As in the TCP transport: unreachable servers raise :class:`Unavailable` (nothing was
        sent, so another try is safe); a failed TLS handshake raises :class:`ProtocolError`
        and refused credentials :class:`ConfigError`, at once (retrying cannot fix them).
        """
        tls = _ssl_context(settings)
        bridge = open_bridge()
        errors: list[str] = []
        try:
            for url in urls:
                nc = Client()
                link = cls(bridge, nc, url)
                try:
                    with anyio.fail_after(settings.connect_timeout + 1):
                        await bridge.run(link._connect, settings, url, tls, name)
                except (AuthorizationError, ssl.SSLError) as exc:
                    raise _refusal(url, exc, settings) from None
                except (OSError, NatsError, TimeoutError) as exc:
                    cause = link.last_error if link.last_error is not None else exc
                    if _is_auth_error(cause):
                        raise _refusal(url, cause, settings) from None
                    errors.append(f"{safe_url(url)}: {_reason(cause)}")
                    await bridge.run(nc.close)
                    continue
                if tls is not None and not server_uses_tls(nc):
                    await bridge.run(nc.close)
                    raise ProtocolError(
                        f"TLS is configured but the NATS server at {safe_url(url)} does not "
                        "use TLS; refusing to send in the clear"
                    )
                if len(urls) > 1 and hasattr(nc, "set_server_pool"):  # nats-py >= 2.12
                    nc.set_server_pool(urls)
                return link
        except BaseException:
            await bridge.aclose()
            raise
        await bridge.aclose()
        if tls is not None:
            hint = (
                " (with TLS: does the server require a client certificate? "
                "REQUESTPLANE_NATS_TLS_CERT / TLS_KEY)"
            )
        else:
            # What a newcomer meets first: no nats-server running. Say how to get one.
            hint = (
                ". Is a nats-server running there? Start one with `nats-server` (pip install "
                "'requestplane-nats[server]' installs it), point REQUESTPLANE_NATS_URL at "
                "yours, or run the worker with REQUESTPLANE_NATS_EMBEDDED=1 (it starts its "
                "own; callers follow its addresses)"
            )
        raise Unavailable(f"cannot connect to NATS: {'; '.join(errors)}{hint}")

    async def _connect(
        self, settings: NatsSettings, url: str, tls: ssl.SSLContext | None, name: str
    ) -> None:
        bridge = self._bridge

        async def disconnected() -> None:
            bridge.deliver(self._disconnected)

        async def reconnected() -> None:
            bridge.deliver(self._reconnected)

        async def closed() -> None:
            bridge.deliver(self._closed)

        async def error(exc: Exception) -> None:
            # nats-py reports every failed reconnect attempt here; its text holds no secrets.
            self.last_error = exc
            log.debug("nats (%s): %r", safe_url(url), exc)

        options: dict[str, Any] = {
            "servers": [url],
            "name": name,
            "connect_timeout": settings.connect_timeout,
            "reconnect_time_wait": 0,  # the first connect: no pause before its one retry
            # The first connect must fail fast (wrong address, credentials) instead of
            # retrying for minutes; reconnecting is switched on once connected.
            "max_reconnect_attempts": 1,
            "allow_reconnect": False,
            "inbox_prefix": settings.inbox_prefix,
            "error_cb": error,
            "disconnected_cb": disconnected,
            "reconnected_cb": reconnected,
            "closed_cb": closed,
        }
        if settings.token is not None:
            options["token"] = settings.token
        if settings.user is not None:
            options["user"] = settings.user
        if settings.password is not None:
            options["password"] = settings.password
        if settings.creds_file is not None:
            options["user_credentials"] = str(settings.creds_file)
        if tls is not None:
            options["tls"] = tls
        await self._nc.connect(**options)
        self._nc.options["allow_reconnect"] = True
        self._nc.options["max_reconnect_attempts"] = settings.max_reconnect_attempts
        self._nc.options["reconnect_time_wait"] = settings.reconnect_wait

    # -- connection events (called on the anyio side) ---------------------------------------

    def _disconnected(self) -> None:
        if not self.closed and self.on_disconnect is not None:
            self.on_disconnect()

    def _reconnected(self) -> None:
        if self.on_reconnect is not None:
            self.on_reconnect()

    def _closed(self) -> None:
        if not self.closed:
            self.closed = True
            if self.on_disconnect is not None:
                self.on_disconnect()

    # -- state -------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return not self.closed and self._nc.is_connected

    @property
    def max_payload(self) -> int:
        return self._nc.max_payload

    @property
    def server_netloc(self) -> tuple[str, int | None]:
        """Host and port of the server this link talks to (no user info)."""
        parts = urlsplit(self.url)
        return parts.hostname or "", parts.port

    def stats(self) -> Mapping[str, int]:
        return dict(self._nc.stats)

    # -- operations --------------------------------------------------------------------------

    async def subscribe(
        self, subject: str, on_msg: Callable[[Msg], Awaitable[None] | None], queue: str = ""
    ) -> Subscription:
        if isinstance(self._bridge, NativeBridge):

            async def callback(msg: Msg) -> None:
                # Same loop: no hand-over. What on_msg returns to await (an answer published
                # by publish_now) is awaited here, in nats-py's task for the subscription.
                answer = on_msg(msg)
                if answer is not None:
                    await answer

        else:
            deliver = self._bridge.deliver

            async def callback(msg: Msg) -> None:
                deliver(on_msg, msg)

        return await self._bridge.run(self._nc.subscribe, subject, queue, callback)

    async def unsubscribe(self, subs: list[Subscription]) -> None:
        """Remove the subscriptions without losing a message NATS routed to them.

        A plain unsubscribe drops whatever arrives after it, and a request dropped so waits
        for its deadline. Even nats-py's ``drain()`` (UNSUB, a round trip, then the queued
        messages) loses one now and then: nats-server may route a message before it
        processed the UNSUB yet write it out after the round trip's PONG (measured: about 1
        in 400 requests racing an unregister). So the subscription keeps delivering for
        ``_LINGER`` seconds after the round trip; every request that reaches us is answered
        (the dispatcher says the endpoint is gone).
        """
        if not self.closed and subs:
            await self._bridge.run(self._retire_all, subs)

    async def _retire_all(self, subs: list[Subscription]) -> None:
        await asyncio.gather(*(self._retire(sub) for sub in subs))

    async def _retire(self, sub: Subscription) -> None:
        try:
            await retire_subscription(self._nc, sub, _LINGER, _DRAIN_TIMEOUT)
        except (NatsError, TimeoutError) as exc:  # e.g. reconnecting: no round trip now
            log.debug("nats: retiring a subscription failed (%r); unsubscribing", exc)
            try:
                await sub.unsubscribe()
            except NatsError:
                pass

    async def probe(self, subject: str, timeout: float) -> bool | None:
        """Whether anything answers a request on ``subject``: True if it does; False if NATS
        says nothing subscribes to it ("no responders"); None if nothing came within
        ``timeout`` (or the connection is down): nobody can tell."""
        answer = await self.ask(subject, b"", timeout)
        return answer if answer is None or answer is False else True

    async def ask(
        self, subject: str, payload: bytes, timeout: float
    ) -> bytes | Literal[False] | None:
        """The answer to a request on ``subject``; False if NATS says nothing subscribes to
        it ("no responders"); None if nothing came within ``timeout`` (or the connection is
        down)."""
        if self.closed:
            return None
        return await self._bridge.run(self._ask, subject, payload, timeout)

    async def _ask(
        self, subject: str, payload: bytes, timeout: float
    ) -> bytes | Literal[False] | None:
        try:
            msg = await self._nc.request(subject, payload, timeout=timeout)
        except NoRespondersError:
            return False
        except (NatsError, TimeoutError):
            return None
        return msg.data

    async def flush(self, timeout: float) -> None:
        """Round trip to the server: every subscription before this is in effect after it."""
        try:
            await self._bridge.run(self._nc.flush, timeout)
        except (NatsError, TimeoutError) as exc:
            raise ConnectionLost(f"NATS server did not answer a flush: {_reason(exc)}") from None

    def publish_now(
        self, subject: str, payload: bytes, headers: dict[str, str] | None = None
    ) -> Awaitable[None] | None:
        """Publish without a task of the caller's own, for a callback of :meth:`subscribe`:
        on asyncio it returns the publish for the callback to return (nats-py's task for the
        subscription awaits it: its publish only queues the message); across the thread
        bridge it queues the message at once and returns None."""
        if self._threaded is None:
            return self.publish(subject, payload, "", headers)
        self._threaded.send_nowait(self._nc.publish, subject, payload, "", headers)
        return None

    async def publish(
        self,
        subject: str,
        payload: bytes,
        reply: str = "",
        headers: dict[str, str] | None = None,
        on_error: Callable[[BaseException], object] | None = None,
    ) -> None:
        if self._native:  # the per-request path: one coroutine layer less
            try:
                await self._nc.publish(subject, payload, reply, headers)
            except Exception as exc:
                if on_error is None:
                    log.debug("nats: send failed: %r", exc)
                else:
                    on_error(exc)
            return
        await self._bridge.send(
            self._nc.publish, subject, payload, reply, headers, on_error=on_error
        )

    async def aclose(self) -> None:
        """Send what is queued, close the connection and stop the bridge."""
        if self._shut:
            return
        self._shut = self.closed = True
        with anyio.CancelScope(shield=True):
            try:
                await self._bridge.barrier()  # what handlers sent goes out before the close
                await self._bridge.run(self._close_nc)
            finally:
                await self._bridge.aclose()

    async def _close_nc(self) -> None:
        nc = self._nc
        if nc.is_connected:
            try:
                await asyncio.wait_for(nc.flush(), 2.0)
            except Exception as exc:
                log.debug("nats: final flush failed: %r", exc)
        try:
            await nc.close()
        except (OSError, NatsError) as exc:
            # The connection broke while closing (the nats-server went first): it is closed
            # either way, which is all a close is for.
            log.debug("nats: the connection broke while closing: %r", exc)


def _is_auth_error(exc: BaseException) -> bool:
    # nats-py raises a plain Error for the server's -ERR during the handshake.
    text = str(exc).lower()
    return isinstance(exc, AuthorizationError) or (
        isinstance(exc, NatsError) and ("authorization" in text or "authentication" in text)
    )


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _refusal(url: str, exc: BaseException, settings: NatsSettings) -> RequestPlaneError:
    if isinstance(exc, ssl.SSLError):
        return ProtocolError(
            f"TLS with the NATS server at {safe_url(url)} failed ({_reason(exc)}); check "
            "REQUESTPLANE_NATS_TLS_CA / TLS_CERT / TLS_KEY"
        )
    used = [n for n in ("token", "user", "password", "creds_file") if getattr(settings, n)]
    return ConfigError(
        f"the NATS server at {safe_url(url)} refused the credentials "
        f"({', '.join(used) or 'none given'}): check REQUESTPLANE_NATS_TOKEN / USER / "
        "PASSWORD / CREDS_FILE"
    )
