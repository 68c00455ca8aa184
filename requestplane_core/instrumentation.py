"""Observing a client's calls through the ``requestplane_request_*`` hooks.

The client half of instrumentation: when a plugin observes requests (:attr:`Observer.requests`)
the manager wraps each transport client in an :class:`InstrumentedClient`, which reports every
call as a :class:`RequestEvent`. The server half is the dispatcher's (``dispatch.py``).
"""

from __future__ import annotations

from collections.abc import Mapping

from anyio.abc import TaskGroup

from .address import Address
from .observer import Observer, RequestEvent, outcome_of, routed_instance
from .transport import ClientStats, ResponseStream, TransportClient

__all__ = ["InstrumentedClient", "Observer", "RequestEvent", "routed_instance"]


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
        routed = routed_instance.get()
        return RequestEvent(
            side="client",
            transport=self._transport,
            # A routed call knows its endpoint's name; an address alone only suggests it.
            endpoint=self._inner.endpoint_of(parsed) if routed is None else routed[0],
            headers=dict(headers or {}),
            address=str(parsed),
            stream=stream,
            instance=None if routed is None else routed[1],
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
