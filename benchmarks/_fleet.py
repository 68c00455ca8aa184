"""A fleet of echo workers for ``router.py``: the worker process, and the parent's handle on
the workers it starts, kills and restarts.

A worker is a ``requestplane`` tcp server in a process of its own that registers ``echo``
(optionally slowed by ``--delay`` seconds per call) and ``whoami`` (its instance id) as one
instance in the file-discovery directory of its environment, announces
``{"event": "ready", ...}`` and serves until SIGTERM (withdraw, drain, exit: a rolling
restart) or until its standard input closes; SIGKILL is the crash.

    python benchmarks/_fleet.py --backend asyncio|trio [--delay SECONDS]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import anyio
import attrs
from anyio.abc import TaskGroup, TaskStatus
from requestplane_bench.emit import emit
from requestplane_bench.processes import Child, open_child

from requestplane_core import RequestPlane
from requestplane_core.request import Request
from requestplane_core.router import Router

STARTUP_TIMEOUT = 30.0
LISTED_TIMEOUT = 15.0


# -- the worker process -------------------------------------------------------------------


def _stop_at_eof() -> None:
    # The parent closed our standard input (or died): stop as on SIGTERM. A daemon thread, not
    # anyio's worker threads, which asyncio joins at exit: blocked in read(), it would hold the
    # process up until the parent closes the pipe. os.read, not sys.stdin: a daemon thread
    # holding the buffered reader's lock aborts the interpreter's shutdown.
    while os.read(0, 4096):
        pass
    os.kill(os.getpid(), signal.SIGTERM)


async def _serve(delay: float) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM) as signals:
        async with RequestPlane("tcp") as plane:
            server = await plane.server()
            instance = (server.instance_id or "").encode()

            async def echo(request: Request) -> bytes:
                if delay:
                    await anyio.sleep(delay)
                return request.payload

            def whoami(request: Request) -> bytes:
                return instance

            addresses = {
                "echo": str(await server.register("echo", echo)),
                "whoami": str(await server.register("whoami", whoami)),
            }
            emit("ready", instance=server.instance_id, addresses=addresses, pid=os.getpid())
            threading.Thread(target=_stop_at_eof, daemon=True).start()
            async for _ in signals:
                break  # leaving the manager withdraws the endpoints, then drains
    emit("stopped")


def worker_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds added to each echo")
    args = parser.parse_args(argv)
    anyio.run(_serve, args.delay, backend=args.backend)


# -- the parent's side --------------------------------------------------------------------


@attrs.define(eq=False)
class Worker:
    child: Child
    instance: str
    pid: int
    echo: str  # the address of its echo endpoint

    def kill(self) -> None:
        self.child.process.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.child.process.send_signal(signal.SIGTERM)

    async def wait(self, timeout: float = 30.0) -> int | None:
        with anyio.move_on_after(timeout):
            await self.child.process.wait()
        return self.child.process.returncode


class Fleet:
    """Workers sharing one discovery directory. Each runs in a task of the fleet's own (so
    any task may start one); closing the fleet stops those still running."""

    def __init__(self, task_group: TaskGroup, env: Mapping[str, str], backend: str) -> None:
        self._tg = task_group
        self._env = dict(env)
        self._backend = backend
        self.workers: list[Worker] = []

    async def start(self, delay: float = 0.0) -> Worker:
        worker: Worker = await self._tg.start(self._run, delay)
        self.workers.append(worker)
        return worker

    async def _run(self, delay: float, *, task_status: TaskStatus[Worker]) -> None:
        argv = [sys.executable, __file__, "--backend", self._backend, "--delay", str(delay)]
        async with open_child(argv, self._env) as child:
            event = await child.next_event(STARTUP_TIMEOUT)
            if event is None or event.get("event") != "ready":
                raise RuntimeError(await child.why("a worker did not start"))
            echo = event["addresses"]["echo"]
            task_status.started(Worker(child, str(event["instance"]), int(event["pid"]), echo))
            await child.process.wait()


@asynccontextmanager
async def fleet(env: Mapping[str, str], backend: str) -> AsyncIterator[Fleet]:
    async with anyio.create_task_group() as tg:
        yield Fleet(tg, env, backend)
        tg.cancel_scope.cancel()  # open_child then stops each worker (shielded)


async def listed(router: Router, instances: set[str], timeout: float = LISTED_TIMEOUT) -> float:
    """Wait until the router's table holds exactly ``instances``; the seconds it took."""
    start = anyio.current_time()
    # The router announces no change of its table: look at it every few milliseconds.
    for _ in range(int(timeout / 0.005)):
        if {i.instance_id for i in router.instances} == instances:
            return anyio.current_time() - start
        await anyio.sleep(0.005)
    raise TimeoutError(f"the router lists {router.instances}, not {sorted(instances)}")


if __name__ == "__main__":
    worker_main(sys.argv[1:])
