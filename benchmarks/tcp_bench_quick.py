"""Quick throughput check: 64 concurrent 1 KiB echo requests, requests per second.

Compares the tcp transport (client and server in one process, asyncio and trio) with raw
asyncio-streams, length-prefixed, multiplexed echoes measured in the same run: ``raw``
answers inline in the server's read loop (the pure-Python floor), ``raw+task`` runs each
request in its own asyncio task, as any server whose handlers may block must. Not a test:
numbers depend on the machine and on what else runs on it.

    .venv/bin/python benchmarks/tcp_bench_quick.py [--seconds 3] [--concurrency 64]
        [--size 1024] [--only raw|raw+task|asyncio|trio] [--profile out.prof]
        [--timeout SECONDS]  # every tcp call with this timeout (the deadline path)
        [--uvloop]     # the asyncio runs (raw and tcp) on uvloop
        [--separate]   # server in a child process (the project's target setup)

In one process, CPU per request is the steadier number, but it moves with how requests batch
up (a cheaper client sends smaller batches); ``requestplane bench --json`` in separate
processes, which reports client and server CPU apart, is the one to decide by.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import multiprocessing
import struct
import time
from typing import Any

import anyio
import anyio.abc

_FRAME = struct.Struct(">II")  # length, request id


# -- raw asyncio baseline ----------------------------------------------------------------


async def _raw_server_conn(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, task_per_request: bool
) -> None:
    async def answer(head: bytes, body: bytes) -> None:
        writer.write(head + body)

    tasks: set[asyncio.Task[None]] = set()
    try:
        while True:
            head = await reader.readexactly(8)
            length, _rid = _FRAME.unpack(head)
            body = await reader.readexactly(length)
            if task_per_request:
                # What a request plane must do at least: run each handler in its own
                # (cancellable) task so that a slow one does not hold up the others.
                task = asyncio.create_task(answer(head, body))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            else:
                writer.write(head + body)
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
        writer.close()


async def _raw_serve(task_per_request: bool = False) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(
        lambda r, w: _raw_server_conn(r, w, task_per_request), "127.0.0.1", 0
    )
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


def _raw_server_process(port_queue: Any, task_per_request: bool, uvloop: bool = False) -> None:
    async def main() -> None:
        server, port = await _raw_serve(task_per_request)
        port_queue.put(port)
        await asyncio.Event().wait()
        server.close()

    _asyncio_run(main(), uvloop)


def _asyncio_run(coro: Any, uvloop: bool) -> Any:
    if uvloop:
        import uvloop as uv

        return uv.run(coro)
    return asyncio.run(coro)


async def raw_bench(
    seconds: float, concurrency: int, size: int, port: int | None, task_per_request: bool
) -> float:
    if port is not None:
        return await _raw_client(port, seconds, concurrency, size)
    server, port = await _raw_serve(task_per_request)
    try:
        return await _raw_client(port, seconds, concurrency, size)
    finally:
        server.close()


# -- raw anyio baseline ------------------------------------------------------------------


class _AnyioPeer:
    """Both ends of a minimal anyio multiplexed echo: a coalescing writer, a buffered
    reader. What the transport would be with no dispatcher, no task per request and no
    error handling: the anyio floor on either backend."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.out: list[bytes] = []
        self.wake = anyio.Event()
        self.idle = False

    def send(self, data: bytes) -> None:
        self.out.append(data)
        if self.idle:
            self.idle = False
            self.wake.set()

    async def writer(self) -> None:
        while True:
            if not self.out:
                self.wake = anyio.Event()
                self.idle = True
                await self.wake.wait()
                continue
            out, self.out = self.out, []
            await self.stream.send(b"".join(out))

    async def reader(self, on_frame: Any) -> None:
        buf = bytearray()
        while True:
            buf += await self.stream.receive(262144)
            pos = 0
            while len(buf) - pos >= 8:
                length, rid = _FRAME.unpack_from(buf, pos)
                end = pos + 8 + length
                if end > len(buf):
                    break
                on_frame(rid, bytes(buf[pos:end]))
                pos = end
            del buf[:pos]


async def anyio_raw_bench(seconds: float, concurrency: int, size: int) -> float:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def serve_one(stream: Any) -> None:
        peer = _AnyioPeer(stream)
        async with anyio.create_task_group() as tg:
            tg.start_soon(peer.writer)
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                await peer.reader(lambda rid, frame: peer.send(frame))
            tg.cancel_scope.cancel()

    done = 0
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve_one)
        peer = _AnyioPeer(await anyio.connect_tcp("127.0.0.1", port))
        waiters: dict[int, list[Any]] = {}

        def on_answer(rid: int, frame: bytes) -> None:
            slot = waiters.pop(rid)
            slot[1] = frame
            slot[0].set()

        tg.start_soon(peer.writer)
        tg.start_soon(peer.reader, on_answer)
        payload = b"x" * size
        next_id = 0
        stop = time.perf_counter() + seconds
        new_event = type(anyio.Event())

        async def worker() -> None:
            nonlocal next_id, done
            while time.perf_counter() < stop:
                next_id += 1
                slot = waiters[next_id] = [new_event(), None]
                peer.send(_FRAME.pack(len(payload), next_id) + payload)
                await slot[0].wait()
                done += 1

        start = time.perf_counter()
        async with anyio.create_task_group() as workers:
            for _ in range(concurrency):
                workers.start_soon(worker)
        elapsed = time.perf_counter() - start
        tg.cancel_scope.cancel()
    return done / elapsed


# -- requestplane tcp --------------------------------------------------------------------


async def _echo(request: Any) -> bytes:
    return bytes(request.payload)


def _spec() -> Any:
    from requestplane_tcp.plugin import requestplane_transports

    return requestplane_transports()[0]


async def _tcp_client(
    address: str, seconds: float, concurrency: int, size: int, timeout: float | None = None
) -> float:
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
                await request(address, payload, timeout=timeout)
                done += 1

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker)
        elapsed = time.perf_counter() - start
    return done / elapsed


async def tcp_bench(
    seconds: float,
    concurrency: int,
    size: int,
    address: str | None,
    timeout: float | None = None,
) -> float:
    if address is not None:
        return await _tcp_client(address, seconds, concurrency, size, timeout)
    from requestplane_tcp.settings import TcpSettings

    from requestplane_core import serve

    async with serve(_spec(), TcpSettings()) as server:
        addr = str(await server.register("echo", _echo))
        return await _tcp_client(addr, seconds, concurrency, size, timeout)


def _tcp_server_process(backend: str, queue: Any, uvloop: bool = False) -> None:
    async def main() -> None:
        from requestplane_tcp.settings import TcpSettings

        from requestplane_core import serve

        async with serve(_spec(), TcpSettings()) as server:
            queue.put(str(await server.register("echo", _echo)))
            await anyio.sleep_forever()

    anyio.run(main, backend=backend, backend_options=_options(backend, uvloop))


def _options(backend: str, uvloop: bool) -> dict[str, Any]:
    return {"use_uvloop": True} if uvloop and backend == "asyncio" else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument(
        "--only", choices=["raw", "raw+task", "anyio-asyncio", "anyio-trio", "asyncio", "trio"]
    )
    parser.add_argument("--separate", action="store_true", help="server in a child process")
    parser.add_argument("--timeout", type=float, help="seconds: each tcp call's timeout")
    parser.add_argument("--uvloop", action="store_true", help="asyncio runs on uvloop")
    parser.add_argument("--profile", help="write a cProfile of the tcp runs to this file")
    args = parser.parse_args()
    ctx = multiprocessing.get_context("spawn")
    results: dict[str, float] = {}

    def run(name: str, fn: Any) -> None:
        if args.only and args.only != name:
            return
        cpu = time.process_time()
        results[name] = fn()
        cpu = time.process_time() - cpu
        line = f"{name:>13}: {results[name]:9.0f} req/s"
        if not args.separate:
            # CPU per request is steadier than req/s on a machine busy with other work.
            line += f"   {cpu / (results[name] * args.seconds) * 1e6:6.1f} us CPU/request"
        print(line, flush=True)

    def raw(task_per_request: bool = False) -> float:
        proc = None
        port = None
        if args.separate:
            queue = ctx.Queue()
            proc = ctx.Process(
                target=_raw_server_process,
                args=(queue, task_per_request, args.uvloop),
                daemon=True,
            )
            proc.start()
            port = queue.get()
        try:
            rate: float = _asyncio_run(
                raw_bench(args.seconds, args.concurrency, args.size, port, task_per_request),
                args.uvloop,
            )
            return rate
        finally:
            if proc:
                proc.terminate()

    def tcp(backend: str) -> float:
        proc = None
        address = None
        if args.separate:
            queue = ctx.Queue()
            proc = ctx.Process(
                target=_tcp_server_process, args=(backend, queue, args.uvloop), daemon=True
            )
            proc.start()
            address = queue.get()
        try:
            bench = functools.partial(
                tcp_bench, args.seconds, args.concurrency, args.size, address, args.timeout
            )
            options = _options(backend, args.uvloop)
            if args.profile:
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
                try:
                    return anyio.run(bench, backend=backend, backend_options=options)
                finally:
                    profiler.disable()
                    profiler.dump_stats(f"{args.profile}.{backend}")
            return anyio.run(bench, backend=backend, backend_options=options)
        finally:
            if proc:
                proc.terminate()

    run("raw", raw)
    run("raw+task", lambda: raw(task_per_request=True))
    if not args.separate:
        for backend in ("asyncio", "trio"):
            run(
                f"anyio-{backend}",
                lambda b=backend: anyio.run(
                    anyio_raw_bench,
                    args.seconds,
                    args.concurrency,
                    args.size,
                    backend=b,
                    backend_options=_options(b, args.uvloop),
                ),
            )
    run("asyncio", lambda: tcp("asyncio"))
    run("trio", lambda: tcp("trio"))
    for base in ("raw", "raw+task"):
        if base in results:
            for name in ("asyncio", "trio"):
                if name in results:
                    print(f"{name} / {base}: {results[name] / results[base]:.2f}x")
    for name in ("asyncio", "trio"):
        if name in results and f"anyio-{name}" in results:
            print(f"{name} / raw anyio on {name}: {results[name] / results[f'anyio-{name}']:.2f}x")


if __name__ == "__main__":
    main()
