"""The nats plugin's ``requestplane_embedded_broker`` hook: a real nats-server for a run,
found through the plugin registry as any tool would find it."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import pytest
from requestplane_nats import NatsServerProcess

from requestplane_core import Request, RequestPlane, installed_transports

pytestmark = pytest.mark.anyio

BOUND = 30.0  # only turns a hang into a failure on a loaded machine
URL_VAR = "REQUESTPLANE_NATS_URL"


def _offers(transport: str, environ: Mapping[str, str]) -> list[Any]:
    registry = installed_transports({})
    hook = registry.manager.hook.requestplane_embedded_broker
    return list(hook(transport=transport, environ=environ))


def _echo(request: Request) -> bytes:
    return request.payload


async def _speaks_nats(url: str) -> bool:
    host, port = url.removeprefix("nats://").rsplit(":", 1)
    try:
        stream = await anyio.connect_tcp(host, int(port))
    except OSError:
        return False
    async with stream:
        return (await stream.receive(5))[:5] == b"INFO "


async def test_the_broker_runs_for_the_length_of_the_block() -> None:
    (broker,) = _offers("nats", {})
    assert isinstance(broker, AbstractAsyncContextManager)
    with anyio.fail_after(BOUND):
        async with broker as env:
            assert set(env) == {URL_VAR}
            assert await _speaks_nats(env[URL_VAR])
            # What the broker yields is all a server and a client of the transport need.
            environ = {**env, "REQUESTPLANE_DISCOVERY": "none"}
            async with RequestPlane("nats", environ=environ) as plane:
                server = await plane.server()
                address = await server.register("echo", _echo)
                assert await plane.client().request(address, b"hi") == b"hi"
        assert not await _speaks_nats(env[URL_VAR])


async def test_no_broker_is_offered_when_a_url_is_set_or_for_another_transport() -> None:
    with NatsServerProcess() as running:
        assert _offers("nats", {URL_VAR: running.url}) == []
    assert _offers("tcp", {}) == []
