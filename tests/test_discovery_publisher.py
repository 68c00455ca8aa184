"""What a server does with discovery when the backend fails under it: a record that cannot
be withdrawn must not keep the server from draining and closing (it expires on its own)."""

from __future__ import annotations

import logging
import types
from pathlib import Path

import anyio
import pytest

from requestplane_core import Request, RequestPlane
from requestplane_core.discovery import DiscoveryBackend, DiscoverySpec, Instance
from requestplane_core.discovery_backends.file_backend import (
    FileDiscovery,
    FileDiscoverySettings,
)
from requestplane_core.hookspecs import hookimpl
from requestplane_core.plugins import PluginRegistry, load_plugins

pytestmark = pytest.mark.anyio

BOUND = 15.0


class _BrokenWithdraw(FileDiscovery):
    """The file backend, whose withdrawals fail as a lost store's would, unexpectedly."""

    async def unregister(self, instance: Instance) -> None:
        raise OSError(5, "the store went away")

    async def aclose(self) -> None:
        await super().aclose()
        raise RuntimeError("closing failed too")


def _registry() -> PluginRegistry:
    def backend(settings: FileDiscoverySettings) -> DiscoveryBackend:
        return _BrokenWithdraw(settings)

    @hookimpl
    def requestplane_discovery_backends() -> list[DiscoverySpec[FileDiscoverySettings]]:
        return [DiscoverySpec("broken", "fails to withdraw", FileDiscoverySettings, backend)]

    registry = load_plugins(only="tcp")
    module = types.SimpleNamespace(requestplane_discovery_backends=requestplane_discovery_backends)
    registry.register_module(module, "broken-discovery", None, None)
    return registry


@pytest.mark.parametrize("how", ["unregister", "aclose"])
async def test_a_failed_withdrawal_does_not_stop_the_drain(
    how: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, anyio_backend: str
) -> None:
    started, release, answered = anyio.Event(), anyio.Event(), anyio.Event()
    replies: list[bytes] = []

    async def slow(request: Request) -> bytes:
        started.set()
        await release.wait()
        return b"done"

    plane = RequestPlane(
        "tcp",
        settings={"port": 0},
        environ={},
        plugins=_registry(),
        discovery="broken",
        discovery_settings={"dir": tmp_path},
        drain_timeout=BOUND,
    )
    async with anyio.create_task_group() as tg:
        async with plane:
            server = await plane.server()
            address = await server.register("kit/slow", slow)
            client = plane.client()

            async def call() -> None:
                replies.append(await client.request(address, b""))
                answered.set()

            tg.start_soon(call)
            with anyio.fail_after(BOUND):
                await started.wait()
            release.set()  # the drain would wait for it: withdrawing comes first
            with anyio.fail_after(BOUND):
                if how == "unregister":
                    await server.unregister("kit/slow")
                else:
                    await server.aclose()
                    assert server.closed
                await answered.wait()
    assert replies == [b"done"], f"the in-flight request did not complete: {replies}"
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("could not withdraw kit/slow" in m for m in warned), warned
