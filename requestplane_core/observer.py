"""The observing hooks, typed and decided once: who observes what, at no cost when nobody does.

The manager builds one :class:`Observer` from its plugin manager and hands it to the server
(server started/stopped, and each request through the dispatcher) and to its clients (each
call). Whether any plugin observes requests is decided here, once (:attr:`Observer.requests`):
when none does, the dispatcher takes its plain path and clients are not wrapped.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Mapping
from typing import Any

import attrs

from .errors import RequestPlaneError

__all__ = ["Observer", "RequestEvent", "call_hook", "outcome_of", "routed_instance"]

log = logging.getLogger("requestplane")

#: The instance (name and instance id) a router chose for the call being made in this
#: context, so that the client's event names both without the transport knowing of routing.
routed_instance: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
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
    """The observing hooks of one plugin manager; an error in a plugin's hook is logged,
    never raised."""

    def __init__(self, hook: Any) -> None:
        self._hook = hook
        #: Whether any plugin implements the request hooks (decided once, here).
        self.requests = bool(
            hook.requestplane_request_started.get_hookimpls()
            or hook.requestplane_request_finished.get_hookimpls()
        )

    def started(self, event: RequestEvent) -> None:
        call_hook(self._hook.requestplane_request_started, event=event)

    def finished(self, event: RequestEvent, outcome: str) -> None:
        event.duration = time.perf_counter() - event.started
        event.outcome = outcome
        call_hook(self._hook.requestplane_request_finished, event=event)

    def server_started(self, transport: str, details: Mapping[str, Any]) -> None:
        call_hook(self._hook.requestplane_server_started, transport=transport, details=details)

    def server_stopped(self, transport: str) -> None:
        call_hook(self._hook.requestplane_server_stopped, transport=transport)


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
