"""The kit's own deadlines: no case may hang, and one that would names the step it hung in.

The core shields a server's ``aclose()`` (and a manager's) from cancellation so that a
shutdown always completes; a transport whose ``aclose()`` never returns would therefore hang
the test run with no output. The kit wraps the transport's server and client in thin proxies
whose lifecycle steps run under a deadline of their own (a cancel scope inside the core's
shield still works), and runs every case under a per-case deadline.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import anyio
import attrs
from anyio.abc import TaskGroup

from requestplane_core import Address
from requestplane_core.plugin_api import (
    Dispatch,
    ResponseStream,
    TransportClient,
    TransportServer,
    TransportSpec,
)

__all__ = ["CaseTimeout", "bounded_case", "bounded_spec", "server_crashes"]

T = TypeVar("T")

#: What a step that did not finish in time usually means, for the failure message.
HINTS = {
    "server start()": "does it return once it is listening, leaving the serving to tasks "
    "it starts in the task group it is given?",
    "server aclose()": "does it close its clients' connections? (waiting for clients to "
    "hang up hangs: a client keeps its connection open for the next call)",
    "client aclose()": "does it close its connections and fail its calls in flight with "
    "ConnectionLost without waiting for them?",
}


class CaseTimeout(AssertionError):
    """A case, or one of the transport's lifecycle steps, did not finish in time."""


async def _step(name: str, seconds: float, step: Awaitable[T]) -> T:
    with anyio.move_on_after(seconds) as scope:
        return await step
    assert scope.cancelled_caught
    hint = HINTS.get(name, "")
    raise CaseTimeout(f"{name} did not return within {seconds:g} s" + (f": {hint}" if hint else ""))


class _BoundedServer(TransportServer):
    def __init__(self, inner: TransportServer, seconds: float) -> None:
        self._inner = inner
        self._seconds = seconds

    async def start(self, dispatcher: Dispatch, task_group: TaskGroup) -> None:
        await _step("server start()", self._seconds, self._inner.start(dispatcher, task_group))

    def address(self, endpoint: str) -> Address:
        return self._inner.address(endpoint)

    def instance_address(self, endpoint: str) -> Address:
        return self._inner.instance_address(endpoint)

    async def endpoint_added(self, endpoint: str) -> None:
        await _step("server endpoint_added()", self._seconds, self._inner.endpoint_added(endpoint))

    async def endpoint_removed(self, endpoint: str) -> None:
        step = self._inner.endpoint_removed(endpoint)
        await _step("server endpoint_removed()", self._seconds, step)

    async def aclose(self) -> None:
        await _step("server aclose()", self._seconds, self._inner.aclose())

    def health_details(self) -> Mapping[str, Any]:
        return self._inner.health_details()


class _BoundedClient(TransportClient):
    def __init__(self, inner: TransportClient, seconds: float) -> None:
        self._inner = inner
        self._seconds = seconds
        self.stats = inner.stats

    def start(self, task_group: TaskGroup) -> None:
        self._inner.start(task_group)

    async def request(
        self,
        address: Address | str,
        payload: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> bytes:
        return await self._inner.request(address, payload, headers=headers, timeout=timeout)

    def stream(
        self,
        address: Address | str,
        payload: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> ResponseStream:
        return self._inner.stream(address, payload, headers=headers, timeout=timeout)

    def endpoint_of(self, address: Address) -> str:
        return self._inner.endpoint_of(address)

    async def aclose(self) -> None:
        await _step("client aclose()", self._seconds, self._inner.aclose())


def bounded_spec(spec: TransportSpec[Any], seconds: float) -> TransportSpec[Any]:
    """``spec`` with its servers' and clients' lifecycle steps bounded by ``seconds``."""
    server, client = spec.server, spec.client
    return attrs.evolve(
        spec,
        server=lambda settings: _BoundedServer(server(settings), seconds),
        client=lambda settings: _BoundedClient(client(settings), seconds),
    )


@contextmanager
def server_crashes() -> Iterator[list[logging.LogRecord]]:
    """The errors the core logs while the block runs (a shared server whose task crashed
    is logged, not raised: nobody awaits it), for the kit to report as the cause."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect(logging.ERROR)
    logger = logging.getLogger("requestplane")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def _crash_report(records: list[logging.LogRecord]) -> str:
    formatter = logging.Formatter("%(message)s")
    return "\n".join(formatter.format(record) for record in records)


def bounded_case(
    case: Callable[..., Awaitable[None]],
) -> Callable[..., Awaitable[None]]:
    """Run ``case`` under its class's ``case_timeout``; report a crash the core logged."""

    @functools.wraps(case)
    async def run(self: Any, *args: Any, **kwargs: Any) -> None:
        seconds: float = self.case_timeout
        with server_crashes() as crashes:
            try:
                with anyio.fail_after(seconds) as scope:
                    await case(self, *args, **kwargs)
            except BaseException as exc:
                if crashes:
                    raise AssertionError(
                        "the transport's server failed during the case (so its calls failed "
                        f"too):\n{_crash_report(crashes)}"
                    ) from exc
                if isinstance(exc, TimeoutError) and scope.cancelled_caught:
                    raise CaseTimeout(
                        f"{case.__name__} did not finish within {seconds:g} s (the kit's "
                        "per-case deadline, case_timeout); the traceback shows where it waited"
                    ) from exc
                raise
            if crashes:
                raise AssertionError(
                    f"the transport's server failed during the case:\n{_crash_report(crashes)}"
                )

    return run
