"""Heartbeats and the client's watchdog: a call whose server died ends with ConnectionLost
once its heartbeats stop and NATS has nobody answering for that server; a server that is
alive but silent is left alone; heartbeats never show as data."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import anyio
import pytest
from nats_test_helpers import (
    address_of,
    make_settings,
    nats_client_of,
    nats_server_of,
    raw_responder,
    worker_process,
)
from requestplane_nats import wire
from requestplane_nats.nats_link import Msg, NatsLink

from requestplane_core import ConnectionLost, Request

pytestmark = pytest.mark.anyio

BOUND = 15.0  # only turns a hang into a failure on a loaded machine
FAST = {"heartbeat_interval": 0.05}


async def test_a_long_request_gets_heartbeats_naming_a_subject_its_server_answers(
    nats_url: str,
) -> None:
    release = anyio.Event()

    async def slow(request: Request) -> bytes:
        await release.wait()
        return b"done:" + request.payload

    async def ticks(request: Request) -> Any:
        yield b"before"
        await release.wait()
        yield b"after"

    settings = {"url": nats_url, **FAST}
    observer = await NatsLink.open(make_settings(**settings), [nats_url], name="observer")
    try:
        async with nats_client_of(settings) as client:
            async with nats_server_of(settings) as server:
                slow_at = await server.register("slow", slow)
                ticks_at = await server.register("ticks", ticks)
                seen: list[Msg] = []
                heartbeat, answered = anyio.Event(), anyio.Event()

                def on_msg(msg: Msg) -> None:
                    seen.append(msg)
                    if msg.headers and wire.ALIVE in msg.headers:
                        heartbeat.set()
                    else:
                        answered.set()

                reply = f"observer.{uuid.uuid4().hex}"
                await observer.subscribe(reply, on_msg)
                await observer.flush(BOUND)
                results: dict[str, object] = {}
                with anyio.fail_after(BOUND):
                    async with anyio.create_task_group() as tg:

                        async def call() -> None:
                            results["unary"] = await client.request(slow_at, b"x", timeout=BOUND)

                        async def stream() -> None:
                            results["stream"] = [c async for c in client.stream(ticks_at, b"")]

                        tg.start_soon(call)
                        tg.start_soon(stream)
                        # The client's calls were sent first: by the time this one has a
                        # heartbeat, they have had theirs.
                        await observer.publish(slow_at.path, b"o", reply)
                        await heartbeat.wait()
                        liveness = seen[0].headers[wire.ALIVE]  # type: ignore[index]
                        assert await observer.probe(liveness, BOUND) is True
                        release.set()
                    await answered.wait()
            # heartbeats, then the one answer; and the client saw nothing but its data
            *beats, last = seen
            assert beats and all(wire.ALIVE in (m.headers or {}) for m in beats)
            assert last.data == b"done:o"
            assert results == {"unary": b"done:x", "stream": [b"before", b"after"]}
            assert client.stats.errors == 0
        # the server is closed: NATS has nobody answering for it any more
        with anyio.fail_after(BOUND):
            assert await observer.probe(liveness, BOUND) is False
    finally:
        await observer.aclose()


def _heartbeat_then(liveness: str, after: Any = None) -> Any:
    """A raw server that sends one heartbeat naming ``liveness`` and then ``after(nc, msg)``
    (by default: nothing more, ever)."""

    async def behave(nc: Any, msg: Any) -> None:
        await nc.publish(msg.reply, b"", headers={wire.ALIVE: liveness})
        if after is not None:
            await after(nc, msg)

    return behave


async def test_a_call_whose_server_is_gone_fails_with_connection_lost(nats_url: str) -> None:
    subject = f"gone.{uuid.uuid4().hex}"
    nobody = f"alive.{uuid.uuid4().hex}"  # a liveness subject no one answers: a dead server
    with raw_responder(nats_url, subject, _heartbeat_then(nobody)):
        async with nats_client_of({"url": nats_url, **FAST}) as client:
            address = address_of(nats_url, subject)
            with anyio.fail_after(BOUND):  # the calls' own deadline is far beyond it
                with pytest.raises(ConnectionLost, match="is gone"):
                    await client.request(address, b"", timeout=60.0)
                with pytest.raises(ConnectionLost, match="is gone"):
                    async for _chunk in client.stream(address, b"", timeout=60.0):
                        pass


async def test_a_silent_server_that_still_answers_for_itself_is_left_alone(
    nats_url: str,
) -> None:
    subject = f"quiet.{uuid.uuid4().hex}"
    liveness = f"alive.{uuid.uuid4().hex}"
    probed = threading.Event()

    async def answer_probes_then_reply(nc: Any, msg: Any) -> None:
        async def on_probe(probe: Any) -> None:
            probed.set()
            await nc.publish(probe.reply, b"")

        await nc.subscribe(liveness, cb=on_probe)
        await nc.flush()
        # Silent (no heartbeat, no answer) until the client's watchdog has asked about us.
        await asyncio.get_running_loop().run_in_executor(None, probed.wait, BOUND)
        await nc.publish(msg.reply, b"finally")

    behave = _heartbeat_then(liveness, answer_probes_then_reply)
    with raw_responder(nats_url, subject, behave):
        async with nats_client_of({"url": nats_url, **FAST}) as client:
            with anyio.fail_after(BOUND):
                answer = await client.request(address_of(nats_url, subject), b"", timeout=60.0)
    assert probed.is_set()
    assert answer == b"finally"


async def test_a_worker_killed_before_its_first_heartbeat_fails_its_calls(
    nats_url: str, anyio_backend: str
) -> None:
    """The worker never gets to send a heartbeat (its interval is a minute): its callers
    still learn within a few of their own intervals that it is gone, not at the deadline."""
    async with worker_process(anyio_backend, {"url": nats_url, "heartbeat_interval": 60.0}) as w:
        async with nats_client_of({"url": nats_url, **FAST}) as client:
            outcomes: list[BaseException] = []

            async def unary() -> None:
                try:
                    await client.request(w.addresses["block"], b"", timeout=60.0)
                except ConnectionLost as exc:
                    outcomes.append(exc)

            async def stream() -> None:
                try:
                    async for _chunk in client.stream(w.addresses["endless"], b"", timeout=60.0):
                        pass
                except ConnectionLost as exc:
                    outcomes.append(exc)

            with anyio.fail_after(BOUND):  # the calls' own deadline is far beyond it
                async with anyio.create_task_group() as tg:
                    tg.start_soon(unary)
                    tg.start_soon(stream)
                    await w.wait_started(2)
                    w.kill()
            assert len(outcomes) == 2
