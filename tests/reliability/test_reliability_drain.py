"""Scenario 4: admission control and draining, with a crowd of requests in flight.

* ``max_inflight``: requests beyond the cap are shed at once with ``Overloaded`` (retriable)
  while the admitted ones are still running, never queued; the admitted ones then finish.
* Graceful shutdown and unregister: in-flight requests (unary and streams) that finish
  within the drain timeout get their answers, new requests get ``Unavailable``, and the
  stragglers still running at the timeout are cancelled and their callers get a typed error.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import pytest
from reliability_helpers import BOUND, Countdown, Tally, plane, settle

from requestplane_core import (
    Address,
    Overloaded,
    Request,
    TransportClient,
    Unavailable,
)

pytestmark = pytest.mark.anyio

#: Seconds of drain: the finishers are released at its start, the stragglers outlast it.
DRAIN = 1.0


class Held:
    """Handlers that run until released (finishers) or forever (stragglers)."""

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.started = Countdown(0)
        self.running = 0
        self.cancelled = 0

    def expect(self, n: int) -> None:
        self.started = Countdown(n)

    def _enter(self) -> None:
        self.running += 1
        self.started.arrive()

    def _exit(self, exc: BaseException | None) -> None:
        self.running -= 1
        if isinstance(exc, (anyio.get_cancelled_exc_class(), GeneratorExit)):
            self.cancelled += 1

    async def echo(self, request: Request) -> bytes:
        return request.payload

    async def finisher(self, request: Request) -> bytes:
        self._enter()
        try:
            await self.release.wait()
        except BaseException as exc:
            self._exit(exc)
            raise
        self._exit(None)
        return b"finished " + request.payload

    async def finisher_stream(self, request: Request) -> AsyncIterator[bytes]:
        self._enter()
        try:
            yield b"begun"
            await self.release.wait()
            yield b"finished"
        except BaseException as exc:
            self._exit(exc)
            raise
        self._exit(None)

    async def straggler(self, request: Request) -> bytes:
        self._enter()
        try:
            await anyio.sleep_forever()
        except BaseException as exc:
            self._exit(exc)
            raise
        return b""

    async def straggler_stream(self, request: Request) -> AsyncIterator[bytes]:
        self._enter()
        try:
            yield b"begun"
            await anyio.sleep_forever()
        except BaseException as exc:
            self._exit(exc)
            raise


ENDPOINTS = ("echo", "finisher", "finisher_stream", "straggler", "straggler_stream")


async def _stream(client: TransportClient, address: Address, payload: bytes = b"") -> list[bytes]:
    async with client.stream(address, payload) as chunks:
        return [chunk async for chunk in chunks]


async def test_beyond_the_cap_requests_are_shed_at_once_with_overloaded(
    mode: str, settings: dict[str, object]
) -> None:
    cap, extra = 4, 40
    held = Held()
    admitted, shed = Tally(), Tally()
    async with plane(mode, settings, max_inflight=cap) as p:
        server = await p.server()
        a = {name: await server.register(name, getattr(held, name)) for name in ENDPOINTS}
        client = p.client()

        async def finisher(i: int) -> None:
            assert await client.request(a["finisher"], b"%d" % i) == b"finished %d" % i

        async def finisher_stream() -> None:
            assert await _stream(client, a["finisher_stream"]) == [b"begun", b"finished"]

        async def refused_unary(i: int) -> None:
            with pytest.raises(Overloaded) as info:
                await client.request(a["echo"], b"%d" % i)
            assert info.value.retriable

        async def refused_stream() -> None:
            with pytest.raises(Overloaded):
                await _stream(client, a["echo"], b"s")

        held.expect(cap)
        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:
                for i in range(cap // 2):
                    tg.start_soon(admitted.run, lambda i=i: finisher(i))
                    tg.start_soon(admitted.run, finisher_stream)
                await held.started.wait()
                assert server.health().inflight == cap
                # Shed at once: all of these end while the admitted ones still hold the cap.
                async with anyio.create_task_group() as burst:
                    for i in range(extra // 2):
                        burst.start_soon(shed.run, lambda i=i: refused_unary(i))
                        burst.start_soon(shed.run, refused_stream)
                assert admitted.total == 0
                held.release.set()

        admitted.assert_accounted(cap, {"ok"})
        shed.assert_accounted(extra, {"ok"})  # each case asserted its Overloaded itself
        await settle(lambda: server.health().inflight == 0, lambda: str(server.health()))
        with anyio.fail_after(BOUND):
            assert await client.request(a["echo"], b"after") == b"after"


async def _crowd(
    client: TransportClient,
    a: dict[str, Address],
    held: Held,
    tally: Tally,
    tg: anyio.abc.TaskGroup,
    finishers: int,
    stragglers: int,
    straggler_error: type[Exception],
) -> None:
    """Put finishers and stragglers (half of each streams) in flight, and wait until every
    handler runs."""

    async def finisher(i: int) -> None:
        assert await client.request(a["finisher"], b"%d" % i) == b"finished %d" % i

    async def finisher_stream() -> None:
        assert await _stream(client, a["finisher_stream"]) == [b"begun", b"finished"]

    async def straggler() -> None:
        with pytest.raises(straggler_error):
            await client.request(a["straggler"], b"")

    async def straggler_stream() -> None:
        seen: list[bytes] = []
        with pytest.raises(straggler_error):
            async with client.stream(a["straggler_stream"], b"") as chunks:
                async for chunk in chunks:
                    seen.append(chunk)
        assert seen == [b"begun"]

    def run(tag: str, fn: Callable[[], Awaitable[None]]) -> None:
        async def recorded() -> None:
            await fn()
            tally.add(tag)

        tg.start_soon(recorded)

    held.expect(finishers + stragglers)
    for i in range(finishers):
        run("finished", functools.partial(finisher, i) if i % 2 else finisher_stream)
    for i in range(stragglers):
        run("straggler", straggler if i % 2 else straggler_stream)
    await held.started.wait()


async def test_shutdown_finishes_inflight_refuses_new_and_cancels_stragglers(
    mode: str, settings: dict[str, object]
) -> None:
    finishers, stragglers, late = 4, 4, 6
    held = Held()
    tally = Tally()
    async with plane(mode, settings, drain_timeout=DRAIN) as p:
        server = await p.server()
        a = {name: await server.register(name, getattr(held, name)) for name in ENDPOINTS}
        client = p.client()
        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:
                await _crowd(client, a, held, tally, tg, finishers, stragglers, Unavailable)
                tg.start_soon(server.aclose)
                await settle(lambda: server.health().draining)
                held.release.set()

                async def refused(i: int) -> None:
                    with pytest.raises(Unavailable):
                        if i % 2:
                            await client.request(a["echo"], b"late")
                        else:
                            await _stream(client, a["echo"], b"late")
                    tally.add("refused")

                async with anyio.create_task_group() as burst:
                    for i in range(late):
                        burst.start_soon(refused, i)
            assert server.closed

    tally.assert_accounted(finishers + stragglers + late, {"finished", "straggler", "refused"})
    assert tally.counts == {"finished": finishers, "straggler": stragglers, "refused": late}
    assert held.cancelled == stragglers
    assert held.running == 0


async def test_unregister_cancels_stragglers_with_a_typed_error(
    mode: str, settings: dict[str, object]
) -> None:
    finishers, stragglers = 4, 4
    held = Held()
    tally = Tally()
    async with plane(mode, settings, drain_timeout=DRAIN) as p:
        server = await p.server()
        a = {name: await server.register(name, getattr(held, name)) for name in ENDPOINTS}
        client = p.client()
        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:
                await _crowd(client, a, held, tally, tg, finishers, stragglers, Unavailable)
                # Unregister every endpoint the crowd uses, at once; echo keeps serving.
                for name in ENDPOINTS[1:]:
                    tg.start_soon(server.unregister, name)
                await anyio.wait_all_tasks_blocked()
                held.release.set()
                # The stragglers hold their endpoint in its drain: a new request is refused.
                with pytest.raises(Unavailable):
                    await client.request(a["straggler"], b"late")
                assert await client.request(a["echo"], b"unaffected") == b"unaffected"
            assert server.endpoints == ["echo"]
            assert await client.request(a["echo"], b"after") == b"after"

    tally.assert_accounted(finishers + stragglers, {"finished", "straggler"})
    assert tally.counts == {"finished": finishers, "straggler": stragglers}
    assert held.cancelled == stragglers
    assert held.running == 0


async def test_requests_racing_an_unregister_end_typed_at_once(
    mode: str, settings: dict[str, object]
) -> None:
    """Requests sent while their endpoint is being unregistered are answered (served,
    ``Unavailable`` or ``EndpointNotFound``), never dropped to wait for their deadline.
    Bug B3 of /work/brief/bugs.md: NATS drops those its subscription had in flight."""
    rounds, calls, timeout = 5, 20, 2.0
    held = Held()
    tally = Tally()
    async with plane(mode, settings, drain_timeout=DRAIN) as p:
        server = await p.server()
        client = p.client()
        for i in range(rounds):
            name = f"racing-{i}"
            address = await server.register(name, held.echo)

            async def call(address: Address = address) -> None:
                await client.request(address, b"", timeout=timeout)

            with anyio.fail_after(BOUND):
                async with anyio.create_task_group() as tg:
                    for _ in range(calls // 2):
                        tg.start_soon(tally.run, call)
                    tg.start_soon(server.unregister, name)
                    for _ in range(calls // 2):
                        tg.start_soon(tally.run, call)
    tally.assert_accounted(rounds * calls, {"ok", "Unavailable", "EndpointNotFound"})
