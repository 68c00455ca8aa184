"""What every peer script shares: its command line, the server/client process split, and
the load loop and record of ``requestplane bench``, so peers are measured the same way.

A peer script defines how to serve (an async context manager yielding an address) and how
to connect (an async context manager yielding the call to measure), then calls
:func:`peer_main`. ``python peer.py [options]`` runs a server process and a client process
and prints the record as JSON (``--table`` for one human line); ``server`` and ``client``
are the roles it spawns.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
from requestplane_bench.case import Case
from requestplane_bench.cpu import CpuMeter
from requestplane_bench.emit import emit
from requestplane_bench.load import Call, LoadPlan, run_load
from requestplane_bench.processes import open_child
from requestplane_bench.record import make_record
from requestplane_bench.rss import peak_rss_kib

Serve = Callable[[argparse.Namespace], AbstractAsyncContextManager[str]]
Connect = Callable[[argparse.Namespace, str], AbstractAsyncContextManager[Call]]


def common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--kind", choices=("unary", "stream"), default="unary")
    parser.add_argument("--payload", type=int, default=1024)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--requests", type=int, default=None)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--chunks", type=int, default=100)
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--table", action="store_true", help="one human line, not JSON")


def case_of(name: str, args: argparse.Namespace) -> Case:
    return Case(
        mode=name,
        backend=args.backend,
        kind=args.kind,
        uvloop=args.uvloop,
        payload=args.payload,
        concurrency=args.concurrency,
        duration=None if args.requests else args.duration,
        requests=args.requests,
        warmup=args.warmup,
        chunks=args.chunks,
        chunk_size=args.chunk_size,
    )


def _anyio_run(args: argparse.Namespace, fn: Callable[..., Any], *fn_args: Any) -> Any:
    options = {"use_uvloop": True} if args.uvloop else {}
    return anyio.run(fn, *fn_args, backend=args.backend, backend_options=options)


def _wait_for_eof() -> None:
    while sys.stdin.buffer.read(4096):
        pass


async def _serve_role(serve: Serve, args: argparse.Namespace) -> None:
    async with serve(args) as address:
        emit("ready", address=address, pid=os.getpid())
        await anyio.to_thread.run_sync(_wait_for_eof, abandon_on_cancel=True)
    emit("stopped", rss_kib=peak_rss_kib())


async def _client_role(name: str, connect: Connect, args: argparse.Namespace) -> None:
    case = case_of(name, args)
    plan = LoadPlan(case.concurrency, case.duration, case.requests, case.warmup)
    meter = CpuMeter(args.server_pid)
    async with connect(args, args.address) as call:
        outcome = await run_load(
            call, plan, lambda phase, done: emit("progress", phase=phase, done=done), meter
        )
    record = make_record(
        case,
        outcome,
        client_rss_kib=peak_rss_kib(),
        server_rss_kib=None,
        cpu_us=meter.per_request_us(outcome.completed + outcome.errors),
    )
    emit("result", record=record)


async def run_peer(
    script: str, argv: list[str], env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run ``script``'s server and client processes with ``argv``; return the record (its
    ``failure`` says what went wrong, if anything did)."""
    env = dict(os.environ if env is None else env)
    base = [sys.executable, script]
    async with open_child([*base, "server", *argv], env) as server:
        ready = await server.next_event(30)
        if ready is None or ready.get("event") != "ready":
            return {"failure": await server.why("the peer server did not start")}
        client_argv = [
            *base,
            "client",
            "--address",
            str(ready["address"]),
            "--server-pid",
            str(ready["pid"]),
            *argv,
        ]
        async with open_child(client_argv, env) as client:
            while True:
                event = await client.next_event(60)
                if event is None:
                    return {"failure": await client.why("the peer client gave no result")}
                if event.get("event") == "result":
                    record: dict[str, Any] = event["record"]
                    break
        assert server.process.stdin is not None
        await server.process.stdin.aclose()
        stopped = await server.next_event(15)
        if stopped is not None and stopped.get("event") == "stopped":
            record["server_rss_kib"] = stopped["rss_kib"]
    return record


def peer_main(
    name: str,
    serve: Serve,
    connect: Connect,
    *,
    doc: str | None,
    options: Callable[[argparse.ArgumentParser], None] | None = None,
    around_run: Callable[[argparse.Namespace], AbstractAsyncContextManager[list[str]]]
    | None = None,
) -> int:
    """The script's entry point. ``around_run`` (``run`` role only) wraps both processes, e.g.
    to start a broker, and yields extra arguments for them."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("role", nargs="?", choices=("run", "server", "client"), default="run")
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    common_options(parser)
    if options is not None:
        options(parser)
    args, _ = parser.parse_known_args()
    if args.role == "server":
        _anyio_run(args, _serve_role, serve, args)
        return 0
    if args.role == "client":
        _anyio_run(args, _client_role, name, connect, args)
        return 0
    argv = [a for a in sys.argv[1:] if a not in ("run", "--table")]

    async def run() -> dict[str, Any]:
        if around_run is None:
            return await run_peer(sys.argv[0], argv)
        async with around_run(args) as extra:
            return await run_peer(sys.argv[0], [*argv, *extra])

    record = anyio.run(run)
    if args.table:
        if record.get("failure"):
            print(f"{name}: FAILED {record['failure']}")
        else:
            print(
                f"{name} {record['backend']} {record['kind']} payload={record['payload']} "
                f"c={record['concurrency']}: {record['req_per_s']:,.0f} req/s "
                f"p50={record['p50_us']:.0f}us p99={record['p99_us']:.0f}us "
                f"cpu/req={record['client_cpu_us']}+{record['server_cpu_us']}us "
                f"chunks/s={record['chunks_per_s']} errors={record['errors']}"
            )
    else:
        print(json.dumps(record))
    return 0 if not record.get("failure") and record.get("errors") == 0 else 1
