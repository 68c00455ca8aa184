"""Request semantics shared by every transport: lookup, admission, deadlines, drain, errors.

A transport parses bytes into a :class:`Request` and calls :meth:`Dispatcher.handle` with a
:class:`Responder` that writes bytes back. Everything that decides *what* the outcome is lives
here, once, so that all transports behave the same.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import aclosing
from typing import Any

import anyio
import attrs

from .clock import loop_clock
from .errors import (
    ConnectionLost,
    DeadlineExceeded,
    EndpointNotFound,
    Overloaded,
    RemoteError,
    RequestPlaneError,
    Unavailable,
)
from .observer import Observer, RequestEvent
from .request import Handler, Request
from .transport import _LATER, _NOT_CALLED, Pending, Responder

__all__ = ["Dispatcher", "Pending", "Responder"]

log = logging.getLogger("requestplane")


def is_synchronous(handler: Handler) -> bool:
    """Whether calling ``handler`` may do the work itself (a plain ``def``), as opposed to
    an ``async def`` function, async generator function or object with an async ``__call__``.

    Only a guess for plain callables: one that returns a coroutine (a lambda around an
    ``async def``) is synchronous here, and its coroutine is run in a task all the same.
    """
    if inspect.iscoroutinefunction(handler) or inspect.isasyncgenfunction(handler):
        return False
    if inspect.isroutine(handler) or isinstance(handler, functools.partial):
        return True
    call = type(handler).__call__  # an object with a __call__ method
    return not (inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call))


@attrs.define(eq=False)
class _Endpoint:
    handler: Handler
    #: A plain ``def`` handler: :meth:`Dispatcher.answer_now` calls it on the spot.
    synchronous: bool = False
    draining: bool = False
    #: Set when stragglers are cancelled at a drain timeout: their callers get Unavailable.
    cancelling: bool = False
    scopes: set[anyio.CancelScope] = attrs.field(factory=set)
    idle: anyio.Event | None = None

    async def wait_idle(self) -> None:
        if self.scopes:
            if self.idle is None:
                self.idle = anyio.Event()
            await self.idle.wait()


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


class Dispatcher:
    """The endpoint table of one server, and the rules every request goes through."""

    def __init__(
        self, *, max_inflight: int = 0, observer: Observer | None = None, transport: str = ""
    ) -> None:
        self._observer = observer
        self._transport = transport
        self._endpoints: dict[str, _Endpoint] = {}
        self._max_inflight = max_inflight or math.inf
        self._inflight = 0
        self._draining = False
        #: Requests that reached this dispatcher (some twice): see Server's withdraw grace.
        self.arrivals = 0
        # anyio.current_time's clock, resolved in the event loop on first use (a dispatcher
        # serves one loop): deadlines are checked on every request that has one.
        self._clock: Callable[[], float] | None = None

    def _now(self) -> float:
        clock = self._clock
        if clock is None:
            clock = self._clock = loop_clock()
        return clock()

    # -- endpoints -------------------------------------------------------------------------

    @property
    def endpoints(self) -> list[str]:
        return sorted(self._endpoints)

    @property
    def inflight(self) -> int:
        return self._inflight

    @property
    def draining(self) -> bool:
        return self._draining

    def register(self, name: str, handler: Handler) -> None:
        if not name or any(c.isspace() for c in name) or "" in name.split("/"):
            raise ValueError(
                f"endpoint name {name!r} is not valid: non-empty segments joined by '/', no spaces"
            )
        if name in self._endpoints:
            raise ValueError(f"endpoint {name!r} is already registered on this server")
        if self._draining:
            raise Unavailable("the server is draining; it accepts no new endpoints")
        self._endpoints[name] = _Endpoint(handler, is_synchronous(handler))

    async def unregister(self, name: str, drain_timeout: float) -> None:
        """Refuse new requests for ``name`` with ``Unavailable``, let in-flight ones finish
        within ``drain_timeout``, cancel the rest, then forget the endpoint."""
        endpoint = self._endpoints.get(name)
        if endpoint is None:
            raise EndpointNotFound(f"endpoint {name!r} is not registered on this server")
        endpoint.draining = True
        await self._settle([endpoint], drain_timeout)
        del self._endpoints[name]

    # -- requests --------------------------------------------------------------------------

    def answer_now(self, request: Request) -> bytes | RequestPlaneError | Pending:
        """The outcome of ``request`` if it is known without awaiting anything, for a
        transport that can answer from where it reads (no task, no cancel scope):

        - ``bytes``: the response of a synchronous handler (a plain ``def``); send it;
        - a :class:`RequestPlaneError`: the request is refused (no such endpoint, draining,
          expired, over the in-flight limit) or its synchronous handler raised; send it;
        - a :class:`Pending`: pass it to :meth:`handle` in a task of its own.

        The transport still checks the response against its size limit. A transport that
        does not call this calls :meth:`handle` alone, with the same outcomes. With an
        observing plugin installed every request goes through :meth:`handle`.
        """
        if self._observer is not None:
            return _LATER
        endpoint = self._endpoints.get(request.endpoint)
        refusal = self._refusal(endpoint, request)
        if refusal is not None:
            return refusal
        assert endpoint is not None
        if not endpoint.synchronous:
            return _LATER
        try:
            result: object = endpoint.handler(request)
        except Exception as exc:
            return _remote(exc)
        if type(result) is bytes:
            return result
        if isinstance(result, (bytearray, memoryview)):
            return bytes(result)
        return Pending(result)

    def handle(
        self,
        request: Request,
        responder: Responder,
        scope: anyio.CancelScope | None = None,
        pending: Pending = _LATER,
    ) -> Coroutine[Any, Any, None]:
        """Run ``request`` to exactly one outcome, sent through ``responder`` (await it).

        ``scope`` is the cancel scope the transport cancels when the caller cancels; the
        dispatcher also uses it for the deadline and for cancelling at shutdown.
        ``pending`` is what :meth:`answer_now` returned, if the transport called it.
        """
        # A plain function handing back the coroutine that does the work: one coroutine
        # frame less per request than an ``async def`` awaiting it.
        if self._observer is not None:
            return self._handle_observed(self._observer, request, responder, scope, pending)
        return self._handle(request, responder, scope, pending.result)

    async def _handle_observed(
        self,
        observer: Observer,
        request: Request,
        responder: Responder,
        scope: anyio.CancelScope | None,
        pending: Pending,
    ) -> None:
        event = RequestEvent(
            side="server",
            transport=self._transport,
            endpoint=request.endpoint,
            headers=dict(request.headers),
        )
        event.bytes_in = len(request.payload)
        observed = ObservedResponder(responder, event)
        observer.started(event)
        try:
            await self._handle(request, observed, scope, pending.result)
        finally:
            event.stream = event.chunks > 0
            observer.finished(event, observed.outcome)

    async def _handle(
        self,
        request: Request,
        responder: Responder,
        scope: anyio.CancelScope | None,
        result: object = _NOT_CALLED,
    ) -> None:
        # The hot path of every request on every transport: kept in one frame (the handler
        # call and a unary answer inline), with attribute lookups read once.
        endpoint = self._endpoints.get(request.endpoint)
        # Checked again even after answer_now admitted it: the state may have changed before
        # this task ran (a drain began, the deadline passed in the queue). Work the handler
        # already began (``result``) is only refused if its endpoint is gone.
        if endpoint is None or result is _NOT_CALLED:
            refusal = self._refusal(endpoint, request)
            if refusal is not None:
                _discard(result)
                return await self._refuse(responder, refusal)
        assert endpoint is not None
        deadline = request.deadline
        if scope is None:
            scope = anyio.CancelScope()
        if deadline is not None and deadline < scope.deadline:
            scope.deadline = deadline
        self._inflight += 1
        scopes = endpoint.scopes
        scopes.add(scope)
        try:
            with scope:
                try:
                    if result is _NOT_CALLED:
                        result = endpoint.handler(request)
                    if not hasattr(result, "__anext__") and not isinstance(
                        result, (bytes, bytearray, memoryview)
                    ):
                        result = await result  # type: ignore[misc]
                except Exception as exc:
                    return await self._refuse(responder, _remote(exc))
                except anyio.get_cancelled_exc_class() as exc:
                    if _really_cancelled():
                        raise
                    return await self._refuse(responder, _remote(exc))
                if isinstance(result, (bytes, bytearray, memoryview)):
                    try:
                        await responder.send_response(
                            result if type(result) is bytes else bytes(result)
                        )
                    except ConnectionLost:
                        pass
                    except RequestPlaneError as exc:
                        await self._refuse(responder, exc)
                    return  # never cancelled_caught: no cancellation came through the scope
                await self._stream(result, responder)  # type: ignore[arg-type]
            if scope.cancelled_caught:
                if endpoint.cancelling:
                    error: RequestPlaneError = Unavailable(
                        f"the drain timeout passed before {request.endpoint!r} completed"
                    )
                elif deadline is not None and self._now() >= deadline:
                    error = DeadlineExceeded(f"the deadline of {request.endpoint!r} passed")
                else:
                    return  # the caller cancelled: nobody is waiting for an answer
                await self._refuse(responder, error)
        finally:
            self._inflight -= 1
            scopes.discard(scope)
            if endpoint.idle is not None and not scopes:
                endpoint.idle.set()

    def _refusal(self, endpoint: _Endpoint | None, request: Request) -> RequestPlaneError | None:
        """Why ``request`` is refused before its handler runs, if it is."""
        # Every request passes here at least once: a count of arrivals (no clock read) tells
        # a server withdrawn from discovery whether callers still send to it.
        self.arrivals += 1
        if endpoint is None:
            return EndpointNotFound(f"no endpoint {request.endpoint!r} on this server")
        if self._draining or endpoint.draining:
            return Unavailable(f"endpoint {request.endpoint!r} is draining")
        deadline = request.deadline
        if deadline is not None and self._now() >= deadline:
            # Expired in transit or in a queue: never start a handler nobody waits for.
            return DeadlineExceeded(f"the deadline of {request.endpoint!r} passed")
        if self._inflight >= self._max_inflight:
            return Overloaded(f"server at its limit of {self._max_inflight} requests in flight")
        return None

    async def _stream(self, chunks: AsyncIterator[bytes], responder: Responder) -> None:
        try:
            async with aclosing(chunks):  # type: ignore[type-var]
                async for chunk in chunks:
                    await responder.send_chunk(bytes(chunk))
        except ConnectionLost:
            return
        except RequestPlaneError as exc:
            await self._refuse(responder, exc)
            return
        except Exception as exc:
            await self._refuse(responder, _remote(exc))
            return
        except anyio.get_cancelled_exc_class() as exc:
            if _really_cancelled():
                raise
            await self._refuse(responder, _remote(exc))
            return
        try:
            await responder.send_end()
        except ConnectionLost:
            return

    @staticmethod
    async def _refuse(responder: Responder, error: RequestPlaneError) -> None:
        try:
            await responder.send_error(error)
        except ConnectionLost:
            pass  # the caller is gone; its own side reports ConnectionLost

    # -- shutdown --------------------------------------------------------------------------

    async def drain(self, timeout: float) -> None:
        """Refuse new requests with ``Unavailable``; wait up to ``timeout`` seconds for those
        in flight; cancel the rest (their callers get ``Unavailable``)."""
        self._draining = True
        await self._settle(list(self._endpoints.values()), timeout)

    @staticmethod
    async def _settle(endpoints: list[_Endpoint], timeout: float) -> None:
        """Wait up to ``timeout`` for the endpoints' requests to finish, then cancel the rest
        (their callers get ``Unavailable``) and give them a moment to send that."""
        with anyio.move_on_after(timeout):
            for endpoint in endpoints:
                await endpoint.wait_idle()
        stragglers = [scope for endpoint in endpoints for scope in endpoint.scopes]
        if not stragglers:
            return
        log.warning(
            "drain timeout (%.1fs) passed with %d request(s) in flight; cancelling them",
            timeout,
            len(stragglers),
        )
        for endpoint in endpoints:
            endpoint.cancelling = True
        for scope in stragglers:
            scope.cancel()
        with anyio.move_on_after(1.0):
            for endpoint in endpoints:
                await endpoint.wait_idle()


def _discard(result: object) -> None:
    """Close what a synchronous handler returned for a request refused after all, so that
    a coroutine never started does not warn that it was never awaited."""
    close = getattr(result, "close", None)
    if close is not None and inspect.iscoroutine(result):
        close()


def _really_cancelled() -> bool:
    """Whether a cancellation exception comes from a cancelled scope around us, rather than
    from a handler that raised one itself (asyncio code that awaited a cancelled future)."""
    return anyio.current_effective_deadline() == -math.inf


def _remote(exc: BaseException) -> RemoteError:
    return RemoteError(type(exc).__name__, str(exc))
