"""The TCP client: one multiplexed connection per target, no task per request.

A call queues its REQUEST frame and waits on its own event; the connection's reader task
resolves it when the answer arrives (``client_connection.py``, ``call_states.py``). Leaving
early (cancellation, deadline, ``aclose`` of a stream) queues a CANCEL frame and forgets the
id, so late frames for it are dropped. Connections are opened and read by ``dialling.py``;
``stream()`` and the bookkeeping every client shares come from the core's ExchangeClient.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import anyio
from anyio.abc import TaskGroup

from requestplane_core import Address, DeadlineExceeded, RequestPlaneError
from requestplane_core.lowlevel import LoopTimers, loop_timers
from requestplane_core.plugin_api import ExchangeClient

from .call_states import StreamState, UnaryState
from .dialling import Dialler
from .framing import CHUNK, END, ERROR, METADATA_LIMIT, RESPONSE, encode_request_head, frame_limits
from .settings import TcpSettings
from .stream_exchange import StreamExchange
from .target import Target, parse_target
from .tls import check_tls_settings, client_context

__all__ = ["TcpClient"]


class TcpClient(ExchangeClient[Target]):
    # Deadlines are timers that fail the call (call_states.py), not cancel scopes: a scope
    # around each wait cost more than the rest of the call (README).
    exchanges_keep_deadline: ClassVar[bool] = True
    limits_joined_responses: ClassVar[bool] = True

    def __init__(self, settings: TcpSettings) -> None:
        check_tls_settings(settings)
        super().__init__(
            name="tcp",
            max_message_size=settings.max_message_size,
            request_timeout=settings.request_timeout,
        )
        limits = frame_limits(
            {
                RESPONSE: settings.max_message_size,
                CHUNK: settings.max_message_size,
                END: 0,
                ERROR: METADATA_LIMIT,
            }
        )
        ssl_context = client_context(settings) if settings.tls else None
        self._timers: LoopTimers | None = None
        self._dialler = Dialler(settings, ssl_context, limits, self.stats, self._ensure_timers)
        self._conns = self._dialler.conns

    def start(self, task_group: TaskGroup) -> None:
        super().start(task_group)
        self._dialler.task_group = task_group

    def _ensure_timers(self) -> LoopTimers:
        if self._timers is not None:
            return self._timers
        if self.task_group is None:
            raise RequestPlaneError(
                "the tcp client is not started: use `async with client:` or client.start(tg)"
            )
        self._timers = loop_timers(self.task_group)
        return self._timers

    def parse_target(self, address: Address | str) -> Target:
        return parse_target(address)

    def peer_of(self, target: Target) -> str:
        return target.peer

    async def request(
        self,
        address: Address | str,
        payload: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> bytes:
        # The hottest case (a known address, an open connection, no deadline) skips the
        # shared request()'s coroutine layer; everything else goes the shared way.
        target = self._targets.get(address)
        conn = None if target is None else self._conns.get(target.key)
        if (
            target is None
            or conn is None
            or timeout is not None
            or self.request_timeout is not None
            or len(payload) > self.max_message_size
        ):
            return await super().request(address, payload, headers=headers, timeout=timeout)
        stats = self.stats
        stats.requests += 1
        size = len(payload)
        call = UnaryState(conn.new_waiter())
        rid = conn.add(call)
        try:
            conn.fc.send2(encode_request_head(rid, target.endpoint, headers, None, size), payload)
            stats.bytes_sent += size
            if conn.fc.congested:
                await conn.fc.wait_drained()
            await call.waiter.wait()
        except Exception:
            stats.errors += 1
            raise
        finally:
            if not call.done:
                conn.cancel(rid)  # cancelled, or never sent
        if call.error is not None:
            stats.errors += 1
            raise call.error()
        stats.bytes_received += len(call.value)
        return call.value

    async def unary(
        self,
        target: Target,
        payload: bytes,
        headers: Mapping[str, str] | None,
        timeout: float | None,
    ) -> bytes:
        # The hot path: no Exchange object, no task, no cancel scope; one waiter per call.
        stats = self.stats
        size = len(payload)
        if timeout is None:
            deadline = None
        else:
            timers = self._timers or self._ensure_timers()
            deadline = timers.clock() + timeout
        conn = self._conns.get(target.key)
        if conn is None:
            conn = await self._dialler.connect(target, deadline)
        call = UnaryState(conn.new_waiter())
        rid = conn.add(call)
        try:
            if deadline is None:
                conn.fc.send2(
                    encode_request_head(rid, target.endpoint, headers, None, size), payload
                )
                stats.bytes_sent += size
                if conn.fc.congested:
                    await conn.fc.wait_drained()
                await call.waiter.wait()
            else:
                remaining = deadline - timers.clock()
                if remaining <= 0:
                    raise DeadlineExceeded(
                        f"the deadline for {target.peer} passed before the request was sent"
                    )
                conn.fc.send2(
                    encode_request_head(rid, target.endpoint, headers, remaining, size), payload
                )
                stats.bytes_sent += size
                if conn.fc.congested:
                    with anyio.CancelScope(deadline=deadline) as scope:
                        await conn.fc.wait_drained()
                    if scope.cancelled_caught:
                        raise DeadlineExceeded(
                            f"no answer from {target.peer} within the {timeout}s timeout"
                        )
                call.expiry = (conn, rid, target.peer, timeout)
                timer = timers.call_at(deadline, call.expire)
                try:
                    await call.waiter.wait()
                finally:
                    timer.cancel()
        finally:
            if not call.done:
                conn.cancel(rid)  # cancelled, or never sent
        if call.error is not None:
            raise call.error()
        stats.bytes_received += len(call.value)
        return call.value

    async def open_exchange(
        self,
        target: Target,
        payload: bytes,
        headers: Mapping[str, str],
        deadline: float | None,
        timeout: float | None,
    ) -> StreamExchange:
        timers = None if deadline is None else self._ensure_timers()
        conn = self._conns.get(target.key)
        if conn is None:
            conn = await self._dialler.connect(target, deadline)
        state = StreamState(conn.new_waiter)
        remaining = None
        if timers is not None and deadline is not None:
            remaining = deadline - timers.clock()
            if remaining <= 0:
                raise DeadlineExceeded(
                    f"the deadline for {target.peer} passed before the request was sent"
                )
        rid = conn.add(state)
        try:
            conn.fc.send2(
                encode_request_head(rid, target.endpoint, headers, remaining, len(payload)),
                payload,
            )
        except BaseException:
            conn.calls.pop(rid, None)
            raise
        if timers is not None and deadline is not None:
            # One timer for the whole stream instead of a cancel scope around every wait.
            state.expiry = (conn, rid, target.peer, timeout)
            state.timer = timers.call_at(deadline, state.expire)
        exchange = StreamExchange(conn, rid, state)
        if conn.fc.congested:
            # Throttle a caller that queues faster than the connection drains.
            try:
                await conn.fc.wait_drained()
            except BaseException:
                exchange.abandon()
                raise
        return exchange

    async def close_transport(self) -> None:
        if self._timers is not None:
            self._timers.close()
        await self._dialler.aclose()
