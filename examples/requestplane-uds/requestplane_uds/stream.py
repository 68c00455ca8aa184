"""A streamed answer, read chunk by chunk from its call's connection."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import anyio

from requestplane_core import DeadlineExceeded, RequestPlaneError, ResponseStream

from .addressing import Target
from .call import Call

if TYPE_CHECKING:
    from .client import UdsClient

__all__ = ["UdsResponseStream"]


class UdsResponseStream(ResponseStream):
    """Connects on the first ``__anext__`` (``stream()`` itself is synchronous); the timeout
    bounds everything from there to the last chunk."""

    def __init__(
        self,
        client: UdsClient,
        target: Target,
        payload: bytes,
        headers: Mapping[str, str],
        timeout: float | None,
    ) -> None:
        self._client = client
        self._target = target
        self._payload = payload
        self._headers = headers
        self._timeout = timeout
        self._deadline: float | None = None
        self._call: Call | None = None
        self._started = False
        self._finished = False

    async def __anext__(self) -> bytes:
        if self._finished:
            raise StopAsyncIteration
        try:
            with anyio.move_on_at(self._start_clock()):
                if self._call is None:
                    self._call = await self._client.open_call(
                        self._target, self._payload, self._headers, self._deadline
                    )
                frame = await self._call.receive()
                if frame.kind == "chunk":
                    return frame.payload
                await self.aclose()
                if frame.kind == "response":  # a unary endpoint: its response is the one chunk
                    return frame.payload
                raise StopAsyncIteration
            raise DeadlineExceeded(
                f"the stream from {self._target.endpoint!r} did not end within {self._timeout}s"
            )
        except RequestPlaneError:
            self._client.stats.errors += 1
            await self.aclose()
            raise
        except BaseException:
            # Cancelled (or worse): close, which cancels the handler on the server.
            await self.aclose()
            raise

    def _start_clock(self) -> float:
        if not self._started:
            self._started = True
            self._client.stats.streams += 1
            self._deadline = self._client.deadline(self._timeout)
        return math.inf if self._deadline is None else self._deadline

    async def aclose(self) -> None:
        self._finished = True
        call, self._call = self._call, None
        if call is not None:
            await self._client.release_call(call)
