"""Deliberately broken copies of the uds example, one mistake each, for the conformance kit
to catch (tests/test_conformance_kit.py runs the kit against them).

Each is a plugin object (an entry point may name a module's attribute) providing one
transport named after its mistake; all speak ``uds://`` addresses like the original.
"""

from __future__ import annotations

from typing import Any

import anyio
from anyio.abc import SocketListener, TaskStatus
from requestplane_uds.client import UdsClient
from requestplane_uds.server import UdsServer
from requestplane_uds.settings import UdsSettings

from requestplane_core import ClientStats, TransportSpec, hookimpl


class HangingCloseServer(UdsServer):
    """Waits for its serving task to end without ever stopping it."""

    async def aclose(self) -> None:
        await self._stopped.wait()


class CrashingServer(UdsServer):
    """Its accept loop has a bug that raises once a client connects."""

    async def _serve(
        self, listener: SocketListener, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        try:
            async with listener:
                await (await listener.accept()).aclose()
                raise RuntimeError("bug in the accept loop")
        finally:
            self._stopped.set()


class _StuckGauge(ClientStats):
    """Whatever the client writes, the gauge stays at 0."""

    @property  # type: ignore[override]
    def open_connections(self) -> int:
        return 0

    @open_connections.setter
    def open_connections(self, value: int) -> None:
        pass


class NoGaugeClient(UdsClient):
    def __init__(self, settings: UdsSettings) -> None:
        super().__init__(settings)
        self.stats = _StuckGauge()


class NoSizeCheckClient(UdsClient):
    """Sends whatever it is given and relies on the server to refuse what is too large."""

    def check_size(self, payload: bytes) -> None:
        pass


class IgnoresRequestTimeoutClient(UdsClient):
    """Only the timeout passed to a call counts; the request_timeout setting is ignored."""

    def __init__(self, settings: UdsSettings) -> None:
        super().__init__(settings)
        self.request_timeout = None


def _plugin(name: str, server: Any = UdsServer, client: Any = UdsClient, **spec: Any) -> type:
    class Plugin:
        @staticmethod
        @hookimpl
        def requestplane_transports() -> list[TransportSpec[UdsSettings]]:
            return [
                TransportSpec(
                    name=name,
                    description=f"uds, broken: {name}",
                    settings=UdsSettings,
                    server=server,
                    client=client,
                    **{"schemes": ("uds",), **spec},
                )
            ]

    return Plugin


HANGINGCLOSE = _plugin("hangingclose", server=HangingCloseServer)
CRASHING = _plugin("crashing", server=CrashingServer)
NOGAUGE = _plugin("nogauge", client=NoGaugeClient)
NOSIZECHECK = _plugin("nosizecheck", client=NoSizeCheckClient)
IGNORESTIMEOUT = _plugin("ignorestimeout", client=IgnoresRequestTimeoutClient)
# Declares no scheme of its own, so its addresses (uds://) are not of a scheme it declares.
WRONGSCHEME = _plugin("wrongscheme", schemes=())
