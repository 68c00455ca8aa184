"""A server process killed mid-request: calls in flight fail with ConnectionLost, none hangs;
the same client reaches the server once it is back on the same port."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
import sniffio
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream
from http_test_helpers import BOUND, http_settings
from requestplane_http.client import HttpClient

from requestplane_core import ConnectionLost

pytestmark = pytest.mark.anyio

SCRIPT = Path(__file__).with_name("http_server_process.py")


class _Lines:
    def __init__(self, process: Process) -> None:
        assert process.stdout is not None
        self._text = TextReceiveStream(process.stdout)
        self._buffer = ""

    async def readline(self) -> str:
        while "\n" not in self._buffer:
            self._buffer += await self._text.receive()
        line, self._buffer = self._buffer.split("\n", 1)
        return line


@asynccontextmanager
async def server_process(port: int) -> AsyncIterator[tuple[Process, _Lines, dict[str, str]]]:
    backend = sniffio.current_async_library()
    process = await anyio.open_process(
        [sys.executable, str(SCRIPT), str(port), backend], stdin=-1, stdout=-1
    )
    try:
        lines = _Lines(process)
        with anyio.fail_after(BOUND):
            addresses = json.loads(await lines.readline())
        yield process, lines, addresses
    finally:
        if process.returncode is None:
            process.kill()
        with anyio.CancelScope(shield=True):
            await process.wait()
            await process.aclose()


async def test_killed_server_fails_inflight_calls_then_reconnects() -> None:
    async with HttpClient(http_settings()) as client:
        async with server_process(0) as (process, lines, addresses):
            port = int(addresses["echo"].rsplit(":", 1)[1].split("/", 1)[0])
            assert await client.request(addresses["echo"], b"before") == b"before"
            failures: list[BaseException] = []

            async def call() -> None:
                try:
                    await client.request(addresses["block"], b"x")
                except ConnectionLost as exc:
                    failures.append(exc)

            async def consume() -> None:
                try:
                    async for _ in client.stream(addresses["endless"], b""):
                        pass
                except ConnectionLost as exc:
                    failures.append(exc)

            with anyio.fail_after(BOUND):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(call)
                    assert await lines.readline() == "started"
                    tg.start_soon(consume)
                    assert await lines.readline() == "started"
                    process.send_signal(signal.SIGKILL)
            assert len(failures) == 2

        async with server_process(port) as (_, _, addresses):
            with anyio.fail_after(BOUND):
                assert await client.request(addresses["echo"], b"after") == b"after"
        assert client.stats.errors == 2
