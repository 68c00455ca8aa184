"""The calling half: every call opens its own connection, in the caller's own task."""

from __future__ import annotations

import math
from collections.abc import Mapping

import anyio
from anyio.abc import TaskGroup

from requestplane_core import (
    Address,
    ClientStats,
    ConnectionLost,
    DeadlineExceeded,
    PayloadTooLarge,
    RequestPlaneError,
    ResponseStream,
    TransportClient,
)

from .addressing import Target, parse_target
from .call import Call
from .settings import UdsSettings
from .stream import UdsResponseStream

__all__ = ["UdsClient"]


class UdsClient(TransportClient):
    def __init__(self, settings: UdsSettings) -> None:
        self.stats = ClientStats()
        self._settings = settings
        self._calls: set[Call] = set()
        self._closed = False

    def start(self, task_group: TaskGroup) -> None:
        # Nothing runs in the background: each call reads its own connection in the
        # caller's task, so there is no shared reader to host.
        pass

    async def request(
        self,
        address: Address | str,
        payload: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> bytes:
        target = parse_target(address)
        deadline = self.deadline(timeout)
        self.stats.requests += 1
        try:
            with anyio.move_on_at(math.inf if deadline is None else deadline):
                call = await self.open_call(target, payload, headers or {}, deadline)
                try:
                    return await _collect(call)
                finally:
                    await self.release_call(call)
            raise DeadlineExceeded(
                f"no answer from {target.endpoint!r} within "
                f"{self._settings.request_timeout if timeout is None else timeout}s"
            )
        except RequestPlaneError:
            self.stats.errors += 1
            raise

    def stream(
        self,
        address: Address | str,
        payload: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> ResponseStream:
        return UdsResponseStream(self, parse_target(address), payload, headers or {}, timeout)

    async def aclose(self) -> None:
        self._closed = True
        calls, self._calls = self._calls, set()
        for call in calls:
            await call.aclose()  # its reader, if any, gets ConnectionLost

    # -- shared by request() and the streams ---------------------------------------------------

    def deadline(self, timeout: float | None) -> float | None:
        budget = self._settings.request_timeout if timeout is None else timeout
        return None if budget is None else anyio.current_time() + budget

    async def open_call(
        self,
        target: Target,
        payload: bytes,
        headers: Mapping[str, str],
        deadline: float | None,
    ) -> Call:
        if self._closed:
            raise ConnectionLost("the client is closed")
        if len(payload) > self._settings.max_message_size:
            raise PayloadTooLarge(
                f"the request is {len(payload)} bytes; the limit is "
                f"{self._settings.max_message_size} (REQUESTPLANE_UDS_MAX_MESSAGE_SIZE)"
            )
        call = await Call.open(
            target,
            payload,
            headers,
            deadline,
            stats=self.stats,
            max_message_size=self._settings.max_message_size,
        )
        if self._closed:  # closed while we were connecting
            await call.aclose()
            raise ConnectionLost("the client is closed")
        self._calls.add(call)
        return call

    async def release_call(self, call: Call) -> None:
        self._calls.discard(call)
        await call.aclose()


async def _collect(call: Call) -> bytes:
    """A unary response, or a streamed one joined."""
    chunks: list[bytes] = []
    while True:
        frame = await call.receive()
        if frame.kind == "response":
            return frame.payload
        if frame.kind == "end":
            return b"".join(chunks)
        chunks.append(frame.payload)
