"""Quick throughput check: 64 concurrent 1 KiB echo requests, requests per second.

Compares the tcp transport (client and server in one process, asyncio and trio) with a raw
asyncio-streams, length-prefixed, multiplexed echo measured in the same run. Not a test:
numbers depend on the machine and on what else runs on it.

    .venv/bin/python plugins/tcp/bench_quick.py [--seconds 3] [--concurrency 64]
        [--size 1024] [--only raw|asyncio|trio] [--profile out.prof]
        [--separate]   # server in a child process (the project's target setup)
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import struct
import time
from typing import Any

import anyio

_FRAME = struct.Struct(">II")  # length, request id


# -- raw asyncio baseline ----------------------------------------------------------------


async def _raw_server_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readexactly(8)
            length, _rid = _FRAME.unpack(head)
            body = await reader.readexactly(length)
            writer.write(head + body)
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


async def _raw_serve(ready: Any = None) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(_raw_server_conn, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, port


async def _raw_client(port: int, seconds: float, concurrency: int, size: int) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    loop = asyncio.get_running_loop()
    waiters: dict[int, asyncio.Future[bytes]] = {}

    async def read() -> None:
        while True:
            head = await reader.readexactly(8)
            length, rid = _FRAME.unpack(head)
            body = await reader.readexactly(length)
            fut = waiters.pop(rid, None)
            if fut is not None and not fut.done():
                fut.set_result(body)

    reader_task = asyncio.create_task(read())
    payload = b"x" * size
    next_id = 0
    done = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal next_id, done
        while time.perf_counter() < stop:
            next_id += 1
            rid = next_id
            fut = loop.create_future()
            waiters[rid] = fut
            writer.write(_FRAME.pack(len(payload), rid) + payload)
            await fut
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    reader_task.cancel()
    writer.close()
    return done / elapsed


def _raw_server_process(port_queue: Any) -> None:
    async def main() -> None:
        server, port = await _raw_serve()
        port_queue.put(port)
        await asyncio.Event().wait()
        server.close()

    asyncio.run(main())


async def raw_bench(seconds: float, concurrency: int, size: int, port: int | None) -> float:
    if port is not None:
        return await _raw_client(port, seconds, concurrency, size)
    server, port = await _raw_serve()
    try:
        return await _raw_client(port, seconds, concurrency, size)
    finally:
        server.close()


# -- requestplane tcp --------------------------------------------------------------------


async def _echo(request: Any) -> bytes:
    return bytes(request.payload)


def _spec() -> Any:
    from requestplane_tcp.plugin import requestplane_transports

    return requestplane_transports()[0]


async def _tcp_client(address: str, seconds: float, concurrency: int, size: int) -> float:
    from requestplane_tcp.settings import TcpSettings

    spec = _spec()
    payload = b"x" * size
    done = 0
    async with spec.client(TcpSettings()) as client:
        await client.request(address, payload)  # connect outside the measurement
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            request = client.request
            while time.perf_counter() < stop:
                await request(address, payload)
                done += 1

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker)
        elapsed = time.perf_counter() - start
    return done / elapsed


async def tcp_bench(seconds: float, concurrency: int, size: int, address: str | None) -> float:
    if address is not None:
        return await _tcp_client(address, seconds, concurrency, size)
    from requestplane_tcp.settings import TcpSettings

    from requestplane_core import serve

    async with serve(_spec(), TcpSettings()) as server:
        addr = str(await server.register("echo", _echo))
        return await _tcp_client(addr, seconds, concurrency, size)


def _tcp_server_process(backend: str, queue: Any) -> None:
    async def main() -> None:
        from requestplane_tcp.settings import TcpSettings

        from requestplane_core import serve

        async with serve(_spec(), TcpSettings()) as server:
            queue.put(str(await server.register("echo", _echo)))
            await anyio.sleep_forever()

    anyio.run(main, backend=backend)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--only", choices=["raw", "asyncio", "trio"])
    parser.add_argument("--separate", action="store_true", help="server in a child process")
    parser.add_argument("--profile", help="write a cProfile of the tcp runs to this file")
    args = parser.parse_args()
    ctx = multiprocessing.get_context("spawn")
    results: dict[str, float] = {}

    def run(name: str, fn: Any) -> None:
        if args.only and args.only != name:
            return
        results[name] = fn()
        print(f"{name:>8}: {results[name]:9.0f} req/s", flush=True)

    def raw() -> float:
        proc = None
        port = None
        if args.separate:
            queue = ctx.Queue()
            proc = ctx.Process(target=_raw_server_process, args=(queue,), daemon=True)
            proc.start()
            port = queue.get()
        try:
            return asyncio.run(raw_bench(args.seconds, args.concurrency, args.size, port))
        finally:
            if proc:
                proc.terminate()

    def tcp(backend: str) -> float:
        proc = None
        address = None
        if args.separate:
            queue = ctx.Queue()
            proc = ctx.Process(target=_tcp_server_process, args=(backend, queue), daemon=True)
            proc.start()
            address = queue.get()
        try:
            bench = (tcp_bench, args.seconds, args.concurrency, args.size, address)
            if args.profile:
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
                try:
                    return anyio.run(*bench, backend=backend)
                finally:
                    profiler.disable()
                    profiler.dump_stats(f"{args.profile}.{backend}")
            return anyio.run(*bench, backend=backend)
        finally:
            if proc:
                proc.terminate()

    run("raw", raw)
    run("asyncio", lambda: tcp("asyncio"))
    run("trio", lambda: tcp("trio"))
    if "raw" in results:
        for name in ("asyncio", "trio"):
            if name in results:
                print(f"{name} / raw asyncio: {results[name] / results['raw']:.2f}x")


if __name__ == "__main__":
    main()
