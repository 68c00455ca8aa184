"""Which HTTP client should the transport use? Measured side by side, in one run.

Servers run in their own processes (one core each on a 2-core machine), clients in this one:

* ``transport``: requestplane's HTTP server (hypercorn + the plugin's ASGI app), echo endpoint.
* ``plain``: a bare hypercorn echo app, the naive baseline (its 1000-request connection limit
  raised so that httpx survives the run).

Rows (1 KiB echo, 1 and 64 concurrent callers; req/s and the client's CPU per request):

* httpx h2c -> plain hypercorn         (the naive pairing the issue measures against)
* httpx h2c -> transport server
* httpx http1 pool -> transport server
* requestplane-http client -> transport server   (the transport end to end)

then large uploads through the requestplane client forced onto HTTP/2 and onto HTTP/1.1,
which is what ``http1_threshold`` is chosen from.

    python benchmarks/http_bench_client.py [--backend asyncio|trio] [--seconds 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

PAYLOAD = b"x" * 1024
# The bare hypercorn echo server (_hypercorn_echo.py) is a module beside this script.
BENCHMARKS = Path(__file__).resolve().parent


# -- servers (child processes) -----------------------------------------------------------


async def _serve_transport(backend: str) -> None:
    from requestplane_core import Request, load_plugins, load_settings, serve
    from requestplane_core.config import transport_env_prefix

    async def echo(request: Request) -> bytes:
        return request.payload

    # The core's serve() without instrumentation hooks: the transport alone, whatever other
    # requestplane plugins are installed. REQUESTPLANE_HTTP_* tune it.
    spec = load_plugins(only="http").transport("http").spec
    settings = load_settings(spec.settings, prefix=transport_env_prefix("http"), environ=os.environ)
    async with serve(spec, settings) as server:
        address = await server.register("echo", echo)
        print(address, flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)


async def _serve_plain(backend: str) -> None:
    # The same server as benchmarks/httpx_hypercorn.py, the httpx peer in docs/benchmarks.md,
    # so both measure against one baseline.
    sys.path.insert(0, str(BENCHMARKS))
    from _hypercorn_echo import serve_echo

    async with serve_echo() as url:
        print(url, flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)


def _start_server(kind: str, backend: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--backend", backend],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url:
        raise SystemExit(f"the {kind} server did not start")
    return proc, url


# -- measuring ---------------------------------------------------------------------------


def _server_cpu(pid: int) -> float:
    """CPU seconds the server process has used (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _measure(
    call: Callable[[], Awaitable[object]], concurrency: int, seconds: float, server_pid: int
) -> tuple[float, float, float]:
    """(requests per second, client and server CPU milliseconds per request)."""
    for _ in range(20):  # warm up connections and caches
        await call()
    done = 0
    stop = False

    async def worker() -> None:
        nonlocal done
        while not stop:
            await call()
            done += 1

    server0 = _server_cpu(server_pid)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
        await anyio.sleep(seconds)
        stop = True
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    server = _server_cpu(server_pid) - server0
    n = max(done, 1)
    return done / wall, cpu / n * 1000, server / n * 1000


def _row(label: str, concurrency: int, result: tuple[float, float, float]) -> str:
    rate, cpu, server = result
    return f"{label:<42} {concurrency:>4} {rate:>8.0f} {cpu:>10.2f} {server:>10.2f}"


async def _httpx_rows(
    url: str,
    pid: int,
    label: str,
    http2: bool,
    seconds: float,
    concurrencies: tuple[int, ...] = (1, 64),
) -> list[tuple[str, float]]:
    import httpx

    rows = []
    for concurrency in concurrencies:
        limits = httpx.Limits(max_connections=None if not http2 else 1)
        async with httpx.AsyncClient(http2=http2, http1=not http2, limits=limits) as client:

            async def call() -> None:
                response = await client.post(url, content=PAYLOAD)
                assert response.status_code == 200 and response.content == PAYLOAD

            result = await _measure(call, concurrency, seconds, pid)
        rows.append((_row(label, concurrency, result), result[0]))
    return rows


async def _transport_rows(
    url: str, pid: int, label: str, seconds: float, concurrencies: tuple[int, ...] = (1, 64)
) -> list[tuple[str, float]]:
    from requestplane_http.client import HttpClient
    from requestplane_http.settings import HttpSettings

    from requestplane_core import load_settings

    rows = []
    for concurrency in concurrencies:
        settings = load_settings(HttpSettings, prefix="REQUESTPLANE_HTTP_", environ={})
        async with HttpClient(settings) as client:

            async def call() -> None:
                assert await client.request(url, PAYLOAD) == PAYLOAD

            result = await _measure(call, concurrency, seconds, pid)
        rows.append((_row(label, concurrency, result), result[0]))
    return rows


async def _upload_rows(url: str) -> list[str]:
    from requestplane_http.client import HttpClient
    from requestplane_http.settings import HttpSettings

    from requestplane_core import load_settings

    rows = []
    for size in (16 * 1024, 64 * 1024, 256 * 1024, 1024 * 1024, 8 * 1024 * 1024):
        payload = b"u" * size
        times = []
        for threshold in (1 << 40, 1):  # never HTTP/1.1; always HTTP/1.1
            settings = load_settings(
                HttpSettings,
                prefix="REQUESTPLANE_HTTP_",
                environ={},
                overrides={"http1_threshold": threshold},
            )
            async with HttpClient(settings) as client:
                await client.request(url, payload)
                n = max(3, min(50, (32 << 20) // size))
                start = time.perf_counter()
                for _ in range(n):
                    await client.request(url, payload)
                times.append((time.perf_counter() - start) / n * 1000)
        rows.append(f"{size // 1024:>8} KiB  {times[0]:>10.2f} ms  {times[1]:>10.2f} ms")
    return rows


async def _main(args: argparse.Namespace) -> None:
    plain, plain_url = _start_server("plain", args.backend)
    transport, transport_url = _start_server("transport", args.backend)
    try:
        print(
            f"client backend {args.backend}, servers on {args.backend}, 1 KiB echo, "
            f"{args.seconds:g} s per row, pid {os.getpid()}"
        )
        print(
            f"{'client -> server':<42} {'conc':>4} {'req/s':>8} {'client ms':>10} "
            f"{'server ms':>10}   (CPU per request)"
        )
        sections = [
            await _httpx_rows(
                plain_url, plain.pid, "httpx h2c -> plain hypercorn", True, args.seconds
            ),
            await _transport_rows(
                plain_url, plain.pid, "requestplane client -> plain hypercorn", args.seconds
            ),
            await _httpx_rows(
                transport_url, transport.pid, "httpx h2c -> transport server", True, args.seconds
            ),
            await _httpx_rows(
                transport_url,
                transport.pid,
                "httpx http1 pool -> transport server",
                False,
                args.seconds,
            ),
            await _transport_rows(
                transport_url,
                transport.pid,
                "requestplane client -> transport server",
                args.seconds,
            ),
        ]
        for rows in sections:
            for text, _ in rows:
                print(text, flush=True)
        print(
            f"\nheadline, 64 concurrent 1 KiB echo, {args.rounds} alternating rounds "
            f"(median; the machine is shared, so rounds vary):"
        )
        naive: list[float] = []
        ours: list[float] = []
        for _ in range(args.rounds):
            naive.append(
                (await _httpx_rows(plain_url, plain.pid, "", True, args.seconds, (64,)))[0][1]
            )
            ours.append(
                (await _transport_rows(transport_url, transport.pid, "", args.seconds, (64,)))[0][1]
            )
        naive.sort()
        ours.sort()
        median_naive, median_ours = naive[len(naive) // 2], ours[len(ours) // 2]
        print(
            f"  naive httpx h2c + plain hypercorn: {' '.join(f'{r:.0f}' for r in naive)} "
            f"req/s, median {median_naive:.0f}"
        )
        print(
            f"  requestplane http transport:       {' '.join(f'{r:.0f}' for r in ours)} "
            f"req/s, median {median_ours:.0f}"
        )
        print(f"  ratio of medians: {median_ours / median_naive:.2f}x")
        print("\nupload through the requestplane client (mean per request, sequential)")
        print(f"{'size':>12}  {'HTTP/2':>13}  {'HTTP/1.1':>13}")
        for row in await _upload_rows(transport_url):
            print(row, flush=True)
    finally:
        for proc in (plain, transport):
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=5, help="alternating headline rounds")
    parser.add_argument("--serve", choices=["transport", "plain"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "transport":
        anyio.run(_serve_transport, args.backend, backend=args.backend)
    elif args.serve == "plain":
        anyio.run(_serve_plain, args.backend, backend=args.backend)
    else:
        anyio.run(_main, args, backend=args.backend)


if __name__ == "__main__":
    main()
