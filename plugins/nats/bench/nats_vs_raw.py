"""NATS transport vs. raw nats-py, side by side on one nats-server in one run.

Unary: 1 KiB echo at 64 concurrent requests (req/s). Streams: 4 concurrent streams of 1000
chunks of 1 KiB (chunks/s). The responder runs in a child process (its own event loop and
core), the callers in this one. Prints medians of --runs runs and the ratios.

    .venv/bin/python plugins/nats/bench/nats_vs_raw.py [--seconds 3] [--runs 3]
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
# Measure the transport, not whatever observing plugins happen to be installed.
ONLY_NATS = {"REQUESTPLANE_PLUGINS": "nats"}
CHUNKS = 1000


# -- child: the responder -------------------------------------------------------------------


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
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
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
            await anyio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)

    anyio.run(main, backend=backend)


# -- parent: the callers --------------------------------------------------------------------


def call_raw(url: str, addrs: dict[str, str], seconds: float) -> tuple[float, float]:
    import nats

    async def main() -> tuple[float, float]:
        nc = await nats.connect(url)
        done = 0
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                await nc.request(addrs["echo"], PAYLOAD, timeout=10)
                done += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        unary = done / (time.perf_counter() - t0)

        received = 0

        async def one_stream() -> None:
            nonlocal received
            inbox = nc.new_inbox()
            finished = asyncio.Event()

            async def on_chunk(msg: Any) -> None:
                nonlocal received
                if msg.data:
                    received += 1
                else:
                    finished.set()

            sub = await nc.subscribe(inbox, cb=on_chunk)
            await nc.publish(addrs["stream"], str(CHUNKS).encode(), reply=inbox)
            await asyncio.wait_for(finished.wait(), 30)
            await sub.unsubscribe()

        stop = time.perf_counter() + seconds
        t0 = time.perf_counter()
        while time.perf_counter() < stop:
            await asyncio.gather(*(one_stream() for _ in range(STREAMS)))
        stream = received / (time.perf_counter() - t0)
        await nc.close()
        return unary, stream

    return asyncio.run(main())


def call_rp(url: str, addrs: dict[str, str], seconds: float, backend: str) -> tuple[float, float]:
    import anyio

    from requestplane_core import RequestPlane

    async def main() -> tuple[float, float]:
        async with RequestPlane("nats", settings={"url": url}, environ=ONLY_NATS) as plane:
            client = plane.client()
            await client.request(addrs["echo"], b"warm-up")
            done = 0
            stop = time.perf_counter() + seconds

            async def worker() -> None:
                nonlocal done
                while time.perf_counter() < stop:
                    await client.request(addrs["echo"], PAYLOAD)
                    done += 1

            t0 = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for _ in range(CONCURRENCY):
                    tg.start_soon(worker)
            unary = done / (time.perf_counter() - t0)

            received = 0

            async def one_stream() -> None:
                nonlocal received
                async with client.stream(addrs["stream"], str(CHUNKS).encode()) as chunks:
                    async for _ in chunks:
                        received += 1

            stop = time.perf_counter() + seconds
            t0 = time.perf_counter()
            while time.perf_counter() < stop:
                async with anyio.create_task_group() as tg:
                    for _ in range(STREAMS):
                        tg.start_soon(one_stream)
            stream = received / (time.perf_counter() - t0)
            return unary, stream

    return anyio.run(main, backend=backend)


def run_case(url: str, case: str, seconds: float) -> tuple[float, float]:
    serve_args = ["raw"] if case == "raw" else ["rp", case]
    child = subprocess.Popen(
        [sys.executable, __file__, "--child", url, *serve_args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        addrs = json.loads(child.stdout.readline())
        if case == "raw":
            return call_raw(url, addrs, seconds)
        return call_rp(url, addrs, seconds, case)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        url, kind = sys.argv[2], sys.argv[3]
        serve_raw(url) if kind == "raw" else serve_rp(url, sys.argv[4])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from requestplane_nats import NatsServerProcess

    cases = ["raw", "asyncio", "trio"]
    results: dict[str, list[tuple[float, float]]] = {c: [] for c in cases}
    with NatsServerProcess() as nats_server:
        for _ in range(args.runs):
            for case in cases:  # interleaved, so drift on a noisy machine hits all alike
                results[case].append(run_case(nats_server.url, case, args.seconds))
    raw_u = statistics.median(r[0] for r in results["raw"])
    raw_s = statistics.median(r[1] for r in results["raw"])
    for case in cases:
        unary = statistics.median(r[0] for r in results[case])
        stream = statistics.median(r[1] for r in results[case])
        row = {
            "case": "raw nats-py (asyncio)" if case == "raw" else f"requestplane-nats ({case})",
            "req_per_s": round(unary), "unary_ratio": round(unary / raw_u, 2),
            "chunks_per_s": round(stream), "stream_ratio": round(stream / raw_s, 2),
        }
        if args.json:
            print(json.dumps(row))
        else:
            print(f"{row['case']:28s} {unary:9.0f} req/s ({row['unary_ratio']:.2f}x)   "
                  f"{stream:9.0f} chunks/s ({row['stream_ratio']:.2f}x)")


if __name__ == "__main__":
    main()
