"""Discovery backends measured across processes: how fast a change reaches a watcher in
another process, and what keeping records alive and watching them costs.

The measuring process watches; a child process (this script, role ``child``) registers,
unregisters and idles on command, as a worker would. Both configure the backend from the
environment (``REQUESTPLANE_DISCOVERY`` and ``REQUESTPLANE_DISCOVERY_<NAME>_<SETTING>``).

    python benchmarks/discovery_file.py                        # the file backend
    python benchmarks/discovery_file.py --backend-name nats --setting url=nats://127.0.0.1:4222

Run it alone (``flock /tmp/requestplane-bench.lock ...``): the CPU figures are of whole
processes on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from requestplane_core import RequestPlane
from requestplane_core.config import discovery_env_prefix
from requestplane_core.discovery import Added, DiscoveryBackend, Instance, Removed, Watch

BOUND = 60.0
NAME = "bench/disc"
CROWD = "bench/crowd"


def _instance(name: str, instance_id: str) -> Instance:
    return Instance(name, instance_id, "tcp", f"tcp://127.0.0.1:1/{name}", registered_at=0.0)


# -- the child: a worker registering on command ----------------------------------------------


def child_main(library: str) -> None:
    async def main() -> None:
        async with RequestPlane() as plane:
            backend = plane.discovery()
            owned: dict[tuple[str, str], Instance] = {}
            while True:
                line = await anyio.to_thread.run_sync(sys.stdin.readline)
                if not line:
                    return
                verb, *args = line.split()
                if verb == "reg":
                    instance = _instance(args[0], args[1])
                    start = time.monotonic()
                    await backend.register(instance)
                    owned[instance.key] = instance
                    _say(start)
                elif verb == "unreg":
                    start = time.monotonic()
                    await backend.unregister(owned.pop((args[0], args[1])))
                    _say(start)
                elif verb == "bulk":
                    start = time.monotonic()
                    for i in range(int(args[1])):
                        instance = _instance(args[0], f"b{i}")
                        await backend.register(instance)
                        owned[instance.key] = instance
                    _say(time.monotonic() - start)
                elif verb == "cpu":  # this process's CPU seconds per second, idle otherwise
                    start, cpu = time.monotonic(), time.process_time()
                    await anyio.sleep(float(args[0]))
                    _say((time.process_time() - cpu) / (time.monotonic() - start))

    anyio.run(main, backend=library)


def _say(value: float) -> None:
    print(f"ok {value!r}", flush=True)


class Child:
    def __init__(self, process: Process) -> None:
        self.process = process
        assert process.stdout is not None and process.stdin is not None
        self._out = BufferedByteReceiveStream(process.stdout)

    async def ask(self, *words: object) -> float:
        assert self.process.stdin is not None
        await self.process.stdin.send((" ".join(map(str, words)) + "\n").encode())
        with anyio.fail_after(BOUND):
            line = (await self._out.receive_until(b"\n", 1 << 16)).decode()
        verb, value = line.split()
        assert verb == "ok", line
        return float(value)

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            if self.process.returncode is None:
                self.process.kill()
            await self.process.wait()
            await self.process.aclose()


@asynccontextmanager
async def child(env: dict[str, str], library: str) -> AsyncIterator[Child]:
    process = await anyio.open_process(
        [sys.executable, __file__, "child", library], env=env, stderr=None
    )
    c = Child(process)
    try:
        yield c
    finally:
        await c.aclose()


# -- measuring -------------------------------------------------------------------------------


async def next_event(watch: Watch, want: Callable[[Any], bool]) -> float:
    """Wait for an event ``want`` accepts; the monotonic time it arrived."""
    with anyio.fail_after(BOUND):
        async for event in watch:
            if want(event):
                return time.monotonic()
    raise RuntimeError("the watch ended")


def added(instance_id: str) -> Callable[[Any], bool]:
    return lambda e: isinstance(e, Added) and e.instance.instance_id == instance_id


def removed(instance_id: str) -> Callable[[Any], bool]:
    return lambda e: isinstance(e, Removed) and e.instance.instance_id == instance_id


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def own_cpu(seconds: float) -> float:
    start, cpu = time.monotonic(), time.process_time()
    await anyio.sleep(seconds)
    return (time.process_time() - cpu) / (time.monotonic() - start)


async def measure(
    args: argparse.Namespace, env: dict[str, str], rows: list[tuple[str, str]]
) -> None:
    library = args.loop
    async with RequestPlane(environ=env) as plane:
        backend: DiscoveryBackend = plane.discovery()

        # register -> visible, unregister -> gone, in another process's watch
        async with child(env, library) as worker, backend.watch(NAME) as watch:
            await next_event(watch, lambda e: True)  # the snapshot
            seen, gone = [], []
            for i in range(args.tries):
                # Out of step with the watch's polling, as a real change is.
                await anyio.sleep(random.uniform(0.0, 0.1))
                started = await worker.ask("reg", NAME, f"r{i}")
                seen.append(await next_event(watch, added(f"r{i}")) - started)
                await anyio.sleep(random.uniform(0.0, 0.1))
                started = await worker.ask("unreg", NAME, f"r{i}")
                gone.append(await next_event(watch, removed(f"r{i}")) - started)
        rows.append(
            (
                f"register -> Added in another process (n={args.tries})",
                f"median {ms(statistics.median(seen))}, p99 {ms(pct(seen, 0.99))}",
            )
        )
        rows.append(
            (
                f"unregister -> Removed in another process (n={args.tries})",
                f"median {ms(statistics.median(gone))}, p99 {ms(pct(gone, 0.99))}",
            )
        )

        # SIGKILL -> Removed
        kills = []
        async with backend.watch(NAME) as watch:
            await next_event(watch, lambda e: True)
            for i in range(args.kills):
                async with child(env, library) as worker:
                    await worker.ask("reg", NAME, f"k{i}")
                    await next_event(watch, added(f"k{i}"))
                    # Out of step with the watch's liveness sweeps (every 0.5 s at most).
                    await anyio.sleep(random.uniform(0.0, 0.6))
                    killed = time.monotonic()
                    worker.process.send_signal(signal.SIGKILL)
                    kills.append(await next_event(watch, removed(f"k{i}")) - killed)
        rows.append(
            (
                f"SIGKILL -> Removed in another process (n={args.kills}, ttl {args.ttl_label})",
                f"median {ms(statistics.median(kills))}, max {ms(max(kills))}",
            )
        )

        # a crowd of one name: heartbeat CPU, list, snapshot, fan-out, idle polling
        async with child(env, library) as worker:
            idle = await worker.ask("cpu", args.window)
            took = await worker.ask("bulk", CROWD, args.crowd)
            rows.append((f"register {args.crowd} instances (one process)", ms(took)))
            busy = await worker.ask("cpu", args.window)
            per = (busy - idle) / args.crowd
            rows.append(
                (
                    f"heartbeat CPU, {args.crowd} instances (ttl {args.ttl_label})",
                    f"{busy * 100:.2f}% of a core (idle {idle * 100:.2f}%): "
                    f"{per * 1e6:.2f} us/s per instance",
                )
            )

            async with RequestPlane(environ=env) as cold_plane:
                start = time.monotonic()
                listed = await cold_plane.discovery().list_instances(CROWD)
                cold = time.monotonic() - start
            assert len(listed) == args.crowd, len(listed)
            start = time.monotonic()
            await backend.list_instances(CROWD)
            warm = time.monotonic() - start
            rows.append((f"list {args.crowd} instances", f"cold {ms(cold)}, warm {ms(warm)}"))

            async with RequestPlane(environ=env) as cold_plane:
                start = time.monotonic()
                async with cold_plane.discovery().watch(CROWD) as watch:
                    await next_event(watch, lambda e: True)
                    rows.append(
                        (f"watch {args.crowd} instances: Snapshot", ms(time.monotonic() - start))
                    )

            base = await own_cpu(args.window)
            for fan in args.fanout:
                async with plane_with_watches(env, CROWD, fan) as watches:
                    times = []
                    for i in range(args.fan_tries):
                        await anyio.sleep(random.uniform(0.0, 0.1))
                        started = await worker.ask("reg", CROWD, f"f{fan}x{i}")
                        arrived = await all_see(watches, added(f"f{fan}x{i}"))
                        times.append(max(arrived) - started)
                    rows.append(
                        (
                            f"Added -> all of {fan} watches of {args.crowd} instances",
                            f"median {ms(statistics.median(times))}, max {ms(max(times))}",
                        )
                    )
                    cpu = await own_cpu(args.window) - base
                    rows.append(
                        (
                            f"idle CPU of {fan} watches of {args.crowd} instances",
                            f"{cpu * 100:.2f}% of a core ({cpu / fan * 1e3:.2f} ms/s per watch)",
                        )
                    )
            async with plane_with_watches(env, "bench/empty", 10):
                cpu = await own_cpu(args.window) - base
            rows.append(("idle CPU of 10 watches of an empty name", f"{cpu * 100:.2f}% of a core"))
            async with plane_with_watches(env, [f"bench/empty{i}" for i in range(10)], 1):
                cpu = await own_cpu(args.window) - base
            rows.append(("idle CPU of watches of 10 empty names", f"{cpu * 100:.2f}% of a core"))


async def all_see(watches: list[Watch], want: Callable[[Any], bool]) -> list[float]:
    """When each of ``watches`` got an event ``want`` accepts."""
    arrived: list[float] = []

    async def one(w: Watch) -> None:
        arrived.append(await next_event(w, want))

    async with anyio.create_task_group() as tg:
        for w in watches:
            tg.start_soon(one, w)
    return arrived


@asynccontextmanager
async def plane_with_watches(
    env: dict[str, str], names: str | list[str], n: int
) -> AsyncIterator[list[Watch]]:
    """``n`` watches of each of ``names`` in one manager (as a router process holds them),
    each past its Snapshot."""
    async with RequestPlane(environ=env) as plane:
        backend = plane.discovery()
        names = [names] if isinstance(names, str) else names
        watches = [backend.watch(name) for name in names for _ in range(n)]
        try:
            for w in watches:
                await next_event(w, lambda e: True)
            yield watches
        finally:
            for w in watches:
                await w.aclose()


def main() -> None:
    if sys.argv[1:2] == ["child"]:
        child_main(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend-name", default="file")
    parser.add_argument(
        "--setting", action="append", default=[], help="KEY=VALUE, a setting of the backend"
    )
    parser.add_argument("--loop", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--tries", type=int, default=50)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--crowd", type=int, default=1000)
    parser.add_argument("--fanout", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--fan-tries", type=int, default=10)
    parser.add_argument("--window", type=float, default=10.0, help="seconds per CPU figure")
    args = parser.parse_args()

    env = {k: v for k, v in os.environ.items() if not k.startswith("REQUESTPLANE_")}
    env["REQUESTPLANE_DISCOVERY"] = args.backend_name
    prefix = discovery_env_prefix(args.backend_name)
    settings = dict(pair.split("=", 1) for pair in args.setting)
    with tempfile.TemporaryDirectory(prefix="requestplane-bench-discovery-") as tmp:
        if args.backend_name == "file":
            settings.setdefault("dir", tmp)
        for key, value in settings.items():
            env[prefix + key.upper()] = value
        args.ttl_label = f"{settings['ttl']} s" if "ttl" in settings else "default"
        rows: list[tuple[str, str]] = []
        anyio.run(measure, args, env, rows, backend=args.loop)
    width = max(len(r[0]) for r in rows)
    print(f"discovery backend {args.backend_name!r} ({args.loop}), settings {settings}")
    for what, value in rows:
        print(f"  {what:<{width}}  {value}")


if __name__ == "__main__":
    main()
