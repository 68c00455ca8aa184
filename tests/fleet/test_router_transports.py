"""Routing works over every transport through its public client alone, and the observing
hooks see which instance a router chose."""

from __future__ import annotations

import collections
from pathlib import Path

import anyio
import pytest
from fleet_test_helpers import BOUND, fleet

from requestplane_core import RequestPlane, hookimpl, load_plugins
from requestplane_core.plugin_api import RequestEvent

pytestmark = pytest.mark.anyio


async def test_round_robin_and_streams_on_every_transport(
    anyio_backend: str, tmp_path: Path, transport_env: dict[str, str]
) -> None:
    async with fleet(tmp_path, transport_env) as workers:
        started = [await workers.start() for _ in range(2)]
        async with workers.plane() as plane:
            router = plane.router("fleet/whoami")
            await router.wait_for(2, BOUND)
            mode = transport_env["REQUESTPLANE_MODE"]
            assert {i.transport for i in router.instances} == {mode}
            with anyio.fail_after(BOUND):
                answers = collections.Counter(
                    [(await router.request(b"")).decode() for _ in range(10)]
                )
                assert answers == {w.instance: 5 for w in started}, answers
                count = plane.router("fleet/count", route="p2c")
                async with count.stream(b"3") as chunks:
                    assert [c async for c in chunks] == [b"0\n", b"1\n", b"2\n"]


class Chosen:
    """An observing plugin, registered in-process, that keeps the client-side events."""

    def __init__(self) -> None:
        self.events: list[RequestEvent] = []

    @hookimpl
    def requestplane_request_finished(self, event: RequestEvent) -> None:
        if event.side == "client":
            self.events.append(event)


async def test_observing_hooks_see_the_chosen_instance(anyio_backend: str, tmp_path: Path) -> None:
    chosen = Chosen()
    registry = load_plugins(only="tcp")
    registry.register_module(chosen, "chosen", None, None)
    async with fleet(tmp_path) as workers:
        for _ in range(2):
            await workers.start()
        environ = {"REQUESTPLANE_DISCOVERY_FILE_DIR": str(tmp_path)}
        async with RequestPlane("tcp", environ=environ, plugins=registry) as plane:
            router = plane.router("fleet/whoami")
            await router.wait_for(2, BOUND)
            with anyio.fail_after(BOUND):
                answers = [(await router.request(b"")).decode() for _ in range(4)]
    assert [e.instance for e in chosen.events] == answers
    assert all(e.outcome == "ok" and e.endpoint == "fleet/whoami" for e in chosen.events)
