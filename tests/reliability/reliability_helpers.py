"""Shared pieces of the cross-transport reliability scenarios (a unique module name: test
directories have no ``__init__.py``, so every test directory of the repo shares one import
namespace)."""

from __future__ import annotations

import collections
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from requestplane_core import Address, RequestPlane, RequestPlaneError

MODES = ("tcp", "http", "nats")
#: Seconds that only turn a hang into a failure on a loaded 2-core machine; never a timing
#: assertion.
BOUND = 15.0
WORKER_SCRIPT = Path(__file__).with_name("reliability_worker.py")


def plane(mode: str, settings: Mapping[str, object], **kwargs: Any) -> RequestPlane:
    """A manager for ``mode`` that ignores the test process's environment."""
    return RequestPlane(mode, settings=settings, environ={}, **kwargs)


# -- accounting ------------------------------------------------------------------------------


class Tally:
    """How every request ended: ``"ok"``, ``"cancelled"``, or the typed error's class name.

    Anything that is neither a response, a ``RequestPlaneError`` nor a cancellation the test
    asked for propagates and fails the test: it is a lost request.
    """

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self._changed = anyio.Event()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, outcome: str) -> None:
        self.counts[outcome] += 1
        self._changed.set()
        self._changed = anyio.Event()

    async def run(self, call: Callable[[], Awaitable[object]]) -> str:
        """Await ``call()`` and record its one outcome (a typed error is an outcome)."""
        try:
            await call()
        except RequestPlaneError as exc:
            outcome = type(exc).__name__
        else:
            outcome = "ok"
        self.add(outcome)
        return outcome

    async def wait_total(self, n: int) -> None:
        while self.total < n:
            await self._changed.wait()

    def assert_accounted(self, expected: int, allowed: Iterable[str]) -> None:
        allowed = set(allowed)
        assert self.total == expected, f"{expected - self.total} request(s) lost: {self.counts}"
        unexpected = {k: v for k, v in self.counts.items() if k not in allowed}
        assert not unexpected, f"outcomes outside {sorted(allowed)}: {unexpected}"


class Countdown:
    """An event that fires after ``n`` arrivals."""

    def __init__(self, n: int) -> None:
        self.left = n
        self.done = anyio.Event()
        if n <= 0:
            self.done.set()

    def arrive(self) -> None:
        self.left -= 1
        if self.left <= 0:
            self.done.set()

    async def wait(self) -> None:
        await self.done.wait()


async def settle(
    predicate: Callable[[], bool],
    describe: Callable[[], str] = lambda: "",
    bound: float = BOUND,
) -> None:
    """Let the event loop run until ``predicate()`` holds; if it does not within ``bound``,
    fail with ``describe()`` (the numbers that did not come back)."""
    with anyio.move_on_after(bound):
        while not predicate():
            await anyio.wait_all_tasks_blocked()
    assert predicate(), f"did not settle within {bound}s: {describe()}"


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def running_tasks() -> int:
    return len(anyio.get_running_tasks())


# -- a server in a child process ------------------------------------------------------------


def worker_env(mode: str, port: int, settings: Mapping[str, object]) -> dict[str, str]:
    """The environment of a worker: only its own REQUESTPLANE_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REQUESTPLANE_")}
    env["REQUESTPLANE_MODE"] = mode
    env["PYTHONUNBUFFERED"] = "1"
    prefix = f"REQUESTPLANE_{mode.upper()}_"
    if mode != "nats":
        env[prefix + "PORT"] = str(port)
    for name, value in settings.items():
        env[prefix + name.upper()] = str(value)
    return env


class Worker:
    """``reliability_worker.py`` in a child process: serves the scenario endpoints through
    ``RequestPlane()`` configured by the environment only, as a deployed worker is.

    The first start binds port 0 (tcp, http); :meth:`restart` binds the same port again.
    """

    def __init__(self, mode: str, backend: str, settings: Mapping[str, object]) -> None:
        self.mode = mode
        self.backend = backend
        self.settings = dict(settings)
        self.port = 0
        self.addresses: dict[str, Address] = {}
        self.started: collections.Counter[str] = collections.Counter()
        self._process: Process | None = None
        self._stdout: BufferedByteReceiveStream | None = None
        self._changed = anyio.Event()

    async def start(self) -> dict[str, Address]:
        env = worker_env(self.mode, self.port, self.settings)
        self._process = await anyio.open_process(
            [sys.executable, str(WORKER_SCRIPT), self.backend], env=env, stderr=None
        )
        assert self._process.stdout is not None
        self._stdout = BufferedByteReceiveStream(self._process.stdout)
        self.started.clear()
        with anyio.fail_after(BOUND * 2):
            line = await self._line()
        assert line.startswith("serving "), line
        pairs = (word.split("=", 1) for word in line.split()[1:])
        self.addresses = {name: Address.parse(url) for name, url in pairs}
        if self.mode != "nats":
            port = self.addresses["echo"].port
            assert port is not None
            self.port = port
        return self.addresses

    async def _line(self) -> str:
        assert self._stdout is not None
        return (await self._stdout.receive_until(b"\n", 1 << 16)).decode()

    async def wait_started(self, **counts: int) -> None:
        """Read the worker's ``started <endpoint>`` lines until each count is reached."""
        while any(self.started[name] < n for name, n in counts.items()):
            line = await self._line()
            verb, _, name = line.partition(" ")
            assert verb == "started", line
            self.started[name] += 1

    def kill(self) -> None:
        """SIGKILL: the worker dies as a crash would, without a word to anyone."""
        assert self._process is not None
        self._process.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.wait()
            await process.aclose()

    async def restart(self) -> dict[str, Address]:
        await self.stop()
        return await self.start()


@asynccontextmanager
async def worker(mode: str, backend: str, settings: Mapping[str, object]) -> AsyncIterator[Worker]:
    w = Worker(mode, backend, settings)
    try:
        await w.start()
        yield w
    finally:
        await w.stop()
