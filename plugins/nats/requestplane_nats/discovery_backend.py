"""``nats`` discovery: instance records in a JetStream key-value bucket, across machines.

One key per instance, ``<name, '/' as '.'>.<instance id>`` (so ``llm/decode`` instance ``ab``
is ``llm.decode.ab``), holding the JSON record. Watching a name is a KV watch of
``<name>.*``: one ordered consumer gives the snapshot and then every change, in order.

Liveness is NATS's per-message TTL (nats-server 2.11+): every write of a record carries the
TTL, the owner rewrites it every third of the TTL, and a record not rewritten in time is
removed by the server, which leaves an expiry marker that every watcher receives as a purge
(the bucket is created with ``subject_delete_marker_ttl``). So a killed worker disappears
from every watch about a TTL after its last heartbeat, with no polling anywhere. An
unregister purges the key, with a TTL on the purge marker so that tombstones do not pile up.

Faults: the connection reconnects for ever. After a reconnect the owner rewrites its records
at once (a restarted store without persistence lost them, and the bucket: it is created
again), and every watch starts a new KV watch and hands the full listing to
:meth:`InstanceFeed.replace`, which reports only the difference: nothing is lost or repeated.

nats-py is asyncio-only; on trio it runs in the NATS plugin's thread bridge, and everything
that touches a nats-py object below runs in that loop (the methods whose names end in
``_nats``); their results and the watch changes come back through the bridge.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.abc import TaskGroup
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import AuthorizationError, NoRespondersError
from nats.errors import Error as NatsError
from nats.js.api import DeliverPolicy, Header, StorageType
from nats.js.client import JetStreamContext
from nats.js.errors import (
    APIError,
    NoStreamResponseError,
    NotFoundError,
    ServiceUnavailableError,
)
from nats.js.kv import KV_DEL, KV_MARKER_REASON, KV_OP, KV_PURGE

from requestplane_core import ConfigError, Instance, ProtocolError, RequestPlaneError, Unavailable
from requestplane_core.plugin_api import (
    DiscoveryBackend,
    InstanceFeed,
    Watch,
    instance_from_json,
    instance_to_json,
    validate_name,
)

from ._compat import server_uses_tls
from .discovery_settings import ENV_PREFIX, NatsDiscoverySettings
from .loop_bridge import LoopBridge, open_bridge
from .nats_link import safe_url

__all__ = ["NatsDiscovery", "key_filter", "key_of"]

log = logging.getLogger("requestplane.discovery")

# Seconds a tombstone (the server's expiry marker, an unregister's purge) stays in the
# bucket: long enough for every connected watcher to receive it; a watcher that was away
# lists again anyway. Part of the bucket's configuration, so the same for every process.
_MARKER_TTL = 60
# JetStream's "wrong last sequence" error codes: the key exists.
_WRONG_LAST = (10071, 10164)
# Seconds aclose() spends withdrawing records from an unreachable store before leaving
# them to expire.
_CLOSE_BUDGET = 2.0
# Seconds a watch waits after a reconnect before listing again, so that the owners'
# re-assertions into a store that lost its records land first (no Removed/Added flap).
_RELIST_GRACE = 1.0
_MAX_BACKOFF = 5.0
# Seconds the server keeps a KV watch's consumer without a subscriber (nats-py's unsubscribe
# leaves it; its default is 5 minutes, a pile-up when lists are frequent).
_CONSUMER_INACTIVE = 5.0


def key_of(name: str, instance_id: str) -> str:
    return f"{name.replace('/', '.')}.{instance_id}"


def key_filter(name: str) -> str:
    # '*' is one token: 'a.*' does not match the keys of 'a/b' ('a.b.<id>').
    return f"{name.replace('/', '.')}.*"


class _Duplicate(Exception):
    """The key holds a live record already."""


class _NoJetStream(Exception):
    """The server answers nothing on the JetStream API."""


class _TooOld(Exception):
    """The server has no per-message TTLs (JetStream API level < 1: before 2.11)."""


class _BadBucket(Exception):
    """The bucket exists but was made without per-message TTLs or expiry markers."""


class _Stop:
    """Ends a long call in the nats-py loop (a watch). Cancelling it from the trio side is not
    enough: Python 3.11's ``asyncio.wait_for``, which nats-py's requests use, may swallow a
    cancellation that meets a reply, and the call would then wait for ever (measured: about
    one watch in twenty left running). Used in the nats-py loop only."""

    def __init__(self) -> None:
        self.stopped = False
        self._event: asyncio.Event | None = None

    def set(self) -> None:
        self.stopped = True
        if self._event is not None:
            self._event.set()

    async def wait(self) -> None:
        if self._event is None:
            self._event = asyncio.Event()
        if not self.stopped:
            await self._event.wait()


async def _stop_nats(stop: _Stop) -> None:
    stop.set()


def _is_tombstone(headers: dict[str, str] | None) -> bool:
    if not headers:
        return False
    return headers.get(KV_OP) in (KV_DEL, KV_PURGE) or KV_MARKER_REASON in headers


def _tls_context(settings: NatsDiscoverySettings) -> ssl.SSLContext | None:
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
        raise ConfigError(
            f"{ENV_PREFIX}TLS_CA / TLS_CERT / TLS_KEY cannot be used: {exc}"
        ) from None
    return context


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _is_auth_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, AuthorizationError) or (
        isinstance(exc, NatsError) and ("authorization" in text or "authentication" in text)
    )


class _FeedRun:
    """One KV watch feeding one InstanceFeed; changes from a replaced run are dropped."""

    def __init__(self, feed: InstanceFeed) -> None:
        self.feed = feed
        self.live = True

    def snapshot(self, entries: list[tuple[str, bytes]]) -> None:
        if self.live:
            parsed = (_parse(self.feed.name, key, value) for key, value in entries)
            self.feed.replace(i for i in parsed if i is not None)

    def change(self, key: str, value: bytes | None) -> None:
        if not self.live:
            return
        if value is None:
            self.feed.delete((self.feed.name, key.rsplit(".", 1)[-1]))
            return
        instance = _parse(self.feed.name, key, value)
        if instance is not None:
            self.feed.put(instance)


def _parse(name: str, key: str, value: bytes) -> Instance | None:
    try:
        instance, _ = instance_from_json(value)
        if key_of(instance.name, instance.instance_id) != key or instance.name != name:
            raise ValueError(f"the record is of {instance.name!r} {instance.instance_id}")
    except ValueError as exc:
        log.warning("skipping the corrupt discovery record %s: %s", key, exc)
        return None
    return instance


class NatsDiscovery(DiscoveryBackend):
    def __init__(self, settings: NatsDiscoverySettings) -> None:
        self._settings = settings
        self._ttl = settings.ttl_seconds
        self._owned: dict[tuple[str, str], Instance] = {}
        self._watches: set[InstanceFeed] = set()
        self._tg: TaskGroup | None = None
        self._bridge: LoopBridge | None = None
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        # Whether the bucket is known to exist (looked at again after every reconnect).
        self._bucket_ready = False
        self._url = safe_url(settings.urls()[0])
        self._connect_lock: anyio.Lock | None = None
        self._write_lock: anyio.Lock | None = None
        self._reconnected: anyio.Event | None = None
        self._keepalive_scope: anyio.CancelScope | None = None
        # One per background task still running: aclose() waits for them before it stops the
        # nats-py loop, which their cancellation has to reach.
        self._running: set[anyio.Event] = set()
        self._stopping: set[asyncio.Task[Any]] = set()
        self._watching: set[asyncio.Task[Any]] = set()
        self._closed = False

    def describe(self) -> str:
        return f"nats discovery in bucket {self._settings.bucket!r} at {self._url}"

    def __str__(self) -> str:
        return self.describe()

    def start(self, task_group: TaskGroup) -> None:
        self._tg = task_group
        self._connect_lock = anyio.Lock()
        self._write_lock = anyio.Lock()
        self._reconnected = anyio.Event()

    # -- the connection ----------------------------------------------------------------------

    async def _ready(self) -> LoopBridge:
        """Connected, with the bucket in place; :class:`Unavailable` or ConfigError if not."""
        if self._closed:
            raise Unavailable(f"{self.describe()} is closed")
        if self._connect_lock is None:
            raise RuntimeError("start() the backend before using it")
        if self._bridge is not None and self._bucket_ready:
            return self._bridge
        async with self._connect_lock:
            if self._bridge is None:
                await self._connect()
            assert self._bridge is not None
            if not self._bucket_ready:
                await self._call(self._ensure_bucket_nats, "open the bucket")
            return self._bridge

    async def _connect(self) -> None:
        settings = self._settings
        tls = _tls_context(settings)
        bridge = open_bridge()
        errors: list[str] = []
        try:
            for url in settings.urls():
                nc = Client()
                last_error: list[BaseException] = []
                try:
                    with anyio.fail_after(settings.connect_timeout + 1):
                        await bridge.run(self._connect_nats, bridge, nc, url, tls, last_error)
                except (AuthorizationError, ssl.SSLError) as exc:
                    raise self._refusal(url, exc) from None
                except (OSError, NatsError, TimeoutError) as exc:
                    cause = last_error[-1] if last_error else exc
                    if _is_auth_error(cause):
                        raise self._refusal(url, cause) from None
                    errors.append(f"{safe_url(url)}: {_reason(cause)}")
                    await bridge.run(nc.close)
                    continue
                if tls is not None and not server_uses_tls(nc):
                    await bridge.run(_close_quietly, nc)
                    raise ProtocolError(
                        f"TLS is configured but the NATS discovery store at {safe_url(url)} "
                        "does not use TLS; refusing to send in the clear"
                    )
                if len(settings.urls()) > 1 and hasattr(nc, "set_server_pool"):
                    nc.set_server_pool(settings.urls())
                self._url = safe_url(url)
                self._bridge, self._nc = bridge, nc
                self._js = nc.jetstream(timeout=settings.connect_timeout)
                return
        except BaseException:
            await bridge.aclose()
            raise
        await bridge.aclose()
        raise Unavailable(
            f"cannot reach the NATS discovery store: {'; '.join(errors)}; check "
            f"{ENV_PREFIX}URL, that nats-server runs there with JetStream (nats-server -js) "
            "and that this host can reach it"
        )

    async def _connect_nats(
        self,
        bridge: LoopBridge,
        nc: Client,
        url: str,
        tls: ssl.SSLContext | None,
        last_error: list[BaseException],
    ) -> None:
        settings = self._settings

        async def reconnected() -> None:
            bridge.deliver(self._on_reconnect)

        async def disconnected() -> None:
            bridge.deliver(log.info, "%s: disconnected; reconnecting", self)

        async def error(exc: Exception) -> None:
            last_error.append(exc)
            del last_error[:-1]
            log.debug("nats discovery (%s): %r", safe_url(url), exc)

        options: dict[str, Any] = {
            "servers": [url],
            "name": "requestplane-discovery",
            "connect_timeout": settings.connect_timeout,
            # The first connect fails fast (wrong address, credentials); reconnecting, for
            # ever, is switched on once connected.
            "allow_reconnect": False,
            "max_reconnect_attempts": 1,
            "reconnect_time_wait": 0,
            "error_cb": error,
            "disconnected_cb": disconnected,
            "reconnected_cb": reconnected,
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
        await nc.connect(**options)
        nc.options["allow_reconnect"] = True
        nc.options["max_reconnect_attempts"] = -1
        nc.options["reconnect_time_wait"] = settings.reconnect_wait

    def _refusal(self, url: str, exc: BaseException) -> RequestPlaneError:
        if isinstance(exc, ssl.SSLError):
            return ProtocolError(
                f"TLS with the NATS discovery store at {safe_url(url)} failed ({_reason(exc)});"
                f" check {ENV_PREFIX}TLS_CA / TLS_CERT / TLS_KEY"
            )
        return ConfigError(
            f"the NATS discovery store at {safe_url(url)} refused the credentials: check "
            f"{ENV_PREFIX}TOKEN / USER / PASSWORD / CREDS_FILE"
        )

    def _on_reconnect(self) -> None:
        log.info("%s: reconnected; re-asserting records and re-listing watches", self)
        # A restarted store may have lost the bucket: look again before the next use.
        self._bucket_ready = False
        event, self._reconnected = self._reconnected, anyio.Event()
        if event is not None:
            event.set()

    async def _call(self, fn: Callable[..., Any], doing: str, *args: Any) -> Any:
        """``fn(*args)`` in the nats-py loop, its failures as the core's errors."""
        assert self._bridge is not None
        try:
            return await self._bridge.run(fn, *args)
        except _NoJetStream:
            raise ConfigError(
                f"the NATS server at {self._url} has no JetStream, which nats discovery "
                "stores its records in: start nats-server with -js (or a jetstream block in "
                "its configuration), or enable JetStream for this account"
            ) from None
        except _TooOld:
            raise ConfigError(
                f"the NATS server at {self._url} has no per-message TTLs, which nats "
                "discovery needs: use nats-server 2.11 or later"
            ) from None
        except _BadBucket:
            raise ConfigError(
                f"the JetStream bucket {self._settings.bucket!r} at {self._url} exists but "
                "was not made for discovery (it lacks per-message TTLs or expiry markers): "
                f"delete it or set {ENV_PREFIX}BUCKET to another name"
            ) from None
        except (NatsError, OSError, TimeoutError) as exc:
            raise Unavailable(
                f"{self.describe()}: could not {doing} ({_reason(exc)}); check that the "
                "NATS server runs with JetStream (-js) and is reachable"
            ) from None

    async def _call_until_stopped(self, fn: Callable[..., Any], doing: str, *args: Any) -> Any:
        """:meth:`_call` of a call that runs until its :class:`_Stop` (its last argument) is
        set, which this sets whichever way the call ends."""
        stop = _Stop()
        try:
            return await self._call(fn, doing, *args, stop)
        finally:
            bridge = self._bridge
            if bridge is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_BUDGET):
                    try:
                        await bridge.run(_stop_nats, stop)
                    except RuntimeError:
                        pass  # the nats-py loop is gone, and the call with it

    # -- in the nats-py loop ---------------------------------------------------------------

    async def _ensure_bucket_nats(self) -> None:
        js = self._js
        assert js is not None
        settings = self._settings
        try:
            info = await js.account_info()
        except (ServiceUnavailableError, NoRespondersError):
            raise _NoJetStream from None
        if not info.api.level or info.api.level < 1:
            raise _TooOld
        stream = f"KV_{settings.bucket}"
        try:
            si = await js.stream_info(stream)
        except NotFoundError:
            try:
                await js.create_key_value(
                    bucket=settings.bucket,
                    description="requestplane discovery: one instance record per key",
                    history=1,
                    storage=StorageType(settings.storage),
                    replicas=settings.replicas,
                    limit_marker_ttl=_MARKER_TTL,
                )
                self._bucket_ready = True
                return
            except APIError:
                # Created by another process in between (or with another configuration:
                # the check below tells).
                si = await js.stream_info(stream)
        if not si.config.allow_msg_ttl or not si.config.subject_delete_marker_ttl:
            raise _BadBucket
        self._bucket_ready = True

    def _subject(self, key: str) -> str:
        return f"$KV.{self._settings.bucket}.{key}"

    async def _create_nats(self, key: str, value: bytes) -> None:
        js = self._js
        assert js is not None
        subject = self._subject(key)
        last = 0
        # A tombstone may be replaced between the look and the write: look again, a few
        # times; a live record is a duplicate at once.
        for _ in range(3):
            try:
                await js.publish(
                    subject,
                    value,
                    headers={Header.EXPECTED_LAST_SUBJECT_SEQUENCE: str(last)},
                    msg_ttl=self._ttl,
                )
                return
            except APIError as exc:
                if exc.err_code not in _WRONG_LAST:
                    raise
            try:
                msg = await js.get_msg(f"KV_{self._settings.bucket}", subject=subject)
            except NotFoundError:
                last = 0
                continue
            if not _is_tombstone(msg.headers):
                raise _Duplicate
            last = msg.seq or 0
        raise _Duplicate

    async def _put_nats(self, key: str, value: bytes) -> None:
        js = self._js
        assert js is not None
        try:
            await js.publish(self._subject(key), value, msg_ttl=self._ttl)
        except NoStreamResponseError:
            # The store restarted without the bucket: make it again, then write.
            await self._ensure_bucket_nats()
            await js.publish(self._subject(key), value, msg_ttl=self._ttl)

    async def _purge_nats(self, key: str) -> None:
        js = self._js
        assert js is not None
        # A purge marker (what nats-py's KeyValue.purge writes) with a TTL of its own, so that
        # the tombstones of withdrawn instances do not pile up in the bucket.
        headers = {KV_OP: KV_PURGE, Header.ROLLUP: "sub"}
        try:
            await js.publish(self._subject(key), headers=headers, msg_ttl=_MARKER_TTL)
        except NoStreamResponseError:
            pass  # no bucket, so no record either

    async def _list_nats(self, pattern: str, stop: _Stop) -> list[tuple[str, bytes]]:
        listed: list[tuple[str, bytes]] = []

        def snapshot(entries: list[tuple[str, bytes]]) -> None:
            listed.extend(entries)
            stop.set()

        await self._watch_nats(pattern, snapshot, None, stop)
        return listed

    async def _watch_nats(
        self,
        pattern: str,
        on_snapshot: Callable[[list[tuple[str, bytes]]], object],
        on_change: Callable[[str, bytes | None], object] | None,
        stop: _Stop,
    ) -> None:
        """Call ``on_snapshot`` with the live records of ``pattern``, then ``on_change`` with
        every change, in order, until ``stop`` is set (or cancelled). Both are called in this
        loop.

        The KV watch is a plain ordered consumer (delivering the last message of every key,
        then what follows) rather than nats-py's KeyWatcher, whose end-of-backlog marker can
        come before a backlog message it has not handed over yet (a watch would then start
        with an empty Snapshot and an Added). Here the backlog ends with the message that
        had nothing pending after it, or at once if the consumer had nothing to deliver.
        """
        js = self._js
        assert js is not None
        prefix = f"$KV.{self._settings.bucket}."
        initial: dict[str, bytes] | None = {}

        # What was last handed over per key: a heartbeat rewrites a record unchanged, and
        # each one would otherwise be parsed (and cross the thread bridge) just to be ignored
        # (measured: a watch of 1,000 instances at the default TTL used 3.8% of a core).
        known: dict[str, bytes] = {}

        def end_of_backlog() -> None:
            nonlocal initial
            if initial is not None:
                entries, initial = sorted(initial.items()), None
                known.update(entries)
                on_snapshot(entries)

        async def on_msg(msg: Msg) -> None:
            key = msg.subject[len(prefix) :]
            value = None if _is_tombstone(msg.headers) else msg.data
            if initial is None:
                if value is None:
                    if known.pop(key, None) is None:
                        return  # a tombstone of a record this watch never had
                elif known.get(key) == value:
                    return
                else:
                    known[key] = value
                if on_change is not None:
                    on_change(key, value)
                return
            if value is None:
                initial.pop(key, None)
            else:
                initial[key] = value
            if msg.metadata.num_pending == 0:
                end_of_backlog()

        # asyncio keeps only weak references to tasks: a task waiting for nothing but its own
        # cancellation could be collected while pending. Hold it until it ends.
        task = asyncio.current_task()
        assert task is not None
        self._watching.add(task)
        try:
            sub = await js.subscribe(
                prefix + pattern,
                stream=f"KV_{self._settings.bucket}",
                cb=on_msg,
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
                # Gone from the server this long after its subscription (a closed watch or
                # list; a connection lost: the watch starts anew on reconnect anyway).
                inactive_threshold=_CONSUMER_INACTIVE,
            )
            try:
                info = await sub.consumer_info()
                delivered = info.delivered.consumer_seq if info.delivered is not None else 0
                if not delivered and not info.num_pending:
                    end_of_backlog()  # an empty backlog: no message will say it ended
                await stop.wait()
            finally:
                self._stop_later(sub)
        finally:
            self._watching.discard(task)

    def _stop_later(self, sub: JetStreamContext.PushSubscription) -> None:
        # Not awaited: the task stopping it may be being cancelled, and an unsubscribe that
        # waits for the server must hold nothing up (the consumer is ephemeral anyway).
        task = asyncio.ensure_future(sub.unsubscribe())
        self._stopping.add(task)
        task.add_done_callback(self._stopped)

    def _stopped(self, task: asyncio.Task[Any]) -> None:
        self._stopping.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("nats discovery: stopping a KV watch failed: %r", task.exception())

    # -- publishing --------------------------------------------------------------------------

    async def register(self, instance: Instance) -> None:
        if instance.key in self._owned:
            raise ConfigError(
                f"instance {instance.instance_id} of {instance.name!r} is already registered"
            )
        await self._ready()
        assert self._write_lock is not None
        key = key_of(instance.name, instance.instance_id)
        async with self._write_lock:
            try:
                await self._call(self._create_nats, "register", key, instance_to_json(instance))
            except _Duplicate:
                raise ConfigError(
                    f"instance {instance.instance_id} of {instance.name!r} is already "
                    f"registered in {self.describe()}"
                ) from None
            self._owned[instance.key] = instance
        if self._keepalive_scope is None and self._tg is not None:
            self._keepalive_scope = anyio.CancelScope()
            self._tg.start_soon(self._tracked, self._keep_alive, self._keepalive_scope)

    async def unregister(self, instance: Instance) -> None:
        if self._owned.pop(instance.key, None) is None:
            return
        assert self._write_lock is not None
        async with self._write_lock:
            await self._ready()
            await self._call(
                self._purge_nats, "unregister", key_of(instance.name, instance.instance_id)
            )

    async def _tracked(self, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        done = anyio.Event()
        self._running.add(done)
        try:
            await fn(*args)
        finally:
            self._running.discard(done)
            done.set()

    async def _keep_alive(self, scope: anyio.CancelScope) -> None:
        with scope:
            while True:
                assert self._reconnected is not None
                with anyio.move_on_after(self._settings.ttl / 3):
                    # A reconnect re-asserts at once: the store may have lost everything.
                    await self._reconnected.wait()
                nc = self._nc
                if nc is None or not nc.is_connected:
                    continue  # nothing can be written now; the reconnect wakes us
                try:
                    await self._reassert()
                except RequestPlaneError as exc:
                    log.warning("%s: cannot refresh the records: %s", self, exc)
                except Exception:  # the records must go on being refreshed regardless
                    log.exception("%s: refreshing the records failed", self)

    async def _reassert(self) -> None:
        assert self._write_lock is not None
        await self._ready()
        for instance in list(self._owned.values()):
            async with self._write_lock:
                if instance.key not in self._owned:
                    continue  # unregistered meanwhile: must not come back
                key = key_of(instance.name, instance.instance_id)
                value = instance_to_json(instance)
                await self._call(self._put_nats, "refresh a record", key, value)

    # -- finding -----------------------------------------------------------------------------

    async def list_instances(self, name: str) -> list[Instance]:
        validate_name(name)
        await self._ready()
        with anyio.fail_after(self._settings.connect_timeout * 2):
            entries: list[tuple[str, bytes]] = await self._call_until_stopped(
                self._list_nats, f"list {name!r}", key_filter(name)
            )
        parsed = (_parse(name, key, value) for key, value in entries)
        return sorted((i for i in parsed if i is not None), key=lambda i: i.instance_id)

    def watch(self, name: str) -> Watch:
        validate_name(name)
        if self._tg is None:
            raise RuntimeError("start() the backend before watching")
        scope = anyio.CancelScope()

        def closed() -> None:
            scope.cancel()
            self._watches.discard(feed)

        feed = InstanceFeed(name, on_close=closed)
        self._watches.add(feed)
        self._tg.start_soon(self._tracked, self._follow, feed, scope)
        return feed

    async def _follow(self, feed: InstanceFeed, scope: anyio.CancelScope) -> None:
        """Keep one KV watch feeding ``feed``; start a new one after every reconnect or
        failure (the feed reports only what changed meanwhile)."""
        backoff = 0.1
        with scope:
            while True:
                assert self._reconnected is not None
                reconnected = self._reconnected
                run = _FeedRun(feed)
                try:
                    await self._ready()
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(self._run_watch, run, feed.name)
                        await reconnected.wait()
                        tg.cancel_scope.cancel()
                    backoff = 0.1
                    await anyio.sleep(_RELIST_GRACE)
                except Exception as exc:
                    # A watch ends only when closed: whatever went wrong, it tries again (and
                    # must not take the caller's task group down).
                    if isinstance(exc, RequestPlaneError):
                        level = logging.ERROR if isinstance(exc, ConfigError) else logging.WARNING
                        log.log(level, "%s: watching %r: %s; trying again", self, feed.name, exc)
                    else:
                        log.exception("%s: watching %r failed; trying again", self, feed.name)
                    self._bucket_ready = False  # look again: a store restart drops it
                    with anyio.move_on_after(backoff):
                        await reconnected.wait()
                    backoff = min(backoff * 2, _MAX_BACKOFF)
                finally:
                    run.live = False

    async def _run_watch(self, run: _FeedRun, name: str) -> None:
        assert self._bridge is not None
        deliver = self._bridge.deliver

        def snapshot(entries: list[tuple[str, bytes]]) -> None:
            deliver(run.snapshot, entries)

        def change(key: str, value: bytes | None) -> None:
            deliver(run.change, key, value)

        pattern = key_filter(name)
        await self._call_until_stopped(
            self._watch_nats, f"watch {name!r}", pattern, snapshot, change
        )
        raise Unavailable(f"{self.describe()}: the KV watch of {name!r} ended")

    # -- closing -----------------------------------------------------------------------------

    async def aclose(self) -> None:
        if self._closed:
            return
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(_CLOSE_BUDGET):
                for instance in list(self._owned.values()):
                    try:
                        await self.unregister(instance)
                    except RequestPlaneError as exc:
                        log.warning("%s: could not withdraw %s: %s", self, instance.key, exc)
            self._closed = True
            self._owned.clear()
            if self._keepalive_scope is not None:
                self._keepalive_scope.cancel()
            for feed in list(self._watches):
                await feed.aclose()
            self._watches.clear()
            with anyio.move_on_after(_CLOSE_BUDGET):
                for done in list(self._running):
                    await done.wait()
            bridge, nc = self._bridge, self._nc
            self._bridge = self._nc = self._js = None
            if bridge is not None:
                try:
                    if nc is not None:
                        with anyio.move_on_after(_CLOSE_BUDGET):
                            await bridge.run(_close_quietly, nc)
                finally:
                    await bridge.aclose()


async def _close_quietly(nc: Client) -> None:
    # Closing flushes; with the store gone that fails, and there is nothing left to lose.
    try:
        await nc.close()
    except (NatsError, OSError) as exc:
        log.debug("nats discovery: closing the connection: %r", exc)
