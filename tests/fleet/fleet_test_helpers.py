"""Real worker processes for the routing tests, started and killed for real."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import attrs
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from requestplane_core import RequestPlane

WORKER = Path(__file__).with_name("fleet_worker.py")
#: Seconds that turn a hang into a failure on a loaded 2-core machine; never a timing test.
BOUND = 20.0


@attrs.define(eq=False)
class Worker:
    process: Process
    instance: str

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    async def wait(self) -> int:
        with anyio.fail_after(BOUND):
            return await self.process.wait()


class Fleet:
    """Worker processes publishing into one file-discovery directory."""

    def __init__(self, directory: Path, transport: Mapping[str, str] | None = None) -> None:
        self.directory = directory
        #: REQUESTPLANE_MODE and the transport's own variables, for workers and caller alike.
        self.transport = dict(transport or {"REQUESTPLANE_MODE": "tcp"})
        self.workers: list[Worker] = []

    def _discovery_env(self) -> dict[str, str]:
        return {
            **self.transport,
            "REQUESTPLANE_DISCOVERY": "file",
            "REQUESTPLANE_DISCOVERY_FILE_DIR": str(self.directory),
            "REQUESTPLANE_DISCOVERY_FILE_TTL": "2",
        }

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {**os.environ, **self._discovery_env(), **(extra or {})}

    async def start(self, backend: str = "asyncio", **env: str) -> Worker:
        process = await anyio.open_process(
            [sys.executable, str(WORKER), backend], env=self.env(env), stderr=None
        )
        assert process.stdout is not None
        with anyio.fail_after(BOUND):
            line = await BufferedByteReceiveStream(process.stdout).receive_until(b"\n", 4096)
        worker = Worker(process, json.loads(line)["instance"])
        self.workers.append(worker)
        return worker

    def plane(self, **kwargs: object) -> RequestPlane:
        """A caller's manager on the same transport and discovery directory (ignores the
        test process's environment)."""
        return RequestPlane(environ=self._discovery_env(), **kwargs)  # type: ignore[arg-type]

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            for worker in self.workers:
                if worker.process.returncode is None:
                    worker.kill()
                await worker.process.wait()
                await worker.process.aclose()


@asynccontextmanager
async def fleet(
    directory: Path, transport: Mapping[str, str] | None = None
) -> AsyncIterator[Fleet]:
    running = Fleet(directory, transport)
    try:
        yield running
    finally:
        await running.aclose()


async def until(predicate: Callable[[], bool], what: str) -> None:
    """Wait, bounded, for a condition no event announces: calls in flight in another
    process, or outcomes of tasks this test does not own. Polls the router's own counters;
    fails naming ``what`` after BOUND seconds."""
    with anyio.fail_after(BOUND, reason=f"still waiting for {what}"):
        while not predicate():  # noqa: ASYNC110 (no event exists for this condition)
            await anyio.sleep(0.01)
