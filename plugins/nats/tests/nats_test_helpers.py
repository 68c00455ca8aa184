"""Shared helpers of the NATS transport's tests (a unique module name: tests dirs have no
__init__.py, so every test directory of the repo shares one import namespace)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import nats
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from requestplane_nats import NatsSettings
from requestplane_nats.plugin import requestplane_transports

from requestplane_core import Address, Request, Server, TransportClient, load_settings, serve

SPEC = requestplane_transports()[0]


def make_settings(**overrides: Any) -> NatsSettings:
    return load_settings(NatsSettings, prefix="REQUESTPLANE_NATS_", environ={}, overrides=overrides)


@asynccontextmanager
async def nats_server_of(settings: Mapping[str, Any]) -> AsyncIterator[Server]:
    async with serve(SPEC, make_settings(**settings), drain_timeout=5.0) as server:
        yield server


@asynccontextmanager
async def nats_client_of(settings: Mapping[str, Any]) -> AsyncIterator[TransportClient]:
    async with SPEC.client(make_settings(**settings)) as client:
        yield client


async def echo(request: Request) -> bytes:
    return request.payload


class RawResponder:
    def __init__(self) -> None:
        self.cancels: list[bytes] = []
        self.cancelled = threading.Event()


@contextmanager
def raw_responder(
    url: str, subject: str, behave: Callable[[Any, Any], Awaitable[None]]
) -> Iterator[RawResponder]:
    """A plain nats-py responder on ``subject`` in a thread of its own (its own asyncio loop),
    playing a faulty or foreign server; ``behave(nc, msg)`` answers each request. It records
    the cancels it receives on the subject's cancel subject."""
    ready = threading.Event()
    responder = RawResponder()
    state: dict[str, Any] = {}

    async def main() -> None:
        nc = await nats.connect(url)
        stop = state["stop"] = asyncio.Event()
        state["loop"] = asyncio.get_running_loop()

        async def on_request(msg: Any) -> None:
            await behave(nc, msg)

        async def on_cancel(msg: Any) -> None:
            responder.cancels.append(msg.data)
            responder.cancelled.set()

        await nc.subscribe(subject, cb=on_request)
        await nc.subscribe(subject + "._cancel", cb=on_cancel)
        await nc.flush()
        ready.set()
        await stop.wait()
        await nc.close()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the raw responder did not start")
    try:
        yield responder
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(10)


def address_of(url: str, subject: str) -> str:
    return f"nats://{url.split('://', 1)[1]}/{subject}"


WORKER_SCRIPT = Path(__file__).with_name("nats_worker_process.py")


class WorkerProcess:
    """``nats_worker_process.py`` in a child process (see :func:`worker_process`)."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self.addresses: dict[str, Address] = {}
        assert process.stdout is not None
        self._stdout = BufferedByteReceiveStream(process.stdout)

    async def line(self) -> str:
        return (await self._stdout.receive_until(b"\n", 1 << 16)).decode()

    async def wait_started(self, count: int) -> None:
        """Until ``count`` handlers have said they started."""
        for _ in range(count):
            line = await self.line()
            assert line.startswith("started "), line

    def kill(self) -> None:
        """SIGKILL: the worker dies as a crash would, without a word to anyone."""
        self.process.send_signal(signal.SIGKILL)


@asynccontextmanager
async def worker_process(backend: str, settings: Mapping[str, Any]) -> AsyncIterator[WorkerProcess]:
    process = await anyio.open_process(
        [sys.executable, str(WORKER_SCRIPT), backend, json.dumps(dict(settings))], stderr=None
    )
    try:
        worker = WorkerProcess(process)
        with anyio.fail_after(30):
            line = await worker.line()
        assert line.startswith("serving "), line
        pairs = (word.split("=", 1) for word in line.split()[1:])
        worker.addresses = {name: Address.parse(address) for name, address in pairs}
        yield worker
    finally:
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.wait()
            await process.aclose()
