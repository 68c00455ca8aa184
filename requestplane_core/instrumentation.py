"""Observing requests through the ``requestplane_request_*`` hooks, at no cost when unused.

When no plugin implements the request hooks, nothing here runs: the manager hands out the
transport's own client and the dispatcher takes its plain path. When one does, the client is
wrapped and the dispatcher reports each request, on both sides, as a :class:`RequestEvent`.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs
import pluggy
from anyio.abc import TaskGroup

from .address import Address
from .errors import RequestPlaneError
from .transport import ClientStats, ResponseStream, TransportClient

if TYPE_CHECKING:
    from .dispatch import Responder

__all__ = ["InstrumentedClient", "Observer", "RequestEvent", "routed_instance"]

log = logging.getLogger("requestplane")

#: The instance id a router chose for the call being made in this context, so that the
#: client's event names it without the transport client knowing about routing.
routed_instance: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "requestplane_routed_instance", default=None
)


@attrs.define(eq=False)
class RequestEvent:
    """One request as an instrumentation plugin sees it, from start to finish.

    ``headers`` is the request's headers; on the client side, before the request is sent, a
    plugin may add to it (e.g. ``traceparent``) and the additions travel with the request.
    ``scratch`` is the plugins' own space to carry state from started to finished (a span).
    ``outcome`` is ``"ok"``, ``"cancelled"``, or the error's class name. ``instance`` is
    the instance id a router chose (client side, routed calls only).
    """

    side: str
    transport: str
    endpoint: str
    headers: dict[str, str]
    address: str | None = None
    stream: bool = False
    started: float = attrs.field(factory=time.perf_counter)
    duration: float | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    chunks: int = 0
    outcome: str = "pending"
    scratch: dict[str, Any] = attrs.field(factory=dict)
    instance: str | None = None


class Observer:
    """Calls the observing hooks; an error in a plugin's hook is logged, never raised."""

    def __init__(self, hook: Any) -> None:
        self._hook = hook

    @classmethod
    def create(cls, manager: pluggy.PluginManager) -> Observer | None:
        """An observer, or ``None`` when no plugin implements the request hooks."""
        return cls(manager.hook) if has_request_hooks(manager.hook) else None

    def started(self, event: RequestEvent) -> None:
        call_hook(self._hook.requestplane_request_started, event=event)

    def finished(self, event: RequestEvent, outcome: str) -> None:
        event.duration = time.perf_counter() - event.started
        event.outcome = outcome
        call_hook(self._hook.requestplane_request_finished, event=event)


def has_request_hooks(hook: Any) -> bool:
    return bool(
        hook.requestplane_request_started.get_hookimpls()
        or hook.requestplane_request_finished.get_hookimpls()
    )


def call_hook(caller: Any, **kwargs: Any) -> None:
    """Call an observing hook; a failing plugin is logged, never allowed to fail a request."""
    try:
        caller(**kwargs)
    except Exception as exc:
        log.warning("instrumentation hook %s failed: %r", caller.name, exc)


def outcome_of(exc: BaseException | None) -> str:
    if exc is None:
        return "ok"
    if isinstance(exc, RequestPlaneError):
        return type(exc).__name__
    return "cancelled"


class ObservedResponder:
    """Counts what the dispatcher sends for one request and remembers its outcome."""

    __slots__ = ("_inner", "event", "outcome")

    def __init__(self, inner: Responder, event: RequestEvent) -> None:
        self._inner = inner
        self.event = event
        self.outcome = "cancelled"

    async def send_response(self, payload: bytes) -> None:
        await self._inner.send_response(payload)
        self.event.bytes_out += len(payload)
        self.outcome = "ok"

    async def send_chunk(self, payload: bytes) -> None:
        await self._inner.send_chunk(payload)
        self.event.bytes_out += len(payload)
        self.event.chunks += 1

    async def send_end(self) -> None:
        await self._inner.send_end()
        self.outcome = "ok"

    async def send_error(self, error: RequestPlaneError) -> None:
        self.outcome = type(error).__name__
        await self._inner.send_error(error)


class _ObservedStream(ResponseStream):
    def __init__(self, inner: ResponseStream, observer: Observer, event: RequestEvent) -> None:
        self._inner = inner
        self._observer = observer
        self._event = event
        self._done = False

    async def __anext__(self) -> bytes:
        try:
            chunk = await self._inner.__anext__()
        except StopAsyncIteration:
            self._finish("ok")
            raise
        except BaseException as exc:
            self._finish(outcome_of(exc))
            raise
        self._event.chunks += 1
        self._event.bytes_in += len(chunk)
        return chunk

    def _finish(self, outcome: str) -> None:
        if not self._done:
            self._done = True
            self._observer.finished(self._event, outcome)

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._finish("cancelled")


class InstrumentedClient(TransportClient):
    """A transport client whose every call is reported to the observing hooks."""

    def __init__(self, inner: TransportClient, transport: str, observer: Observer) -> None:
        self._inner = inner
        self._transport = transport
        self._observer = observer

    @property
    def stats(self) -> ClientStats:  # type: ignore[override]
        return self._inner.stats

    def start(self, task_group: TaskGroup) -> None:
        self._inner.start(task_group)

    def _event(
        self, address: Address | str, headers: Mapping[str, str] | None, stream: bool
    ) -> RequestEvent:
        parsed = Address.parse(address)
        return RequestEvent(
            side="client",
            transport=self._transport,
            endpoint=self._inner.endpoint_of(parsed),
            headers=dict(headers or {}),
            address=str(parsed),
            stream=stream,
            instance=routed_instance.get(),
        )

    async def request(
        self,
        address: Address | str,
        payload: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> bytes:
        event = self._event(address, headers, stream=False)
        event.bytes_out = len(payload)
        self._observer.started(event)
        try:
            reply = await self._inner.request(
                address, payload, headers=event.headers, timeout=timeout
            )
        except BaseException as exc:
            self._observer.finished(event, outcome_of(exc))
            raise
        event.bytes_in = len(reply)
        self._observer.finished(event, "ok")
        return reply

    def stream(
        self,
        address: Address | str,
        payload: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> ResponseStream:
        event = self._event(address, headers, stream=True)
        event.bytes_out = len(payload)
        self._observer.started(event)
        inner = self._inner.stream(address, payload, headers=event.headers, timeout=timeout)
        return _ObservedStream(inner, self._observer, event)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def endpoint_of(self, address: Address) -> str:
        return self._inner.endpoint_of(address)
