"""NATS transport vs. raw nats-py, side by side on one nats-server in one run.

Unary: 1 KiB echo at 64 concurrent requests (req/s). Streams: 4 concurrent streams of 1000
chunks of 1 KiB (chunks/s). Each measurement runs its responder in a fresh child process (its
own event loop and core), the callers in this one. Besides the rates it reports the CPU time
of caller + responder per request or chunk, which the noise of a shared machine barely moves.
Prints medians of --runs interleaved runs and the ratios to raw.

    .venv/bin/python benchmarks/nats_vs_raw.py [--seconds 2] [--runs 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from typing import Any

PAYLOAD = b"x" * 1024
CONCURRENCY = 64
STREAMS = 4
CHUNKS = 1000
# Measure the transport, not whatever observing plugins happen to be installed. The allow-list
# leaves out the core's own discovery backends too: discovery off, as the run needs none.
ONLY_NATS = {"REQUESTPLANE_PLUGINS": "nats", "REQUESTPLANE_DISCOVERY": "none"}


# -- child: the responder -------------------------------------------------------------------


def _report_cpu_until_stdin_closes() -> None:
    print(time.process_time(), flush=True)
    sys.stdin.readline()
    print(time.process_time(), flush=True)


def serve_raw(url: str) -> None:
    import nats

    async def main() -> None:
        nc = await nats.connect(url)

        async def echo(msg: Any) -> None:
            await nc.publish(msg.reply, msg.data)

        async def chunks(msg: Any) -> None:
            for _ in range(int(msg.data)):
                await nc.publish(msg.reply, PAYLOAD)
            await nc.publish(msg.reply, b"")

        await nc.subscribe("raw.echo", cb=echo)
        await nc.subscribe("raw.stream", cb=chunks)
        await nc.flush()
        print(json.dumps({"echo": "raw.echo", "stream": "raw.stream"}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, _report_cpu_until_stdin_closes)
        await nc.close()

    asyncio.run(main())


def serve_rp(url: str, backend: str) -> None:
    import anyio

    from requestplane_core import Request, RequestPlane

    async def echo(req: Request) -> bytes:
        return req.payload

    async def chunks(req: Request) -> Any:
        for _ in range(int(req.payload)):
            yield PAYLOAD

    async def main() -> None:
        async with RequestPlane("nats", settings={"url": url}, environ=ONLY_NATS) as plane:
            server = await plane.server()
            a = await server.register("echo", echo)
            b = await server.register("stream", chunks)
            print(json.dumps({"echo": str(a), "stream": str(b)}), flush=True)
            await anyio.to_thread.run_sync(_report_cpu_until_stdin_closes)

    anyio.run(main, backend=backend)


# -- parent: the callers --------------------------------------------------------------------


async def _raw_calls(url: str, addrs: dict[str, str], seconds: float, kind: str) -> int:
    import nats

    nc = await nats.connect(url)
    await nc.request(addrs["echo"], b"warm-up", timeout=10)
    count = 0
    stop = time.perf_counter() + seconds
    try:
        if kind == "unary":

            async def worker() -> None:
                nonlocal count
                while time.perf_counter() < stop:
                    await nc.request(addrs["echo"], PAYLOAD, timeout=10)
                    count += 1

            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
            return count

        async def one_stream() -> None:
            nonlocal count
            inbox = nc.new_inbox()
            finished = asyncio.Event()

            async def on_chunk(msg: Any) -> None:
                nonlocal count
                if msg.data:
                    count += 1
                else:
                    finished.set()

            sub = await nc.subscribe(inbox, cb=on_chunk)
            await nc.publish(addrs["stream"], str(CHUNKS).encode(), reply=inbox)
            await asyncio.wait_for(finished.wait(), 30)
            await sub.unsubscribe()

        while time.perf_counter() < stop:
            await asyncio.gather(*(one_stream() for _ in range(STREAMS)))
        return count
    finally:
        await nc.close()


async def _rp_calls(addrs: dict[str, str], url: str, seconds: float, kind: str) -> int:
    import anyio

    from requestplane_core import RequestPlane

    async with RequestPlane("nats", settings={"url": url}, environ=ONLY_NATS) as plane:
        client = plane.client()
        await client.request(addrs["echo"], b"warm-up")
        count = 0
        stop = time.perf_counter() + seconds
        if kind == "unary":

            async def worker() -> None:
                nonlocal count
                while time.perf_counter() < stop:
                    await client.request(addrs["echo"], PAYLOAD)
                    count += 1

            async with anyio.create_task_group() as tg:
                for _ in range(CONCURRENCY):
                    tg.start_soon(worker)
            return count

        async def one_stream() -> None:
            nonlocal count
            async with client.stream(addrs["stream"], str(CHUNKS).encode()) as chunks:
                async for _ in chunks:
                    count += 1

        while time.perf_counter() < stop:
            async with anyio.create_task_group() as tg:
                for _ in range(STREAMS):
                    tg.start_soon(one_stream)
        return count


def measure(url: str, case: str, kind: str, seconds: float) -> tuple[float, float]:
    """(rate per second, caller + responder CPU microseconds per request or chunk)."""
    serve_args = ["raw"] if case == "raw" else ["rp", case]
    child = subprocess.Popen(
        [sys.executable, __file__, "--child", url, *serve_args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None and child.stdin is not None
    try:
        addrs = json.loads(child.stdout.readline())
        child_cpu0 = float(child.stdout.readline())
        cpu0, t0 = time.process_time(), time.perf_counter()
        if case == "raw":
            count = asyncio.run(_raw_calls(url, addrs, seconds, kind))
        else:
            import anyio

            count = anyio.run(_rp_calls, addrs, url, seconds, kind, backend=case)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        child.stdin.write(b"\n")
        child.stdin.flush()
        child_cpu = float(child.stdout.readline()) - child_cpu0
    finally:
        child.stdin.close()
        child.wait(10)
    return count / elapsed, (cpu + child_cpu) / count * 1e6


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        url, impl = sys.argv[2], sys.argv[3]
        serve_raw(url) if impl == "raw" else serve_rp(url, sys.argv[4])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from requestplane_nats import NatsServerProcess

    cases = ["raw", "asyncio", "trio"]
    kinds = ["unary", "stream"]
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with NatsServerProcess() as nats_server:
        for _ in range(args.runs):
            for kind in kinds:
                for case in cases:  # interleaved: drift on a noisy machine hits all alike
                    sample = measure(nats_server.url, case, kind, args.seconds)
                    results.setdefault((case, kind), []).append(sample)

    def median(case: str, kind: str, i: int) -> float:
        return statistics.median(sample[i] for sample in results[(case, kind)])

    for case in cases:
        row: dict[str, Any] = {
            "case": "raw nats-py (asyncio)" if case == "raw" else f"requestplane-nats ({case})"
        }
        for kind, unit in (("unary", "req"), ("stream", "chunks")):
            rate, cpu = median(case, kind, 0), median(case, kind, 1)
            row[f"{unit}_per_s"] = round(rate)
            row[f"{kind}_ratio"] = round(rate / median("raw", kind, 0), 2)
            row[f"{kind}_cpu_us"] = round(cpu, 1)
            row[f"{kind}_cpu_ratio"] = round(cpu / median("raw", kind, 1), 2)
        if args.json:
            print(json.dumps(row))
        else:
            print(
                f"{row['case']:28s} {row['req_per_s']:7d} req/s ({row['unary_ratio']:.2f}x, "
                f"{row['unary_cpu_us']:6.1f} cpu-us/req)   {row['chunks_per_s']:7d} chunks/s "
                f"({row['stream_ratio']:.2f}x, {row['stream_cpu_us']:5.1f} cpu-us/chunk)"
            )


if __name__ == "__main__":
    main()
